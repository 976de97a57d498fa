//! One client connection from first byte to last: negotiation (`negotiation.rs`: features,
//! STARTTLS, SASL PLAIN, bind), then the bound session loop here (stanzas in, hub queue out,
//! server pings), then clean-up (unavailable presence, rooms left, last activity, un-acked
//! stanzas to offline storage). Stream management is `sm.rs`; where stanzas go and the hook
//! phases they run through is `routing.rs`. Extension logic lives in `ext/`, reached through the
//! dispatch table; this module must not grow XEP-specific branches beyond the stream-level
//! ones (SM, bind).

mod negotiation;
pub mod routing;
pub mod sasl;
mod sm;

pub use sm::ResumeRequest;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::dispatch::{Kind, Request, Target};
use super::ext::{muc, offline, presence, status_streaming};
use super::ns;
use super::stanza::{is_error, random_hex, Jid, StanzaError, StreamCondition, UserKey};
use super::stream::transport::ReadError;
use super::stream::{Element, Packet, Transport};
use super::Services;
use crate::db;
use crate::hub::{ConnId, Outbound, Revoked};
use crate::ops::telemetry::{XMPP_STANZAS_RECEIVED, XMPP_STANZAS_SENT};
use negotiation::{negotiate, Negotiated};
use sm::Sm;

/// Runs a connection to its end.
pub async fn run(services: Arc<Services>, mut t: Transport, shutdown: watch::Receiver<bool>) {
    let limit = Duration::from_secs(services.config.xmpp.negotiation_timeout_secs);
    // Boxed, like every other rarely-suspended step: an async fn's future is as large as its
    // largest await point, and the spawned connection future is held for the connection's
    // whole life.
    let negotiated = match tokio::time::timeout(limit, Box::pin(negotiate(&services, &mut t))).await
    {
        Ok(n) => n,
        Err(_) => {
            t.fail(StreamCondition::ConnectionTimeout).await;
            return;
        }
    };
    let Negotiated::Bound(b) = negotiated else {
        return;
    };
    let first = b.first;
    let session = Session {
        services: services.clone(),
        user: b.user,
        bare: b.user.bare_jid(services.domain()).to_string(),
        full: b.jid.to_string(),
        jid: b.jid,
        conn: b.conn,
        rx: b.rx,
        revoked: b.revoked,
        presence: presence::State::default(),
        sm: None,
        ping: None,
        last_rx: Instant::now(),
        app: None,
    };
    if first {
        status_streaming::push_status(&services, b.user, &session.bare, 0, false);
    }
    let _guard = UnregisterOnPanic {
        services: services.clone(),
        user: b.user,
        conn: b.conn,
    };
    session.run(t, shutdown).await;
}

/// Should the session's task panic (a bug), its connection still leaves the registry and its
/// rooms, so the user's other connections (and the per-user connection cap) are unaffected.
/// A normal end cleans up in `Session::cleanup` and this does nothing.
struct UnregisterOnPanic {
    services: Arc<Services>,
    user: UserKey,
    conn: ConnId,
}

impl Drop for UnregisterOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Both only edit maps behind poison-tolerant locks: nothing here can panic again.
            let _ = self
                .services
                .hub
                .rooms
                .leave_conn(self.user.user.0, self.conn);
            self.services.hub.unregister(self.user, self.conn);
        }
    }
}

/// How a bound stream ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    /// The client closed the stream.
    Clean,
    /// The socket dropped or the client stopped answering: resumable.
    Lost,
    /// Closed by us (a stream error, replaced, shutdown): not resumable.
    Closed,
}

struct Session {
    services: Arc<Services>,
    user: UserKey,
    jid: Jid,
    full: String,
    bare: String,
    conn: ConnId,
    rx: mpsc::Receiver<Outbound>,
    /// Marked by the hub when the credential this stream rests on is revoked.
    revoked: Revoked,
    /// RFC 6121 presence state, lent to the hooks (`ext::presence`).
    presence: presence::State,
    sm: Option<Sm>,
    /// The server ping awaiting an answer: id and when it was sent.
    ping: Option<(String, Instant)>,
    last_rx: Instant,
    /// The user's application, loaded when a chat operation first needs it.
    app: Option<crate::model::Application>,
}

