//! One client connection from first byte to last: stream negotiation (features, STARTTLS, SASL
//! PLAIN, bind, stream restarts), then the bound session loop (stanzas in, hub queue out,
//! server pings, XEP-0198 acks and resumption), then clean-up (unavailable presence, last
//! activity, un-acked stanzas to offline storage). Extension logic lives in `ext/`, reached
//! through the dispatch table; this module must not grow XEP-specific branches beyond the
//! stream-level ones (SM, bind) and message/presence routing.

pub mod sasl;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::dispatch::{Kind, Request, Target};
use super::ext::privacy::{self, Stanza};
use super::ext::{
    carbons, correction, history, markers, message_delete, muc, offline, roster, status_streaming,
};
use super::ns;
use super::stanza::{iq_result, random_hex, Jid, StanzaError, UserKey};
use super::stream::transport::ReadError;
use super::stream::{Element, Node, Packet, Transport};
use super::Services;
use crate::config::PlainAuth;
use crate::db;
use crate::hub::{ConnId, Outbound, PendingAuth, RegisterError, Revoked};
use crate::identity::{ChatAuth, IdentityError};

/// A new connection asking a parked stream-management session to continue on it.
pub type ResumeRequest = crate::hub::ResumeRequest<Transport>;

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
            t.fail("connection-timeout").await;
            return;
        }
    };
    let Negotiated::Bound(b) = negotiated else {
        return;
    };
    let first = services.hub.connections(b.user).len() == 1;
    let session = Session {
        services: services.clone(),
        user: b.user,
        bare: b.user.bare_jid(services.domain()).to_string(),
        full: b.jid.to_string(),
        jid: b.jid,
        conn: b.conn,
        rx: b.rx,
        revoked: b.revoked,
        available: false,
        directed: HashSet::new(),
        presence_subs: Vec::new(),
        sm: None,
        ping: None,
        last_rx: Instant::now(),
        app: None,
    };
    if first {
        session.push_status(0, false);
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

enum Negotiated {
    Bound(Bound),
    /// The transport was handed to a parked session, or the stream ended.
    Done,
}

struct Bound {
    user: UserKey,
    jid: Jid,
    conn: ConnId,
    rx: mpsc::Receiver<Outbound>,
    revoked: Revoked,
}

fn plain_allowed(s: &Services, t: &Transport) -> bool {
    t.secure
        || match s.config.xmpp.plain_auth {
            PlainAuth::Always => true,
            PlainAuth::Never => false,
            PlainAuth::Loopback => t.peer.ip().is_loopback(),
        }
}

fn features(s: &Services, t: &Transport, authed: bool) -> Element {
    let mut f = Element::new("features", ns::STREAMS);
    if !authed {
        if t.can_starttls() {
            let mut st = Element::new("starttls", ns::TLS);
            if !plain_allowed(s, t) {
                st.push(Element::new("required", ns::TLS));
            }
            f.push(st);
        }
        if plain_allowed(s, t) {
            f.push(
                Element::new("mechanisms", ns::SASL)
                    .with_child(Element::new("mechanism", ns::SASL).with_text("PLAIN")),
            );
        }
    } else {
        f.push(Element::new("bind", ns::BIND));
        f.push(
            Element::new("session", ns::SESSION).with_child(Element::new("optional", ns::SESSION)),
        );
        f.push(Element::new("sm", ns::SM));
        f.push(Element::new("csi", ns::CSI));
    }
    f
}

fn sasl_failure(condition: &str) -> Element {
    Element::new("failure", ns::SASL).with_child(Element::new(condition, ns::SASL))
}

async fn read_fault(t: &mut Transport, e: ReadError) {
    match e {
        ReadError::Fault(f) => t.fail(f.condition()).await,
        ReadError::Closed | ReadError::Io(_) => t.abandon(),
    }
}

/// Stream negotiation up to a bound resource (or a resumed session).
async fn negotiate(s: &Arc<Services>, t: &mut Transport) -> Negotiated {
    let mut authed: Option<PendingAuth> = None;
    loop {
        match t.next_packet().await {
            Ok(Packet::StreamStart(_)) => {}
            Ok(Packet::StreamEnd) => {
                t.close().await;
                return Negotiated::Done;
            }
            Ok(Packet::Stanza(_)) => {
                let _ = t.send_header(s.domain(), &random_hex(8)).await;
                t.fail("not-well-formed").await;
                return Negotiated::Done;
            }
            Err(e) => {
                if matches!(e, ReadError::Fault(_)) {
                    let _ = t.send_header(s.domain(), &random_hex(8)).await;
                }
                read_fault(t, e).await;
                return Negotiated::Done;
            }
        }
        if let Some(condition) = authed.as_ref().and_then(|a| a.revoked.condition()) {
            t.fail(condition).await;
            return Negotiated::Done;
        }
        let offer = features(s, t, authed.is_some());
        if t.send_header_and(s.domain(), &random_hex(8), &offer)
            .await
            .is_err()
        {
            return Negotiated::Done;
        }
        // Stanzas of this stream, until a restart.
        loop {
            let el = match t.next_packet().await {
                Ok(Packet::Stanza(el)) => el,
                Ok(Packet::StreamEnd) => {
                    t.close().await;
                    return Negotiated::Done;
                }
                Ok(Packet::StreamStart(_)) => {
                    t.fail("not-well-formed").await;
                    return Negotiated::Done;
                }
                Err(e) => {
                    read_fault(t, e).await;
                    return Negotiated::Done;
                }
            };
            if let Some(condition) = authed.as_ref().and_then(|a| a.revoked.condition()) {
                t.fail(condition).await;
                return Negotiated::Done;
            }
            match (el.ns.as_str(), el.name.as_str(), authed.as_ref()) {
                (ns::TLS, "starttls", None) if t.can_starttls() => {
                    if t.send(&Element::new("proceed", ns::TLS)).await.is_err()
                        || t.starttls(&s.tls).await.is_err()
                    {
                        t.abandon();
                        return Negotiated::Done;
                    }
                    break; // restart
                }
                (ns::SASL, "auth", None) => match authenticate(s, t, &el).await {
                    Ok((user, auth)) => {
                        if t.send(&Element::new("success", ns::SASL)).await.is_err() {
                            return Negotiated::Done;
                        }
                        authed = Some(s.hub.authenticated(user, auth));
                        t.restart();
                        break;
                    }
                    Err(condition) => {
                        if t.send(&sasl_failure(condition)).await.is_err() {
                            return Negotiated::Done;
                        }
                    }
                },
                (ns::SASL, "abort", None) => {
                    if t.send(&sasl_failure("aborted")).await.is_err() {
                        return Negotiated::Done;
                    }
                }
                (ns::CLIENT, "iq", Some(pending)) => {
                    if let Some(bound) = bind_or_answer(s, t, pending, el).await {
                        return bound;
                    }
                }
                (ns::SM, "resume", Some(pending)) => match resume(s, t, pending, &el).await {
                    Ok(()) => return Negotiated::Done,
                    Err(failed) => {
                        if t.send(&failed).await.is_err() {
                            return Negotiated::Done;
                        }
                    }
                },
                (ns::SM, "enable", Some(_)) => {
                    let failed = Element::new("failed", ns::SM)
                        .with_child(Element::new("unexpected-request", ns::STANZAS));
                    if t.send(&failed).await.is_err() {
                        return Negotiated::Done;
                    }
                }
                (ns::CLIENT | ns::TLS | ns::SASL | ns::SM, _, _) => {
                    t.fail("not-authorized").await;
                    return Negotiated::Done;
                }
                _ => {
                    t.fail("invalid-namespace").await;
                    return Negotiated::Done;
                }
            }
        }
    }
}

/// SASL PLAIN; returns the user and how they proved it, or the SASL failure condition. The
/// check and its throttling are identity's (`Identity::check_chat_secret`).
async fn authenticate(
    s: &Arc<Services>,
    t: &Transport,
    auth: &Element,
) -> Result<(UserKey, ChatAuth), &'static str> {
    if !plain_allowed(s, t) {
        return Err("encryption-required");
    }
    if auth.attr("mechanism") != Some("PLAIN") {
        return Err("invalid-mechanism");
    }
    let ip = t.peer.ip();
    let creds = match sasl::parse_plain(&auth.text(), s.domain()) {
        Ok(c) => c,
        Err(e) => {
            s.identity.login_attempt_failed(ip);
            return Err(match e {
                sasl::PlainError::Malformed => "incorrect-encoding",
                sasl::PlainError::NotAuthorized => "not-authorized",
            });
        }
    };
    match s
        .identity
        .check_chat_secret(creds.user.app, creds.user.user, &creds.secret, ip)
        .await
    {
        Ok(Some(how)) => Ok((creds.user, how)),
        Ok(None) => Err("not-authorized"),
        Err(IdentityError::Throttled { .. }) => {
            tracing::info!(%ip, user = %creds.user.user, "SASL throttled");
            Err("not-authorized")
        }
        Err(e) => {
            tracing::warn!(error = %e, "checking chat credentials");
            Err("temporary-auth-failure")
        }
    }
}

