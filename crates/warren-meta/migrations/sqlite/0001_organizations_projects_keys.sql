-- The tenancy skeleton: organizations own projects; a project's token is
-- what SDKs send; personal API keys authenticate the REST API.
CREATE TABLE organizations (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    created_at  TEXT    NOT NULL
);

CREATE TABLE projects (
    id              INTEGER PRIMARY KEY,
    organization_id INTEGER NOT NULL REFERENCES organizations (id),
    name            TEXT    NOT NULL,
    api_token       TEXT    NOT NULL UNIQUE,
    created_at      TEXT    NOT NULL
);

-- Only a SHA-256 of each key is kept; `mask` is what may be shown again.
CREATE TABLE personal_api_keys (
    id              INTEGER PRIMARY KEY,
    organization_id INTEGER NOT NULL REFERENCES organizations (id),
    label           TEXT    NOT NULL,
    secure_value    TEXT    NOT NULL UNIQUE,
    mask            TEXT    NOT NULL,
    created_at      TEXT    NOT NULL
);
