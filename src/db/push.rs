//! Push notifications and webhooks: `push_subscriptions`, `push_events`, `push_settings`, the
//! `push_outbox` and its `push_dead_letters`. The outbox is written inside the caller's
//! transaction (a chat alert commits with its message) and read by the delivery workers.

use serde_json::Value;
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{Cached, DbError, DbPool, Tx};
use crate::model::{AppId, UserId};

/// One device subscription.
#[derive(Clone, Debug, PartialEq)]
pub struct Subscription {
    pub id: i64,
    pub app: AppId,
    pub user: UserId,
    pub channel: String,
    pub environment: String,
    pub platform: String,
    pub udid: String,
    pub bundle_identifier: Option<String>,
    pub token: Option<String>,
    pub web_endpoint: Option<String>,
    pub web_auth: Option<String>,
    pub web_p256dh: Option<String>,
}

const SUB_COLUMNS: &str = "id, application_id, user_id, channel, environment, platform, udid, \
     bundle_identifier, token, web_endpoint, web_auth, web_p256dh";

fn subscription(r: &Row) -> Subscription {
    Subscription {
        id: r.get(0),
        app: AppId(r.get(1)),
        user: UserId(r.get(2)),
        channel: r.get(3),
        environment: r.get(4),
        platform: r.get(5),
        udid: r.get(6),
        bundle_identifier: r.get(7),
        token: r.get(8),
        web_endpoint: r.get(9),
        web_auth: r.get(10),
        web_p256dh: r.get(11),
    }
}

