-- Volume transfers: a project offers one of its volumes; whoever presents the
-- transfer's id and its auth key (from any project) takes the volume over.
-- The key itself is never stored, only a salted hash of it.
--
-- A volume has at most one pending transfer (it is `awaiting-transfer` while
-- it does). Accepting removes the row in the transaction that moves the
-- volume; so does withdrawing the offer, and so does removing the volume (the
-- cascade is a backstop: a forced delete withdraws the offer at its first step).
CREATE TABLE transfers (
    id                TEXT PRIMARY KEY,
    volume_id         TEXT NOT NULL UNIQUE REFERENCES volumes (id) ON DELETE CASCADE,
    -- The project that offered the volume (the volume's project until accepted).
    source_project_id TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    name              TEXT,
    -- Hex: the random salt and SHA-256(salt || auth key).
    salt              TEXT NOT NULL,
    crypt_hash        TEXT NOT NULL,
    -- Stored as asked (microversion 3.55); Scoria has no snapshots to keep yet.
    no_snapshots      BOOLEAN NOT NULL,
    created_at        TEXT NOT NULL
);
CREATE INDEX transfers_by_project ON transfers (source_project_id, created_at);
