-- Volumes made from the image service's images, and the image cache.
--
-- `volumes.glance_image_id` names the image a volume was made from. While
-- such a volume is `creating` or `downloading`, the image's file is being
-- read and the image is not deleted (the image service asks).
--
-- `volume_image_metadata` is Cinder's `volume_image_metadata`: the image's
-- properties as the volume keeps them (image_id, image_name, disk_format,
-- checksum, min_disk, custom properties…), shown in the volume's views and
-- changed with `os-set_image_metadata` / `os-unset_image_metadata`.
--
-- `image_cache` is Cinder's image-volume cache, done with image records: the
-- first volume made from an image on a backend leaves there an immutable
-- copy of the image's data (`image_id`, an image of 0009), and later volumes
-- from the same image are overlays on it. The row is one of that image's
-- uses (so it is kept while the row exists); the overlays standing on it are
-- others (so data a volume reads is kept even once the row is evicted or the
-- service's image deleted). `last_used_at` orders eviction.
--
-- `glance_images.filled_by_volume` names the volume whose data an upload to
-- an image (`os-volume_upload_image`, a flow) is writing into that image: such
-- an image is `saving` and its file is the flow's, so the start-time recovery
-- of interrupted uploads leaves both to the flow, which resumes or undoes.
ALTER TABLE volumes ADD COLUMN glance_image_id TEXT;
ALTER TABLE glance_images ADD COLUMN filled_by_volume TEXT;
CREATE INDEX volumes_by_glance_image ON volumes (glance_image_id) WHERE glance_image_id IS NOT NULL;

CREATE TABLE volume_image_metadata (
    volume_id TEXT NOT NULL REFERENCES volumes (id) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (volume_id, key)
);

CREATE TABLE image_cache (
    glance_image_id TEXT NOT NULL,
    backend         TEXT NOT NULL,
    image_id        TEXT NOT NULL REFERENCES images (id),
    created_at      TEXT NOT NULL,
    last_used_at    TEXT NOT NULL,
    PRIMARY KEY (glance_image_id, backend)
);
CREATE INDEX image_cache_by_image ON image_cache (image_id);
