-- Backups (Cinder's): copies of a volume's data in the backup repository
-- (a directory outside the backends; see crates/storage/src/backup_repo),
-- full or incremental on top of the latest backup of the same volume
-- (`parent_id`). A backup row says what the API shows; the data is the
-- repository's manifest named by the backup's id, written before the row is
-- `available`.
--
-- `size` is the volume's size (GiB), counted against `backup_gigabytes`;
-- every row counts against `backups` once `reservation_id` is cleared, as for
-- volumes. `tracking` is how the data to read was found (`full`,
-- `dirty-bitmap`, `full-read`), with `fallback_reason` when an incremental
-- could not use its bitmap; `bytes_read` the guest bytes read from the volume,
-- `stored_bytes` what the backup added to the repository (compressed).
-- `volume_id` is not a foreign key: a backup outlives its volume.
CREATE TABLE backups (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    volume_id         TEXT NOT NULL,
    snapshot_id       TEXT,
    parent_id         TEXT,
    name              TEXT,
    description       TEXT,
    container         TEXT,
    availability_zone TEXT,
    size              INTEGER NOT NULL,
    status            TEXT NOT NULL,
    fail_reason       TEXT,
    object_count      INTEGER NOT NULL DEFAULT 0,
    tracking          TEXT,
    fallback_reason   TEXT,
    bytes_read        INTEGER,
    stored_bytes      INTEGER,
    reservation_id    TEXT,
    last_flow_id      TEXT,
    data_timestamp    TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT
);
CREATE INDEX backups_by_project ON backups (project_id, created_at);
CREATE INDEX backups_by_volume ON backups (volume_id, created_at);
CREATE INDEX backups_by_parent ON backups (parent_id) WHERE parent_id IS NOT NULL;
