-- A database built by `usersvc replay` explains itself: where its events came from, which range,
-- which code, how many, and a checksum of the resulting table.
CREATE TABLE replay_manifest (
    id BIGSERIAL PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    source TEXT NOT NULL,
    from_position BIGINT,
    until_spec TEXT,
    first_position BIGINT,
    last_position BIGINT,
    events_applied BIGINT NOT NULL,
    events_skipped BIGINT NOT NULL,
    code_version TEXT NOT NULL,
    checksum TEXT NOT NULL,
    details JSONB NOT NULL DEFAULT '{}'::jsonb
);
