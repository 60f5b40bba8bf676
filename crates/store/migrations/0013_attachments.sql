-- Attachments: one row per use of a volume by an instance (Cinder's
-- volume_attachment). A row is the record of the use (it keeps the volume
-- from being deleted, reverted, transferred, retyped or snapshotted under a
-- running export) and, once it has an export (`export_transport` set) and
-- is `attaching` or `attached`, the intent that the volume is served to it:
-- the exports' reconciler makes the storage host's daemons match these rows.
--
-- The export's address (`export_host`, `export_port`) and its TLS
-- pre-shared key (`psk_identity`, `psk_key`, hex) are chosen once, when the
-- export is planned, and kept: a restarted daemon listens where clients
-- reconnect and accepts the key they hold. The key is a secret shown only to
-- the attachment's project and to admins.
CREATE TABLE attachments (
    id               TEXT PRIMARY KEY,
    volume_id        TEXT NOT NULL REFERENCES volumes (id),
    project_id       TEXT NOT NULL,
    instance_uuid    TEXT,
    status           TEXT NOT NULL,
    attach_mode      TEXT NOT NULL,
    connector        TEXT,
    host_name        TEXT,
    mountpoint       TEXT,
    export_transport TEXT,
    export_host      TEXT,
    export_port      INTEGER,
    psk_identity     TEXT,
    psk_key          TEXT,
    attached_at      TEXT,
    detached_at      TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT
);
CREATE INDEX attachments_by_volume ON attachments (volume_id);
CREATE INDEX attachments_by_project ON attachments (project_id, created_at);
CREATE UNIQUE INDEX attachments_by_address ON attachments (export_host, export_port)
    WHERE export_port IS NOT NULL;
