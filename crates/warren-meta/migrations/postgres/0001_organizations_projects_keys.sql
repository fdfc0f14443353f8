-- The tenancy skeleton: organizations own projects; a project's token is
-- what SDKs send; personal API keys authenticate the REST API.
CREATE TABLE organizations (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT    NOT NULL,
    created_at  TEXT    NOT NULL
);

CREATE TABLE projects (
    id              BIGSERIAL PRIMARY KEY,
    organization_id BIGINT  NOT NULL REFERENCES organizations (id),
    name            TEXT    NOT NULL,
    api_token       TEXT    NOT NULL UNIQUE,
    created_at      TEXT    NOT NULL
);

-- Only a SHA-256 of each key is kept; `mask` is what may be shown again.
CREATE TABLE personal_api_keys (
    id              BIGSERIAL PRIMARY KEY,
    organization_id BIGINT  NOT NULL REFERENCES organizations (id),
    label           TEXT    NOT NULL,
    secure_value    TEXT    NOT NULL UNIQUE,
    mask            TEXT    NOT NULL,
    created_at      TEXT    NOT NULL
);
