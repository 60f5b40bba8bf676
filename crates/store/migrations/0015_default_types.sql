-- Per-project default volume types (Cinder's `default-types`, 3.62): a volume
-- created in `project_id` without a type gets `volume_type_id`, instead of
-- the installation's `__DEFAULT__`. At most one per project; a type that is
-- some project's default is not deleted (the core refuses it).
CREATE TABLE default_volume_types (
    project_id     TEXT PRIMARY KEY NOT NULL,
    volume_type_id TEXT NOT NULL REFERENCES volume_types (id),
    created_at     TEXT NOT NULL,
    updated_at     TEXT
);
CREATE INDEX default_volume_types_by_type ON default_volume_types (volume_type_id);
