-- A backup's metadata (Cinder 3.43): free-form key/value pairs the user sets
-- at create or update, kept as one JSON object (they are only ever read and
-- written whole with their backup, never filtered on).
ALTER TABLE backups ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
