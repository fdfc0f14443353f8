-- Without AUTOINCREMENT SQLite gives a new row the highest id in the table
-- plus one, so deleting the newest row hands its id out again: a flag's
-- condition on a deleted cohort, a dashboard tile on a deleted insight, an
-- audit entry's resource would name whatever was created next. PostgreSQL's
-- sequences never go back. The tables whose rows are deleted get
-- AUTOINCREMENT, which SQLite only gives a table when it is created: each is
-- rebuilt with the same columns, rows, ids and indexes (SQLite's documented
-- procedure; nothing references either table by foreign key).

CREATE TABLE entities_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id   INTEGER NOT NULL REFERENCES projects (id),
    kind         TEXT    NOT NULL,
    unique_key   TEXT,
    body         TEXT    NOT NULL,
    created_by   INTEGER,
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL
);
INSERT INTO entities_new (id, project_id, kind, unique_key, body, created_by, created_at, updated_at)
    SELECT id, project_id, kind, unique_key, body, created_by, created_at, updated_at FROM entities;
DROP TABLE entities;
ALTER TABLE entities_new RENAME TO entities;
CREATE INDEX entities_by_project ON entities (project_id, kind, id);
CREATE UNIQUE INDEX entities_unique_key ON entities (project_id, kind, unique_key);

-- Entities deleted before this migration may have had ids above every id
-- left; the audit log still names those it saw created or deleted, so the
-- sequence starts above them too.
DELETE FROM sqlite_sequence WHERE name = 'entities';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'entities', COALESCE(MAX(id), 0) FROM (
        SELECT id FROM entities
        UNION ALL
        SELECT CAST(resource AS INTEGER) FROM audit_log
        WHERE outcome = 'ok' AND action IN (
            'action.create', 'action.delete',
            'cohort.create', 'cohort.delete',
            'insight.create', 'insight.delete',
            'dashboard.create', 'dashboard.delete',
            'annotation.create', 'annotation.delete',
            'feature_flag.create', 'feature_flag.delete',
            'experiment.create', 'experiment.delete'
        )
    );

-- Retention deletes the oldest entries; once it has deleted them all, the
-- ids a reader pages by (`next_before`) would start again at 1.
CREATE TABLE audit_log_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    at_us            INTEGER NOT NULL,
    organization_id  INTEGER,
    project_id       INTEGER,
    user_id          INTEGER,
    api_key_id       INTEGER,
    actor            TEXT    NOT NULL,
    credential       TEXT    NOT NULL,
    action           TEXT    NOT NULL,
    method           TEXT    NOT NULL,
    route            TEXT    NOT NULL,
    resource         TEXT,
    source           TEXT    NOT NULL,
    status           INTEGER NOT NULL,
    outcome          TEXT    NOT NULL
);
INSERT INTO audit_log_new (id, at_us, organization_id, project_id, user_id, api_key_id, actor, credential,
        action, method, route, resource, source, status, outcome)
    SELECT id, at_us, organization_id, project_id, user_id, api_key_id, actor, credential,
        action, method, route, resource, source, status, outcome FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_log_new RENAME TO audit_log;
CREATE INDEX audit_log_by_organization ON audit_log (organization_id, at_us);
