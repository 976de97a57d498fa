-- Seeds a Parley database for tools/chat-bench.sh: :users users (sharing the password hash of
-- user :uid), :dialogs group dialogs of 3 occupants, user :uid in :mine of them, one dialog
-- (the first) with :big messages and :per messages in each of the next :busy dialogs.
\set ON_ERROR_STOP on
BEGIN;
INSERT INTO users (application_id, login, password_hash, full_name, created_at, updated_at)
SELECT :app, 'seed_' || g, (SELECT password_hash FROM users WHERE id = :uid), 'Seed User ' || g, now(), now()
FROM generate_series(1, :users - 1) g;

CREATE TEMP TABLE su AS SELECT array_agg(id ORDER BY id) AS ids, count(*)::INT AS n FROM users WHERE application_id = :app;

INSERT INTO dialogs (id, application_id, type, user_id, name, occupants_ids, created_at, updated_at)
SELECT 'd' || lpad(to_hex(g), 23, '0'), :app, 2, su.ids[1 + g % su.n], 'dialog ' || g,
       ARRAY(SELECT DISTINCT x FROM unnest(ARRAY[su.ids[1 + g % su.n], su.ids[1 + (g * 7 + 1) % su.n], su.ids[1 + (g * 13 + 2) % su.n]]) x),
       now() - interval '2 days', now() - interval '2 days'
FROM generate_series(1, :dialogs) g, su;

-- The measured user joins the first :mine dialogs.
UPDATE dialogs SET occupants_ids = occupants_ids || :uid::BIGINT
WHERE id <= 'd' || lpad(to_hex(:mine), 23, '0') AND application_id = :app AND NOT (:uid = ANY(occupants_ids));

INSERT INTO dialog_members (dialog_id, user_id, sort_at)
SELECT d.id, u, extract(epoch FROM d.created_at)::BIGINT FROM dialogs d, unnest(d.occupants_ids) u WHERE d.application_id = :app
ON CONFLICT DO NOTHING;

-- One big dialog (the first) and :busy dialogs of :per messages each.
INSERT INTO messages (id, application_id, dialog_id, seq, sender_id, body, date_sent, read_ids, delivered_ids, created_at, updated_at)
SELECT 'e' || lpad(to_hex(s), 23, '0'), :app, d.id, s, d.occupants_ids[1 + s % cardinality(d.occupants_ids)],
       'message ' || substr(md5(s::TEXT), 1, 12) || ' about topic' || (s % 1000), 1700000000 + s,
       ARRAY[d.occupants_ids[1 + s % cardinality(d.occupants_ids)]], ARRAY[d.occupants_ids[1 + s % cardinality(d.occupants_ids)]],
       now(), now()
FROM dialogs d, generate_series(1, :big) s WHERE d.id = 'd' || lpad(to_hex(1), 23, '0');

INSERT INTO messages (id, application_id, dialog_id, seq, sender_id, body, date_sent, read_ids, delivered_ids, created_at, updated_at)
SELECT 'f' || lpad(to_hex(g * 1000 + s), 23, '0'), :app, d.id, s, d.occupants_ids[1 + s % cardinality(d.occupants_ids)],
       'note ' || substr(md5((g * 1000 + s)::TEXT), 1, 12) || ' on subject' || ((g * 31 + s) % 5000), 1700000000 + g * 10 + s,
       ARRAY[d.occupants_ids[1 + s % cardinality(d.occupants_ids)]], ARRAY[d.occupants_ids[1 + s % cardinality(d.occupants_ids)]],
       now(), now()
FROM generate_series(2, :busy + 1) g JOIN dialogs d ON d.id = 'd' || lpad(to_hex(g), 23, '0'), generate_series(1, :per) s;

-- Dialog counters and last messages, then the inbox rows that depend on them.
UPDATE dialogs d SET message_seq = x.n, message_count = x.n, last_message_id = l.id, last_message = l.body,
       last_message_user_id = l.sender_id, last_message_date_sent = l.date_sent
FROM (SELECT dialog_id, count(*) AS n, max(seq) AS top FROM messages GROUP BY dialog_id) x
JOIN messages l ON l.dialog_id = x.dialog_id AND l.seq = x.top
WHERE d.id = x.dialog_id;

UPDATE dialog_members m SET sort_at = d.last_message_date_sent, unread_count = (d.message_count / 2)::INT
FROM dialogs d WHERE d.id = m.dialog_id AND d.last_message_date_sent IS NOT NULL;
COMMIT;
ANALYZE;