/// Handles an iq between authentication and bind: bind, legacy session, or an error.
async fn bind_or_answer(
    s: &Arc<Services>,
    t: &mut Transport,
    pending: &PendingAuth,
    iq: Element,
) -> Option<Negotiated> {
    let user = pending.user;
    let is_set = iq.attr("type") == Some("set");
    let reply = if let (true, Some(bind)) = (is_set, iq.child("bind", ns::BIND)) {
        let requested = bind
            .child("resource", ns::BIND)
            .map(|r| r.text().trim().to_owned())
            .filter(|r| !r.is_empty());
        match requested {
            Some(r) if r.len() > 1023 || r.chars().any(char::is_control) => {
                StanzaError::bad_request().reply_to(&iq, s.domain())
            }
            requested => {
                let resource = requested.unwrap_or_else(|| random_hex(10));
                let (tx, rx) = mpsc::channel(s.config.xmpp.outbound_queue.max(1));
                match s.hub.register(
                    user,
                    &resource,
                    tx,
                    s.config.xmpp.max_connections_per_user,
                    pending.auth,
                    pending.revoked.clone(),
                ) {
                    Ok(conn) => {
                        let jid = Jid {
                            resource: Some(resource),
                            ..user.bare_jid(s.domain())
                        };
                        let payload = Element::new("bind", ns::BIND)
                            .with_child(Element::new("jid", ns::BIND).with_text(jid.to_string()));
                        let mut result = iq_result(&iq, s.domain(), Some(payload));
                        result.remove_attr("from");
                        if t.send(&result).await.is_err() {
                            s.hub.unregister(user, conn);
                            return Some(Negotiated::Done);
                        }
                        return Some(Negotiated::Bound(Bound {
                            user,
                            jid,
                            conn,
                            rx,
                            revoked: pending.revoked.clone(),
                        }));
                    }
                    Err(RegisterError::TooManyConnections) => {
                        StanzaError::resource_constraint().reply_to(&iq, s.domain())
                    }
                }
            }
        }
    } else if is_set && iq.child("session", ns::SESSION).is_some() {
        let mut r = iq_result(&iq, s.domain(), None);
        r.remove_attr("from");
        r
    } else {
        StanzaError::not_authorized().reply_to(&iq, s.domain())
    };
    if t.send(&reply).await.is_err() {
        return Some(Negotiated::Done);
    }
    None
}

