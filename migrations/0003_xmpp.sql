-- XMPP live-layer storage: messages kept for offline users (XEP-0160 style, delivered with
-- XEP-0203 delay stamps) and each user's last activity (XEP-0012).

CREATE TABLE xmpp_offline (
    id BIGSERIAL PRIMARY KEY,
    application_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    stanza TEXT NOT NULL,
    stored_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX xmpp_offline_user ON xmpp_offline (application_id, user_id, id);

CREATE TABLE xmpp_last_activity (
    application_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (application_id, user_id)
);

-- RFC 6121 rosters: one row per (user, contact bare JID).
CREATE TABLE xmpp_roster (
    application_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    contact TEXT NOT NULL,
    name TEXT,
    subscription TEXT NOT NULL DEFAULT 'none'
        CHECK (subscription IN ('none', 'to', 'from', 'both')),
    ask BOOLEAN NOT NULL DEFAULT false,
    groups TEXT[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (application_id, user_id, contact)
);
