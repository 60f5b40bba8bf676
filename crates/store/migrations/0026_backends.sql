-- Backends as managed repositories (issue 12): what administrators changed
-- about the backends while the server ran.
--
-- The configuration file names the backends a server starts with; a row
-- here exists only for a backend an administrator added through the API
-- (`spec`: its settings, JSON, so that it comes back at the next start) or
-- whose state they changed. No row means `active`.
--
-- state: `active` (takes new volumes); `deactivated` (takes none; what is
-- on it stays readable and usable); `removed` (out of service: not brought
-- up at start even if the configuration file still names it, until it is
-- added again). Placement reads this table inside its write transaction,
-- so a removal and a placement on the same backend never both succeed.
CREATE TABLE backends (
    name       TEXT PRIMARY KEY,
    spec       TEXT,
    state      TEXT NOT NULL CHECK (state IN ('active', 'deactivated', 'removed')),
    reason     TEXT,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
