-- Clones: a volume created from another records it in `source_volid`. While
-- such a volume is `creating`, its source is being read and may not be
-- deleted, extended, transferred or reset (`volume_clones_in_progress`, asked
-- by every flow that would change the source, in its own transaction). The
-- index keeps that question cheap; only clones have a source.
CREATE INDEX volumes_by_source ON volumes (source_volid) WHERE source_volid IS NOT NULL;
