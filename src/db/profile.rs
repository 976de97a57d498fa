//! SQL for what an XMPP account keeps besides its roster: the stored vCard and private XML
//! storage. Rows are keyed by user and checked against the application on every read.

use time::OffsetDateTime;

use super::{Cached, DbError, DbPool};
use crate::model::{AppId, UserId};

/// The vCard the user last set, as written by our serializer.
pub async fn vcard(pool: &DbPool, app: AppId, user: UserId) -> Result<Option<String>, DbError> {
    let c = pool.get().await?;
    Ok(c.q01(
        "SELECT vcard FROM xmpp_vcards WHERE user_id = $1 AND application_id = $2",
        &[&user.0, &app.0],
    )
    .await?
    .map(|r| r.get(0)))
}

pub async fn set_vcard(
    pool: &DbPool,
    app: AppId,
    user: UserId,
    vcard: &str,
    now: OffsetDateTime,
) -> Result<(), DbError> {
    let c = pool.get().await?;
    c.q(
        "INSERT INTO xmpp_vcards (user_id, application_id, vcard, updated_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id) DO UPDATE SET vcard = EXCLUDED.vcard, updated_at = EXCLUDED.updated_at \
         WHERE xmpp_vcards.application_id = EXCLUDED.application_id",
        &[&user.0, &app.0, &vcard, &now],
    )
    .await?;
    Ok(())
}

/// The element stored under (`name`, `ns`), if any.
pub async fn private_get(
    pool: &DbPool,
    app: AppId,
    user: UserId,
    name: &str,
    ns: &str,
) -> Result<Option<String>, DbError> {
    let c = pool.get().await?;
    Ok(c.q01(
        "SELECT element FROM xmpp_private \
         WHERE user_id = $1 AND application_id = $2 AND name = $3 AND ns = $4",
        &[&user.0, &app.0, &name, &ns],
    )
    .await?
    .map(|r| r.get(0)))
}

/// Stores `element` under (`name`, `ns`), replacing what was there. False (nothing stored) when
/// that would make more than `max_items` elements for the user.
pub async fn private_set(
    pool: &DbPool,
    app: AppId,
    user: UserId,
    name: &str,
    ns: &str,
    element: &str,
    max_items: i64,
) -> Result<bool, DbError> {
    let c = pool.get().await?;
    // One statement: the count and the write see the same rows, so concurrent sets of one
    // user cannot pass the bound together by more than the rows they replace.
    let n = c
        .q(
            "INSERT INTO xmpp_private (user_id, application_id, name, ns, element) \
             SELECT $1, $2, $3, $4, $5 \
             WHERE EXISTS (SELECT 1 FROM xmpp_private WHERE user_id = $1 AND name = $3 AND ns = $4) \
                OR (SELECT count(*) FROM xmpp_private WHERE user_id = $1) < $6 \
             ON CONFLICT (user_id, name, ns) DO UPDATE SET element = EXCLUDED.element \
             WHERE xmpp_private.application_id = EXCLUDED.application_id \
             RETURNING 1",
            &[&user.0, &app.0, &name, &ns, &element, &max_items],
        )
        .await?;
    Ok(!n.is_empty())
}
