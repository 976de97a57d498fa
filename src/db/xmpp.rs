//! The `xmpp_offline` and `xmpp_last_activity` tables: stanzas kept for offline users (as
//! serialised XML text, oldest first, bounded per user and per sender) and the time each user was last seen;
//! the roster; and the one-statement probe a login's initial presence starts with. Every
//! statement goes through the per-connection statement cache: logins run these at thousands per
//! second, and an unprepared statement costs PostgreSQL a parse and a plan each time.

use time::OffsetDateTime;

use super::cached::Cached;
use super::{DbError, DbPool};
use crate::model::{AppId, UserId, UserKey};

/// The bounds an offline store checks; `None` keeps the stanza regardless.
#[derive(Clone, Copy, Debug)]
pub struct OfflineBounds {
    /// Most messages waiting for the user (subscription requests not counted).
    pub per_user: i64,
    /// Most rows waiting for the user from one sender.
    pub per_sender: i64,
}

/// Why a stanza was not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfflineRefusal {
    UserFull,
    SenderFull,
}

/// Stores a message for `user` from `sender` (a bare JID) within `bounds`, counted in the same
/// statement. Concurrent stores may pass the counts together: the overshoot is at most the
/// number of stores in flight.
pub async fn offline_push(
    pool: &DbPool,
    app: AppId,
    user: UserId,
    sender: Option<&str>,
    stanza: &str,
    now: OffsetDateTime,
    bounds: Option<OfflineBounds>,
) -> Result<Result<(), OfflineRefusal>, DbError> {
    let (per_user, per_sender) =
        bounds.map_or((i64::MAX, i64::MAX), |b| (b.per_user, b.per_sender));
    let c = pool.get().await?;
    let r = c
        .q1(
            "WITH n AS (
               SELECT count(*) FILTER (WHERE NOT subscription) AS total,
                      count(*) FILTER (WHERE sender = $3) AS mine
               FROM xmpp_offline WHERE application_id = $1 AND user_id = $2
             ), ins AS (
               INSERT INTO xmpp_offline (application_id, user_id, sender, stanza, stored_at)
               SELECT $1, $2, $3, $4, $5 FROM n WHERE n.total < $6 AND n.mine < $7
               RETURNING 1
             )
             SELECT n.total < $6, n.mine < $7 FROM n",
            &[
                &app.0,
                &user.0,
                &sender,
                &stanza,
                &now,
                &per_user,
                &per_sender,
            ],
        )
        .await?;
    Ok(match (r.get::<_, bool>(0), r.get::<_, bool>(1)) {
        (false, _) => Err(OfflineRefusal::UserFull),
        (true, false) => Err(OfflineRefusal::SenderFull),
        (true, true) => Ok(()),
    })
}

/// Keeps a subscription request from `sender` for `user` unless one from the same sender
/// already waits or `max` requests wait in all; returns whether it was stored.
pub async fn offline_push_subscription(
    pool: &DbPool,
    app: AppId,
    user: UserId,
    sender: &str,
    stanza: &str,
    now: OffsetDateTime,
    max: i64,
) -> Result<bool, DbError> {
    let c = pool.get().await?;
    let n = c
        .x(
            "INSERT INTO xmpp_offline (application_id, user_id, sender, subscription, stanza, stored_at)
             SELECT $1, $2, $3, true, $4, $5
             FROM (SELECT count(*) AS waiting, count(*) FILTER (WHERE sender = $3) AS mine
                   FROM xmpp_offline
                   WHERE application_id = $1 AND user_id = $2 AND subscription) n
             WHERE n.waiting < $6 AND n.mine = 0",
            &[&app.0, &user.0, &sender, &stanza, &now, &max],
        )
        .await?;
    Ok(n == 1)
}

/// Removes and returns every stanza waiting for the user, oldest first.
pub async fn offline_take(
    pool: &DbPool,
    app: AppId,
    user: UserId,
) -> Result<Vec<(String, OffsetDateTime)>, DbError> {
    let c = pool.get().await?;
    let mut rows = c
        .q(
            "DELETE FROM xmpp_offline WHERE application_id = $1 AND user_id = $2
             RETURNING id, stanza, stored_at",
            &[&app.0, &user.0],
        )
        .await?;
    rows.sort_by_key(|r| r.get::<_, i64>(0));
    Ok(rows.iter().map(|r| (r.get(1), r.get(2))).collect())
}

/// What a user's initial presence needs to look up, probed in one statement (four index
/// probes, one round trip) so that the common login (no roster, no lists, nothing waiting)
/// reads nothing more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PresenceProbe {
    /// A roster item with a subscription in either direction.
    pub subscriptions: bool,
    /// A stanza waits in offline storage.
    pub offline: bool,
    /// A privacy list or a blocked JID exists.
    pub privacy: bool,
}

pub async fn presence_probe(
    pool: &DbPool,
    app: AppId,
    user: UserId,
) -> Result<PresenceProbe, DbError> {
    let c = pool.get().await?;
    let r = c
        .q1(
            "SELECT
               EXISTS (SELECT 1 FROM xmpp_roster WHERE application_id = $1 AND user_id = $2
                       AND subscription <> 'none'),
               EXISTS (SELECT 1 FROM xmpp_offline WHERE application_id = $1 AND user_id = $2),
               EXISTS (SELECT 1 FROM xmpp_privacy_lists WHERE application_id = $1 AND user_id = $2)
               OR EXISTS (SELECT 1 FROM xmpp_blocklist WHERE application_id = $1 AND user_id = $2)",
            &[&app.0, &user.0],
        )
        .await?;
    Ok(PresenceProbe {
        subscriptions: r.get(0),
        offline: r.get(1),
        privacy: r.get(2),
    })
}

