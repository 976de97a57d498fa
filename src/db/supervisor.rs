//! The embedded PostgreSQL's supervisor: watches the postmaster a running server owns and
//! starts it again when it dies (the OOM killer, a `kill -9`), with a bounded, logged backoff,
//! so Parley serves again without being restarted. Meanwhile the pool's connections fail (REST
//! 503, XMPP errors, `/readyz` 503) and are discarded; nothing is acknowledged that was not
//! stored. Knows nothing of Parley's schema; a server with `database.url` has no supervisor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{DbPool, Embedded};

/// How often the postmaster is looked at: its death is noticed within this (a read of
/// `postmaster.pid` and of `/proc`, no connection).
pub const POLL: Duration = Duration::from_millis(500);
/// The first wait after a failed restart; it doubles up to `database.restart_backoff_max_secs`.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The running watch; [`Supervisor::stop`] ends it before the server stops PostgreSQL itself.
pub struct Supervisor {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Starts watching `embedded`; `pool`'s idle connections to a dead server are dropped when
    /// its death is noticed, so no request is handed one. `on_death` runs at each death (the
    /// wiring counts them in a metric; this layer knows no metrics names).
    pub fn spawn(
        embedded: Arc<Embedded>,
        pool: DbPool,
        backoff_max: Duration,
        on_death: fn(),
    ) -> Self {
        let (stop, rx) = watch::channel(false);
        let backoff_max = backoff_max.max(FIRST_BACKOFF);
        let task = tokio::spawn(watch_postmaster(embedded, pool, backoff_max, on_death, rx));
        Supervisor { stop, task }
    }

    /// Ends the watch (waiting for a restart in progress to finish, so shutdown never races it).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn watch_postmaster(
    emb: Arc<Embedded>,
    pool: DbPool,
    backoff_max: Duration,
    on_death: fn(),
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => return,
        }
        if alive(&emb).await {
            continue;
        }
        let down_since = Instant::now();
        tracing::error!(
            pgdata = %emb.pgdata().display(),
            "the embedded PostgreSQL has died; restarting it (requests needing the database fail \
             with 503 meanwhile)"
        );
        on_death();
        // Idle connections to the dead server are of no use: drop them now rather than have each
        // one fail a request first.
        pool.retain(|c, _| !c.is_closed());
        let mut wait = FIRST_BACKOFF;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let e = emb.clone();
            match tokio::task::spawn_blocking(move || e.start()).await {
                Ok(Ok(_)) => {
                    tracing::warn!(
                        attempt,
                        down_ms = down_since.elapsed().as_millis() as u64,
                        "the embedded PostgreSQL is running again"
                    );
                    break;
                }
                Ok(Err(e)) => {
                    tracing::error!(attempt, retry_in = ?wait, error = %e, "restarting the embedded PostgreSQL failed")
                }
                Err(e) => {
                    tracing::error!(attempt, retry_in = ?wait, error = %e, "restarting the embedded PostgreSQL failed")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
            wait = (wait * 2).min(backoff_max);
        }
    }
}

/// Whether the postmaster runs (a blocking look at files, off the runtime's threads).
async fn alive(emb: &Arc<Embedded>) -> bool {
    let e = emb.clone();
    tokio::task::spawn_blocking(move || e.running_postmaster().is_some())
        .await
        // The look itself failed to run (the runtime is shutting down): do not act on it.
        .unwrap_or(true)
}
