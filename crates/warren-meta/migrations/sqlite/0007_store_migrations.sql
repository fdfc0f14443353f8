-- What other stores' migration runners did, operation by operation, so a
-- run that is killed resumes at the operation it was on.
CREATE TABLE store_migration_operations (
    scope TEXT NOT NULL,
    version BIGINT NOT NULL,
    operation BIGINT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (scope, version, operation)
);
-- Locks that outlive the process holding them: held until released or
-- until the lease runs out without renewal.
CREATE TABLE store_locks (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
