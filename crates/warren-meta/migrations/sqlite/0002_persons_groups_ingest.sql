-- What ingest builds. Times are microseconds since the Unix epoch; uuids
-- and JSON are text, so one set of queries serves SQLite and PostgreSQL.
CREATE TABLE persons (
    team_id        INTEGER NOT NULL,
    uuid           TEXT    NOT NULL,
    properties     TEXT    NOT NULL,
    created_at_us  INTEGER NOT NULL,
    is_identified  INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    created_by_event TEXT,
    PRIMARY KEY (team_id, uuid)
);

CREATE TABLE person_distinct_ids (
    team_id      INTEGER NOT NULL,
    distinct_id  TEXT    NOT NULL,
    person_uuid  TEXT    NOT NULL,
    PRIMARY KEY (team_id, distinct_id)
);
CREATE INDEX person_distinct_ids_by_person ON person_distinct_ids (team_id, person_uuid);

-- Events stored before a merge keep the merged-away person's id; queries
-- map it to the surviving person through this table.
CREATE TABLE person_overrides (
    team_id             INTEGER NOT NULL,
    old_person_id       TEXT    NOT NULL,
    override_person_id  TEXT    NOT NULL,
    version             INTEGER NOT NULL,
    PRIMARY KEY (team_id, old_person_id)
);
CREATE INDEX person_overrides_by_target ON person_overrides (team_id, override_person_id);

CREATE TABLE group_types (
    team_id           INTEGER NOT NULL,
    group_type        TEXT    NOT NULL,
    group_type_index  INTEGER NOT NULL,
    PRIMARY KEY (team_id, group_type),
    UNIQUE (team_id, group_type_index)
);

CREATE TABLE groups (
    team_id           INTEGER NOT NULL,
    group_type_index  INTEGER NOT NULL,
    group_key         TEXT    NOT NULL,
    properties        TEXT    NOT NULL,
    created_at_us     INTEGER NOT NULL,
    version           INTEGER NOT NULL,
    PRIMARY KEY (team_id, group_type_index, group_key)
);

CREATE TABLE ingestion_warnings (
    id            INTEGER PRIMARY KEY,
    team_id       INTEGER NOT NULL,
    kind          TEXT    NOT NULL,
    event_uuid    TEXT,
    details       TEXT    NOT NULL,
    timestamp_us  INTEGER NOT NULL
);
CREATE INDEX ingestion_warnings_by_team ON ingestion_warnings (team_id, timestamp_us);

-- Next log offset per partition whose person updates are applied.
CREATE TABLE ingest_offsets (
    consumer     TEXT    NOT NULL,
    partition    INTEGER NOT NULL,
    next_offset  INTEGER NOT NULL,
    PRIMARY KEY (consumer, partition)
);
