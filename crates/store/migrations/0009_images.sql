-- Images: the bytes of a volume, as records of their own (VDSM's model).
--
-- A volume is what a user owns; its data is its *active image*. An image is
-- one file (later: one RBD image) on a backend, named by a driver-level name
-- that carries its format. Images may be layered: an overlay reads through to
-- the image it is layered on (`base_id`), which must be immutable. Snapshots
-- (a later migration) are immutable images; volumes made from them with the
-- space strategy are overlays.
--
-- Who uses an image is never stored as a counter: it is computed from the
-- rows that refer to it, one row per use — an overlay's own row (its
-- `base_id`), a volume whose active image it is (`volumes.image_id`), and the
-- rows of later resources (snapshots, attachments, cached images, backups in
-- progress) that name it. Deletion rules, in-use protection and the
-- repository check all read those rows.
CREATE TABLE images (
    id            TEXT PRIMARY KEY,
    backend       TEXT NOT NULL,
    -- The driver's name for it: a file name ending in its format
    -- (`image-<uuid>.qcow2`; images made before this table are named
    -- `volume-<uuid>.<format>`).
    name          TEXT NOT NULL,
    -- qcow2 | raw
    format        TEXT NOT NULL,
    -- Bytes.
    virtual_size  BIGINT NOT NULL,
    base_id       TEXT REFERENCES images (id),
    mutable       BOOLEAN NOT NULL,
    -- creating: recorded, its data not yet complete (a flow is making it);
    -- ready: complete; deleting: a flow is removing its data.
    state         TEXT NOT NULL,
    -- optimized | degraded | broken, and why when not optimized.
    health        TEXT NOT NULL,
    health_reason TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT,
    UNIQUE (backend, name)
);
CREATE INDEX images_by_base ON images (base_id) WHERE base_id IS NOT NULL;

ALTER TABLE volumes ADD COLUMN image_id TEXT REFERENCES images (id);
CREATE INDEX volumes_by_image ON volumes (image_id) WHERE image_id IS NOT NULL;

-- Every volume placed on a backend so far has exactly one image, named as the
-- volume was. It keeps the volume's id as its own (ids of images and volumes
-- never meet: they live in different tables). A volume still `creating` may
-- not have its file yet; its flow finishes or undoes it.
INSERT INTO images (id, backend, name, format, virtual_size, base_id, mutable, state,
                    health, health_reason, created_at, updated_at)
SELECT id, backend, location, format, size * 1073741824, NULL, TRUE,
       CASE WHEN status = 'creating' THEN 'creating' ELSE 'ready' END,
       'optimized', NULL, created_at, updated_at
FROM volumes
WHERE backend IS NOT NULL AND location IS NOT NULL AND format IS NOT NULL;

UPDATE volumes SET image_id = id
WHERE backend IS NOT NULL AND location IS NOT NULL AND format IS NOT NULL;

-- Where the data lives is the image's business now.
ALTER TABLE volumes DROP COLUMN location;
ALTER TABLE volumes DROP COLUMN format;
