-- XMPP account data kept for ordinary clients: the vCard (XEP-0054) as the client last set it
-- (its FN and PHOTO/EXTVAL are the REST user's full_name and avatar, kept there), and private
-- XML storage (XEP-0049), one element per (name, namespace). Both go with the user.
CREATE TABLE xmpp_vcards (
    user_id        BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    application_id BIGINT NOT NULL,
    vcard          TEXT NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE xmpp_private (
    user_id        BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    application_id BIGINT NOT NULL,
    name           TEXT NOT NULL,
    ns             TEXT NOT NULL,
    element        TEXT NOT NULL,
    PRIMARY KEY (user_id, name, ns)
);
