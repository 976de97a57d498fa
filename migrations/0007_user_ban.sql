-- Operator bans (`parley user ban ID [--reason …]`): a banned user keeps their account and
-- history but opens no session, over REST or XMPP, until `parley user unban ID`. The reason is
-- the operator's note, shown by `parley user show`, never to the user. Nullable columns with no
-- default: adding them rewrites no row.
ALTER TABLE users ADD COLUMN banned_at TIMESTAMPTZ;
ALTER TABLE users ADD COLUMN ban_reason TEXT;
