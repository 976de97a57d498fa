//! Counts for operators (`parley stats`): whole tables, grouped by application in one pass each.
//! Exact counts scan their tables: fine for a command an operator runs, never for a request.

use super::{Cached, DbError, DbPool};

/// What one application (or all of them) holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub users: i64,
    pub banned_users: i64,
    pub live_sessions: i64,
    pub dialogs: i64,
    pub messages: i64,
}

/// Counts per application id (applications without rows included), in id order.
pub async fn per_app(
    pool: &DbPool,
    now: time::OffsetDateTime,
) -> Result<Vec<(i64, String, Counts)>, DbError> {
    let c = pool.get().await?;
    let rows = c
        .q(
            "SELECT a.id, a.name,
                    COALESCE(u.n, 0), COALESCE(u.banned, 0), COALESCE(s.n, 0),
                    COALESCE(d.n, 0), COALESCE(m.n, 0)
             FROM applications a
             LEFT JOIN (SELECT application_id, count(*) AS n, count(banned_at) AS banned
                        FROM users GROUP BY application_id) u ON u.application_id = a.id
             LEFT JOIN (SELECT application_id, count(*) AS n FROM sessions
                        WHERE user_id IS NOT NULL AND expires_at > $1
                        GROUP BY application_id) s ON s.application_id = a.id
             LEFT JOIN (SELECT application_id, count(*) AS n
                        FROM dialogs GROUP BY application_id) d ON d.application_id = a.id
             LEFT JOIN (SELECT application_id, count(*) AS n
                        FROM messages GROUP BY application_id) m ON m.application_id = a.id
             ORDER BY a.id",
            &[&now],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                Counts {
                    users: r.get(2),
                    banned_users: r.get(3),
                    live_sessions: r.get(4),
                    dialogs: r.get(5),
                    messages: r.get(6),
                },
            )
        })
        .collect())
}
