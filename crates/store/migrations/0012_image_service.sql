-- The image service (a Glance v2 subset): Glance images, which are files users
-- upload and download, not volumes' images (see 0009; the two never meet).
--
-- An image's data is one object of the image store, named by the image's id,
-- present exactly while the image is `active` or `deactivated`: an upload
-- writes the object before the row says `active`, a delete removes the row
-- before the object, and the start of the process removes every object no
-- such row names (and puts uploads the process died in back to `queued`).
--
-- `upload_reserved` is what an upload in progress (`saving`) holds of its
-- project's `image_size_total` quota: the bytes it announced or received so
-- far, raised in steps while it streams. A project's usage is derived from
-- these rows (sizes of the images with data, plus what uploads hold), never
-- kept as a counter.
CREATE TABLE glance_images (
    id               TEXT PRIMARY KEY,
    owner            TEXT NOT NULL,
    name             TEXT,
    status           TEXT NOT NULL,
    visibility       TEXT NOT NULL,
    protected        BOOLEAN NOT NULL,
    os_hidden        BOOLEAN NOT NULL,
    disk_format      TEXT,
    container_format TEXT,
    min_disk         BIGINT NOT NULL,
    min_ram          BIGINT NOT NULL,
    -- Bytes of the data, once uploaded.
    size             BIGINT,
    virtual_size     BIGINT,
    -- md5 of the data (Glance's `checksum`), and `os_hash_algo` (sha512) /
    -- `os_hash_value`.
    checksum         TEXT,
    os_hash_algo     TEXT,
    os_hash_value    TEXT,
    upload_reserved  BIGINT NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX glance_images_by_owner ON glance_images (owner, created_at);

-- Custom properties (`"os_distro": "debian"`), shown at the top level of an image.
CREATE TABLE glance_image_properties (
    image_id TEXT NOT NULL REFERENCES glance_images (id) ON DELETE CASCADE,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (image_id, key)
);

CREATE TABLE glance_image_tags (
    image_id TEXT NOT NULL REFERENCES glance_images (id) ON DELETE CASCADE,
    tag      TEXT NOT NULL,
    PRIMARY KEY (image_id, tag)
);

-- The projects a `shared` image is shared with, and what each made of it
-- (pending, accepted, rejected). Rows stay when the visibility changes, as in
-- Glance; they count only while the image is `shared`.
CREATE TABLE glance_image_members (
    image_id   TEXT NOT NULL REFERENCES glance_images (id) ON DELETE CASCADE,
    member     TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (image_id, member)
);
CREATE INDEX glance_image_members_by_member ON glance_image_members (member);
