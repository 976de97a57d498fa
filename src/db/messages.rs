//! The `messages` and `message_reactions` tables, and the inbox updates each message write
//! implies. Functions run inside the caller's transaction.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::model::dialog::FilterValue;
use crate::model::filter::FilterOp;
use crate::model::message::{Message, MessageField, MessageFilter, MessageQuery, MessageView};
use crate::model::{ObjectId, UserId};

use super::filter::{like_escape, refs, scalar, Param};
use super::{Cached, Tx};

pub(super) const COLUMNS: &str = "m.id, m.dialog_id, m.seq, m.sender_id, m.recipient_id, m.body, m.attachments, m.custom, \
     m.markable, m.date_sent, m.read_ids, m.delivered_ids, m.views_count, m.edited_at, m.created_at, m.updated_at";
const NCOL: usize = 16;

fn oid(s: String) -> ObjectId {
    // The table's CHECK constraint guarantees 24 hex digits.
    s.parse().unwrap_or_else(|_| ObjectId::generate(0))
}

pub(super) fn from_row(r: &Row) -> Message {
    Message {
        id: oid(r.get(0)),
        dialog_id: oid(r.get(1)),
        seq: r.get(2),
        sender_id: r.get(3),
        recipient_id: r.get(4),
        body: r.get(5),
        attachments: r.get(6),
        custom: match r.get::<_, Value>(7) {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        markable: r.get(8),
        date_sent: r.get(9),
        read_ids: r.get(10),
        delivered_ids: r.get(11),
        views_count: r.get(12),
        edited_at: r.get(13),
        created_at: r.get(14),
        updated_at: r.get(15),
    }
}

/// Which of `ids` are messages of the dialog.
pub async fn existing_in_dialog(
    tx: &Tx<'_>,
    dialog: &ObjectId,
    ids: &[String],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = tx
        .q(
            "SELECT id FROM messages WHERE dialog_id = $1 AND id = ANY($2)",
            &[&dialog.as_str(), &ids],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub async fn get(tx: &Tx<'_>, id: &ObjectId) -> Result<Option<Message>, tokio_postgres::Error> {
    let row = tx
        .q01(
            &format!("SELECT {COLUMNS} FROM messages m WHERE m.id = $1"),
            &[&id.as_str()],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// A new message, not yet numbered.
pub struct NewMessage<'a> {
    pub id: &'a ObjectId,
    pub app: i64,
    pub dialog: &'a ObjectId,
    pub sender: UserId,
    pub recipient_id: i64,
    pub body: Option<&'a str>,
    pub attachments: &'a Value,
    pub custom: &'a Value,
    pub markable: bool,
    pub date_sent: i64,
}

/// Stores a batch of messages with one statement and updates, in the same statement, each
/// dialog's last message and counters (numbering its messages in batch order), every other
/// member's unread count (bringing hidden dialogs back) and every member's sort key. Set-based,
/// so a batch costs one round trip however many messages and dialogs it holds; the caller holds
/// the dialogs' row locks. A message whose id is already taken is skipped (`None` in its place:
/// the caller tells a resend from a clash); the others are returned in the order given.
pub async fn insert_many(
    tx: &Tx<'_>,
    batch: &[NewMessage<'_>],
    now: OffsetDateTime,
) -> Result<Vec<Option<Message>>, tokio_postgres::Error> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = batch.iter().map(|m| m.id.as_str()).collect();
    let apps: Vec<i64> = batch.iter().map(|m| m.app).collect();
    let dialogs: Vec<&str> = batch.iter().map(|m| m.dialog.as_str()).collect();
    let senders: Vec<i64> = batch.iter().map(|m| m.sender.0).collect();
    let recipients: Vec<i64> = batch.iter().map(|m| m.recipient_id).collect();
    let bodies: Vec<Option<&str>> = batch.iter().map(|m| m.body).collect();
    let attachments: Vec<&Value> = batch.iter().map(|m| m.attachments).collect();
    let customs: Vec<&Value> = batch.iter().map(|m| m.custom).collect();
    let markable: Vec<bool> = batch.iter().map(|m| m.markable).collect();
    let dates: Vec<i64> = batch.iter().map(|m| m.date_sent).collect();
    let rows = tx
        .q(
            "WITH b AS (
                     SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[],
                                          $6::TEXT[], $7::JSONB[], $8::JSONB[], $9::BOOLEAN[], $10::BIGINT[])
                         WITH ORDINALITY AS u(id, app, dialog_id, sender_id, recipient_id, body, attachments,
                                              custom, markable, date_sent, ord)
                     WHERE NOT EXISTS (SELECT 1 FROM messages x WHERE x.id = u.id)
                 ), last AS (
                     SELECT DISTINCT ON (dialog_id) dialog_id, id, body, sender_id, date_sent,
                            count(*) OVER (PARTITION BY dialog_id) AS n
                     FROM b ORDER BY dialog_id, ord DESC
                 ), d AS (
                     UPDATE dialogs SET message_seq = dialogs.message_seq + l.n,
                         message_count = dialogs.message_count + l.n,
                         last_message_id = l.id, last_message = l.body, last_message_user_id = l.sender_id,
                         last_message_date_sent = l.date_sent, updated_at = $11
                     FROM last l WHERE dialogs.id = l.dialog_id
                     RETURNING dialogs.id, dialogs.message_seq - l.n AS base
                 ), inbox AS (
                     UPDATE dialog_members dm SET
                         unread_count = dm.unread_count + (l.n - (
                             SELECT count(*) FROM b WHERE b.dialog_id = dm.dialog_id AND b.sender_id = dm.user_id
                         ))::INTEGER,
                         hidden = FALSE, sort_at = l.date_sent
                     FROM last l WHERE dm.dialog_id = l.dialog_id
                 )
                 INSERT INTO messages AS m (id, application_id, dialog_id, seq, sender_id, recipient_id, body,
                     attachments, custom, markable, date_sent, read_ids, delivered_ids, created_at, updated_at)
                 SELECT b.id, b.app, b.dialog_id, d.base + row_number() OVER (PARTITION BY b.dialog_id ORDER BY b.ord),
                        b.sender_id, b.recipient_id, b.body, b.attachments, b.custom, b.markable, b.date_sent,
                        ARRAY[b.sender_id], ARRAY[b.sender_id], $11, $11
                 FROM b JOIN d ON d.id = b.dialog_id
                 RETURNING m.id, m.seq",
            &[
                &ids,
                &apps,
                &dialogs,
                &senders,
                &recipients,
                &bodies,
                &attachments,
                &customs,
                &markable,
                &dates,
                &now,
            ],
        )
        .await?;
    // Only the numbers come back: the rest of each row is what was sent.
    let seqs: std::collections::HashMap<String, i64> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok(batch
        .iter()
        .map(|m| {
            seqs.get(m.id.as_str()).map(|&seq| Message {
                id: m.id.clone(),
                dialog_id: m.dialog.clone(),
                seq,
                sender_id: m.sender.0,
                recipient_id: m.recipient_id,
                body: m.body.map(str::to_owned),
                attachments: m.attachments.clone(),
                custom: match m.custom {
                    Value::Object(c) => c.clone(),
                    _ => Map::new(),
                },
                markable: m.markable,
                date_sent: m.date_sent,
                read_ids: vec![m.sender.0],
                delivered_ids: vec![m.sender.0],
                views_count: 0,
                edited_at: None,
                created_at: now,
                updated_at: now,
            })
        })
        .collect())
}

/// The condition "this message counts as unread for member `u`" given the inbox row `dm`.
const COUNTS_UNREAD: &str =
    "m.sender_id <> dm.user_id AND m.seq > GREATEST(dm.joined_seq, dm.cleared_seq)
     AND NOT (dm.user_id = ANY(m.read_ids)) AND NOT (dm.user_id = ANY(m.hidden_for))";

/// Marks messages read (and delivered) by `user`, decrementing their unread count by the number
/// that counted; with `ids: None`, every message of the dialog. Returns (message, sender) newly read.
pub async fn mark_read(
    tx: &Tx<'_>,
    dialog: &ObjectId,
    user: UserId,
    ids: Option<&[String]>,
    now: OffsetDateTime,
) -> Result<Vec<(ObjectId, i64)>, tokio_postgres::Error> {
    let rows = tx
        .q(
            &format!(
                "WITH target AS (
                     SELECT m.id, m.sender_id, EXISTS (
                         SELECT 1 FROM dialog_members dm WHERE dm.dialog_id = m.dialog_id AND dm.user_id = $2 AND {COUNTS_UNREAD}
                     ) AS counted
                     FROM messages m
                     WHERE m.dialog_id = $1 AND ($3::TEXT[] IS NULL OR m.id = ANY($3))
                       AND m.sender_id <> $2 AND NOT ($2 = ANY(m.read_ids))
                     FOR UPDATE
                 ), upd AS (
                     UPDATE messages m SET read_ids = array_append(m.read_ids, $2),
                         delivered_ids = CASE WHEN $2 = ANY(m.delivered_ids) THEN m.delivered_ids ELSE array_append(m.delivered_ids, $2) END,
                         updated_at = $4
                     FROM target t WHERE m.id = t.id
                     RETURNING m.id, t.sender_id, t.counted
                 )
                 SELECT id, sender_id, counted FROM upd"
            ),
            &[&dialog.as_str(), &user.0, &ids.map(<[String]>::to_vec), &now],
        )
        .await?;
    let counted = rows.iter().filter(|r| r.get::<_, bool>(2)).count() as i32;
    if counted > 0 {
        tx.x(
            "UPDATE dialog_members SET unread_count = GREATEST(unread_count - $3, 0) WHERE dialog_id = $1 AND user_id = $2",
            &[&dialog.as_str(), &user.0, &counted],
        )
        .await?;
    }
    Ok(rows.iter().map(|r| (oid(r.get(0)), r.get(1))).collect())
}

/// Marks messages delivered to `user`. Returns (message, sender) newly delivered.
pub async fn mark_delivered(
    tx: &Tx<'_>,
    dialog: &ObjectId,
    user: UserId,
    ids: Option<&[String]>,
    now: OffsetDateTime,
) -> Result<Vec<(ObjectId, i64)>, tokio_postgres::Error> {
    let rows = tx
        .q(
            "UPDATE messages m SET delivered_ids = array_append(m.delivered_ids, $2), updated_at = $4
             WHERE m.dialog_id = $1 AND ($3::TEXT[] IS NULL OR m.id = ANY($3))
               AND m.sender_id <> $2 AND NOT ($2 = ANY(m.delivered_ids))
             RETURNING m.id, m.sender_id",
            &[&dialog.as_str(), &user.0, &ids.map(<[String]>::to_vec), &now],
        )
        .await?;
    Ok(rows.iter().map(|r| (oid(r.get(0)), r.get(1))).collect())
}

/// Replaces a message body (and the dialog's last message text when it is the last one).
pub async fn edit(
    tx: &Tx<'_>,
    id: &ObjectId,
    body: &str,
    now: OffsetDateTime,
) -> Result<(), tokio_postgres::Error> {
    tx.x(
        "UPDATE messages SET body = $2, edited_at = $3, updated_at = $3 WHERE id = $1",
        &[&id.as_str(), &body, &now],
    )
    .await?;
    tx.x(
        "UPDATE dialogs SET last_message = $2 WHERE last_message_id = $1",
        &[&id.as_str(), &body],
    )
    .await?;
    Ok(())
}

/// Dialogs (at most `limit`) with a message that carries the blob `uid` as an attachment and
/// that `user` has not deleted for themselves. A message deleted for everyone is gone, and with
/// it what it shared. Read through the partial GIN index `messages_attachments`.
pub async fn dialogs_with_attachment(
    tx: &Tx<'_>,
    app: i64,
    user: UserId,
    uid: &str,
    limit: i64,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let probe = serde_json::json!([{ "uid": uid }]);
    let rows = tx
        .q(
            "SELECT DISTINCT m.dialog_id FROM messages m
             WHERE m.application_id = $1 AND m.attachments <> '[]'::jsonb AND m.attachments @> $2
               AND NOT ($3 = ANY(m.hidden_for))
             LIMIT $4",
            &[&app, &probe, &user.0, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Did `user` delete this message for themselves?
pub async fn is_hidden_for(
    tx: &Tx<'_>,
    m: &Message,
    user: UserId,
) -> Result<bool, tokio_postgres::Error> {
    Ok(tx
        .q1(
            "SELECT $2 = ANY(hidden_for) FROM messages WHERE id = $1",
            &[&m.id.as_str(), &user.0],
        )
        .await?
        .get(0))
}

/// Hides a message from one user's history, fixing their unread count if it counted.
pub async fn hide_for(tx: &Tx<'_>, m: &Message, user: UserId) -> Result<(), tokio_postgres::Error> {
    tx.x(
        &format!(
            "UPDATE dialog_members dm SET unread_count = GREATEST(unread_count - 1, 0)
             FROM messages m WHERE m.id = $1 AND dm.dialog_id = m.dialog_id AND dm.user_id = $2 AND {COUNTS_UNREAD}"
        ),
        &[&m.id.as_str(), &user.0],
    )
    .await?;
    tx.x(
        "UPDATE messages SET hidden_for = array_append(hidden_for, $2) WHERE id = $1",
        &[&m.id.as_str(), &user.0],
    )
    .await?;
    Ok(())
}

/// Deletes a message for everyone: fixes the unread count of every member it counted for, the
/// dialog's message count, and its last message when this was it.
pub async fn delete(tx: &Tx<'_>, m: &Message) -> Result<(), tokio_postgres::Error> {
    tx.x(
        &format!(
            "UPDATE dialog_members dm SET unread_count = GREATEST(unread_count - 1, 0)
             FROM messages m WHERE m.id = $1 AND dm.dialog_id = m.dialog_id AND {COUNTS_UNREAD}"
        ),
        &[&m.id.as_str()],
    )
    .await?;
    tx.x("DELETE FROM messages WHERE id = $1", &[&m.id.as_str()])
        .await?;
    tx.x(
        "UPDATE dialogs SET message_count = GREATEST(message_count - 1, 0),
             pinned_messages_ids = array_remove(pinned_messages_ids, $2)
         WHERE id = $1",
        &[&m.dialog_id.as_str(), &m.id.as_str()],
    )
    .await?;
    // When the last message goes, the one before it becomes the last (none: all NULL).
    tx.x(
        "UPDATE dialogs d SET (last_message_id, last_message, last_message_user_id, last_message_date_sent) = (
             SELECT l.id, l.body, l.sender_id, l.date_sent FROM messages l WHERE l.dialog_id = d.id ORDER BY l.seq DESC LIMIT 1)
         WHERE d.id = $1 AND d.last_message_id = $2",
        &[&m.dialog_id.as_str(), &m.id.as_str()],
    )
    .await?;
    Ok(())
}

fn column(f: MessageField) -> &'static str {
    match f {
        MessageField::Id => "m.id",
        MessageField::Body => "m.body",
        MessageField::DateSent => "m.date_sent",
        MessageField::SenderId => "m.sender_id",
        MessageField::RecipientId => "m.recipient_id",
        MessageField::AttachmentsType => "m.attachments",
        MessageField::UpdatedAt => "date_trunc('second', m.updated_at)",
    }
}

fn condition(f: &MessageFilter, params: &mut Vec<Param>) -> String {
    let col = column(f.field);
    if f.field == MessageField::AttachmentsType {
        let types = match &f.value {
            FilterValue::Texts(t) => t.clone(),
            _ => Vec::new(),
        };
        params.push(Box::new(types));
        let n = params.len();
        let any = format!("EXISTS (SELECT 1 FROM jsonb_array_elements(m.attachments) a WHERE a->>'type' = ANY(${n}))");
        return match f.op {
            FilterOp::Nin | FilterOp::Ne => format!("NOT {any}"),
            FilterOp::All => format!(
                "(SELECT count(DISTINCT a->>'type') FROM jsonb_array_elements(m.attachments) a WHERE a->>'type' = ANY(${n})) = cardinality(${n})"
            ),
            _ => any,
        };
    }
    scalar(col, f.op, &f.value, "LIKE", params)
}

const REACTIONS: &str = "(SELECT COALESCE(array_agg(r.reaction ORDER BY r.reaction), '{}') FROM message_reactions r
        WHERE r.message_id = m.id AND r.user_id = $2),
     (SELECT jsonb_object_agg(t.reaction, t.n) FROM (SELECT reaction, count(*) AS n FROM message_reactions r
        WHERE r.message_id = m.id GROUP BY reaction) t)";

fn view_from_row(r: &Row) -> MessageView {
    MessageView {
        message: from_row(r),
        own_reactions: r.get(NCOL),
        reaction_totals: match r.get::<_, Option<Value>>(NCOL + 1) {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        },
    }
}

/// One page of a dialog's history as `user` sees it (nothing they deleted or cleared).
pub async fn history(
    tx: &Tx<'_>,
    dialog: &ObjectId,
    user: UserId,
    cleared_seq: i64,
    q: &MessageQuery,
) -> Result<Vec<MessageView>, tokio_postgres::Error> {
    let mut params: Vec<Param> = vec![
        Box::new(dialog.as_str().to_string()),
        Box::new(user.0),
        Box::new(cleared_seq),
    ];
    let mut conds = vec![
        "m.dialog_id = $1".to_string(),
        "m.seq > $3".to_string(),
        "NOT ($2 = ANY(m.hidden_for))".to_string(),
    ];
    for f in &q.filters {
        conds.push(condition(f, &mut params));
    }
    let dir = q.sort.sql();
    let n = params.len();
    params.push(Box::new(q.limit));
    params.push(Box::new(q.skip));
    let sql = format!(
        "SELECT {COLUMNS}, {REACTIONS} FROM messages m WHERE {} ORDER BY m.date_sent {dir}, m.seq {dir} LIMIT ${} OFFSET ${}",
        conds.join(" AND "),
        n + 1,
        n + 2
    );
    // Cached only without filters: their combinations are the caller's to invent.
    let rows = if q.filters.is_empty() {
        tx.q(&sql, &refs(&params)).await?
    } else {
        tx.dq(&sql, &refs(&params)).await?
    };
    Ok(rows.iter().map(view_from_row).collect())
}

/// The message with reactions as `user` sees them.
pub async fn view(
    tx: &Tx<'_>,
    id: &ObjectId,
    user: UserId,
) -> Result<Option<MessageView>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLUMNS}, {REACTIONS} FROM messages m WHERE m.id = $1");
    Ok(tx
        .q01(&sql, &[&id.as_str(), &user.0])
        .await?
        .as_ref()
        .map(view_from_row))
}

