-- Volume type management: QoS specs and their association with types, and
-- encryption specs of types. Portable SQL (SQLite and PostgreSQL).

-- A named set of QoS limits. Scoria stores and shows them; it does not enforce
-- them on I/O yet.
CREATE TABLE qos_specs (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    -- front-end | back-end | both
    consumer   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT
);

CREATE TABLE qos_specs_values (
    qos_specs_id TEXT NOT NULL REFERENCES qos_specs (id) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    value        TEXT NOT NULL,
    PRIMARY KEY (qos_specs_id, key)
);

-- A type is associated with at most one QoS spec (Cinder's rule). A spec is
-- disassociated from every type before it is deleted.
ALTER TABLE volume_types ADD COLUMN qos_specs_id TEXT REFERENCES qos_specs (id);
CREATE INDEX volume_types_by_qos ON volume_types (qos_specs_id);

-- The encryption a type asks for (one per type). Scoria does not encrypt data
-- yet, so volumes of a type that has one are refused at create.
CREATE TABLE volume_type_encryption (
    volume_type_id   TEXT PRIMARY KEY REFERENCES volume_types (id) ON DELETE CASCADE,
    encryption_id    TEXT NOT NULL UNIQUE,
    provider         TEXT NOT NULL,
    cipher           TEXT,
    key_size         INTEGER,
    -- front-end | back-end
    control_location TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT
);

CREATE INDEX volumes_by_type ON volumes (volume_type_id);
