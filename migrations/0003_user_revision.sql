-- The stream revision of the last event applied to each row: the service answers it as the ETag
-- of GET, and the projection's guard applies an event only above it. Rows written before this
-- migration were produced by their stream's first event.
ALTER TABLE "user" ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
ALTER TABLE "user" ALTER COLUMN revision DROP DEFAULT;
