-- Generic volume groups (Cinder's `groups`, microversions 3.11-3.20) and their
-- group types. Portable SQL (SQLite and PostgreSQL). The table is
-- `volume_groups`, not `groups`: GROUPS is a keyword of both SQL dialects.

-- A group type is a name with specs (Cinder's group specs), like a volume
-- type for groups. Public types are listed to every project; private ones only
-- to admins (Cinder has no group type access API).
CREATE TABLE group_types (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT,
    is_public   BOOLEAN NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT
);

CREATE TABLE group_type_specs (
    group_type_id TEXT NOT NULL REFERENCES group_types (id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    PRIMARY KEY (group_type_id, key)
);

-- A group of a project's volumes, all on one backend (chosen when the group is
-- made, among those that suit every volume type of the group). A group counts
-- against the project's `groups` quota while its row exists: usage is derived
-- from these rows, never counted.
CREATE TABLE volume_groups (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    name              TEXT,
    description       TEXT,
    -- creating | available | updating | in-use | deleting | error | error_deleting
    status            TEXT NOT NULL,
    availability_zone TEXT NOT NULL,
    group_type_id     TEXT NOT NULL REFERENCES group_types (id),
    -- The backend every volume of the group is on; NULL when none suited.
    backend           TEXT,
    -- What a group made by `create-from-src` was made from.
    source_group_id   TEXT,
    group_snapshot_id TEXT,
    -- The last flow that worked on the group (create-from-src, delete).
    last_flow_id      TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT
);
CREATE INDEX volume_groups_by_project ON volume_groups (project_id, created_at);
CREATE INDEX volume_groups_by_type ON volume_groups (group_type_id);

-- The volume types a group accepts (at least one). A volume type that a group
-- lists cannot be deleted, as a type that volumes have cannot.
CREATE TABLE volume_group_volume_types (
    group_id       TEXT NOT NULL REFERENCES volume_groups (id) ON DELETE CASCADE,
    volume_type_id TEXT NOT NULL REFERENCES volume_types (id),
    PRIMARY KEY (group_id, volume_type_id)
);
CREATE INDEX volume_group_volume_types_by_type ON volume_group_volume_types (volume_type_id);

-- The group a volume belongs to, if any. A group is deleted only once it has
-- no volume left (its delete flow deletes them first, one volume delete flow
-- each), so the reference always names an existing group.
ALTER TABLE volumes ADD COLUMN group_id TEXT REFERENCES volume_groups (id);
CREATE INDEX volumes_by_group ON volumes (group_id);