/// Unread counts of the user's dialogs: the requested ones (or all) and the total.
pub async fn unread(
    tx: &Tx<'_>,
    user: UserId,
) -> Result<Vec<(String, i32)>, tokio_postgres::Error> {
    // From the inbox index alone (it includes unread_count); a user's rows are all in their app.
    let rows = tx
        .q("SELECT dm.dialog_id, dm.unread_count FROM dialog_members dm WHERE dm.user_id = $1 AND NOT dm.hidden", &[&user.0])
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Sets the user's one reaction on a message (replacing another), or removes it.
pub async fn react(
    tx: &Tx<'_>,
    message: &ObjectId,
    user: UserId,
    add: Option<&str>,
    remove: Option<&str>,
    now: OffsetDateTime,
) -> Result<(), tokio_postgres::Error> {
    if let Some(r) = remove {
        tx.x(
            "DELETE FROM message_reactions WHERE message_id = $1 AND user_id = $2 AND reaction = $3",
            &[&message.as_str(), &user.0, &r],
        )
        .await?;
    }
    if let Some(a) = add {
        tx.x(
            "INSERT INTO message_reactions (message_id, user_id, reaction, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (message_id, user_id) DO UPDATE SET reaction = EXCLUDED.reaction, created_at = EXCLUDED.created_at",
            &[&message.as_str(), &user.0, &a, &now],
        )
        .await?;
    }
    Ok(())
}

/// Who reacted how: reaction → user ids.
pub async fn reactions(
    tx: &Tx<'_>,
    message: &ObjectId,
) -> Result<Vec<(String, Vec<i64>)>, tokio_postgres::Error> {
    let rows = tx
        .q(
            "SELECT reaction, array_agg(user_id ORDER BY created_at, user_id) FROM message_reactions
             WHERE message_id = $1 GROUP BY reaction ORDER BY min(created_at), reaction",
            &[&message.as_str()],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Case-sensitive substring search over the bodies of messages the user can see (trigram
/// index), optionally within some dialogs and a `date_sent` window; newest first.
pub async fn search(
    tx: &Tx<'_>,
    app: i64,
    user: UserId,
    text: &str,
    dialogs: Option<&[String]>,
    window: Option<(i64, i64)>,
    limit: i64,
) -> Result<Vec<MessageView>, tokio_postgres::Error> {
    let pattern = format!("%{}%", like_escape(text));
    // A cached statement would drift to a generic plan that cannot see the pattern and so
    // cannot cost the trigram index; plan this query for its actual pattern every time.
    tx.batch_execute("SET LOCAL plan_cache_mode = force_custom_plan")
        .await?;
    let (from, to) = window.unwrap_or((i64::MIN, i64::MAX));
    let sql = format!(
        "SELECT {COLUMNS}, {REACTIONS} FROM messages m
         JOIN dialog_members dm ON dm.dialog_id = m.dialog_id AND dm.user_id = $2
         WHERE m.application_id = $1 AND m.body LIKE $3 AND m.seq > dm.cleared_seq AND NOT ($2 = ANY(m.hidden_for))
           AND ($4::TEXT[] IS NULL OR m.dialog_id = ANY($4)) AND m.date_sent BETWEEN $5 AND $6
         ORDER BY m.date_sent DESC, m.seq DESC LIMIT $7"
    );
    let rows = tx
        .q(
            &sql,
            &[
                &app,
                &user.0,
                &pattern,
                &dialogs.map(<[String]>::to_vec),
                &from,
                &to,
                &limit,
            ],
        )
        .await?;
    Ok(rows.iter().map(view_from_row).collect())
}
