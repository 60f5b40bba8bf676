-- The progress Nova reports with `os-update_snapshot_status` while it takes a
-- snapshot of an attached volume itself (a percent, 0–100), shown as the
-- snapshot's `os-extended-snapshot-attributes:progress`. NULL while nobody
-- reported one: Scoria's own snapshots show the progress of their flow.
ALTER TABLE snapshots ADD COLUMN progress INTEGER;
