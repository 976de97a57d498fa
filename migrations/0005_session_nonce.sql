-- A session's nonce is a number (the hosted API and the SDKs send a random integer), stored as
-- one: a caller can no longer park megabytes of text in a session row for its lifetime.
-- Text nonces that are not a 64-bit integer (none a client should have sent) are dropped.
ALTER TABLE sessions ALTER COLUMN nonce TYPE BIGINT
    USING (CASE WHEN nonce ~ '^\s*-?[0-9]{1,18}\s*$' THEN trim(nonce)::BIGINT END);

DELETE FROM session_nonces WHERE nonce !~ '^\s*-?[0-9]{1,18}\s*$';
ALTER TABLE session_nonces ALTER COLUMN nonce TYPE BIGINT USING trim(nonce)::BIGINT;
