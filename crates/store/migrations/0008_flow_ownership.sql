-- Flow definitions and flow ownership. Portable SQL (SQLite and PostgreSQL).
--
-- A flow remembers the definition it was started under: the version of its
-- kind (`definition_version`) and the names of that definition's steps, in
-- order, as a JSON array (`step_names`). Steps are matched by index when a
-- flow resumes, so a build whose definition differs must not resume it
-- blindly. Flows stored before this migration have neither (read as
-- version 1).
--
-- A running or unwinding flow is owned by one node (`owner`, its node id)
-- until `lease_expires_at` (UTC, ISO-8601 with microseconds, compared as
-- text). Every write of the engine about a flow is conditional on owner and
-- `generation`; claiming a flow (at start-up, or once its lease expired)
-- bumps the generation, so a node that lost a flow cannot write to it any
-- more. Flows stored before this migration have no owner and generation 0:
-- the first node to start claims them.
ALTER TABLE flows ADD COLUMN definition_version BIGINT;
ALTER TABLE flows ADD COLUMN step_names TEXT;
ALTER TABLE flows ADD COLUMN owner TEXT;
ALTER TABLE flows ADD COLUMN lease_expires_at TEXT;
ALTER TABLE flows ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
