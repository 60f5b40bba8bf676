-- Snapshots: immutable images of a volume at one moment (Cinder's snapshots,
-- VDSM's model). Taking one freezes the volume's active image and gives the
-- volume a new overlay on it, so a snapshot's row points at the frozen image
-- (`image_id`), and that pointer is one of the image's uses (see 0009).
--
-- `volume_id` is the volume the snapshot was taken of. It is not a foreign
-- key: a volume is deleted with its snapshots (cascade) or not at all, and
-- the snapshot rows go in the same transaction as the volume's. `size` is the
-- volume's size then (GiB), counted against the project's `gigabytes` as
-- Cinder counts it; `volume_type_id` keys `snapshots_<type>` and
-- `gigabytes_<type>`. `reservation_id` is set while the create flow holds the
-- quota, exactly as for volumes.
CREATE TABLE snapshots (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    volume_id         TEXT NOT NULL,
    volume_type_id    TEXT NOT NULL REFERENCES volume_types (id),
    name              TEXT,
    description       TEXT,
    size              INTEGER NOT NULL,
    status            TEXT NOT NULL,
    image_id          TEXT REFERENCES images (id),
    reservation_id    TEXT,
    last_flow_id      TEXT,
    group_snapshot_id TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT
);
CREATE INDEX snapshots_by_project ON snapshots (project_id, created_at);
CREATE INDEX snapshots_by_volume ON snapshots (volume_id);
CREATE INDEX snapshots_by_image ON snapshots (image_id) WHERE image_id IS NOT NULL;

CREATE TABLE snapshot_metadata (
    snapshot_id TEXT NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, key)
);

-- Volumes made from a snapshot name it in `snapshot_id` (a column since 0001).
-- While such a volume is `creating`, the snapshot is being read (a full copy,
-- the performance strategy) and is not deleted; the index keeps that question
-- cheap.
CREATE INDEX volumes_by_snapshot ON volumes (snapshot_id) WHERE snapshot_id IS NOT NULL;