/// XEP-0198 resumption: hands the transport to the parked session. On failure returns the
/// `<failed/>` to send.
async fn resume(
    s: &Arc<Services>,
    t: &mut Transport,
    pending: &PendingAuth,
    el: &Element,
) -> Result<(), Element> {
    let user = pending.user;
    let failed =
        || Element::new("failed", ns::SM).with_child(Element::new("item-not-found", ns::STANZAS));
    let previd = el.attr("previd").ok_or_else(failed)?;
    let h = el
        .attr("h")
        .and_then(|h| h.parse::<u32>().ok())
        .ok_or_else(failed)?;
    let tx = s.hub.take_resumable(previd, user).ok_or_else(failed)?;
    // Move the transport out; put a dead one in its place for this (ending) task.
    let peer = t.peer;
    let cfg = s.transport_config();
    let placeholder = Transport::detached(peer, cfg);
    let transport = std::mem::replace(t, placeholder);
    let req = ResumeRequest {
        transport,
        h,
        auth: pending.auth,
    };
    match tx.send(req).await {
        Ok(()) => Ok(()),
        Err(mpsc::error::SendError(req)) => {
            *t = req.transport;
            Err(failed())
        }
    }
}

/// How a bound stream ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The client closed the stream.
    Clean,
    /// The socket dropped or the client stopped answering: resumable.
    Lost,
    /// Closed by us (a stream error, replaced, shutdown): not resumable.
    Closed,
}

struct Sm {
    id: String,
    resumable: bool,
    h_in: u32,
    h_out: u32,
    unacked: VecDeque<Element>,
    /// About how many bytes `unacked` holds (see [`approx_bytes`]).
    unacked_bytes: usize,
}

impl Sm {
    /// Counts `el` as sent and keeps it until acked.
    fn keep(&mut self, el: Element) {
        self.h_out = self.h_out.wrapping_add(1);
        self.unacked_bytes = self.unacked_bytes.saturating_add(approx_bytes(&el));
        self.unacked.push_back(el);
    }
}

