-- Scoria's core schema: flows, quotas, volume types, volumes.
-- Portable SQL: it must run unchanged on SQLite and PostgreSQL. Ids and
-- timestamps are TEXT (UUIDs; UTC ISO-8601 with microseconds, which sort as
-- text), sizes in GiB are INTEGER, byte counts BIGINT, JSON is TEXT.

-- A flow is one run of a multi-step operation (create a volume, delete it, ...).
-- Its parameters and the outcome of each step are kept so that a restart resumes
-- it or finishes undoing it.
CREATE TABLE flows (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    resource_type TEXT,
    resource_id   TEXT,
    project_id    TEXT,
    params        TEXT NOT NULL,
    -- running | unwinding | done | failed | stuck
    state         TEXT NOT NULL,
    steps_total   INTEGER NOT NULL,
    -- Index (0-based) of the step running now, or steps_total when done.
    step_index    INTEGER NOT NULL,
    step_name     TEXT,
    percent       INTEGER,
    failed_step   TEXT,
    last_error    TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    finished_at   TEXT
);
CREATE INDEX flows_by_state ON flows (state);
CREATE INDEX flows_by_resource ON flows (resource_id);

CREATE TABLE flow_steps (
    flow_id     TEXT NOT NULL REFERENCES flows (id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    name        TEXT NOT NULL,
    -- started | done | undoing | undone | undo_failed
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    output      TEXT,
    error       TEXT,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    PRIMARY KEY (flow_id, idx)
);

-- Limits. The 'default' class holds the editable defaults; per-project rows
-- override them.
CREATE TABLE quota_classes (
    class_name TEXT NOT NULL,
    resource   TEXT NOT NULL,
    hard_limit BIGINT NOT NULL,
    PRIMARY KEY (class_name, resource)
);
INSERT INTO quota_classes (class_name, resource, hard_limit) VALUES
    ('default', 'volumes', 10),
    ('default', 'gigabytes', 1000),
    ('default', 'snapshots', 10),
    ('default', 'per_volume_gigabytes', -1),
    ('default', 'backups', 10),
    ('default', 'backup_gigabytes', 1000),
    ('default', 'groups', 10);

CREATE TABLE quota_limits (
    project_id TEXT NOT NULL,
    resource   TEXT NOT NULL,
    hard_limit BIGINT NOT NULL,
    PRIMARY KEY (project_id, resource)
);

-- Quota held by a flow that has not finished. Usage is derived from these rows
-- and from the resources that exist; there is no usage counter to drift.
CREATE TABLE reservations (
    id         TEXT PRIMARY KEY,
    flow_id    TEXT NOT NULL,
    project_id TEXT NOT NULL,
    resource   TEXT NOT NULL,
    delta      BIGINT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX reservations_by_project ON reservations (project_id, resource);
CREATE INDEX reservations_by_flow ON reservations (flow_id);

CREATE TABLE volume_types (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT,
    is_public   BOOLEAN NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT
);
INSERT INTO volume_types (id, name, description, is_public, created_at) VALUES
    ('7a3d2a5e-1b4c-4f0e-9d8a-0c5e6f7a8b90', '__DEFAULT__', 'Default Volume Type', TRUE,
     '2026-01-01T00:00:00.000000');

CREATE TABLE volume_type_extra_specs (
    volume_type_id TEXT NOT NULL REFERENCES volume_types (id) ON DELETE CASCADE,
    key            TEXT NOT NULL,
    value          TEXT NOT NULL,
    PRIMARY KEY (volume_type_id, key)
);

CREATE TABLE volume_type_projects (
    volume_type_id TEXT NOT NULL REFERENCES volume_types (id) ON DELETE CASCADE,
    project_id     TEXT NOT NULL,
    PRIMARY KEY (volume_type_id, project_id)
);

CREATE TABLE volumes (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    name              TEXT,
    description       TEXT,
    size              INTEGER NOT NULL,
    status            TEXT NOT NULL,
    attach_status     TEXT NOT NULL,
    migration_status  TEXT,
    bootable          BOOLEAN NOT NULL,
    -- NULL until the read-only flag is first set (Cinder then shows it).
    read_only         BOOLEAN,
    multiattach       BOOLEAN NOT NULL,
    availability_zone TEXT NOT NULL,
    volume_type_id    TEXT NOT NULL REFERENCES volume_types (id),
    snapshot_id       TEXT,
    source_volid      TEXT,
    -- Where the data lives, chosen by the placement step: backend name, image
    -- name inside it, image format.
    backend           TEXT,
    location          TEXT,
    format            TEXT,
    -- The reservation a create flow holds for this volume until it commits its
    -- quota; while set, the volume's usage is counted through the reservation.
    reservation_id    TEXT,
    -- The last flow that worked on the volume (progress and last error).
    last_flow_id      TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT,
    launched_at       TEXT
);
CREATE INDEX volumes_by_project ON volumes (project_id, created_at);
CREATE INDEX volumes_by_backend ON volumes (backend);

CREATE TABLE volume_metadata (
    volume_id TEXT NOT NULL REFERENCES volumes (id) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (volume_id, key)
);
