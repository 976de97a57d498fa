//! XEP-0198 Stream Management: enabling, counting and acking stanzas both ways, the un-acked
//! queue and its bounds (`xmpp.outbound_queue`, `xmpp.sm_unacked_bytes`), parking a dropped
//! resumable session (`xmpp.sm_resume_secs`, `xmpp.sm_parked_queue_bytes`) and resuming it on
//! a new connection. What is never acked goes to offline storage when the session ends
//! (`Session::cleanup`). Must not handle stanzas themselves.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{is_stanza, End, Session};
use crate::hub::{Outbound, PendingAuth};
use crate::xmpp::ns;
use crate::xmpp::stanza::{random_hex, StreamCondition};
use crate::xmpp::stream::{Element, Node, Transport};
use crate::xmpp::Services;

/// A new connection asking a parked stream-management session to continue on it.
pub type ResumeRequest = crate::hub::ResumeRequest<Transport>;

/// XEP-0198 resumption: hands the transport to the parked session. On failure returns the
/// `<failed/>` to send.
pub(super) async fn resume(
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

pub(super) struct Sm {
    pub(super) id: String,
    resumable: bool,
    pub(super) h_in: u32,
    h_out: u32,
    pub(super) unacked: VecDeque<Element>,
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

impl Session {
    /// Stream management's share of sending `el`: count it and keep it until acked. Returns
    /// whether to ask for an ack now; a client that never acks would make us hold everything
    /// forever, so past the cap its stream fails (the un-acked stanzas go to offline storage
    /// when the session ends).
    pub(super) async fn track_sent(
        &mut self,
        t: &mut Transport,
        el: &Element,
    ) -> Result<bool, End> {
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
            t.fail(StreamCondition::PolicyViolation).await;
            return Err(End::Closed);
        }
        // Past half the byte bound, every stanza asks for an ack.
        Ok(sm.unacked.len() % 64 == 0 || sm.unacked_bytes > max_bytes / 2)
    }

    pub(super) async fn on_sm(
        &mut self,
        t: &mut Transport,
        name: &str,
        el: &Element,
    ) -> Result<(), End> {
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
                t.fail(StreamCondition::UnsupportedStanzaType).await;
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

    /// A stanza the server failed to handle (a message its store did not take, the database
    /// being down): acking it would tell the client it is safe, and `h` counts stanzas, so
    /// acking any later one would ack it too. So it is not counted, and the stream is closed
    /// with `<internal-server-error/>` as if dropped: the client resumes (the `h` it gets back
    /// stops before the message) or reconnects, and sends it again; nothing after it was read.
    pub(super) async fn unhandled(&mut self, t: &mut Transport) -> End {
        if let Some(sm) = &mut self.sm {
            sm.h_in = sm.h_in.wrapping_sub(1);
        }
        tracing::warn!(jid = %self.full, "a message was not stored: closing its stream unacked so the client sends it again");
        t.fail(StreamCondition::InternalServerError).await;
        End::Lost
    }

    /// A dropped resumable stream waits for `<resume/>`; returns the new transport.
    pub(super) async fn park(&mut self, shutdown: &mut watch::Receiver<bool>) -> Option<Transport> {
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
                        t.fail(StreamCondition::of_revocation(condition)).await;
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
                        super::count_sent(el);
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
}
