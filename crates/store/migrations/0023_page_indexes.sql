-- Lists page by (created_at, id) within a project, newest first; with the id
-- in the index a page of 1000 is read in index order and stops after 1000
-- rows, where (project_id, created_at) left SQLite sorting each run of equal
-- times by id (issue 14).
DROP INDEX volumes_by_project;
CREATE INDEX volumes_by_project ON volumes (project_id, created_at, id);
DROP INDEX snapshots_by_project;
CREATE INDEX snapshots_by_project ON snapshots (project_id, created_at, id);
DROP INDEX backups_by_project;
CREATE INDEX backups_by_project ON backups (project_id, created_at, id);
