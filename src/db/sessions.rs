//! The `sessions` and `session_nonces` tables. Tokens arrive here only as SHA-256 hashes.

use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{Cached, DbError, DbPool};
use crate::model::{AppId, Application, Session, SessionId, User, UserId};

const COLUMNS: &str =
    "s.id, s.application_id, s.user_id, s.nonce, s.ts, s.created_at, s.updated_at, s.expires_at";

fn from_row(r: &Row) -> Session {
    Session {
        id: SessionId(r.get(0)),
        application_id: AppId(r.get(1)),
        user_id: r.get::<_, Option<i64>>(2).map(UserId),
        nonce: r.get(3),
        ts: r.get(4),
        created_at: r.get(5),
        updated_at: r.get(6),
        expires_at: r.get(7),
    }
}

pub struct NewSession<'a> {
    pub app: AppId,
    pub user: Option<UserId>,
    pub token_hash: &'a [u8],
    pub nonce: Option<i64>,
    pub ts: i64,
    pub now: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

pub async fn insert(pool: &DbPool, s: &NewSession<'_>) -> Result<Session, DbError> {
    let c = pool.get().await?;
    let row = c
        .q1(
            &format!(
                "INSERT INTO sessions AS s (application_id, user_id, token_hash, nonce, ts, created_at, updated_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7) RETURNING {COLUMNS}"
            ),
            &[&s.app.0, &s.user.map(|u| u.0), &s.token_hash, &s.nonce, &s.ts, &s.now, &s.expires_at],
        )
        .await?;
    Ok(from_row(&row))
}

/// The live session for a token hash, with its application.
pub async fn live(
    pool: &DbPool,
    token_hash: &[u8],
    now: OffsetDateTime,
) -> Result<Option<(Session, Application, Option<User>)>, DbError> {
    let c = pool.get().await?;
    let sql = format!(
        "SELECT {COLUMNS}, a.id, a.name, a.auth_key, a.auth_secret, a.require_signature, a.session_creates_users,
                a.dialog_extensions, {}
         FROM sessions s JOIN applications a ON a.id = s.application_id LEFT JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = $1 AND s.expires_at > $2",
        super::users::columns_of("u")
    );
    let row = c.q01(&sql, &[&token_hash, &now]).await?;
    Ok(row.map(|r| {
        let app = Application {
            id: AppId(r.get(8)),
            name: r.get(9),
            auth_key: r.get(10),
            auth_secret: r.get(11),
            require_signature: r.get(12),
            session_creates_users: r.get(13),
            dialog_extensions: r.get(14),
        };
        let user = r
            .get::<_, Option<i64>>(15)
            .map(|_| super::users::user_at(&r, 15));
        (from_row(&r), app, user)
    }))
}

/// Is `token_hash` a live session of `user` in `app`? (The XMPP token login.) The application
/// is part of the question: a token of user U in application 1 must not open `U-2`.
pub async fn live_for_user(
    pool: &DbPool,
    token_hash: &[u8],
    app: AppId,
    user: UserId,
    now: OffsetDateTime,
) -> Result<bool, DbError> {
    let c = pool.get().await?;
    let row = c
        .q01(
            "SELECT 1 FROM sessions
             WHERE token_hash = $1 AND application_id = $2 AND user_id = $3 AND expires_at > $4",
            &[&token_hash, &app.0, &user.0, &now],
        )
        .await?;
    Ok(row.is_some())
}

pub async fn extend(
    pool: &DbPool,
    id: SessionId,
    now: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> Result<(), DbError> {
    let c = pool.get().await?;
    c.x(
        "UPDATE sessions SET expires_at = $2, updated_at = $3 WHERE id = $1",
        &[&id.0, &expires_at, &now],
    )
    .await?;
    Ok(())
}

/// Binds the session to a user (login) or back to the application only (logout).
pub async fn set_user(
    pool: &DbPool,
    id: SessionId,
    user: Option<UserId>,
    now: OffsetDateTime,
) -> Result<Option<Session>, DbError> {
    let c = pool.get().await?;
    let row = c
        .q01(
            &format!("UPDATE sessions AS s SET user_id = $2, updated_at = $3 WHERE id = $1 RETURNING {COLUMNS}"),
            &[&id.0, &user.map(|u| u.0), &now],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// A session goes back to being an application session (`DELETE /login`) and running servers
/// are told (`notice`, see [`super::notify`]), in one transaction.
pub async fn logout(
    pool: &DbPool,
    id: SessionId,
    now: OffsetDateTime,
    notice: &str,
) -> Result<(), DbError> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    tx.x(
        "UPDATE sessions SET user_id = NULL, updated_at = $2 WHERE id = $1",
        &[&id.0, &now],
    )
    .await?;
    super::notify::send(&tx, notice).await?;
    tx.commit().await?;
    Ok(())
}

/// Ends a session (`DELETE /session`); `notice`, when given, tells running servers in the same
/// transaction (an application session has no streams to close).
pub async fn delete(pool: &DbPool, id: SessionId, notice: Option<&str>) -> Result<(), DbError> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    tx.x("DELETE FROM sessions WHERE id = $1", &[&id.0]).await?;
    if let Some(n) = notice {
        super::notify::send(&tx, n).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Records a signed request's (timestamp, nonce); false when it was seen before.
pub async fn record_nonce(pool: &DbPool, app: AppId, ts: i64, nonce: i64) -> Result<bool, DbError> {
    let c = pool.get().await?;
    let n = c
        .x(
            "INSERT INTO session_nonces (application_id, ts, nonce) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&app.0, &ts, &nonce],
        )
        .await?;
    Ok(n == 1)
}

/// Deletes expired sessions and nonces too old to be accepted again.
pub async fn purge(
    pool: &DbPool,
    now: OffsetDateTime,
    nonce_before_ts: i64,
) -> Result<(u64, u64), DbError> {
    let c = pool.get().await?;
    let s = c
        .x("DELETE FROM sessions WHERE expires_at <= $1", &[&now])
        .await?;
    let n = c
        .x(
            "DELETE FROM session_nonces WHERE ts < $1",
            &[&nonce_before_ts],
        )
        .await?;
    Ok((s, n))
}

/// Ends every session of `user` and tells running servers (`notice`, see [`super::notify`]),
/// in one transaction; returns how many sessions ended.
pub async fn revoke_all(pool: &DbPool, user: UserId, notice: &str) -> Result<u64, DbError> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    let n = tx
        .x("DELETE FROM sessions WHERE user_id = $1", &[&user.0])
        .await?;
    super::notify::send(&tx, notice).await?;
    tx.commit().await?;
    Ok(n)
}