/// Creates the subscription, or replaces the token of the same device and channel. `None` when
/// the user already has `max` other subscriptions.
pub async fn upsert_subscription(
    pool: &DbPool,
    s: &Subscription,
    max: i64,
    now: OffsetDateTime,
) -> Result<Option<Subscription>, DbError> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    // Serialises one user's concurrent subscribes, so the cap holds.
    tx.x(
        "SELECT pg_advisory_xact_lock(7, hashtext($1::bigint::text))",
        &[&s.user.0],
    )
    .await?;
    let others: i64 = tx
        .q1(
            "SELECT count(*) FROM push_subscriptions
             WHERE user_id = $1 AND NOT (udid = $2 AND channel = $3)",
            &[&s.user.0, &s.udid, &s.channel],
        )
        .await?
        .get(0);
    if others >= max {
        return Ok(None);
    }
    let row = tx
        .q1(
            &format!(
                "INSERT INTO push_subscriptions (application_id, user_id, channel, environment,
                     platform, udid, bundle_identifier, token, web_endpoint, web_auth, web_p256dh,
                     created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
                 ON CONFLICT (user_id, udid, channel) DO UPDATE SET
                     environment = EXCLUDED.environment, platform = EXCLUDED.platform,
                     bundle_identifier = EXCLUDED.bundle_identifier, token = EXCLUDED.token,
                     web_endpoint = EXCLUDED.web_endpoint, web_auth = EXCLUDED.web_auth,
                     web_p256dh = EXCLUDED.web_p256dh, updated_at = EXCLUDED.updated_at
                 RETURNING {SUB_COLUMNS}"
            ),
            &[
                &s.app.0,
                &s.user.0,
                &s.channel,
                &s.environment,
                &s.platform,
                &s.udid,
                &s.bundle_identifier,
                &s.token,
                &s.web_endpoint,
                &s.web_auth,
                &s.web_p256dh,
                &now,
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(Some(subscription(&row)))
}

/// A user's subscriptions, oldest first.
pub async fn subscriptions_of(
    pool: &DbPool,
    app: AppId,
    user: UserId,
) -> Result<Vec<Subscription>, DbError> {
    let c = pool.get().await?;
    let rows = c
        .q(
            &format!(
                "SELECT {SUB_COLUMNS} FROM push_subscriptions
                 WHERE user_id = $1 AND application_id = $2 ORDER BY id"
            ),
            &[&user.0, &app.0],
        )
        .await?;
    Ok(rows.iter().map(subscription).collect())
}

/// One subscription by id (the worker's view: any application).
pub async fn subscription_by_id(pool: &DbPool, id: i64) -> Result<Option<Subscription>, DbError> {
    let c = pool.get().await?;
    let row = c
        .q01(
            &format!("SELECT {SUB_COLUMNS} FROM push_subscriptions WHERE id = $1"),
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(subscription))
}

/// Deletes one of the user's subscriptions; false when it is not theirs or does not exist.
pub async fn delete_subscription(
    pool: &DbPool,
    app: AppId,
    user: UserId,
    id: i64,
) -> Result<bool, DbError> {
    let c = pool.get().await?;
    Ok(c.x(
        "DELETE FROM push_subscriptions WHERE id = $1 AND user_id = $2 AND application_id = $3",
        &[&id, &user.0, &app.0],
    )
    .await?
        > 0)
}

/// Deletes a subscription the provider reported dead (only if its token is still `token`: the
/// device may have subscribed again with a fresh one meanwhile).
pub async fn delete_dead_subscription(
    pool: &DbPool,
    id: i64,
    token: &str,
) -> Result<bool, DbError> {
    let c = pool.get().await?;
    Ok(c.x(
        "DELETE FROM push_subscriptions
         WHERE id = $1 AND (token = $2 OR web_endpoint = $2)",
        &[&id, &token],
    )
    .await?
        > 0)
}

/// Who a `POST /events` reaches: users of `app` picked by one selector, at most `limit`.
#[derive(Clone, Debug)]
pub enum Selector {
    Ids(Vec<i64>),
    ExternalIds(Vec<i64>),
    Tags {
        any: Vec<String>,
        all: Vec<String>,
        exclude: Vec<String>,
    },
}

/// The ids of the users `sel` names, in id order, at most `limit` (plus one, so the caller can
/// tell "more than the limit").
pub async fn select_users(
    pool: &DbPool,
    app: AppId,
    sel: &Selector,
    limit: i64,
) -> Result<Vec<i64>, DbError> {
    let c = pool.get().await?;
    let over = limit.saturating_add(1);
    let rows = match sel {
        Selector::Ids(ids) => {
            c.q(
                "SELECT id FROM users WHERE application_id = $1 AND id = ANY($2)
                 ORDER BY id LIMIT $3",
                &[&app.0, ids, &over],
            )
            .await?
        }
        Selector::ExternalIds(ids) => {
            c.q(
                "SELECT id FROM users WHERE application_id = $1 AND external_user_id = ANY($2)
                 ORDER BY id LIMIT $3",
                &[&app.0, ids, &over],
            )
            .await?
        }
        Selector::Tags { any, all, exclude } => {
            c.q(
                "SELECT id FROM users WHERE application_id = $1
                   AND (cardinality($2::text[]) = 0 OR tags && $2)
                   AND tags @> $3 AND NOT (tags && $4)
                 ORDER BY id LIMIT $5",
                &[&app.0, any, all, exclude, &over],
            )
            .await?
        }
    };
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A stored `POST /events` event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: i64,
    pub app: AppId,
    pub user: Option<i64>,
    pub event_type: String,
    pub push_type: Option<String>,
    pub environment: String,
    pub message: String,
    pub name: Option<String>,
    pub tag_query: Option<String>,
    pub recipients: i32,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

const EVENT_COLUMNS: &str = "id, application_id, user_id, event_type, push_type, environment, \
     message, name, tag_query, recipients, created_at, updated_at";

fn event(r: &Row) -> Event {
    Event {
        id: r.get(0),
        app: AppId(r.get(1)),
        user: r.get(2),
        event_type: r.get(3),
        push_type: r.get(4),
        environment: r.get(5),
        message: r.get(6),
        name: r.get(7),
        tag_query: r.get(8),
        recipients: r.get(9),
        created_at: r.get(10),
        updated_at: r.get(11),
    }
}

/// Stores the event and, in the same transaction, one outbox row per matching device of
/// `users` (of the event's environment; of its `push_type` channel, or all channels).
pub async fn insert_event(
    pool: &DbPool,
    e: &Event,
    users: &[i64],
    payload: &Value,
    now: OffsetDateTime,
) -> Result<Event, DbError> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    let row = tx
        .q1(
            &format!(
                "INSERT INTO push_events (application_id, user_id, event_type, push_type,
                     environment, message, name, tag_query, recipients, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
                 RETURNING {EVENT_COLUMNS}"
            ),
            &[
                &e.app.0,
                &e.user,
                &e.event_type,
                &e.push_type,
                &e.environment,
                &e.message,
                &e.name,
                &e.tag_query,
                &e.recipients,
                &now,
            ],
        )
        .await?;
    let stored = event(&row);
    tx.x(
        "INSERT INTO push_outbox (application_id, kind, user_id, subscription_id, payload, next_at, created_at)
         SELECT s.application_id, 'event', s.user_id, s.id,
                $4::jsonb || jsonb_build_object('event_id', $5::bigint), $6, $6
         FROM push_subscriptions s
         WHERE s.user_id = ANY($1) AND s.application_id = $2 AND s.environment = $3
           AND ($7::text IS NULL OR s.channel = $7)",
        &[
            &users,
            &e.app.0,
            &e.environment,
            payload,
            &stored.id,
            &now,
            &e.push_type,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(stored)
}

pub async fn get_event(pool: &DbPool, app: AppId, id: i64) -> Result<Option<Event>, DbError> {
    let c = pool.get().await?;
    let row = c
        .q01(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM push_events WHERE id = $1 AND application_id = $2"
            ),
            &[&id, &app.0],
        )
        .await?;
    Ok(row.as_ref().map(event))
}

/// Deletes the event and its deliveries not yet made.
pub async fn delete_event(pool: &DbPool, app: AppId, id: i64) -> Result<bool, DbError> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    let n = tx
        .x(
            "DELETE FROM push_events WHERE id = $1 AND application_id = $2",
            &[&id, &app.0],
        )
        .await?;
    if n > 0 {
        tx.x(
            "DELETE FROM push_outbox WHERE kind = 'event' AND application_id = $1
               AND payload->>'event_id' = $2::bigint::text",
            &[&app.0, &id],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(n > 0)
}

/// An application's provider credentials, alert template and webhook.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    pub fcm_service_account: Option<Value>,
    pub apns_key: Option<String>,
    pub apns_key_id: Option<String>,
    pub apns_team_id: Option<String>,
    pub apns_topic: Option<String>,
    pub vapid_private_key: Option<String>,
    pub vapid_public_key: Option<String>,
    pub alert_template: Option<String>,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub webhook_events: Vec<String>,
}

pub async fn settings(pool: &DbPool, app: AppId) -> Result<Settings, DbError> {
    let c = pool.get().await?;
    let row = c
        .q01(
            "SELECT fcm_service_account, apns_key, apns_key_id, apns_team_id, apns_topic,
                    vapid_private_key, vapid_public_key, alert_template, webhook_url,
                    webhook_secret, webhook_events
             FROM push_settings WHERE application_id = $1",
            &[&app.0],
        )
        .await?;
    Ok(row
        .map(|r| Settings {
            fcm_service_account: r.get(0),
            apns_key: r.get(1),
            apns_key_id: r.get(2),
            apns_team_id: r.get(3),
            apns_topic: r.get(4),
            vapid_private_key: r.get(5),
            vapid_public_key: r.get(6),
            alert_template: r.get(7),
            webhook_url: r.get(8),
            webhook_secret: r.get(9),
            webhook_events: r.get(10),
        })
        .unwrap_or_default())
}

/// Writes every field of `s` for `app` (read, change, write: the operator's commands).
pub async fn save_settings(pool: &DbPool, app: AppId, s: &Settings) -> Result<(), DbError> {
    let c = pool.get().await?;
    c.x(
        "INSERT INTO push_settings (application_id, fcm_service_account, apns_key, apns_key_id,
             apns_team_id, apns_topic, vapid_private_key, vapid_public_key, alert_template,
             webhook_url, webhook_secret, webhook_events)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (application_id) DO UPDATE SET
             fcm_service_account = EXCLUDED.fcm_service_account, apns_key = EXCLUDED.apns_key,
             apns_key_id = EXCLUDED.apns_key_id, apns_team_id = EXCLUDED.apns_team_id,
             apns_topic = EXCLUDED.apns_topic, vapid_private_key = EXCLUDED.vapid_private_key,
             vapid_public_key = EXCLUDED.vapid_public_key, alert_template = EXCLUDED.alert_template,
             webhook_url = EXCLUDED.webhook_url, webhook_secret = EXCLUDED.webhook_secret,
             webhook_events = EXCLUDED.webhook_events",
        &[
            &app.0,
            &s.fcm_service_account,
            &s.apns_key,
            &s.apns_key_id,
            &s.apns_team_id,
            &s.apns_topic,
            &s.vapid_private_key,
            &s.vapid_public_key,
            &s.alert_template,
            &s.webhook_url,
            &s.webhook_secret,
            &s.webhook_events,
        ],
    )
    .await?;
    Ok(())
}

/// Whether the application has credentials for any push provider (an FCM service account, an
/// APNs key or a VAPID key): without one no chat alert of it could be delivered.
pub async fn has_push_credentials(
    c: &impl Cached,
    app: i64,
) -> Result<bool, tokio_postgres::Error> {
    Ok(c.q01(
        "SELECT fcm_service_account IS NOT NULL OR apns_key IS NOT NULL
                    OR vapid_private_key IS NOT NULL
             FROM push_settings WHERE application_id = $1",
        &[&app],
    )
    .await?
    .is_some_and(|r| r.try_get::<_, bool>(0).unwrap_or(false)))
}

/// One new chat message that may alert its recipients.
pub struct AlertRow<'a> {
    pub app: i64,
    pub message_id: &'a str,
    pub dialog_id: &'a str,
    pub dialog_name: Option<&'a str>,
    pub sender: i64,
    /// The alert's text: the body, or "attachment".
    pub text: &'a str,
    pub recipients: &'a [i64],
}

