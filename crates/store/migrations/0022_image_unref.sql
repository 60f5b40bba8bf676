-- Candidates for the reaper, so that its routine pass costs what changed and
-- not what exists (issue 14).
--
-- `image_unref` holds the images that may be unused: every image from its
-- insert (nothing can refer to it before it exists), and every image from the
-- moment a row stops referring to it. Triggers add them in the statement that
-- drops the reference, so in the same transaction: there is no other writer
-- and nothing to forget. A row here is a hint, not a verdict: the image may be
-- used again by the time the reaper looks (the reaper checks, as it always
-- did, in the statements that mark and remove), and the reaper prunes rows of
-- images that are used or gone (`images::image_unref_prune`).
--
-- The rows that refer to an image are the arms of `images::image_users`:
-- `images.base_id` (overlays), `volumes.image_id`, `snapshots.image_id` and
-- `image_cache.image_id`. Each gets a trigger on DELETE and one on UPDATE of
-- the column; a later table that refers to images adds its own. (A REPLACE
-- that overwrites a referring row fires no DELETE trigger unless recursive
-- triggers are on: the store never writes those tables with REPLACE.)
--
-- The reaper's full scan (`images::image_list_unused`), at open and on its
-- timer, stays the safety net for an image whose row here went missing.

CREATE TABLE image_unref (
    image_id TEXT PRIMARY KEY
) WITHOUT ROWID;

-- What exists now: every image nothing uses (in any state; one still
-- `creating` belongs to its flow, which either gives it a user or removes it).
INSERT INTO image_unref (image_id)
SELECT i.id FROM images i
WHERE NOT EXISTS (SELECT 1 FROM images o WHERE o.base_id = i.id)
  AND NOT EXISTS (SELECT 1 FROM volumes v WHERE v.image_id = i.id)
  AND NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.image_id = i.id)
  AND NOT EXISTS (SELECT 1 FROM image_cache k WHERE k.image_id = i.id);

-- Images: a new one has no user yet; a deleted overlay, or one moved to
-- another base, leaves its old base; a deleted image is nobody's candidate.

CREATE TRIGGER images_unref_new AFTER INSERT ON images
BEGIN
    INSERT OR IGNORE INTO image_unref (image_id) VALUES (NEW.id);
END;

CREATE TRIGGER images_unref_base_gone AFTER DELETE ON images
WHEN OLD.base_id IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO image_unref (image_id) VALUES (OLD.base_id);
END;

CREATE TRIGGER images_unref_base_moved AFTER UPDATE OF base_id ON images
WHEN OLD.base_id IS NOT NULL AND OLD.base_id IS NOT NEW.base_id
BEGIN
    INSERT OR IGNORE INTO image_unref (image_id) VALUES (OLD.base_id);
END;

CREATE TRIGGER images_unref_forget AFTER DELETE ON images
BEGIN
    DELETE FROM image_unref WHERE image_id = OLD.id;
END;

-- Volumes: their active image.

CREATE TRIGGER volumes_unref_gone AFTER DELETE ON volumes
WHEN OLD.image_id IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO image_unref (image_id) VALUES (OLD.image_id);
END;

CREATE TRIGGER volumes_unref_moved AFTER UPDATE OF image_id ON volumes
WHEN OLD.image_id IS NOT NULL AND OLD.image_id IS NOT NEW.image_id
BEGIN
    INSERT OR IGNORE INTO image_unref (image_id) VALUES (OLD.image_id);
END;

-- Snapshots: the image they captured.

CREATE TRIGGER snapshots_unref_gone AFTER DELETE ON snapshots
WHEN OLD.image_id IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO image_unref (image_id) VALUES (OLD.image_id);
END;

CREATE TRIGGER snapshots_unref_moved AFTER UPDATE OF image_id ON snapshots
WHEN OLD.image_id IS NOT NULL AND OLD.image_id IS NOT NEW.image_id
BEGIN
    INSERT OR IGNORE INTO image_unref (image_id) VALUES (OLD.image_id);
END;

-- The image cache: the copy an entry holds.

CREATE TRIGGER image_cache_unref_gone AFTER DELETE ON image_cache
WHEN OLD.image_id IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO image_unref (image_id) VALUES (OLD.image_id);
END;

CREATE TRIGGER image_cache_unref_moved AFTER UPDATE OF image_id ON image_cache
WHEN OLD.image_id IS NOT NULL AND OLD.image_id IS NOT NEW.image_id
BEGIN
    INSERT OR IGNORE INTO image_unref (image_id) VALUES (OLD.image_id);
END;
