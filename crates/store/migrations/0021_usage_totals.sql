-- Totals maintained by triggers, so that a quota check and a placement cost
-- the same with 100 or 100,000 volumes (issue 14).
--
-- `usage_totals` holds, per project, what `quotas::quota_usage` used to derive
-- by scanning: for each kind of resource that counts (volumes, snapshots,
-- backups, groups) and each volume type ('' where the kind has none), how
-- many committed rows there are and their size in GiB. "Committed" is the
-- rule quotas already follow: a volume, snapshot or backup counts once its
-- `reservation_id` is NULL (until then its reservation counts); a group
-- counts from its insert.
--
-- `backend_totals` holds, per backend, the volumes placed there and the sum
-- of their sizes (what the scheduler reads as provisioned capacity).
--
-- The triggers run inside the statement that changes a record, so a total
-- changes in the same transaction as the records that determine it: there is
-- no other writer, nothing to forget, and a crash loses both or neither. The
-- invariant check (`scoria_core::invariants`) re-derives every total from the
-- records and compares.
--
-- An UPDATE trigger takes the old row out and puts the new row in, so a change
-- of project, type, size or reservation moves the row's contribution in one
-- step. Rows are never deleted; a total that falls to zero stays as a zero.

CREATE TABLE usage_totals (
    project_id     TEXT NOT NULL,
    kind           TEXT NOT NULL,
    volume_type_id TEXT NOT NULL,
    n              INTEGER NOT NULL,
    gb             INTEGER NOT NULL,
    PRIMARY KEY (project_id, kind, volume_type_id)
) WITHOUT ROWID;