/// Enqueues chat alerts inside the message's transaction, with one statement for a whole batch:
/// one outbox row per subscribed device of each recipient who has notifications on for the
/// dialog. Whether the recipient is online and active is decided at delivery.
pub async fn enqueue_alerts(
    tx: &Tx<'_>,
    rows: &[AlertRow<'_>],
    now: OffsetDateTime,
) -> Result<u64, tokio_postgres::Error> {
    let n: usize = rows.iter().map(|r| r.recipients.len()).sum();
    if n == 0 {
        return Ok(0);
    }
    let (mut apps, mut ids, mut dialogs, mut names, mut senders, mut texts, mut users) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for r in rows {
        for u in r.recipients {
            apps.push(r.app);
            ids.push(r.message_id);
            dialogs.push(r.dialog_id);
            names.push(r.dialog_name);
            senders.push(r.sender);
            texts.push(r.text);
            users.push(*u);
        }
    }
    tx.x(
        "INSERT INTO push_outbox (application_id, kind, user_id, subscription_id, payload, next_at, created_at)
         SELECT r.app, 'alert', s.user_id, s.id,
                jsonb_build_object('message_id', r.message_id, 'dialog_id', r.dialog_id,
                    'dialog_name', r.dialog_name, 'sender_id', r.sender,
                    'sender_name', COALESCE(NULLIF(u.full_name, ''), u.login, u.email, r.sender::text),
                    'text', r.body),
                $8, $8
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::bigint[])
              AS r(app, message_id, dialog_id, dialog_name, sender, body, recipient)
         JOIN dialog_members m ON m.dialog_id = r.dialog_id AND m.user_id = r.recipient AND m.notifications
         JOIN push_subscriptions s ON s.user_id = r.recipient AND s.application_id = r.app
         LEFT JOIN users u ON u.id = r.sender",
        &[&apps, &ids, &dialogs, &names, &senders, &texts, &users, &now],
    )
    .await
}

