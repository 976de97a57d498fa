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
