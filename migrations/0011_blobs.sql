-- Blobs (the storage API): one row per file a user created; the bytes live in the configured
-- store (local disk or S3-compatible) under `uid`. A row without `completed_at` is an upload
-- in progress; the cleanup loop removes those older than `storage.unfinished_ttl_secs`.
CREATE TABLE blobs (
    id             BIGSERIAL PRIMARY KEY,
    application_id BIGINT NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    user_id        BIGINT NOT NULL,
    -- 32 hex digits, random: the object's key in the store and the download handle.
    uid            TEXT NOT NULL UNIQUE CHECK (uid ~ '^[0-9a-f]{32}$'),
    name           TEXT NOT NULL,
    content_type   TEXT NOT NULL,
    size           BIGINT,
    public         BOOLEAN NOT NULL DEFAULT FALSE,
    completed_at   TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);
-- A user's blobs, newest first (GET /blobs).
CREATE INDEX blobs_owner ON blobs (application_id, user_id, id DESC);
-- The cleanup loop's scan: only unfinished uploads are in it.
CREATE INDEX blobs_unfinished ON blobs (created_at) WHERE completed_at IS NULL;

-- "Which messages carry blob X as an attachment" (who may download a private blob): a GIN
-- index over the attachments of the messages that have any, so messages without attachments
-- (most of them) cost it nothing.
CREATE INDEX messages_attachments ON messages USING GIN (attachments jsonb_path_ops)
    WHERE attachments <> '[]'::jsonb;
