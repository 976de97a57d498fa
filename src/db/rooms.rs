//! The `muc_rooms` table: XEP-0045 settings of a room beyond its dialog (a standard room's
//! name, subject, persistence, subject permission, outcasts). Runs in the caller's transaction;
//! who may change what is decided in `chat`, not here.

use tokio_postgres::Row;

use super::{Cached, Tx};
use crate::model::room::RoomSettings;
use crate::model::{AppId, ObjectId};

const COLUMNS: &str = "name, subject, subject_by, persistent, change_subject, outcasts";

fn from_row(r: &Row) -> RoomSettings {
    RoomSettings {
        name: r.get(0),
        subject: r.get(1),
        subject_by: r.get(2),
        persistent: r.get(3),
        change_subject: r.get(4),
        outcasts: r.get(5),
    }
}

/// The dialog behind the standard room `name` (lower case) of an application.
pub async fn dialog_named(
    tx: &Tx<'_>,
    app: AppId,
    name: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = tx
        .q01(
            "SELECT dialog_id FROM muc_rooms WHERE application_id = $1 AND name = $2",
            &[&app.0, &name],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// A dialog's room settings; the defaults when none were ever stored.
pub async fn settings(
    tx: &Tx<'_>,
    dialog: &ObjectId,
    lock: bool,
) -> Result<RoomSettings, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM muc_rooms WHERE dialog_id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = tx.q01(&sql, &[&dialog.as_str()]).await?;
    Ok(row.as_ref().map(from_row).unwrap_or_default())
}

/// Stores a dialog's room settings (inserted or replaced; a stored name is never changed).
pub async fn save(
    tx: &Tx<'_>,
    app: AppId,
    dialog: &ObjectId,
    s: &RoomSettings,
) -> Result<(), tokio_postgres::Error> {
    tx.x(
        "INSERT INTO muc_rooms (dialog_id, application_id, name, subject, subject_by, persistent,
             change_subject, outcasts)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (dialog_id) DO UPDATE SET subject = EXCLUDED.subject,
             subject_by = EXCLUDED.subject_by, persistent = EXCLUDED.persistent,
             change_subject = EXCLUDED.change_subject, outcasts = EXCLUDED.outcasts",
        &[
            &dialog.as_str(),
            &app.0,
            &s.name,
            &s.subject,
            &s.subject_by,
            &s.persistent,
            &s.change_subject,
            &s.outcasts,
        ],
    )
    .await?;
    Ok(())
}

/// Names a new dialog's room. `false` when another dialog of the application holds the name
/// already (a concurrent creation won): the caller rolls back.
pub async fn insert_named(
    tx: &Tx<'_>,
    app: AppId,
    dialog: &ObjectId,
    s: &RoomSettings,
) -> Result<bool, tokio_postgres::Error> {
    let n = tx
        .x(
            "INSERT INTO muc_rooms (dialog_id, application_id, name, subject, subject_by,
                 persistent, change_subject, outcasts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            &[
                &dialog.as_str(),
                &app.0,
                &s.name,
                &s.subject,
                &s.subject_by,
                &s.persistent,
                &s.change_subject,
                &s.outcasts,
            ],
        )
        .await?;
    Ok(n == 1)
}
