-- Keystone's system scope: roles given to users on the system (the whole
-- installation, `"system": {"all": true}`), and whether a token is scoped to
-- it (then its project_id is NULL).
CREATE TABLE system_role_assignments (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role_id)
);
ALTER TABLE tokens ADD COLUMN system BOOLEAN NOT NULL DEFAULT FALSE;
