-- Unmanaged snapshots (Cinder's `os-unmanage` on a snapshot).
--
-- A snapshot's data is a frozen image in its volume's chain: the volume's
-- overlay stands on it. Unmanaging the snapshot removes the snapshot from the
-- API and from its project's quota, but leaves the data where it is, under a
-- name (`snapshot-<id>`) by which `os-snapshot-manage` brings it back. The row
-- here is that name, and it is one more use of the image (an arm of
-- `images::image_users`): the reaper never frees an unmanaged snapshot's data.
--
-- An unmanaged snapshot lives as long as its volume: its data only makes
-- sense as a point of that volume's history, and a manage names the volume.
-- When the volume's row goes (a delete, an unmanage of the volume), its
-- unmanaged snapshots go in the same statement, and their images become the
-- reaper's candidates like any other image nothing uses.
CREATE TABLE unmanaged_snapshots (
    backend    TEXT NOT NULL,
    -- The reference a manage takes: `{"source-name": "<name>"}`.
    name       TEXT NOT NULL,
    image_id   TEXT NOT NULL REFERENCES images (id),
    volume_id  TEXT NOT NULL,
    -- GiB: the snapshot's size (its volume's size when it was taken).
    size       INTEGER NOT NULL,
    -- When the snapshot was taken, and when it was unmanaged.
    taken_at   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (backend, name)
);
CREATE INDEX unmanaged_snapshots_by_image ON unmanaged_snapshots (image_id);
CREATE INDEX unmanaged_snapshots_by_volume ON unmanaged_snapshots (volume_id);

CREATE TRIGGER unmanaged_snapshots_unref_gone AFTER DELETE ON unmanaged_snapshots
BEGIN
    INSERT OR IGNORE INTO image_unref (image_id) VALUES (OLD.image_id);
END;

CREATE TRIGGER unmanaged_snapshots_unref_moved AFTER UPDATE OF image_id ON unmanaged_snapshots
WHEN OLD.image_id IS NOT NEW.image_id
BEGIN
    INSERT OR IGNORE INTO image_unref (image_id) VALUES (OLD.image_id);
END;

CREATE TRIGGER volumes_unmanaged_snapshots_gone AFTER DELETE ON volumes
BEGIN
    DELETE FROM unmanaged_snapshots WHERE volume_id = OLD.id;
END;
