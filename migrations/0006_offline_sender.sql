-- Who sent each kept stanza (the sender's bare JID) and whether it is a subscription request,
-- so that one sender's share of a user's offline store is bounded (xmpp.offline_max_per_sender)
-- and a waiting subscription request is kept once per sender (xmpp.roster_max_items in all).
-- Counts read one user's rows through xmpp_offline_user; those rows are bounded, so no index on
-- the sender is needed. Rows stored before this migration have no sender and count only towards
-- the per-user bound.
ALTER TABLE xmpp_offline ADD COLUMN sender TEXT;
ALTER TABLE xmpp_offline ADD COLUMN subscription BOOLEAN NOT NULL DEFAULT false;