/// Records that the user was last seen at `at`.
pub async fn last_seen_set(
    pool: &DbPool,
    app: AppId,
    user: UserId,
    at: OffsetDateTime,
) -> Result<(), DbError> {
    let c = pool.get().await?;
    c.x(
        "INSERT INTO xmpp_last_activity (application_id, user_id, seen_at) VALUES ($1, $2, $3)
         ON CONFLICT (application_id, user_id) DO UPDATE SET seen_at = EXCLUDED.seen_at",
        &[&app.0, &user.0, &at],
    )
    .await?;
    Ok(())
}

/// Most users one statement of [`last_seen_set_many`] records.
const LAST_SEEN_BATCH: usize = 1000;

/// Records that each of `users` was last seen at `at` (the users of a dead node): one statement
/// per [`LAST_SEEN_BATCH`] users, not one per user. In key order, so that the nodes recording
/// the same users at once take the rows' locks in the same order (they wait for each other
/// instead of deadlocking); duplicates are dropped (one statement may not update a row twice).
pub async fn last_seen_set_many(
    pool: &DbPool,
    users: &[UserKey],
    at: OffsetDateTime,
) -> Result<(), DbError> {
    let mut keys: Vec<(i64, i64)> = users.iter().map(|u| (u.app.0, u.user.0)).collect();
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return Ok(());
    }
    let c = pool.get().await?;
    for chunk in keys.chunks(LAST_SEEN_BATCH) {
        let (apps, ids): (Vec<i64>, Vec<i64>) = chunk.iter().copied().unzip();
        c.x(
            "INSERT INTO xmpp_last_activity (application_id, user_id, seen_at)
             SELECT a, u, $3::TIMESTAMPTZ FROM unnest($1::BIGINT[], $2::BIGINT[]) AS t(a, u)
             ORDER BY a, u
             ON CONFLICT (application_id, user_id) DO UPDATE SET seen_at = EXCLUDED.seen_at",
            &[&apps, &ids, &at],
        )
        .await?;
    }
    Ok(())
}

pub async fn last_seen(
    pool: &DbPool,
    app: AppId,
    user: UserId,
) -> Result<Option<OffsetDateTime>, DbError> {
    let c = pool.get().await?;
    let row = c
        .q01(
            "SELECT seen_at FROM xmpp_last_activity WHERE application_id = $1 AND user_id = $2",
            &[&app.0, &user.0],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// One roster row: a contact of a user, with RFC 6121 subscription state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterItem {
    /// The contact's bare JID.
    pub contact: String,
    pub name: Option<String>,
    /// `none`, `to`, `from` or `both`.
    pub subscription: String,
    /// An outbound subscription request is pending.
    pub ask: bool,
    pub groups: Vec<String>,
}

fn roster_row(r: &tokio_postgres::Row) -> RosterItem {
    RosterItem {
        contact: r.get(0),
        name: r.get(1),
        subscription: r.get(2),
        ask: r.get(3),
        groups: r.get(4),
    }
}

pub async fn roster_list(
    pool: &DbPool,
    app: AppId,
    user: UserId,
) -> Result<Vec<RosterItem>, DbError> {
    let c = pool.get().await?;
    let rows = c
        .q(
            "SELECT contact, name, subscription, ask, groups FROM xmpp_roster
             WHERE application_id = $1 AND user_id = $2 ORDER BY contact",
            &[&app.0, &user.0],
        )
        .await?;
    Ok(rows.iter().map(roster_row).collect())
}

pub async fn roster_get(
    pool: &DbPool,
    app: AppId,
    user: UserId,
    contact: &str,
) -> Result<Option<RosterItem>, DbError> {
    let c = pool.get().await?;
    let row = c
        .q01(
            "SELECT contact, name, subscription, ask, groups FROM xmpp_roster
             WHERE application_id = $1 AND user_id = $2 AND contact = $3",
            &[&app.0, &user.0, &contact],
        )
        .await?;
    Ok(row.as_ref().map(roster_row))
}

/// Creates or updates an item; a new item is added only while the user has fewer than `max`.
/// Returns false when the roster is full (nothing written).
pub async fn roster_put(
    pool: &DbPool,
    app: AppId,
    user: UserId,
    item: &RosterItem,
    max: i64,
) -> Result<bool, DbError> {
    let c = pool.get().await?;
    let n = c
        .x(
            "INSERT INTO xmpp_roster (application_id, user_id, contact, name, subscription, ask, groups)
             SELECT $1, $2, $3, $4, $5, $6, $7
             WHERE (SELECT count(*) FROM xmpp_roster WHERE application_id = $1 AND user_id = $2) < $8
                OR EXISTS (SELECT 1 FROM xmpp_roster
                           WHERE application_id = $1 AND user_id = $2 AND contact = $3)
             ON CONFLICT (application_id, user_id, contact) DO UPDATE
             SET name = EXCLUDED.name, subscription = EXCLUDED.subscription, ask = EXCLUDED.ask,
                 groups = EXCLUDED.groups",
            &[
                &app.0,
                &user.0,
                &item.contact,
                &item.name,
                &item.subscription,
                &item.ask,
                &item.groups,
                &max,
            ],
        )
        .await?;
    Ok(n == 1)
}

pub async fn roster_remove(
    pool: &DbPool,
    app: AppId,
    user: UserId,
    contact: &str,
) -> Result<bool, DbError> {
    let c = pool.get().await?;
    let n = c
        .x(
            "DELETE FROM xmpp_roster WHERE application_id = $1 AND user_id = $2 AND contact = $3",
            &[&app.0, &user.0, &contact],
        )
        .await?;
    Ok(n > 0)
}
