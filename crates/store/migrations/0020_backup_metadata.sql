-- A backup's metadata (Cinder 3.43): free-form key/value pairs the user sets
-- at create or update, kept as one JSON object (they are only ever read and
-- written whole with their backup, never filtered on). `volume_metadata` is
-- the backed-up volume's metadata at the backup's moment, which a restore
-- gives the volume it restores onto (as Cinder's backup drivers keep and
-- restore it).
ALTER TABLE backups ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE backups ADD COLUMN volume_metadata TEXT NOT NULL DEFAULT '{}';
