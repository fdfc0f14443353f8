-- Accounts and access: users belong to organizations through memberships
-- with a role; the web UI signs in with login sessions; personal API keys
-- belong to a user, carry scopes, may be limited to projects and revoked.
CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    email          TEXT    NOT NULL UNIQUE,
    name           TEXT    NOT NULL,
    password_hash  TEXT    NOT NULL,
    created_at     TEXT    NOT NULL
);

CREATE TABLE memberships (
    organization_id  INTEGER NOT NULL REFERENCES organizations (id),
    user_id          INTEGER NOT NULL REFERENCES users (id),
    role             TEXT    NOT NULL,
    created_at       TEXT    NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (user_id);

-- Only a SHA-256 of the cookie's secret is kept, as for API keys.
CREATE TABLE login_sessions (
    secure_value   TEXT    PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users (id),
    created_at_us  INTEGER NOT NULL,
    expires_at_us  INTEGER NOT NULL
);
CREATE INDEX login_sessions_by_user ON login_sessions (user_id);

-- `scopes` and `project_ids` are JSON lists; an empty `project_ids` means
-- every project of the organization. The bootstrap key has no user.
ALTER TABLE personal_api_keys ADD COLUMN user_id INTEGER REFERENCES users (id);
ALTER TABLE personal_api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '["*"]';
ALTER TABLE personal_api_keys ADD COLUMN project_ids TEXT NOT NULL DEFAULT '[]';
ALTER TABLE personal_api_keys ADD COLUMN revoked_at TEXT;
ALTER TABLE personal_api_keys ADD COLUMN last_used_at TEXT;

-- Who did what, through which credential, from where, with what outcome.
-- `organization_id` is empty for refused requests nobody could be named for.
CREATE TABLE audit_log (
    id               INTEGER PRIMARY KEY,
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
CREATE INDEX audit_log_by_organization ON audit_log (organization_id, at_us);

-- Product entities (actions, cohorts, insights, dashboards, annotations,
-- feature flags, experiments) as PostHog-shaped JSON documents, validated
-- by the code before they get here. `unique_key` is the flag key, unique
-- per project and kind.
CREATE TABLE entities (
    id           INTEGER PRIMARY KEY,
    project_id   INTEGER NOT NULL REFERENCES projects (id),
    kind         TEXT    NOT NULL,
    unique_key   TEXT,
    body         TEXT    NOT NULL,
    created_by   INTEGER,
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL
);
CREATE INDEX entities_by_project ON entities (project_id, kind, id);
CREATE UNIQUE INDEX entities_unique_key ON entities (project_id, kind, unique_key);

CREATE TABLE static_cohort_people (
    project_id   INTEGER NOT NULL,
    cohort_id    INTEGER NOT NULL,
    person_uuid  TEXT    NOT NULL,
    PRIMARY KEY (project_id, cohort_id, person_uuid)
);

-- What ingest has seen: event names and property names with their types.
CREATE TABLE event_definitions (
    team_id         INTEGER NOT NULL,
    name            TEXT    NOT NULL,
    first_seen_us   INTEGER NOT NULL,
    last_seen_us    INTEGER NOT NULL,
    PRIMARY KEY (team_id, name)
);

-- `kind` is event, person or group; `group_type_index` is -1 unless group.
CREATE TABLE property_definitions (
    team_id           INTEGER NOT NULL,
    kind              TEXT    NOT NULL,
    group_type_index  INTEGER NOT NULL,
    name              TEXT    NOT NULL,
    property_type     TEXT,
    first_seen_us     INTEGER NOT NULL,
    PRIMARY KEY (team_id, kind, group_type_index, name)
);
