-- SCRAM credentials (RFC 5802 / RFC 7677) for XMPP password logins, one verifier per
-- mechanism in PostgreSQL's own format: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
-- (base64). Derived whenever a password is set, never the password itself; users whose password
-- was set before this migration get theirs at their next successful password login. Kept in the
-- users row so a password change replaces the hash and both verifiers in one statement.
ALTER TABLE users ADD COLUMN scram_sha1 TEXT;
ALTER TABLE users ADD COLUMN scram_sha256 TEXT;