/// At most this many queued stanzas are written together: bounds the write's size and the time
/// before the connection reads again.
const WRITE_BATCH: usize = 32;

fn is_stanza(el: &Element) -> bool {
    el.ns == ns::CLIENT && matches!(el.name.as_str(), "message" | "presence" | "iq")
}

/// The stanza counters by kind, looked up in the recorder once per process: a registry lookup
/// (hashing the key, a shard lock) per stanza cost more than the count itself. Resolved after
/// `Server::start` installed the recorder, so they are never the no-op recorder's handles.
fn stanza_counter(sent: bool, kind: &str) -> Option<&'static metrics::Counter> {
    static COUNTERS: [std::sync::OnceLock<metrics::Counter>; 6] =
        [const { std::sync::OnceLock::new() }; 6];
    let (i, label) = match kind {
        "message" => (0, "message"),
        "presence" => (1, "presence"),
        "iq" => (2, "iq"),
        _ => return None,
    };
    let (slot, name) = if sent {
        (i + 3, XMPP_STANZAS_SENT)
    } else {
        (i, XMPP_STANZAS_RECEIVED)
    };
    let cell = COUNTERS.get(slot)?;
    Some(cell.get_or_init(|| metrics::counter!(name, "kind" => label)))
}

/// Counts a stanza written to the stream.
fn count_sent(el: &Element) {
    if let Some(c) = stanza_counter(true, &el.name) {
        c.increment(1);
    }
}

impl Session {
    fn domain(&self) -> &str {
        &self.services.config.domain
    }

    async fn run(mut self, mut t: Transport, mut shutdown: watch::Receiver<bool>) {
        // In the connection's span: with its transport, peer and user, the two lines bracket a
        // session in the logs.
        tracing::debug!(jid = %self.full, "XMPP session bound");
        let end = loop {
            let end = self.serve(&mut t, &mut shutdown).await;
            if end == End::Lost {
                if let Some(next) = Box::pin(self.park(&mut shutdown)).await {
                    t = next;
                    continue;
                }
            }
            break end;
        };
        Box::pin(self.cleanup()).await;
        tracing::debug!(?end, "XMPP session ended");
    }

    async fn send(&mut self, t: &mut Transport, el: Element) -> Result<(), End> {
        let ask_ack = self.track_sent(t, &el).await?;
        t.send(&el).await.map_err(|_| End::Lost)?;
        count_sent(&el);
        if ask_ack {
            t.send(&Element::new("r", ns::SM))
                .await
                .map_err(|_| End::Lost)?;
        }
        Ok(())
    }

    /// Like [`Session::send`] for queued stanzas, written together (see `WRITE_BATCH`).
    async fn send_batch(&mut self, t: &mut Transport, batch: Vec<Element>) -> Result<(), End> {
        if self.sm.is_none() {
            t.send_all(&batch).await.map_err(|_| End::Lost)?;
            batch.iter().for_each(count_sent);
            return Ok(());
        }
        let mut out = Vec::with_capacity(batch.len() + 1);
        for el in batch {
            let ask_ack = self.track_sent(t, &el).await?;
            out.push(el);
            if ask_ack {
                out.push(Element::new("r", ns::SM));
            }
        }
        t.send_all(&out).await.map_err(|_| End::Lost)?;
        out.iter().for_each(count_sent);
        Ok(())
    }

