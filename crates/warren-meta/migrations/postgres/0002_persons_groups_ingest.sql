-- What ingest builds. Times are microseconds since the Unix epoch; uuids
-- and JSON are text, so one set of queries serves SQLite and PostgreSQL.
CREATE TABLE persons (
    team_id        BIGINT  NOT NULL,
    uuid           TEXT    NOT NULL,
    properties     TEXT    NOT NULL,
    created_at_us  BIGINT  NOT NULL,
    is_identified  BIGINT  NOT NULL,
    version        BIGINT  NOT NULL,
    created_by_event TEXT,
    PRIMARY KEY (team_id, uuid)
);

CREATE TABLE person_distinct_ids (
    team_id      BIGINT  NOT NULL,
    distinct_id  TEXT    NOT NULL,
    person_uuid  TEXT    NOT NULL,
    PRIMARY KEY (team_id, distinct_id)
);
CREATE INDEX person_distinct_ids_by_person ON person_distinct_ids (team_id, person_uuid);

-- Events stored before a merge keep the merged-away person's id; queries
-- map it to the surviving person through this table.
CREATE TABLE person_overrides (
    team_id             BIGINT  NOT NULL,
    old_person_id       TEXT    NOT NULL,
    override_person_id  TEXT    NOT NULL,
    version             BIGINT  NOT NULL,
    PRIMARY KEY (team_id, old_person_id)
);
CREATE INDEX person_overrides_by_target ON person_overrides (team_id, override_person_id);

CREATE TABLE group_types (
    team_id           BIGINT  NOT NULL,
    group_type        TEXT    NOT NULL,
    group_type_index  BIGINT  NOT NULL,
    PRIMARY KEY (team_id, group_type),
    UNIQUE (team_id, group_type_index)
);

CREATE TABLE groups (
    team_id           BIGINT  NOT NULL,
    group_type_index  BIGINT  NOT NULL,
    group_key         TEXT    NOT NULL,
    properties        TEXT    NOT NULL,
    created_at_us     BIGINT  NOT NULL,
    version           BIGINT  NOT NULL,
    PRIMARY KEY (team_id, group_type_index, group_key)
);

CREATE TABLE ingestion_warnings (
    id            BIGSERIAL PRIMARY KEY,
    team_id       BIGINT  NOT NULL,
    kind          TEXT    NOT NULL,
    event_uuid    TEXT,
    details       TEXT    NOT NULL,
    timestamp_us  BIGINT  NOT NULL
);
CREATE INDEX ingestion_warnings_by_team ON ingestion_warnings (team_id, timestamp_us);

-- Next log offset per partition whose person updates are applied.
CREATE TABLE ingest_offsets (
    consumer     TEXT    NOT NULL,
    partition    BIGINT  NOT NULL,
    next_offset  BIGINT  NOT NULL,
    PRIMARY KEY (consumer, partition)
);
