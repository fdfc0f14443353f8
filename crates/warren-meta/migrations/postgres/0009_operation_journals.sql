-- How far long operations (a reshard of the ClickHouse cluster, …) got,
-- one JSON document per operation, so one killed anywhere goes on from
-- there; processes that must follow an operation read it too.
CREATE TABLE operation_journals (
    name TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