/// Enqueues webhook calls for `event`, one per `(application, data)` whose application has a
/// webhook subscribed to it, with one statement (inside the caller's transaction).
pub async fn enqueue_webhooks(
    tx: &Tx<'_>,
    event: &str,
    items: &[(i64, Value)],
    now: OffsetDateTime,
) -> Result<u64, tokio_postgres::Error> {
    if items.is_empty() {
        return Ok(0);
    }
    let apps: Vec<i64> = items.iter().map(|(a, _)| *a).collect();
    let data: Vec<&Value> = items.iter().map(|(_, d)| d).collect();
    tx.x(
        "INSERT INTO push_outbox (application_id, kind, payload, next_at, created_at)
         SELECT p.application_id, 'webhook',
                jsonb_build_object('event', $3::text, 'application_id', p.application_id,
                                   'created_at', extract(epoch FROM $4::timestamptz)::bigint,
                                   'data', i.data),
                $4, $4
         FROM unnest($1::bigint[], $2::jsonb[]) AS i(app, data)
         JOIN push_settings p ON p.application_id = i.app
         WHERE p.webhook_url IS NOT NULL AND $3 = ANY(p.webhook_events)",
        &[&apps, &data, &event, &now],
    )
    .await
}

/// One outbox row, as a worker claimed it.
#[derive(Clone, Debug)]
pub struct OutboxRow {
    pub id: i64,
    pub app: AppId,
    pub kind: String,
    pub user: Option<i64>,
    pub subscription: Option<i64>,
    pub payload: Value,
    pub attempts: i32,
}

