-- Warren's own project: self-monitoring writes its health there as events.
ALTER TABLE projects ADD COLUMN internal INTEGER NOT NULL DEFAULT 0;
-- The persons page lists a project's newest persons first.
CREATE INDEX persons_by_created ON persons (team_id, created_at_us);
