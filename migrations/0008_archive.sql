-- XEP-0313 user archives: a user's archive is every message of their private dialogs (the only
-- messages with a recipient_id), read in the archive's order (date_sent, dialog_id, seq). One
-- index per side of the conversation, so a page is two ordered index range scans merged
-- (see db/archive.rs), never a sort of the whole archive. Partial: group, public and broadcast
-- messages (recipient_id = 0) are read per dialog through messages_dialog_date and cost these
-- indexes nothing.
CREATE INDEX messages_archive_sender ON messages (sender_id, date_sent, dialog_id, seq)
    WHERE recipient_id <> 0;
CREATE INDEX messages_archive_recipient ON messages (recipient_id, date_sent, dialog_id, seq)
    WHERE recipient_id <> 0;