/// Claims up to `limit` due rows: their `next_at` moves to `lease_until`, so another worker
/// skips them, and they come back by themselves if this one dies before finishing them.
pub async fn claim(
    pool: &DbPool,
    now: OffsetDateTime,
    lease_until: OffsetDateTime,
    limit: i64,
) -> Result<Vec<OutboxRow>, DbError> {
    let c = pool.get().await?;
    let rows = c
        .q(
            "UPDATE push_outbox o SET next_at = $2
             FROM (SELECT id FROM push_outbox WHERE next_at <= $1 ORDER BY next_at
                   LIMIT $3 FOR UPDATE SKIP LOCKED) due
             WHERE o.id = due.id
             RETURNING o.id, o.application_id, o.kind, o.user_id, o.subscription_id, o.payload, o.attempts",
            &[&now, &lease_until, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| OutboxRow {
            id: r.get(0),
            app: AppId(r.get(1)),
            kind: r.get(2),
            user: r.get(3),
            subscription: r.get(4),
            payload: r.get(5),
            attempts: r.get(6),
        })
        .collect())
}

/// The row is done with (delivered, or nothing left to deliver).
pub async fn finish(pool: &DbPool, id: i64) -> Result<(), DbError> {
    let c = pool.get().await?;
    c.x("DELETE FROM push_outbox WHERE id = $1", &[&id]).await?;
    Ok(())
}

/// One more failed attempt: try again at `next_at`.
pub async fn retry_later(
    pool: &DbPool,
    id: i64,
    next_at: OffsetDateTime,
    error: &str,
) -> Result<(), DbError> {
    let c = pool.get().await?;
    c.x(
        "UPDATE push_outbox SET attempts = attempts + 1, next_at = $2, last_error = $3 WHERE id = $1",
        &[&id, &next_at, &error],
    )
    .await?;
    Ok(())
}

/// Moves the row to the dead-letter table, in one transaction.
pub async fn dead_letter(
    pool: &DbPool,
    id: i64,
    error: &str,
    now: OffsetDateTime,
) -> Result<(), DbError> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    tx.x(
        "WITH gone AS (DELETE FROM push_outbox WHERE id = $1 RETURNING *)
         INSERT INTO push_dead_letters (id, application_id, kind, user_id, subscription_id,
             payload, attempts, last_error, created_at, failed_at)
         SELECT id, application_id, kind, user_id, subscription_id, payload, attempts + 1, $2,
                created_at, $3
         FROM gone ON CONFLICT (id) DO NOTHING",
        &[&id, &error, &now],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A user's total unread count (the badge of a chat alert).
pub async fn total_unread(pool: &DbPool, user: i64) -> Result<i64, DbError> {
    let c = pool.get().await?;
    Ok(c.q1(
        "SELECT COALESCE(sum(unread_count), 0)::bigint FROM dialog_members WHERE user_id = $1",
        &[&user],
    )
    .await?
    .get(0))
}

/// Rows in the outbox and in the dead-letter table (the depth gauges).
pub async fn depth(pool: &DbPool) -> Result<(i64, i64), DbError> {
    let c = pool.get().await?;
    let row = c
        .q1(
            "SELECT (SELECT count(*) FROM push_outbox), (SELECT count(*) FROM push_dead_letters)",
            &[],
        )
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// Outbox and dead-letter sizes per application id, for operators.
pub async fn queue_counts(pool: &DbPool) -> Result<Vec<(i64, i64, i64)>, DbError> {
    let c = pool.get().await?;
    let rows = c
        .q(
            "SELECT a.id, COALESCE(o.n, 0), COALESCE(d.n, 0) FROM applications a
             LEFT JOIN (SELECT application_id, count(*) AS n FROM push_outbox
                        GROUP BY application_id) o ON o.application_id = a.id
             LEFT JOIN (SELECT application_id, count(*) AS n FROM push_dead_letters
                        GROUP BY application_id) d ON d.application_id = a.id
             ORDER BY a.id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}
