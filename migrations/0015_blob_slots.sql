-- XEP-0363 upload slots, blob updates and the deletion queue.
--
-- The size an XMPP upload slot was granted for (XEP-0363 `<request size>`); NULL for uploads
-- of the REST API. A slot has no completion request: the disk store completes it when the PUT
-- is whole; on S3 (the PUT goes straight to the store) it is completed when its object is
-- found there with exactly this size (first download, or the cleanup sweep).
ALTER TABLE blobs ADD COLUMN upload_size BIGINT CHECK (upload_size >= 0);

-- `PUT /blobs/{id}` with `new=1` restarts an upload: unfinished uploads now age from their last
-- change, not from their creation.
DROP INDEX blobs_unfinished;
CREATE INDEX blobs_unfinished ON blobs (updated_at) WHERE completed_at IS NULL;

-- Stored objects whose records are gone (a deleted user's files, a deleted blob whose store
-- could not be reached): the cleanup sweep removes each from the store, then its row here. A
-- store that is down delays the removal, never loses it.
CREATE TABLE blob_deletions (
    uid       TEXT PRIMARY KEY CHECK (uid ~ '^[0-9a-f]{32}$'),
    queued_at TIMESTAMPTZ NOT NULL
);
