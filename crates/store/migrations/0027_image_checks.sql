-- What the repository check's last clean `qemu-img check` of an image saw
-- (issue 12: a full check in seconds).
--
-- `fingerprint` is the file's length, inode, and modification and change
-- times (see `scoria_storage::file::survey::Entry::fingerprint`) when
-- `qemu-img check` found nothing wrong with it. A later check that finds
-- the same fingerprint knows the file has not been written since, and
-- skips `qemu-img check` (which reads every metadata table of the image);
-- any write, repair or replacement changes it. `scoria check --full` (and
-- `"full": true` in the API) ignores this table. A row goes with its image.
--
-- Only the server's check and fix flows (and `scoria fix`) write here;
-- `scoria check`, which opens the database read-only, only reads.
CREATE TABLE image_checks (
    image_id    TEXT PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    fingerprint TEXT NOT NULL,
    checked_at  TEXT NOT NULL
) WITHOUT ROWID;
