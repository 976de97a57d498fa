-- XEP-0045 room settings a dialog has no column for. A standard room (`name@muc.{domain}`,
-- created by joining it) maps its name to the group dialog behind it; a dialog room
-- (`{app}_{dialog}@muc.{domain}`) gets a row only once something here is set (a subject, an
-- outcast). Name, description and members-only live on the dialog itself (`name`,
-- `description`, `allow_preview` = open); roles are the dialog's owner, admins and occupants.
CREATE TABLE muc_rooms (
    dialog_id      TEXT PRIMARY KEY REFERENCES dialogs (id) ON DELETE CASCADE,
    application_id BIGINT NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    -- The room JID's local part, lower case; NULL for a dialog room.
    name           TEXT,
    subject        TEXT NOT NULL DEFAULT '',
    -- The nick that set the subject (shown as the subject message's sender).
    subject_by     TEXT,
    -- A temporary room's dialog is deleted when its last occupant leaves.
    persistent     BOOLEAN NOT NULL DEFAULT TRUE,
    -- Whether participants (not only moderators) may change the subject.
    change_subject BOOLEAN NOT NULL DEFAULT TRUE,
    -- Banned users (affiliation outcast): they cannot enter even an open room.
    outcasts       BIGINT[] NOT NULL DEFAULT '{}',
    UNIQUE (application_id, name)
);