CREATE TABLE backend_totals (
    backend TEXT PRIMARY KEY,
    n       INTEGER NOT NULL,
    gb      INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO usage_totals (project_id, kind, volume_type_id, n, gb)
SELECT project_id, 'volumes', volume_type_id, COUNT(*), COALESCE(SUM(size), 0)
FROM volumes WHERE reservation_id IS NULL GROUP BY project_id, volume_type_id;

INSERT INTO usage_totals (project_id, kind, volume_type_id, n, gb)
SELECT project_id, 'snapshots', volume_type_id, COUNT(*), COALESCE(SUM(size), 0)
FROM snapshots WHERE reservation_id IS NULL GROUP BY project_id, volume_type_id;

INSERT INTO usage_totals (project_id, kind, volume_type_id, n, gb)
SELECT project_id, 'backups', '', COUNT(*), COALESCE(SUM(size), 0)
FROM backups WHERE reservation_id IS NULL GROUP BY project_id;

INSERT INTO usage_totals (project_id, kind, volume_type_id, n, gb)
SELECT project_id, 'groups', '', COUNT(*), 0
FROM volume_groups GROUP BY project_id;

INSERT INTO backend_totals (backend, n, gb)
SELECT backend, COUNT(*), COALESCE(SUM(size), 0)
FROM volumes WHERE backend IS NOT NULL GROUP BY backend;

-- Volumes: quota usage.

CREATE TRIGGER volumes_usage_in AFTER INSERT ON volumes
WHEN NEW.reservation_id IS NULL
BEGIN
    INSERT INTO usage_totals (project_id, kind, volume_type_id, n, gb)
    VALUES (NEW.project_id, 'volumes', NEW.volume_type_id, 1, NEW.size)
    ON CONFLICT (project_id, kind, volume_type_id)
    DO UPDATE SET n = n + 1, gb = gb + excluded.gb;
END;

CREATE TRIGGER volumes_usage_out AFTER DELETE ON volumes
WHEN OLD.reservation_id IS NULL
BEGIN
    UPDATE usage_totals SET n = n - 1, gb = gb - OLD.size
    WHERE project_id = OLD.project_id AND kind = 'volumes'
      AND volume_type_id = OLD.volume_type_id;
END;

CREATE TRIGGER volumes_usage_move_out
AFTER UPDATE OF project_id, volume_type_id, size, reservation_id ON volumes
WHEN OLD.reservation_id IS NULL
BEGIN
    UPDATE usage_totals SET n = n - 1, gb = gb - OLD.size
    WHERE project_id = OLD.project_id AND kind = 'volumes'
      AND volume_type_id = OLD.volume_type_id;
END;

CREATE TRIGGER volumes_usage_move_in
AFTER UPDATE OF project_id, volume_type_id, size, reservation_id ON volumes
WHEN NEW.reservation_id IS NULL
BEGIN
    INSERT INTO usage_totals (project_id, kind, volume_type_id, n, gb)
    VALUES (NEW.project_id, 'volumes', NEW.volume_type_id, 1, NEW.size)
    ON CONFLICT (project_id, kind, volume_type_id)
    DO UPDATE SET n = n + 1, gb = gb + excluded.gb;
END;

-- Volumes: provisioned capacity per backend.

CREATE TRIGGER volumes_backend_in AFTER INSERT ON volumes
WHEN NEW.backend IS NOT NULL
BEGIN
    INSERT INTO backend_totals (backend, n, gb) VALUES (NEW.backend, 1, NEW.size)
    ON CONFLICT (backend) DO UPDATE SET n = n + 1, gb = gb + excluded.gb;
END;

CREATE TRIGGER volumes_backend_out AFTER DELETE ON volumes
WHEN OLD.backend IS NOT NULL
BEGIN
    UPDATE backend_totals SET n = n - 1, gb = gb - OLD.size WHERE backend = OLD.backend;
END;

CREATE TRIGGER volumes_backend_move_out AFTER UPDATE OF backend, size ON volumes
WHEN OLD.backend IS NOT NULL
BEGIN
    UPDATE backend_totals SET n = n - 1, gb = gb - OLD.size WHERE backend = OLD.backend;
END;

CREATE TRIGGER volumes_backend_move_in AFTER UPDATE OF backend, size ON volumes
WHEN NEW.backend IS NOT NULL
BEGIN
    INSERT INTO backend_totals (backend, n, gb) VALUES (NEW.backend, 1, NEW.size)
    ON CONFLICT (backend) DO UPDATE SET n = n + 1, gb = gb + excluded.gb;
END;

-- Snapshots: quota usage (they count against snapshots and gigabytes).

CREATE TRIGGER snapshots_usage_in AFTER INSERT ON snapshots
WHEN NEW.reservation_id IS NULL
BEGIN
    INSERT INTO usage_totals (project_id, kind, volume_type_id, n, gb)
    VALUES (NEW.project_id, 'snapshots', NEW.volume_type_id, 1, NEW.size)
    ON CONFLICT (project_id, kind, volume_type_id)
    DO UPDATE SET n = n + 1, gb = gb + excluded.gb;
END;

CREATE TRIGGER snapshots_usage_out AFTER DELETE ON snapshots
WHEN OLD.reservation_id IS NULL
BEGIN
    UPDATE usage_totals SET n = n - 1, gb = gb - OLD.size
    WHERE project_id = OLD.project_id AND kind = 'snapshots'
      AND volume_type_id = OLD.volume_type_id;
END;

CREATE TRIGGER snapshots_usage_move_out
AFTER UPDATE OF project_id, volume_type_id, size, reservation_id ON snapshots
WHEN OLD.reservation_id IS NULL
BEGIN
    UPDATE usage_totals SET n = n - 1, gb = gb - OLD.size
    WHERE project_id = OLD.project_id AND kind = 'snapshots'
      AND volume_type_id = OLD.volume_type_id;
END;

CREATE TRIGGER snapshots_usage_move_in
AFTER UPDATE OF project_id, volume_type_id, size, reservation_id ON snapshots
WHEN NEW.reservation_id IS NULL
BEGIN
    INSERT INTO usage_totals (project_id, kind, volume_type_id, n, gb)
    VALUES (NEW.project_id, 'snapshots', NEW.volume_type_id, 1, NEW.size)
    ON CONFLICT (project_id, kind, volume_type_id)
    DO UPDATE SET n = n + 1, gb = gb + excluded.gb;
END;

-- Backups: quota usage (backups and backup_gigabytes).

CREATE TRIGGER backups_usage_in AFTER INSERT ON backups
WHEN NEW.reservation_id IS NULL
BEGIN
    INSERT INTO usage_totals (project_id, kind, volume_type_id, n, gb)
    VALUES (NEW.project_id, 'backups', '', 1, NEW.size)
    ON CONFLICT (project_id, kind, volume_type_id)
    DO UPDATE SET n = n + 1, gb = gb + excluded.gb;
END;

CREATE TRIGGER backups_usage_out AFTER DELETE ON backups
WHEN OLD.reservation_id IS NULL
BEGIN
    UPDATE usage_totals SET n = n - 1, gb = gb - OLD.size
    WHERE project_id = OLD.project_id AND kind = 'backups' AND volume_type_id = '';
END;

CREATE TRIGGER backups_usage_move_out
AFTER UPDATE OF project_id, size, reservation_id ON backups
WHEN OLD.reservation_id IS NULL
BEGIN
    UPDATE usage_totals SET n = n - 1, gb = gb - OLD.size
    WHERE project_id = OLD.project_id AND kind = 'backups' AND volume_type_id = '';
END;

CREATE TRIGGER backups_usage_move_in
AFTER UPDATE OF project_id, size, reservation_id ON backups
WHEN NEW.reservation_id IS NULL
BEGIN
    INSERT INTO usage_totals (project_id, kind, volume_type_id, n, gb)
    VALUES (NEW.project_id, 'backups', '', 1, NEW.size)
    ON CONFLICT (project_id, kind, volume_type_id)
    DO UPDATE SET n = n + 1, gb = gb + excluded.gb;
END;

-- Groups: counted from insert to delete.

CREATE TRIGGER groups_usage_in AFTER INSERT ON volume_groups
BEGIN
    INSERT INTO usage_totals (project_id, kind, volume_type_id, n, gb)
    VALUES (NEW.project_id, 'groups', '', 1, 0)
    ON CONFLICT (project_id, kind, volume_type_id) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER groups_usage_out AFTER DELETE ON volume_groups
BEGIN
    UPDATE usage_totals SET n = n - 1
    WHERE project_id = OLD.project_id AND kind = 'groups' AND volume_type_id = '';
END;

CREATE TRIGGER groups_usage_move AFTER UPDATE OF project_id ON volume_groups
BEGIN
    UPDATE usage_totals SET n = n - 1
    WHERE project_id = OLD.project_id AND kind = 'groups' AND volume_type_id = '';
    INSERT INTO usage_totals (project_id, kind, volume_type_id, n, gb)
    VALUES (NEW.project_id, 'groups', '', 1, 0)
    ON CONFLICT (project_id, kind, volume_type_id) DO UPDATE SET n = n + 1;
END;
