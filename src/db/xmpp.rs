//! The `xmpp_offline` and `xmpp_last_activity` tables: stanzas kept for offline users (as
//! serialised XML text, oldest first, bounded per user) and the time each user was last seen.

use time::OffsetDateTime;

use super::{DbError, DbPool};
use crate::model::{AppId, UserId};

/// Stores a stanza unless the user already has `max` waiting; returns whether it was stored.
pub async fn offline_push(
    pool: &DbPool,
    app: AppId,
    user: UserId,
    stanza: &str,
    now: OffsetDateTime,
    max: i64,
) -> Result<bool, DbError> {
    let c = pool.get().await?;
    let n = c
        .execute(
            "INSERT INTO xmpp_offline (application_id, user_id, stanza, stored_at)
             SELECT $1, $2, $3, $4
             WHERE (SELECT count(*) FROM xmpp_offline WHERE application_id = $1 AND user_id = $2) < $5",
            &[&app.0, &user.0, &stanza, &now, &max],
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
        .query(
            "DELETE FROM xmpp_offline WHERE application_id = $1 AND user_id = $2
             RETURNING id, stanza, stored_at",
            &[&app.0, &user.0],
        )
        .await?;
    rows.sort_by_key(|r| r.get::<_, i64>(0));
    Ok(rows.iter().map(|r| (r.get(1), r.get(2))).collect())
}

/// Records that the user was last seen at `at`.
pub async fn last_seen_set(
    pool: &DbPool,
    app: AppId,
    user: UserId,
    at: OffsetDateTime,
) -> Result<(), DbError> {
    let c = pool.get().await?;
    c.execute(
        "INSERT INTO xmpp_last_activity (application_id, user_id, seen_at) VALUES ($1, $2, $3)
         ON CONFLICT (application_id, user_id) DO UPDATE SET seen_at = EXCLUDED.seen_at",
        &[&app.0, &user.0, &at],
    )
    .await?;
    Ok(())
}

pub async fn last_seen(
    pool: &DbPool,
    app: AppId,
    user: UserId,
) -> Result<Option<OffsetDateTime>, DbError> {
    let c = pool.get().await?;
    let row = c
        .query_opt(
            "SELECT seen_at FROM xmpp_last_activity WHERE application_id = $1 AND user_id = $2",
            &[&app.0, &user.0],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}
