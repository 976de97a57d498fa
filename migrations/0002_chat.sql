-- Chat: dialogs, each user's inbox entry for a dialog, and messages.

-- Dialog `extensions` fields an application allows (the hosted dashboard's "custom fields").
ALTER TABLE applications ADD COLUMN dialog_extensions TEXT[] NOT NULL DEFAULT '{}';

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE dialogs (
    id                     TEXT PRIMARY KEY CHECK (id ~ '^[0-9a-f]{24}$'),
    application_id         BIGINT NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    type                   SMALLINT NOT NULL CHECK (type BETWEEN 1 AND 4),
    user_id                BIGINT NOT NULL,
    name                   TEXT,
    photo                  TEXT,
    description            TEXT,
    occupants_ids          BIGINT[] NOT NULL DEFAULT '{}',
    admins_ids             BIGINT[] NOT NULL DEFAULT '{}',
    pinned_messages_ids    TEXT[] NOT NULL DEFAULT '{}',
    -- Subscribers of a public dialog.
    occupants_count        INTEGER NOT NULL DEFAULT 0,
    extensions             JSONB,
    data                   JSONB,
    allow_preview          BOOLEAN NOT NULL DEFAULT FALSE,
    -- "{app}:{low user}:{high user}" for private dialogs: one per pair of users.
    private_key            TEXT UNIQUE,
    -- Messages posted so far (numbers them) and messages still present.
    message_seq            BIGINT NOT NULL DEFAULT 0,
    message_count          BIGINT NOT NULL DEFAULT 0,
    last_message_id        TEXT,
    last_message           TEXT,
    last_message_user_id   BIGINT,
    last_message_date_sent BIGINT,
    created_at             TIMESTAMPTZ NOT NULL,
    updated_at             TIMESTAMPTZ NOT NULL
);
CREATE INDEX dialogs_app_type ON dialogs (application_id, type);
CREATE INDEX dialogs_name_trgm ON dialogs USING GIN (name gin_trgm_ops);

-- The inbox: one row per user per dialog they belong to, maintained on every write, so listing
-- dialogs with unread counts never scans messages.
CREATE TABLE dialog_members (
    dialog_id      TEXT NOT NULL REFERENCES dialogs (id) ON DELETE CASCADE,
    user_id        BIGINT NOT NULL,
    unread_count   INTEGER NOT NULL DEFAULT 0,
    -- Deleted from the user's list; a new message brings the dialog back.
    hidden         BOOLEAN NOT NULL DEFAULT FALSE,
    -- Messages up to these sequence numbers were posted before the user joined / cleared history.
    joined_seq     BIGINT NOT NULL DEFAULT 0,
    cleared_seq    BIGINT NOT NULL DEFAULT 0,
    notifications  BOOLEAN NOT NULL DEFAULT TRUE,
    -- Copy of the dialog's sort key, so a user's list is read in index order.
    sort_at        BIGINT NOT NULL,
    PRIMARY KEY (dialog_id, user_id)
);
-- A user's list in display order, and their unread counts, read from the index alone.
CREATE INDEX dialog_members_inbox ON dialog_members (user_id, hidden, sort_at DESC, dialog_id DESC) INCLUDE (unread_count);

CREATE TABLE messages (
    id             TEXT PRIMARY KEY CHECK (id ~ '^[0-9a-f]{24}$'),
    application_id BIGINT NOT NULL,
    dialog_id      TEXT NOT NULL REFERENCES dialogs (id) ON DELETE CASCADE,
    seq            BIGINT NOT NULL,
    sender_id      BIGINT NOT NULL,
    recipient_id   BIGINT NOT NULL DEFAULT 0,
    body           TEXT,
    attachments    JSONB NOT NULL DEFAULT '[]',
    custom         JSONB NOT NULL DEFAULT '{}',
    markable       BOOLEAN NOT NULL DEFAULT FALSE,
    date_sent      BIGINT NOT NULL,
    read_ids       BIGINT[] NOT NULL DEFAULT '{}',
    delivered_ids  BIGINT[] NOT NULL DEFAULT '{}',
    -- Users who deleted the message for themselves only.
    hidden_for     BIGINT[] NOT NULL DEFAULT '{}',
    views_count    INTEGER NOT NULL DEFAULT 0,
    edited_at      TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    UNIQUE (dialog_id, seq)
);
CREATE INDEX messages_dialog_date ON messages (dialog_id, date_sent, seq);
CREATE INDEX messages_body_trgm ON messages USING GIN (body gin_trgm_ops);

CREATE TABLE message_reactions (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL,
    reaction   TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    -- One reaction per user per message: adding another replaces it.
    PRIMARY KEY (message_id, user_id)
);
