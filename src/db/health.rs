//! Readiness of the store of record, as a service: what the `/readyz` probe holds instead of
//! the pool, so the REST adapter can ask "does the database answer?" and nothing else (no SQL
//! of its own, no connection to misuse).

use std::time::Duration;

use super::DbPool;

/// How long a readiness check waits for the database.
pub const READY_WITHIN: Duration = Duration::from_secs(2);

/// Why the server is not ready.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unready {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database did not answer within {} s", READY_WITHIN.as_secs())]
    TimedOut,
}

/// The readiness check: cheap to clone.
#[derive(Clone)]
pub struct Health {
    pool: DbPool,
}

impl Health {
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }

    /// Whether a pooled connection answers `SELECT 1` within [`READY_WITHIN`].
    pub async fn ready(&self) -> Result<(), Unready> {
        let check = async {
            let c = self
                .pool
                .get()
                .await
                .map_err(|e| Unready::Unavailable(e.to_string()))?;
            c.query_one("SELECT 1", &[])
                .await
                .map_err(|e| Unready::Unavailable(e.to_string()))?;
            Ok(())
        };
        tokio::time::timeout(READY_WITHIN, check)
            .await
            .unwrap_or(Err(Unready::TimedOut))
    }
}