    /// What a handler put before its answer (a MAM page's results, a room's history) and the
    /// answer, written `WRITE_BATCH` at a time: a page of 100 results is a few writes, not 101
    /// writes and flushes (each a TLS record and a system call).
    async fn send_answer(
        &mut self,
        t: &mut Transport,
        before: Vec<Element>,
        answer: Option<Element>,
    ) -> Result<(), End> {
        let mut all = before.into_iter().chain(answer).peekable();
        while all.peek().is_some() {
            let chunk: Vec<Element> = all.by_ref().take(WRITE_BATCH).collect();
            self.send_batch(t, chunk).await?;
        }
        Ok(())
    }

    async fn serve(&mut self, t: &mut Transport, shutdown: &mut watch::Receiver<bool>) -> End {
        let cfg = &self.services.config.xmpp;
        let idle = Duration::from_secs(cfg.idle_ping_secs.max(1));
        let ping_timeout = Duration::from_secs(cfg.ping_timeout_secs.max(1));
        loop {
            if let Some(condition) = self.revoked.condition() {
                t.fail(StreamCondition::of_revocation(condition)).await;
                return End::Closed;
            }
            let deadline = match &self.ping {
                Some((_, sent)) => *sent + ping_timeout,
                None => self.last_rx + idle,
            };
            tokio::select! {
                _ = shutdown.changed() => {
                    t.fail(StreamCondition::SystemShutdown).await;
                    return End::Closed;
                }
                out = self.rx.recv() => match out {
                    Some(Outbound::Stanza(el)) => {
                        // Whatever else is already queued goes out in the same write.
                        let mut batch = vec![*el];
                        let mut replaced = false;
                        while batch.len() < WRITE_BATCH {
                            match self.rx.try_recv() {
                                Ok(Outbound::Stanza(el)) => batch.push(*el),
                                Ok(Outbound::Replaced) => {
                                    replaced = true;
                                    break;
                                }
                                Ok(Outbound::Revoked) | Err(_) => break,
                            }
                        }
                        if self.revoked.condition().is_some() {
                            continue; // closed at the top of the loop, nothing more written
                        }
                        if let Err(end) = self.send_batch(t, batch).await {
                            return end;
                        }
                        if replaced {
                            t.fail(StreamCondition::Conflict).await;
                            return End::Closed;
                        }
                    }
                    Some(Outbound::Revoked) => continue,
                    Some(Outbound::Replaced) | None => {
                        t.fail(StreamCondition::Conflict).await;
                        return End::Closed;
                    }
                },
                pkt = t.next_packet() => {
                    self.last_rx = Instant::now();
                    self.ping = None;
                    match pkt {
                        Ok(Packet::Stanza(_)) if self.revoked.condition().is_some() => {
                            continue; // revoked meanwhile: not handled, closed above
                        }
                        Ok(Packet::Stanza(el)) => {
                            // Boxed: handling a stanza nests every extension's future
                            // (6.5 KiB); inline, each idle connection would carry that space.
                            if let Err(end) = Box::pin(self.handle(t, el)).await {
                                return end;
                            }
                        }
                        Ok(Packet::StreamEnd) => {
                            t.close().await;
                            return End::Clean;
                        }
                        Ok(Packet::StreamStart(_)) => {
                            t.fail(StreamCondition::NotWellFormed).await;
                            return End::Closed;
                        }
                        Err(ReadError::Fault(f)) => {
                            t.fail(f.into()).await;
                            return End::Closed;
                        }
                        Err(ReadError::Closed | ReadError::Io(_)) => return End::Lost,
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if self.ping.is_some() {
                        tracing::debug!(jid = %self.full, "no answer to ping: closing");
                        t.fail(StreamCondition::ConnectionTimeout).await;
                        return End::Lost;
                    }
                    let id = format!("ping-{}", random_hex(6));
                    let ping = Element::new("iq", ns::CLIENT)
                        .with_attr("type", "get")
                        .with_attr("id", id.clone())
                        .with_attr("from", self.domain())
                        .with_attr("to", self.full.clone())
                        .with_child(Element::new("ping", ns::PING));
                    self.ping = Some((id, Instant::now()));
                    if let Err(end) = self.send(t, ping).await {
                        return end;
                    }
                }
            }
        }
    }

    async fn handle(&mut self, t: &mut Transport, el: Element) -> Result<(), End> {
        if is_stanza(&el) {
            if let Some(sm) = &mut self.sm {
                sm.h_in = sm.h_in.wrapping_add(1);
            }
        }
        match (el.ns.as_str(), el.name.as_str()) {
            (ns::CLIENT, "message") => {
                if let Some(c) = stanza_counter(false, "message") {
                    c.increment(1);
                }
                self.on_message(t, el).await
            }
            (ns::CLIENT, "presence") => {
                if let Some(c) = stanza_counter(false, "presence") {
                    c.increment(1);
                }
                self.on_presence(t, el).await
            }
            (ns::CLIENT, "iq") => {
                if let Some(c) = stanza_counter(false, "iq") {
                    c.increment(1);
                }
                self.on_iq(t, el).await
            }
            (ns::SM, name) => self.on_sm(t, name, &el).await,
            (namespace, _) => {
                let reg = self.services.dispatch.get(Kind::Nonza, namespace);
                if let Some(handler) = reg.and_then(|r| r.handler) {
                    let mut before = Vec::new();
                    let reply = handler(Request {
                        services: &self.services,
                        user: self.user,
                        conn: self.conn,
                        jid: &self.jid,
                        target: Target::Server,
                        stanza: &el,
                        payload: &el,
                        before: &mut before,
                    })
                    .await;
                    return self.send_answer(t, before, reply.ok().flatten()).await;
                }
                let known = [ns::CLIENT, ns::SASL, ns::TLS, ns::BIND];
                t.fail(if known.contains(&namespace) {
                    StreamCondition::UnsupportedStanzaType
                } else {
                    StreamCondition::InvalidNamespace
                })
                .await;
                Err(End::Closed)
            }
        }
    }

    async fn reply_error(
        &mut self,
        t: &mut Transport,
        el: &Element,
        err: StanzaError,
    ) -> Result<(), End> {
        if is_error(el) {
            return Ok(());
        }
        let reply = err.reply_to(el, self.domain());
        self.send(t, reply).await
    }

    async fn cleanup(&mut self) {
        let s = &self.services;
        let (user, conn) = (self.user, self.conn);
        presence::go_unavailable(
            s,
            user,
            conn,
            &self.full,
            &self.bare,
            &mut self.presence,
            None,
        );
        muc::leave_all(&self.services, self.user, self.conn);
        // A deleted account leaves nothing behind: no offline copies, no last activity.
        let gone = self.revoked.account_gone();
        let had_sm = self.sm.is_some();
        if let Some(sm) = self.sm.take() {
            self.services.hub.forget_resumable(&sm.id);
            // Un-acked messages addressed to this user are not lost: they wait offline, oldest
            // first, and so (below) do those the hub queued here that were never written.
            for el in sm.unacked.into_iter().filter(|_| !gone) {
                offline::keep_unacked(&self.services, self.user, &self.bare, el).await;
            }
        }
        let last = self.services.hub.unregister(self.user, self.conn);
        self.services.privacy.connection_ended(self.user, self.conn);
        if had_sm && !gone {
            while let Ok(out) = self.rx.try_recv() {
                if let Outbound::Stanza(el) = out {
                    offline::keep_unacked(&self.services, self.user, &self.bare, *el).await;
                }
            }
        }
        if last {
            if !gone {
                self.services.chat.presence_changed(self.user, false).await;
            }
            let now = self.services.clock.now();
            let (pool, key) = (&self.services.pool, self.user);
            // Nothing is written for a deleted account.
            if !gone {
                if let Err(e) = db::xmpp::last_seen_set(pool, key.app, key.user, now).await {
                    tracing::warn!(error = %e, "recording last activity");
                }
            }
            status_streaming::push_status(&self.services, self.user, &self.bare, 0, true);
        }
    }
}
