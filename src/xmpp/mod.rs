//! The XMPP adapter: listeners (TCP+STARTTLS, direct TLS, WebSocket), the stream layer,
//! negotiation and per-connection sessions, and one file per XEP. It routes live stanzas
//! through the hub and holds no business rule about dialogs or history.
//!
//! - `stream/`   bytes and frames ↔ packets and elements, limits, TLS, WebSocket
//! - `session/`  the connection loop; negotiation (features, SASL, bind), stream management,
//!   routing (addressing and the message/presence hook phases)
//! - `stanza`    JIDs, user keys, stanza errors
//! - `dispatch`  the table: (kind, namespace) → iq/nonza handler; message/presence hooks by phase
//! - `ext/`      one file (or folder) per XEP, each one line in `dispatch::table()`
//! - `server_iq` iqs the server sends clients (caps discovery), awaiting their answers
//! - `fanout`    REST → XMPP: committed chat events become stanzas for connected users

pub mod cluster;
pub mod dispatch;
pub mod ext;
pub mod fanout;
pub mod ns;
pub mod server_iq;
pub mod session;
pub mod stanza;
pub mod stream;
pub mod xep_table;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::config::Config;
use crate::db::DbPool;
use crate::hub::Hub;
use crate::identity::Identity;
use crate::limits::{ConnLimiter, ConnPermit, ConnRefusal};
use crate::model::Clock;
use crate::ops::telemetry;
use stanza::StreamCondition;
use stream::transport::{RawIo, TransportConfig};
use stream::{Limits, Transport};

/// Everything a connection task needs, shared by all of them.
pub struct Services {
    pub config: Arc<Config>,
    pub identity: Identity,
    pub pool: DbPool,
    pub clock: Clock,
    pub hub: Arc<Hub>,
    /// The chat domain: history, dialogs, roles (the same functions REST calls).
    pub chat: crate::chat::Chat,
    pub dispatch: dispatch::Dispatch,
    pub tls: TlsAcceptor,
    /// Per-user privacy rules (XEP-0016 lists, XEP-0191 block list), cached for routing.
    pub privacy: crate::privacy::PrivacyCache,
    /// Open connections of every XMPP listener together (`xmpp.max_connections[_per_ip]`).
    pub conns: Arc<ConnLimiter>,
    /// Refused connections being answered (at most `REFUSALS_IN_FLIGHT`).
    pub refusals: Arc<Semaphore>,
    /// XEP-0077 registration attempts per address (`xmpp.registrations_per_hour_per_ip`).
    pub registrations: crate::limits::KeyedLimiter<std::net::IpAddr>,
    /// Iqs the server asked clients, awaiting answers (caps discovery).
    pub server_iqs: server_iq::ServerIqs,
    /// Verified entity capabilities (XEP-0115) by hash: what PEP notifies each connection of.
    pub caps: ext::pep::caps::Cache,
    /// The storage API's rules and store: XEP-0363 upload slots (the same limits as `/blobs`).
    pub files: crate::files::Files,
}

/// Connections refused by the caps that may be answered with a stream error at once; more are
/// dropped unanswered.
pub const REFUSALS_IN_FLIGHT: usize = 256;
/// How long answering one refused connection (handshakes included) may take.
const REFUSAL_BUDGET: Duration = Duration::from_secs(2);

impl Services {
    pub fn domain(&self) -> &str {
        &self.config.domain
    }

    pub fn transport_config(&self) -> TransportConfig {
        let x = &self.config.xmpp;
        TransportConfig {
            limits: Limits {
                max_stanza_bytes: x.max_stanza_bytes,
                max_depth: x.max_depth,
                max_attributes: x.max_attributes,
            },
            bytes_per_sec: x.max_bytes_per_sec,
            write_timeout: Duration::from_secs(x.write_timeout_secs),
        }
    }
}

/// Which protocol a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    /// RFC 6120 over TCP, STARTTLS offered.
    Starttls,
    /// XEP-0368 direct TLS.
    DirectTls,
    /// RFC 7395 WebSocket (`wss://` when `tls`).
    WebSocket { tls: bool },
}

impl ListenerKind {
    /// The transport's name in logs and in the `transport` label of the connection metrics.
    pub fn label(self) -> &'static str {
        match self {
            ListenerKind::Starttls => "tcp",
            ListenerKind::DirectTls => "tls",
            ListenerKind::WebSocket { tls: false } => "ws",
            ListenerKind::WebSocket { tls: true } => "wss",
        }
    }
}

