-- The built-in Identity (Keystone v3 subset): domains, projects, users, roles,
-- role assignments on projects, and tokens (only their SHA-256 is kept).

CREATE TABLE domains (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL
);
INSERT INTO domains (id, name, description, enabled)
    VALUES ('default', 'Default', 'The default domain', TRUE);

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    domain_id   TEXT NOT NULL REFERENCES domains (id),
    description TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (domain_id, name)
);

CREATE TABLE users (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    domain_id          TEXT NOT NULL REFERENCES domains (id),
    password_hash      TEXT,
    enabled            BOOLEAN NOT NULL,
    default_project_id TEXT,
    email              TEXT,
    description        TEXT,
    created_at         TEXT NOT NULL,
    UNIQUE (domain_id, name)
);

CREATE TABLE roles (
    id   TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
-- The three default roles; admin implies member implies reader.
INSERT INTO roles (id, name) VALUES
    ('5f2b6a0e8c1d4b3a9e7f0a1b2c3d4e01', 'admin'),
    ('5f2b6a0e8c1d4b3a9e7f0a1b2c3d4e02', 'member'),
    ('5f2b6a0e8c1d4b3a9e7f0a1b2c3d4e03', 'reader');

-- Role inference rules (Keystone's implied roles): holding the prior role on a
-- project also grants the implied one. Only direct rules are stored; readers
-- follow the chain.
CREATE TABLE implied_roles (
    prior_role_id   TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    implied_role_id TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (prior_role_id, implied_role_id)
);
INSERT INTO implied_roles (prior_role_id, implied_role_id) VALUES
    ('5f2b6a0e8c1d4b3a9e7f0a1b2c3d4e01', '5f2b6a0e8c1d4b3a9e7f0a1b2c3d4e02'),
    ('5f2b6a0e8c1d4b3a9e7f0a1b2c3d4e02', '5f2b6a0e8c1d4b3a9e7f0a1b2c3d4e03');

CREATE TABLE role_assignments (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    role_id    TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, project_id, role_id)
);
CREATE INDEX role_assignments_by_project ON role_assignments (project_id);

-- Issued tokens. The token itself is never stored: only the hex SHA-256 of
-- it. A token made from another one (re-scoping) keeps that one's audit id in
-- parent_audit_id. methods is a comma-separated list (password, token).
CREATE TABLE tokens (
    token_hash      TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id      TEXT REFERENCES projects (id) ON DELETE CASCADE,
    audit_id        TEXT NOT NULL,
    parent_audit_id TEXT,
    methods         TEXT NOT NULL,
    issued_at       TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    revoked         BOOLEAN NOT NULL
);
CREATE INDEX tokens_by_user ON tokens (user_id);
CREATE INDEX tokens_by_expiry ON tokens (expires_at);
