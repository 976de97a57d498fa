-- Privacy: XEP-0016 privacy lists and the XEP-0191 block list.
--
-- A user's named lists, at most one of them the default (`is_default`), each with ordered items.
-- `kinds` is a bitmask of the stanza kinds an item applies to (1 message, 2 presence-in,
-- 4 presence-out, 8 iq); 0 means the item had no child elements, i.e. every kind, and for a
-- `deny` item also the owner's outbound messages (the ConnectyCube SDK's `mutualBlock`).
-- The XEP-0191 block list has its own table: its entries block every kind in both directions
-- and are evaluated before any privacy list, independently of which list is default or active.

CREATE TABLE xmpp_privacy_lists (
    application_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    is_default BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (application_id, user_id, name)
);
CREATE UNIQUE INDEX xmpp_privacy_one_default ON xmpp_privacy_lists (application_id, user_id)
    WHERE is_default;

CREATE TABLE xmpp_privacy_items (
    application_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    list_name TEXT NOT NULL,
    ord BIGINT NOT NULL CHECK (ord >= 0),
    item_type TEXT CHECK (item_type IN ('jid', 'group', 'subscription')),
    value TEXT,
    action TEXT NOT NULL CHECK (action IN ('allow', 'deny')),
    kinds SMALLINT NOT NULL DEFAULT 0 CHECK (kinds BETWEEN 0 AND 15),
    PRIMARY KEY (application_id, user_id, list_name, ord),
    FOREIGN KEY (application_id, user_id, list_name)
        REFERENCES xmpp_privacy_lists (application_id, user_id, name) ON DELETE CASCADE
);

CREATE TABLE xmpp_blocklist (
    application_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    jid TEXT NOT NULL,
    PRIMARY KEY (application_id, user_id, jid)
);