fn count_accepted(kind: ListenerKind) {
    metrics::counter!(telemetry::XMPP_CONNECTIONS_ACCEPTED, "transport" => kind.label())
        .increment(1);
}

fn count_refused(kind: ListenerKind, why: &ConnRefusal) {
    let reason = match why {
        ConnRefusal::Total => "max_connections",
        ConnRefusal::PerIp => "max_connections_per_ip",
    };
    metrics::counter!(
        telemetry::XMPP_CONNECTIONS_REFUSED,
        "transport" => kind.label(),
        "reason" => reason
    )
    .increment(1);
}

/// Holds one unit of the open-connections gauge for as long as the connection task lives (a
/// panic or an abort at shutdown included).
struct OpenConnection(metrics::Gauge);

impl OpenConnection {
    fn new(kind: ListenerKind) -> Self {
        let open = metrics::gauge!(telemetry::XMPP_CONNECTIONS, "transport" => kind.label());
        open.increment(1.0);
        Self(open)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The three bound XMPP listeners.
pub struct Listeners {
    pub xmpp: TcpListener,
    pub xmpp_tls: TcpListener,
    pub ws: TcpListener,
}

pub async fn bind(config: &Config) -> std::io::Result<Listeners> {
    Ok(Listeners {
        xmpp: TcpListener::bind(config.xmpp.addr).await?,
        xmpp_tls: TcpListener::bind(config.xmpp.tls_addr).await?,
        ws: TcpListener::bind(config.ws.addr).await?,
    })
}

/// Loads the configured certificate, or generates the development one; `reload_tls` reads the
/// same files again.
pub fn load_tls(config: &Config) -> Result<stream::tls::ReloadableTls, stream::tls::TlsError> {
    let (cert, key) = stream::tls::cert_paths(
        &config.xmpp.cert_file,
        &config.xmpp.key_file,
        &config.data_dir,
        &config.domain,
    )?;
    tracing::info!(cert = %cert.display(), "XMPP TLS certificate");
    stream::tls::ReloadableTls::load(&cert, &key)
}

/// Reads the certificate files again (SIGHUP): new connections get the new certificate, open
/// ones keep theirs. A file that does not load leaves the current certificate in place and is
/// logged as an error, so a botched renewal never takes TLS down.
pub fn reload_tls(tls: &stream::tls::ReloadableTls) -> bool {
    match tls.reload() {
        Ok(()) => {
            tracing::info!(cert = %tls.cert_file().display(), "XMPP TLS certificate reloaded");
            true
        }
        Err(e) => {
            tracing::error!(
                cert = %tls.cert_file().display(),
                error = %e,
                "XMPP TLS certificate not reloaded; still using the previous one"
            );
            false
        }
    }
}

/// Accepts connections until shutdown, then waits (bounded) for their streams to close.
pub async fn serve(
    listener: TcpListener,
    kind: ListenerKind,
    services: Arc<Services>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    match services.conns.try_acquire(peer.ip()) {
                        Ok(permit) => {
                            count_accepted(kind);
                            let (services, shutdown) = (services.clone(), shutdown.clone());
                            conns.spawn(counted(tcp, peer, kind, services, shutdown, permit));
                        }
                        Err(why) => {
                            count_refused(kind, &why);
                            if let Ok(slot) = services.refusals.clone().try_acquire_owned() {
                                let services = services.clone();
                                conns.spawn(async move {
                                    let _ = tokio::time::timeout(
                                        REFUSAL_BUDGET,
                                        refuse(tcp, peer, kind, &services, why),
                                    )
                                    .await;
                                    drop(slot);
                                });
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // A connection task that panicked (a bug) ends alone: the others and this listener
            // carry on. It is logged, not re-raised.
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        tracing::error!("an XMPP connection task panicked; that connection is closed");
                    }
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drain = Duration::from_secs(services.config.http.drain_timeout_secs);
    let _ = tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
    conns.abort_all();
}

/// A connection over a cap gets its stream error (RFC 6120 §4.9.3): `<resource-constraint/>`
/// when the server holds `xmpp.max_connections`, `<policy-violation/>` when the address holds
/// `xmpp.max_connections_per_ip`; after the TLS or WebSocket handshake its listener needs and
/// the client's stream header, then the stream is closed.
async fn refuse(
    tcp: TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
    services: &Services,
    why: ConnRefusal,
) {
    tracing::debug!(%peer, ?why, "XMPP connection refused");
    let cfg = services.transport_config();
    let tls = |tcp| async { services.tls.accept(tcp).await.ok() };
    let mut t = match kind {
        ListenerKind::Starttls => Transport::xml(RawIo::Plain(tcp), peer, cfg),
        ListenerKind::DirectTls => match tls(tcp).await {
            Some(s) => Transport::xml(RawIo::Tls(Box::new(s)), peer, cfg),
            None => return,
        },
        ListenerKind::WebSocket { tls: secure } => {
            let io = if secure {
                match tls(tcp).await {
                    Some(s) => RawIo::Tls(Box::new(s)),
                    None => return,
                }
            } else {
                RawIo::Plain(tcp)
            };
            match Transport::websocket(io, peer, cfg).await {
                Ok(t) => t,
                Err(_) => return,
            }
        }
    };
    // The client's header first (its answer is our header), so the error is read, not reset.
    let _ = t.next_packet().await;
    let _ = t
        .send_header(services.domain(), &stanza::random_hex(8))
        .await;
    t.fail(match why {
        ConnRefusal::Total => StreamCondition::ResourceConstraint,
        ConnRefusal::PerIp => StreamCondition::PolicyViolation,
    })
    .await;
}

/// A connection's whole task: the connection, holding its slot of the caps until it ends. The
/// connection future is made in here: captured by a block and then awaited, it would be stored
/// twice (+4.5 KiB per idle connection; `the_connection_task_stays_small` holds the line).
async fn counted(
    tcp: TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
    services: Arc<Services>,
    shutdown: watch::Receiver<bool>,
    permit: ConnPermit,
) {
    let open = OpenConnection::new(kind);
    // Every log line of the connection carries its transport and peer, and its user once SASL
    // succeeds (recorded by the negotiation).
    let span = tracing::info_span!(
        "xmpp",
        transport = kind.label(),
        %peer,
        user = tracing::field::Empty
    );
    connection(tcp, peer, kind, services, shutdown)
        .instrument(span)
        .await;
    drop(permit);
    drop(open);
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
    services: Arc<Services>,
    shutdown: watch::Receiver<bool>,
) {
    let cfg = services.transport_config();
    let handshake = Duration::from_secs(services.config.xmpp.negotiation_timeout_secs);
    let tls = |tcp: TcpStream| {
        let acceptor = services.tls.clone();
        async move {
            match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => Some(RawIo::Tls(Box::new(s))),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => None,
            }
        }
    };
    let transport = match kind {
        ListenerKind::Starttls => Transport::xml(RawIo::Plain(tcp), peer, cfg),
        ListenerKind::DirectTls => match Box::pin(tls(tcp)).await {
            Some(io) => Transport::xml(io, peer, cfg),
            None => return,
        },
        ListenerKind::WebSocket { tls: secure } => {
            let io = if secure {
                match Box::pin(tls(tcp)).await {
                    Some(io) => io,
                    None => return,
                }
            } else {
                RawIo::Plain(tcp)
            };
            match Box::pin(tokio::time::timeout(
                handshake,
                Transport::websocket(io, peer, cfg),
            ))
            .await
            {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "WebSocket handshake failed");
                    return;
                }
                Err(_) => return,
            }
        }
    };
    session::run(services, transport, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn of five arguments returns, without calling it.
    fn future_size<A, B, C, D, E, F>(_: fn(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every connection's task holds this future for the connection's whole life, idle or not;
    /// with the TLS handshake, negotiation and stanza handling inline it was tens of KiB
    /// (issue #7: RSS per idle connection). Boxing the rarely-suspended steps keeps it small.
    #[test]
    fn the_connection_future_stays_small() {
        let size = future_size(connection);
        assert!(size <= 6 * 1024, "connection future is {size} bytes");
    }

    /// What the listener spawns per connection: the connection future plus its cap slot, once.
    #[test]
    fn the_connection_task_stays_small() {
        fn size_of_return<A, B, C, D, E, P, F>(_: fn(A, B, C, D, E, P) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let task = size_of_return(counted);
        let conn = future_size(connection);
        assert!(
            task <= conn + 256,
            "connection task is {task} bytes, its connection {conn}"
        );
    }
}
