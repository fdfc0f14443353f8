-- What queries need from a project: the time zone its intervals are in,
-- the first day of its weeks (0 Sunday, 1 Monday), and the filters
-- `filterTestAccounts` applies (PostHog property filters, JSON).
ALTER TABLE projects ADD COLUMN timezone TEXT NOT NULL DEFAULT 'UTC';
ALTER TABLE projects ADD COLUMN week_start_day INTEGER NOT NULL DEFAULT 0;
ALTER TABLE projects ADD COLUMN test_account_filters TEXT NOT NULL DEFAULT '[]';
