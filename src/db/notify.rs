//! Notices between processes over PostgreSQL `LISTEN`/`NOTIFY`: whoever changes the database
//! (a REST request on any node, an operator command) tells every running server what it
//! revoked, so they close the live streams that rested on it. **Every revocation crosses here**
//! (a logout or `DELETE /session`, a password change, a kick, a ban, a deletion), not over the
//! cluster bus, because: the `NOTIFY` is sent inside the transaction that makes the change and
//! is delivered only if it commits (never a stream closed for a change that rolled back, never a
//! change without its notice); the database is the one thing every process shares, the operator
//! CLI (which joins no bus) and single nodes included; and it still works while NATS is down.
//! One path, so a new kind of revocation cannot reach some nodes and not others. The sending
//! process hears its own notice too and applies it again: it already closed the streams it
//! names, and a stream could only be caught by the second pass if it authenticated anew (with
//! the new password, or a new session) between the commit and the notice's delivery, which
//! takes milliseconds where a new XMPP login takes several round trips.
//!
//! The payload is opaque here (identity writes and reads it, see
//! `identity::Revocation::notice`). A notice is a nudge, not a record: one sent while a
//! server's listening connection is down is lost, and that server's streams resting on the
//! revoked sessions stay open until they end (the sessions themselves are already gone, so no new
//! one opens with them).

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, NoTls};

use super::Cached;

/// Revocations: sessions ended (by their user or an operator), passwords changed, accounts
/// banned or deleted.
pub const REVOKE_CHANNEL: &str = "parley_revoke";

/// First wait before opening a dropped listening connection again; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Notices waiting for the handler; the connection is not read further while it is full.
const QUEUE: usize = 1024;
/// TCP keepalive on the listening connection, so a silently dead peer (a network partition
/// rather than a closed socket) is noticed in about a minute instead of the OS's two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// Sends `payload` on [`REVOKE_CHANNEL`] (delivered when `c`'s transaction commits).
pub async fn send(c: &impl Cached, payload: &str) -> Result<(), tokio_postgres::Error> {
    c.x("SELECT pg_notify($1, $2)", &[&REVOKE_CHANNEL, &payload])
        .await?;
    Ok(())
}

/// Listens on `channel` on a dedicated connection (pooled connections drop notices) and hands
/// each payload to `on_notice`, until `shutdown` turns true. A connection that fails or drops
/// is opened again with backoff ([`MIN_BACKOFF`] doubling to [`MAX_BACKOFF`]); `on_listening`
/// is called each time `LISTEN` is in place.
pub async fn listen<F>(
    mut pg: tokio_postgres::Config,
    channel: &'static str,
    mut shutdown: watch::Receiver<bool>,
    mut on_notice: F,
) where
    F: FnMut(&str) + Send,
{
    pg.keepalives(true).keepalives_idle(KEEPALIVE_IDLE);
    let mut backoff = MIN_BACKOFF;
    loop {
        if *shutdown.borrow() {
            return;
        }
        match listen_once(&pg, channel, &mut shutdown, &mut on_notice).await {
            Ok(Ended::Shutdown) => return,
            Ok(Ended::Dropped) => {
                tracing::warn!(channel, "notice connection dropped; listening again");
                backoff = MIN_BACKOFF;
            }
            Err(e) => {
                tracing::warn!(channel, error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "cannot listen for notices");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

enum Ended {
    Shutdown,
    Dropped,
}

async fn listen_once<F>(
    pg: &tokio_postgres::Config,
    channel: &'static str,
    shutdown: &mut watch::Receiver<bool>,
    on_notice: &mut F,
) -> Result<Ended, tokio_postgres::Error>
where
    F: FnMut(&str) + Send,
{
    let (client, mut conn) = pg.connect(NoTls).await?;
    let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
    // The connection must be polled for the LISTEN below to complete, and its notices arrive
    // only through polling it; this task does both and ends when the connection does.
    let reader = tokio::spawn(async move {
        while let Some(msg) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            match msg {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "notice connection failed");
                    return;
                }
            }
        }
    });
    // `channel` is one of this module's constants, never caller text.
    let listening = client.batch_execute(&format!("LISTEN {channel}")).await;
    if let Err(e) = listening {
        reader.abort();
        return Err(e);
    }
    tracing::debug!(channel, "listening for notices");
    let ended = loop {
        tokio::select! {
            notice = rx.recv() => match notice {
                Some(p) => on_notice(&p),
                None => break Ended::Dropped,
            },
            _ = shutdown.changed() => break Ended::Shutdown,
        }
    };
    reader.abort();
    drop(client);
    Ok(ended)
}
