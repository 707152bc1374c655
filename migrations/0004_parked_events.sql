-- Poison events set aside instead of stopping the projection (see worker/parking.py and
-- docs/operations.md). A stream is parked by its first event the projection cannot apply; every
-- later event of that stream is parked behind it, in order, until an operator retries or skips.
-- Rows are written in the same transaction as the checkpoint that passes them.
CREATE TABLE parked_stream (
    projection TEXT NOT NULL,
    stream TEXT NOT NULL,
    first_position BIGINT NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    parked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, stream)
);

CREATE TABLE parked_event (
    projection TEXT NOT NULL,
    commit_position BIGINT NOT NULL,
    stream TEXT NOT NULL,
    revision BIGINT NOT NULL,
    event_id UUID NOT NULL,
    type TEXT NOT NULL,
    data BYTEA NOT NULL,
    metadata BYTEA NOT NULL,
    content_type TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (projection, commit_position),
    FOREIGN KEY (projection, stream) REFERENCES parked_stream (projection, stream)
        ON DELETE CASCADE
);

-- Events an operator decided never to apply: the event itself, why it was parked, who skipped
-- it, when and why.
CREATE TABLE skipped_event (
    projection TEXT NOT NULL,
    commit_position BIGINT NOT NULL,
    stream TEXT NOT NULL,
    revision BIGINT NOT NULL,
    event_id UUID NOT NULL,
    type TEXT NOT NULL,
    data BYTEA NOT NULL,
    metadata BYTEA NOT NULL,
    content_type TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    parked_reason TEXT NOT NULL,
    skipped_by TEXT NOT NULL,
    skipped_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    skip_reason TEXT NOT NULL,
    PRIMARY KEY (projection, commit_position)
);