/// About how many bytes `el` takes written out (names, attributes, text), what the
/// stream-management queues are bounded by. Iterative: no recursion on element depth.
fn approx_bytes(el: &Element) -> usize {
    let mut n = 0usize;
    let mut stack = vec![el];
    while let Some(e) = stack.pop() {
        n = n.saturating_add(2 * e.name.len() + 5);
        for (k, v) in &e.attrs {
            n = n.saturating_add(k.len() + v.len() + 4);
        }
        for c in &e.children {
            match c {
                Node::Element(c) => stack.push(c),
                Node::Text(t) => n = n.saturating_add(t.len()),
            }
        }
    }
    n
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
    available: bool,
    directed: HashSet<String>,
    /// Roster contacts that get this user's presence (read at initial presence).
    presence_subs: Vec<UserKey>,
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

impl Session {
    fn domain(&self) -> &str {
        &self.services.config.domain
    }

    /// What a 1:1 chat stanza changes in history, before it is relayed: a stored new message
    /// (`save_to_history`), a marker, a correction, a deletion. `Err`: refused, not relayed.
    async fn apply_to_history(
        &mut self,
        target: UserKey,
        el: &mut Element,
    ) -> Result<(), StanzaError> {
        let wants_history = history::wanted(el);
        let edits = el.child("replace", ns::CORRECTION).is_some()
            || el.child("remove", ns::MESSAGE_DELETE).is_some();
        let marks = el.child("received", ns::CHAT_MARKERS).is_some()
            || el.child("displayed", ns::CHAT_MARKERS).is_some();
        if !(wants_history || edits || marks) {
            return Ok(());
        }
        let actor = self.actor().await?;
        let services = self.services.clone();
        markers::apply(&services, &actor, el).await;
        correction::apply(&services, &actor, el).await?;
        message_delete::apply(&services, &actor, el).await?;
        if wants_history && !edits {
            history::store_private(&services, &actor, target.user.0, el).await?;
        }
        Ok(())
    }

    /// The first initial presence of a stream: one statement tells what else to read (roster,
    /// offline stanzas, privacy rules), so a login with none of them costs one more query, not
    /// seven. It runs after bind, so a stanza stored offline before this point is seen here and
    /// one stored after it is delivered live. A failed probe reads everything, as before.
    async fn initial_probe(&self) -> db::xmpp::PresenceProbe {
        let s = &self.services;
        let generation = s.privacy.generation();
        match db::xmpp::presence_probe(&s.pool, self.user.app, self.user.user).await {
            Ok(p) => {
                if p.privacy {
                    // Routing to and from an online user (group fan-out above all) should find
                    // the rules in memory.
                    tokio::spawn(privacy::PrivacyCache::warm(s.clone(), self.user));
                } else {
                    s.privacy.note_empty(self.user, generation);
                }
                p
            }
            Err(e) => {
                tracing::warn!(error = %e, "probing presence state");
                db::xmpp::PresenceProbe {
                    subscriptions: true,
                    offline: true,
                    privacy: true,
                }
            }
        }
    }

    /// The user as the chat domain sees them (application loaded once per stream).
    async fn actor(&mut self) -> Result<crate::chat::Actor, StanzaError> {
        if self.app.is_none() {
            self.app = crate::db::apps::get(&self.services.pool, self.user.app)
                .await
                .ok()
                .flatten();
        }
        let app = self
            .app
            .clone()
            .ok_or_else(StanzaError::internal_server_error)?;
        Ok(crate::chat::Actor {
            from_stream: true,
            app,
            user: self.user.user,
        })
    }

    async fn run(mut self, mut t: Transport, mut shutdown: watch::Receiver<bool>) {
        loop {
            let end = self.serve(&mut t, &mut shutdown).await;
            if end == End::Lost {
                if let Some(next) = Box::pin(self.park(&mut shutdown)).await {
                    t = next;
                    continue;
                }
            }
            break;
        }
        Box::pin(self.cleanup()).await;
    }

    /// Stream management's share of sending `el`: count it and keep it until acked. Returns
    /// whether to ask for an ack now; a client that never acks would make us hold everything
    /// forever, so past the cap its stream fails (the un-acked stanzas go to offline storage
    /// when the session ends).
    async fn track_sent(&mut self, t: &mut Transport, el: &Element) -> Result<bool, End> {
        let cap = self.services.config.xmpp.outbound_queue.max(1);
        let max_bytes = self.services.config.xmpp.sm_unacked_bytes;
        let Some(sm) = &mut self.sm else {
            return Ok(false);
        };
        if !is_stanza(el) {
            return Ok(false);
        }
        sm.keep(el.clone());
        if sm.unacked.len() > cap.saturating_mul(4) || sm.unacked_bytes > max_bytes {
            t.fail("policy-violation").await;
            return Err(End::Closed);
        }
        // Past half the byte bound, every stanza asks for an ack.
        Ok(sm.unacked.len() % 64 == 0 || sm.unacked_bytes > max_bytes / 2)
    }

    async fn send(&mut self, t: &mut Transport, el: Element) -> Result<(), End> {
        let ask_ack = self.track_sent(t, &el).await?;
        t.send(&el).await.map_err(|_| End::Lost)?;
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
            return t.send_all(&batch).await.map_err(|_| End::Lost);
        }
        let mut out = Vec::with_capacity(batch.len() + 1);
        for el in batch {
            let ask_ack = self.track_sent(t, &el).await?;
            out.push(el);
            if ask_ack {
                out.push(Element::new("r", ns::SM));
            }
        }
        t.send_all(&out).await.map_err(|_| End::Lost)
    }

    async fn serve(&mut self, t: &mut Transport, shutdown: &mut watch::Receiver<bool>) -> End {
        let cfg = &self.services.config.xmpp;
        let idle = Duration::from_secs(cfg.idle_ping_secs.max(1));
        let ping_timeout = Duration::from_secs(cfg.ping_timeout_secs.max(1));
        loop {
            if let Some(condition) = self.revoked.condition() {
                t.fail(condition).await;
                return End::Closed;
            }
            let deadline = match &self.ping {
                Some((_, sent)) => *sent + ping_timeout,
                None => self.last_rx + idle,
            };
            tokio::select! {
                _ = shutdown.changed() => {
                    t.fail("system-shutdown").await;
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
                            t.fail("conflict").await;
                            return End::Closed;
                        }
                    }
                    Some(Outbound::Revoked) => continue,
                    Some(Outbound::Replaced) | None => {
                        t.fail("conflict").await;
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
                            t.fail("not-well-formed").await;
                            return End::Closed;
                        }
                        Err(ReadError::Fault(f)) => {
                            t.fail(f.condition()).await;
                            return End::Closed;
                        }
                        Err(ReadError::Closed | ReadError::Io(_)) => return End::Lost,
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if self.ping.is_some() {
                        tracing::debug!(jid = %self.full, "no answer to ping: closing");
                        t.fail("connection-timeout").await;
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
            (ns::CLIENT, "message") => self.on_message(t, el).await,
            (ns::CLIENT, "presence") => self.on_presence(t, el).await,
            (ns::CLIENT, "iq") => self.on_iq(t, el).await,
            (ns::SM, name) => self.on_sm(t, name, &el).await,
            (namespace, _) => {
                let reg = self.services.dispatch.get(Kind::Nonza, namespace);
                if let Some(handler) = reg.and_then(|r| r.handler) {
                    let reply = handler(Request {
                        services: &self.services,
                        user: self.user,
                        conn: self.conn,
                        jid: &self.jid,
                        target: Target::Server,
                        stanza: &el,
                        payload: &el,
                    })
                    .await;
                    if let Ok(Some(r)) = reply {
                        self.send(t, r).await?;
                    }
                    return Ok(());
                }
                let known = [ns::CLIENT, ns::SASL, ns::TLS, ns::BIND];
                t.fail(if known.contains(&namespace) {
                    "unsupported-stanza-type"
                } else {
                    "invalid-namespace"
                })
                .await;
                Err(End::Closed)
            }
        }
    }

    async fn on_sm(&mut self, t: &mut Transport, name: &str, el: &Element) -> Result<(), End> {
        match name {
            "enable" if self.sm.is_none() => {
                let resumable = matches!(el.attr("resume"), Some("true" | "1"));
                let id = random_hex(16);
                let mut enabled = Element::new("enabled", ns::SM).with_attr("id", id.clone());
                if resumable {
                    enabled.set_attr("resume", "true");
                    enabled.set_attr("max", self.services.config.xmpp.sm_resume_secs.to_string());
                }
                self.sm = Some(Sm {
                    id,
                    resumable,
                    h_in: 0,
                    h_out: 0,
                    unacked: VecDeque::new(),
                    unacked_bytes: 0,
                });
                t.send(&enabled).await.map_err(|_| End::Lost)
            }
            "enable" => {
                let failed = Element::new("failed", ns::SM)
                    .with_child(Element::new("unexpected-request", ns::STANZAS));
                t.send(&failed).await.map_err(|_| End::Lost)
            }
            "r" => {
                let h = self.sm.as_ref().map(|s| s.h_in).unwrap_or(0);
                let a = Element::new("a", ns::SM).with_attr("h", h.to_string());
                t.send(&a).await.map_err(|_| End::Lost)
            }
            "a" => {
                if let Some(h) = el.attr("h").and_then(|h| h.parse::<u32>().ok()) {
                    self.acked(h);
                }
                Ok(())
            }
            _ => {
                t.fail("unsupported-stanza-type").await;
                Err(End::Closed)
            }
        }
    }

    /// The client has received `h` stanzas: drop them from the un-acked queue.
    fn acked(&mut self, h: u32) {
        if let Some(sm) = &mut self.sm {
            let base = sm.h_out.wrapping_sub(sm.unacked.len() as u32);
            let n = (h.wrapping_sub(base) as usize).min(sm.unacked.len());
            let freed = sm
                .unacked
                .drain(..n)
                .map(|el| approx_bytes(&el))
                .sum::<usize>();
            sm.unacked_bytes = sm.unacked_bytes.saturating_sub(freed);
        }
    }

    async fn reply_error(
        &mut self,
        t: &mut Transport,
        el: &Element,
        err: StanzaError,
    ) -> Result<(), End> {
        if el.attr("type") == Some("error") {
            return Ok(());
        }
        let reply = err.reply_to(el, self.domain());
        self.send(t, reply).await
    }

    /// Where a stanza's `to` points.
    fn resolve(&self, to: Option<&str>) -> Result<Dest, StanzaError> {
        let Some(to) = to else {
            return Ok(Dest::Server);
        };
        let jid = Jid::parse(to).ok_or_else(StanzaError::bad_request)?;
        if jid.domain == muc::service(self.domain()) {
            return match &jid.local {
                None => Ok(Dest::MucService),
                Some(local) => muc::parse_room(local, self.user.app, jid.resource).map(Dest::Room),
            };
        }
        if !jid.domain.eq_ignore_ascii_case(self.domain()) {
            return Err(StanzaError::remote_server_not_found());
        }
        if jid.local.is_none() {
            return Ok(Dest::Server);
        }
        let user = jid
            .user(self.domain())
            .ok_or_else(StanzaError::service_unavailable)?;
        if !self.user.same_app(&user) {
            // Another application's user: as if there were no such user.
            return Err(StanzaError::service_unavailable());
        }
        Ok(Dest::User(user, jid.resource))
    }

    async fn on_message(&mut self, t: &mut Transport, mut el: Element) -> Result<(), End> {
        el.set_attr("from", self.full.clone());
        // Over the sender's message rate: refused with policy-violation (wait), not relayed.
        if let Err(e) = self
            .services
            .chat
            .admit_message(self.user.app, self.user.user)
        {
            return self.reply_error(t, &el, StanzaError::from(&e)).await;
        }
        let kind = el.attr("type").unwrap_or("normal").to_owned();
        if el.attr("to").is_none() {
            // RFC 6120 §10.3.1: a message without `to` is for the sender's own bare JID.
            el.set_attr("to", self.bare.clone());
        }
        let (target, resource) = match self.resolve(el.attr("to")) {
            Ok(Dest::User(u, r)) => (u, r),
            Ok(Dest::Room(room)) => return self.room_message(t, el, room).await,
            Ok(Dest::Server | Dest::MucService) => return Ok(()),
            Err(e) => return self.reply_error(t, &el, e).await,
        };
        if kind == "groupchat" {
            let e = StanzaError::bad_request().with_text("groupchat messages go to a room");
            return self.reply_error(t, &el, e).await;
        }
        // Privacy first: a blocked message is neither stored nor delivered.
        if let Err(bounce) =
            privacy::screen(&self.services, self.user, target, Stanza::Message, &el).await
        {
            return match bounce {
                Some(b) => self.send(t, b).await,
                None => Ok(()),
            };
        }
        // History: stored (durably, before this stanza counts as handled for stream
        // management) through the chat service, then stamped with dialog_id/date_sent.
        if kind == "chat" {
            if let Err(e) = self.apply_to_history(target, &mut el).await {
                return self.reply_error(t, &el, e).await;
            }
        }
        let hub = &self.services.hub;
        let delivered = match &resource {
            Some(r) if hub.deliver_to_resource(target, r, el.clone()) => 1,
            Some(_) if kind == "headline" || kind == "error" => 0,
            _ => hub.deliver_to_user(target, &el),
        };
        if delivered == 0 && kind != "error" && offline::worth_keeping(&el) {
            if let Err(refused) = offline::keep(&self.services, target, &el).await {
                return self.reply_error(t, &el, refused.stanza_error()).await;
            }
        }
        if carbons::eligible(&el) {
            for c in hub.connections(self.user) {
                if c.id != self.conn && c.carbons {
                    let to = format!("{}/{}", self.bare, c.resource);
                    let copy = carbons::sent_copy(&el, &self.bare, &to);
                    hub.deliver_to_conn(self.user, c.id, copy);
                }
            }
        }
        Ok(())
    }

    async fn on_presence(&mut self, t: &mut Transport, mut el: Element) -> Result<(), End> {
        el.set_attr("from", self.full.clone());
        let kind = el.attr("type").map(str::to_owned);
        if el.attr("to").is_none() {
            match kind.as_deref() {
                None => {
                    let first = !self.available;
                    self.available = true;
                    self.services.hub.set_available(self.user, self.conn, true);
                    el.set_attr("to", self.bare.clone());
                    self.broadcast_own(&el);
                    let probe = if first {
                        self.initial_probe().await
                    } else {
                        // A later presence re-reads the roster (subscriptions may have changed).
                        db::xmpp::PresenceProbe {
                            subscriptions: true,
                            ..Default::default()
                        }
                    };
                    let (subs, contacts) = if probe.subscriptions {
                        roster::presence_both(&self.services, self.user).await
                    } else {
                        (Vec::new(), Vec::new())
                    };
                    self.presence_subs =
                        privacy::presence_allowed(&self.services, self.user, subs, true).await;
                    for contact in &self.presence_subs {
                        let mut p = el.clone();
                        p.set_attr("to", contact.bare_jid(self.domain()).to_string());
                        self.services.hub.deliver_to_user(*contact, &p);
                    }
                    if first {
                        // The user's other available resources, then every contact we are
                        // subscribed to (RFC 6121 §4.2.2–4.2.3).
                        let mut sources = vec![self.user];
                        let s = &self.services;
                        sources
                            .extend(privacy::presence_allowed(s, self.user, contacts, false).await);
                        for src in sources {
                            let bare = src.bare_jid(self.domain()).to_string();
                            for c in self.services.hub.connections(src) {
                                if c.available && c.id != self.conn {
                                    let p = Element::new("presence", ns::CLIENT)
                                        .with_attr("from", format!("{bare}/{}", c.resource))
                                        .with_attr("to", self.full.clone());
                                    self.send(t, p).await?;
                                }
                            }
                        }
                        if probe.offline {
                            for m in offline::take(&self.services, self.user).await {
                                self.send(t, m).await?;
                            }
                        }
                    }
                }
                Some("unavailable") => {
                    self.go_unavailable(Some(el));
                    muc::leave_all(&self.services, self.user, self.conn);
                }
                _ => {}
            }
            return Ok(());
        }
        let (target, resource) = match self.resolve(el.attr("to")) {
            Ok(Dest::User(u, r)) => (u, r),
            Ok(Dest::Room(room)) => return self.room_presence(t, el, room).await,
            Ok(Dest::Server | Dest::MucService) => return Ok(()),
            Err(e) => return self.reply_error(t, &el, e).await,
        };
        if let Some(sub @ ("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")) =
            kind.as_deref()
        {
            if let Err(e) = roster::subscription(&self.services, self.user, sub, target).await {
                return self.reply_error(t, &el, e).await;
            }
            // Subscription presences travel between bare JIDs.
            el.set_attr("from", self.bare.clone());
            el.set_attr("to", target.bare_jid(self.domain()).to_string());
            let delivered = self.services.hub.deliver_to_user(target, &el);
            if delivered == 0 && sub == "subscribe" {
                // RFC 6121 §3.1.3: a request to an offline contact waits for its next login
                // (once per sender, bounded per recipient).
                offline::store_subscription(&self.services, target, &self.bare, &el).await;
            }
            if sub == "subscribed" && self.available {
                let p = Element::new("presence", ns::CLIENT)
                    .with_attr("from", self.full.clone())
                    .with_attr("to", target.bare_jid(self.domain()).to_string());
                self.services.hub.deliver_to_user(target, &p);
            }
            return Ok(());
        }
        if privacy::screen(&self.services, self.user, target, Stanza::Presence, &el)
            .await
            .is_err()
        {
            return Ok(()); // presence refused by privacy is dropped silently
        }
        let to = el.attr("to").unwrap_or_default().to_owned();
        match kind.as_deref() {
            None => {
                // Remembered to send unavailable at logout: a bounded set, so past the bound a
                // presence to one more JID is refused rather than silently never undone.
                let max = self.services.config.xmpp.directed_presences_max;
                if !self.directed.contains(&to) && self.directed.len() >= max {
                    let e = StanzaError::not_allowed().with_text(format!(
                        "too many directed presences (at most {max} per connection)"
                    ));
                    return self.reply_error(t, &el, e).await;
                }
                self.directed.insert(to);
            }
            Some("unavailable") => {
                self.directed.remove(&to);
            }
            _ => {}
        }
        let hub = &self.services.hub;
        match resource {
            Some(r) => {
                hub.deliver_to_resource(target, &r, el);
            }
            None => {
                hub.deliver_to_user(target, &el);
            }
        }
        Ok(())
    }

    /// A message to a room (XEP-0045 `groupchat`): `ext::muc` checks, stores and fans out.
    async fn room_message(
        &mut self,
        t: &mut Transport,
        el: Element,
        room: muc::RoomAddr,
    ) -> Result<(), End> {
        let res = match self.actor().await {
            Ok(actor) => muc::on_message(&self.services, &actor, el.clone(), room).await,
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => Ok(()),
            Err(e) => self.reply_error(t, &el, e).await,
        }
    }

    /// A presence to a room: join or leave; what comes back goes to this connection in order.
    async fn room_presence(
        &mut self,
        t: &mut Transport,
        el: Element,
        room: muc::RoomAddr,
    ) -> Result<(), End> {
        let res = match self.actor().await {
            Ok(actor) => {
                let full = self.full.clone();
                muc::on_presence(&self.services, &actor, self.conn, &full, el.clone(), room).await
            }
            Err(e) => Err(e),
        };
        match res {
            Ok(out) => {
                for p in out {
                    self.send(t, p).await?;
                }
                Ok(())
            }
            Err(e) => self.reply_error(t, &el, e).await,
        }
    }

    /// An iq to the MUC service or a room: exactly one answer.
    async fn room_iq(
        &mut self,
        t: &mut Transport,
        el: Element,
        payload: Element,
        room: Option<muc::RoomAddr>,
    ) -> Result<(), End> {
        let get = el.attr("type") == Some("get");
        let reply = match self.actor().await {
            Ok(actor) => muc::on_iq(&self.services, &actor, get, &payload, room).await,
            Err(e) => Err(e),
        };
        let out = match reply {
            Ok(p) => iq_result(&el, self.domain(), p),
            Err(e) => e.reply_to(&el, self.domain()),
        };
        self.send(t, out).await
    }

    /// Presence to every available connection of the user itself (the initial-presence echo).
    fn broadcast_own(&self, el: &Element) {
        let hub = &self.services.hub;
        for c in hub.connections(self.user) {
            if c.available || c.id == self.conn {
                hub.deliver_to_conn(self.user, c.id, el.clone());
            }
        }
    }

    fn go_unavailable(&mut self, el: Option<Element>) {
        if !self.available {
            return;
        }
        self.available = false;
        self.services.hub.set_available(self.user, self.conn, false);
        let mut p = el.unwrap_or_else(|| {
            Element::new("presence", ns::CLIENT).with_attr("type", "unavailable")
        });
        p.set_attr("from", self.full.clone());
        p.set_attr("to", self.bare.clone());
        self.broadcast_own(&p);
        for contact in std::mem::take(&mut self.presence_subs) {
            p.set_attr("to", contact.bare_jid(self.domain()).to_string());
            self.services.hub.deliver_to_user(contact, &p);
        }
        for to in std::mem::take(&mut self.directed) {
            if let Ok(Dest::User(u, r)) = self.resolve(Some(&to)) {
                p.set_attr("to", to.clone());
                match r {
                    Some(r) => {
                        self.services.hub.deliver_to_resource(u, &r, p.clone());
                    }
                    None => {
                        self.services.hub.deliver_to_user(u, &p);
                    }
                }
            }
        }
    }

    async fn on_iq(&mut self, t: &mut Transport, mut el: Element) -> Result<(), End> {
        el.set_attr("from", self.full.clone());
        let kind = match el.attr("type") {
            Some("get") => Kind::IqGet,
            Some("set") => Kind::IqSet,
            Some("result" | "error") => {
                if let (Some((pid, _)), Some(id)) = (&self.ping, el.attr("id")) {
                    if pid == id {
                        self.ping = None;
                        return Ok(());
                    }
                }
                if let Ok(Dest::User(u, Some(r))) = self.resolve(el.attr("to")) {
                    self.services.hub.deliver_to_resource(u, &r, el);
                }
                return Ok(());
            }
            _ => return self.reply_error(t, &el, StanzaError::bad_request()).await,
        };
        let payload = match (el.attr("id"), el.elements().next()) {
            (Some(_), Some(p)) if el.elements().count() == 1 => p.clone(),
            _ => return self.reply_error(t, &el, StanzaError::bad_request()).await,
        };
        if let Ok(Dest::User(peer, _)) = self.resolve(el.attr("to")) {
            if let Err(bounce) =
                privacy::screen(&self.services, self.user, peer, Stanza::Iq, &el).await
            {
                return match bounce {
                    Some(b) => self.send(t, b).await,
                    None => Ok(()),
                };
            }
        }
        let target = match self.resolve(el.attr("to")) {
            Ok(Dest::Room(room)) => return self.room_iq(t, el, payload, Some(room)).await,
            Ok(Dest::MucService) => return self.room_iq(t, el, payload, None).await,
            Ok(Dest::Server) => Target::Server,
            Ok(Dest::User(u, None)) if u == self.user => Target::Server,
            Ok(Dest::User(u, None)) => Target::User(u),
            Ok(Dest::User(u, Some(r))) => {
                // An iq to another connection's full JID is routed as is.
                if self.services.hub.deliver_to_resource(u, &r, el.clone()) {
                    return Ok(());
                }
                return self
                    .reply_error(t, &el, StanzaError::service_unavailable())
                    .await;
            }
            Err(e) => return self.reply_error(t, &el, e).await,
        };
        if payload.is("bind", ns::BIND) {
            return self.reply_error(t, &el, StanzaError::not_allowed()).await;
        }
        let reg = self.services.dispatch.get(kind, &payload.ns);
        let handler = reg
            .filter(|r| target == Target::Server || r.for_users)
            .and_then(|r| r.handler);
        let Some(handler) = handler else {
            return self
                .reply_error(t, &el, StanzaError::service_unavailable())
                .await;
        };
        let reply = handler(Request {
            services: &self.services,
            user: self.user,
            conn: self.conn,
            jid: &self.jid,
            target,
            stanza: &el,
            payload: &payload,
        })
        .await;
        let out = match reply {
            Ok(p) => iq_result(&el, self.domain(), p),
            Err(e) => e.reply_to(&el, self.domain()),
        };
        self.send(t, out).await
    }

    /// Status streaming: tells subscribers this user came online (0) or left.
    fn push_status(&self, seconds: i64, offline: bool) {
        let hub = &self.services.hub;
        for (sub, conn) in hub.status_subscribers(self.user) {
            for c in hub.connections(sub) {
                if c.id == conn {
                    let to = format!("{}/{}", sub.bare_jid(self.domain()), c.resource);
                    let mut push = status_streaming::push(&self.bare, &to, seconds);
                    if offline {
                        if let Some(crate::xmpp::stream::Node::Element(q)) =
                            push.children.first_mut()
                        {
                            q.children
                                .push(crate::xmpp::stream::Node::Text("offline".into()));
                        }
                    }
                    hub.deliver_to_conn(sub, conn, push);
                }
            }
        }
    }

    /// A dropped resumable stream waits for `<resume/>`; returns the new transport.
    async fn park(&mut self, shutdown: &mut watch::Receiver<bool>) -> Option<Transport> {
        let max_bytes = self.services.config.xmpp.sm_parked_queue_bytes;
        // Already holding more than a parked session may: ended at once (see below).
        let sm = self
            .sm
            .as_ref()
            .filter(|s| s.resumable && s.unacked_bytes <= max_bytes)?;
        let id = sm.id.clone();
        let (tx, mut rq) = mpsc::channel::<ResumeRequest>(1);
        let hub = self.services.hub.clone();
        hub.park_resumable(&id, self.user, tx);
        let deadline =
            Instant::now() + Duration::from_secs(self.services.config.xmpp.sm_resume_secs);
        loop {
            tokio::select! {
                req = rq.recv() => {
                    let req = req?;
                    let mut t = req.transport;
                    if let Some(condition) = self.revoked.condition() {
                        hub.forget_resumable(&id);
                        t.fail(condition).await;
                        return None;
                    }
                    hub.set_auth(self.user, self.conn, req.auth);
                    self.acked(req.h);
                    let sm = self.sm.as_mut()?;
                    let resumed = Element::new("resumed", ns::SM)
                        .with_attr("previd", id.clone())
                        .with_attr("h", sm.h_in.to_string());
                    if t.send(&resumed).await.is_err() {
                        hub.forget_resumable(&id);
                        return None;
                    }
                    for el in sm.unacked.iter() {
                        if t.send(el).await.is_err() {
                            return None;
                        }
                    }
                    self.last_rx = Instant::now();
                    self.ping = None;
                    return Some(t);
                }
                out = self.rx.recv() => match out {
                    Some(Outbound::Stanza(el)) => {
                        if let Some(sm) = &mut self.sm {
                            sm.keep(*el);
                            // Past its byte bound the parked session ends now: what it holds
                            // goes to offline storage (cleanup), as on expiry.
                            if sm.unacked_bytes > max_bytes {
                                hub.forget_resumable(&id);
                                return None;
                            }
                        }
                    }
                    Some(Outbound::Revoked) | Some(Outbound::Replaced) | None => {
                        hub.forget_resumable(&id);
                        return None;
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    hub.forget_resumable(&id);
                    return None;
                }
                _ = shutdown.changed() => {
                    hub.forget_resumable(&id);
                    return None;
                }
            }
        }
    }

    async fn cleanup(&mut self) {
        self.go_unavailable(None);
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
            let now = self.services.clock.now();
            let (pool, key) = (&self.services.pool, self.user);
            // Nothing is written for a deleted account.
            if !gone {
                if let Err(e) = db::xmpp::last_seen_set(pool, key.app, key.user, now).await {
                    tracing::warn!(error = %e, "recording last activity");
                }
            }
            self.push_status(0, true);
        }
    }
}

enum Dest {
    Server,
    User(UserKey, Option<String>),
    /// The MUC service itself (`muc.{domain}`).
    MucService,
    /// A room of the sender's application, or an occupant of it.
    Room(muc::RoomAddr),
}
