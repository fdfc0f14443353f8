-- Session recordings: one row per blob ingest wrote, a batch's share of one
-- session (the blob itself is in the blob store, at
-- recordings/<team_id>/<session_id>/<chunk>.jsonl.gz). Rows are written in
-- the transaction that records the batch's log offsets; a batch replayed
-- after a crash writes the same chunk names again, replacing its rows.
CREATE TABLE recording_chunks (
    team_id      BIGINT NOT NULL,
    session_id   TEXT    NOT NULL,
    chunk        TEXT    NOT NULL,
    distinct_id  TEXT    NOT NULL,
    first_ms     BIGINT NOT NULL,
    last_ms      BIGINT NOT NULL,
    events       BIGINT NOT NULL,
    bytes        BIGINT NOT NULL,
    clicks       BIGINT NOT NULL,
    first_url    TEXT,
    PRIMARY KEY (team_id, session_id, chunk)
);
-- The list, newest first, and retention, oldest first.
CREATE INDEX recording_chunks_by_time ON recording_chunks (team_id, first_ms);
CREATE INDEX recording_chunks_by_end ON recording_chunks (last_ms);
CREATE INDEX recording_chunks_by_distinct_id ON recording_chunks (team_id, distinct_id);

-- Whether posthog-js records the project's sessions (PostHog's
-- `session_recording_opt_in`): off until a project turns it on.
ALTER TABLE projects ADD COLUMN session_recording_opt_in BIGINT NOT NULL DEFAULT 0;
