-- The original read model, plus what correctness needs: a unique username so that upserts are
-- idempotent, and the event that produced each row.
CREATE TABLE "user" (
    id BIGSERIAL PRIMARY KEY,
    username VARCHAR(100) NOT NULL,
    "createdAt" TIMESTAMPTZ NOT NULL,
    "fullName" VARCHAR(100) NOT NULL,
    "eventId" UUID NOT NULL,
    "commitPosition" BIGINT NOT NULL,
    CONSTRAINT user_username_key UNIQUE (username)
);

-- One row per projector: the `$all` commit position of the last event it applied. Written in the
-- same transaction as the rows that event produced, so a restart neither loses nor repeats work.
CREATE TABLE checkpoint (
    name TEXT PRIMARY KEY,
    commit_position BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
