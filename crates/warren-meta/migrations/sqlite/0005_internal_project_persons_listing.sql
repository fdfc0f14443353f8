-- Warren's own project: self-monitoring writes its health there as events.
-- One per deployment, even when several processes start at once.
ALTER TABLE projects ADD COLUMN internal INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX projects_one_internal ON projects (internal) WHERE internal = 1;
-- The persons page lists a project's newest persons first.
CREATE INDEX persons_by_created ON persons (team_id, created_at_us);
