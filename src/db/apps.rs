//! The `applications` table.

use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{Cached, DbError, DbPool};
use crate::model::{AppId, Application};

const COLUMNS: &str =
    "id, name, auth_key, auth_secret, require_signature, session_creates_users, dialog_extensions";

fn from_row(r: &Row) -> Application {
    Application {
        id: AppId(r.get(0)),
        name: r.get(1),
        auth_key: r.get(2),
        auth_secret: r.get(3),
        require_signature: r.get(4),
        session_creates_users: r.get(5),
        dialog_extensions: r.get(6),
    }
}

/// Inserts an application; with `id: None` the database picks the next id.
pub async fn insert(
    pool: &DbPool,
    app: &Application,
    id: Option<AppId>,
    now: OffsetDateTime,
) -> Result<Application, DbError> {
    let c = pool.get().await?;
    let row = c
        .q1(
            &format!(
                "INSERT INTO applications (id, name, auth_key, auth_secret, require_signature, session_creates_users, dialog_extensions, created_at, updated_at)
                 VALUES (COALESCE($1, nextval(pg_get_serial_sequence('applications', 'id'))), $2, $3, $4, $5, $6, $8, $7, $7)
                 RETURNING {COLUMNS}"
            ),
            &[
                &id.map(|i| i.0),
                &app.name,
                &app.auth_key,
                &app.auth_secret,
                &app.require_signature,
                &app.session_creates_users,
                &now,
                &app.dialog_extensions,
            ],
        )
        .await?;
    bump_sequence(&c).await?;
    Ok(from_row(&row))
}

/// Creates the application or updates it to match `app` (configuration is the source of truth).
pub async fn upsert(
    pool: &DbPool,
    app: &Application,
    now: OffsetDateTime,
) -> Result<Application, DbError> {
    let c = pool.get().await?;
    let row = c
        .q1(
            &format!(
                "INSERT INTO applications (id, name, auth_key, auth_secret, require_signature, session_creates_users, dialog_extensions, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $8, $7, $7)
                 ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, auth_key = EXCLUDED.auth_key,
                     auth_secret = EXCLUDED.auth_secret, require_signature = EXCLUDED.require_signature,
                     session_creates_users = EXCLUDED.session_creates_users,
                     dialog_extensions = EXCLUDED.dialog_extensions, updated_at = EXCLUDED.updated_at
                 RETURNING {COLUMNS}"
            ),
            &[
                &app.id.0,
                &app.name,
                &app.auth_key,
                &app.auth_secret,
                &app.require_signature,
                &app.session_creates_users,
                &now,
                &app.dialog_extensions,
            ],
        )
        .await?;
    bump_sequence(&c).await?;
    Ok(from_row(&row))
}

/// Keeps generated ids above every explicitly chosen one.
async fn bump_sequence(c: &deadpool_postgres::Client) -> Result<(), DbError> {
    c.x(
        "SELECT setval(pg_get_serial_sequence('applications', 'id'), GREATEST((SELECT max(id) FROM applications), 1))",
        &[],
    )
    .await?;
    Ok(())
}

pub async fn get(pool: &DbPool, id: AppId) -> Result<Option<Application>, DbError> {
    let c = pool.get().await?;
    let row = c
        .q01(
            &format!("SELECT {COLUMNS} FROM applications WHERE id = $1"),
            &[&id.0],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

pub async fn by_auth_key(pool: &DbPool, auth_key: &str) -> Result<Option<Application>, DbError> {
    let c = pool.get().await?;
    let row = c
        .q01(
            &format!("SELECT {COLUMNS} FROM applications WHERE auth_key = $1"),
            &[&auth_key],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// Replaces the dialog extension fields an application allows.
pub async fn set_dialog_extensions(
    pool: &DbPool,
    id: AppId,
    fields: &[String],
    now: OffsetDateTime,
) -> Result<bool, DbError> {
    let c = pool.get().await?;
    let n = c
        .x(
            "UPDATE applications SET dialog_extensions = $2, updated_at = $3 WHERE id = $1",
            &[&id.0, &fields, &now],
        )
        .await?;
    Ok(n == 1)
}

pub async fn list(pool: &DbPool) -> Result<Vec<Application>, DbError> {
    let c = pool.get().await?;
    let rows = c
        .q(
            &format!("SELECT {COLUMNS} FROM applications ORDER BY id"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}
