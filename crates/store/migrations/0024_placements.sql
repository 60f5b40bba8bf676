-- Placement records (issue 11): every placement decision of a volume's
-- create, one row per attempt, for admins to read and for the create flow to
-- resume from.
--
-- `attempt` counts from 1. `backend` is the backend chosen (NULL when none
-- fitted); `outcome` is 'placed' (the volume's data is being made, or was
-- made, there), 'failed: <why>' (making it there failed; the flow tried the
-- next best backend, or gave up) or 'no_valid_backend'. `decision` is the
-- scheduler's account of the choice (JSON: candidates, each one's verdict,
-- the chosen one, a message). `plan` is the create flow's own record of where
-- and how it makes the data (JSON; NULL when nothing was placed): a resumed
-- flow reads the current attempt from here, not from memory.
--
-- The rows go with the volume's row (ON DELETE CASCADE).

CREATE TABLE placements (
    volume_id  TEXT NOT NULL REFERENCES volumes (id) ON DELETE CASCADE,
    attempt    INTEGER NOT NULL,
    backend    TEXT,
    outcome    TEXT NOT NULL,
    decision   TEXT NOT NULL,
    plan       TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (volume_id, attempt)
) WITHOUT ROWID;
