-- Volume services' administrative state, and user messages.
-- Portable SQL (SQLite and PostgreSQL), as 0001.

-- The services themselves (the scheduler, one volume service per backend)
-- come from the configuration; a row here records what an administrator
-- changed about one of them. No row: enabled, not frozen.
CREATE TABLE services (
    host            TEXT NOT NULL,
    binary_name     TEXT NOT NULL,
    disabled        BOOLEAN NOT NULL,
    disabled_reason TEXT,
    -- A frozen backend takes no new volumes and refuses changes to its
    -- volumes (Cinder's freeze).
    frozen          BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (host, binary_name)
);

-- What a user should learn about an asynchronous operation that failed
-- (Cinder's user messages). Written in the same transaction as the status
-- change that reports the failure; kept until expires_at.
CREATE TABLE messages (
    id            TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    resource_type TEXT,
    resource_uuid TEXT,
    event_id      TEXT NOT NULL,
    message_level TEXT NOT NULL,
    user_message  TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL
);
CREATE INDEX messages_by_project ON messages (project_id, created_at);
CREATE INDEX messages_by_resource ON messages (resource_uuid);
CREATE INDEX messages_by_expiry ON messages (expires_at);
