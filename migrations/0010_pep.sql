-- XEP-0163 Personal Eventing: each user's PubSub nodes (XEP-0060 subset) and their items.
-- A node belongs to one user; its configuration is the three options Parley implements.
-- Items keep the payload as XML written by Parley's own writer (never the client's text), and
-- `seq` orders them by publication (a re-published id moves to the end, as XEP-0060 §7.1.2 asks).
CREATE TABLE pep_nodes (
    application_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    node TEXT NOT NULL,
    access_model TEXT NOT NULL CHECK (access_model IN ('presence', 'open', 'whitelist')),
    max_items INTEGER NOT NULL CHECK (max_items > 0),
    persist_items BOOLEAN NOT NULL,
    PRIMARY KEY (application_id, user_id, node)
);

CREATE TABLE pep_items (
    application_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    node TEXT NOT NULL,
    item_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    published_at TIMESTAMPTZ NOT NULL,
    seq BIGSERIAL NOT NULL,
    PRIMARY KEY (application_id, user_id, node, item_id),
    FOREIGN KEY (application_id, user_id, node)
        REFERENCES pep_nodes (application_id, user_id, node) ON DELETE CASCADE
);
-- The newest items of a node first (items queries, the last item, trimming to max_items).
CREATE INDEX pep_items_latest ON pep_items (application_id, user_id, node, seq DESC);
