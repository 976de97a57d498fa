//! Stream negotiation, up to a bound resource: stream headers and features, STARTTLS, SASL
//! PLAIN and SCRAM (the credential checks are identity's, `sasl.rs` parses and runs the SCRAM
//! exchange), resource binding with the
//! per-user connection cap, XEP-0077 registration before authentication (`ext::register`), the
//! legacy `<session/>`, and the hand-over to a parked
//! stream-management session (`sm::resume`). Must not handle stanzas of a bound session.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::sasl::{self, Refusal};
use super::sm::resume;
use crate::config::PlainAuth;
use crate::hub::{ConnId, Outbound, PendingAuth, RegisterError, Revoked};
use crate::identity::scram::{self, ScramHash};
use crate::identity::{ChatAuth, IdentityError};
use crate::ops::telemetry::LOGINS;
use crate::xmpp::ext::register;
use crate::xmpp::ns;
use crate::xmpp::stanza::{
    iq_result, random_hex, IqType, Jid, StanzaError, StreamCondition, UserKey,
};
use crate::xmpp::stream::transport::ReadError;
use crate::xmpp::stream::{Element, Packet, Transport};
use crate::xmpp::Services;

pub(super) enum Negotiated {
    Bound(Bound),
    /// The transport was handed to a parked session, or the stream ended.
    Done,
}

pub(super) struct Bound {
    pub(super) user: UserKey,
    pub(super) jid: Jid,
    pub(super) conn: ConnId,
    pub(super) rx: mpsc::Receiver<Outbound>,
    pub(super) revoked: Revoked,
    /// The user's first connection (the hub decided under its lock).
    pub(super) first: bool,
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
            let binding = t.tls_exporter().is_some();
            let offered = sasl::mechanisms(s.config.xmpp.scram, binding);
            let mut m = Element::new("mechanisms", ns::SASL);
            for name in &offered {
                m.push(Element::new("mechanism", ns::SASL).with_text(*name));
            }
            f.push(m);
            if register::enabled(s) {
                f.push(register::feature());
            }
            if offered.iter().any(|m| m.ends_with("-PLUS")) {
                // XEP-0440: which channel-binding type the -PLUS mechanisms use.
                f.push(
                    Element::new("sasl-channel-binding", ns::SASL_CB).with_child(
                        Element::new("channel-binding", ns::SASL_CB)
                            .with_attr("type", scram::TLS_EXPORTER),
                    ),
                );
            }
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
        ReadError::Fault(f) => t.fail(f.into()).await,
        ReadError::Closed | ReadError::Io(_) => t.abandon(),
    }
}

/// Stream negotiation up to a bound resource (or a resumed session).
pub(super) async fn negotiate(s: &Arc<Services>, t: &mut Transport) -> Negotiated {
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
                t.fail(StreamCondition::NotWellFormed).await;
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
            t.fail(StreamCondition::of_revocation(condition)).await;
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
                    t.fail(StreamCondition::NotWellFormed).await;
                    return Negotiated::Done;
                }
                Err(e) => {
                    read_fault(t, e).await;
                    return Negotiated::Done;
                }
            };
            if let Some(condition) = authed.as_ref().and_then(|a| a.revoked.condition()) {
                t.fail(StreamCondition::of_revocation(condition)).await;
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
                    Ok((user, auth, data)) => {
                        let mut success = Element::new("success", ns::SASL);
                        if let Some(d) = data {
                            success = success.with_text(d);
                        }
                        if t.send(&success).await.is_err() {
                            return Negotiated::Done;
                        }
                        // The connection's span (`xmpp::counted`) names its user from here on.
                        tracing::Span::current()
                            .record("user", tracing::field::display(user.bare_jid(s.domain())));
                        authed = Some(s.hub.authenticated(user, auth));
                        t.restart();
                        break;
                    }
                    Err(Refusal::Failure(condition)) => {
                        if t.send(&sasl_failure(condition)).await.is_err() {
                            return Negotiated::Done;
                        }
                    }
                    Err(Refusal::Gone) => return Negotiated::Done,
                },
                (ns::SASL, "abort", None) => {
                    if t.send(&sasl_failure("aborted")).await.is_err() {
                        return Negotiated::Done;
                    }
                }
                (ns::CLIENT, "iq", None) if register::is_registration(&el) => {
                    let allowed = plain_allowed(s, t);
                    let reply = register::before_auth(s, &el, t.peer.ip(), allowed).await;
                    if t.send(&reply).await.is_err() {
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
                    t.fail(StreamCondition::NotAuthorized).await;
                    return Negotiated::Done;
                }
                _ => {
                    t.fail(StreamCondition::InvalidNamespace).await;
                    return Negotiated::Done;
                }
            }
        }
    }
}

/// SASL: the user, how they proved it and the `<success>` data, or why not. Only what this
/// connection offered (`sasl::mechanisms`); every mechanism needs what PLAIN needs (TLS, or
/// `xmpp.plain_auth`).
async fn authenticate(
    s: &Arc<Services>,
    t: &mut Transport,
    auth: &Element,
) -> Result<(UserKey, ChatAuth, Option<String>), Refusal> {
    if !plain_allowed(s, t) {
        return Err(Refusal::Failure("encryption-required"));
    }
    let mechanism = auth.attr("mechanism").unwrap_or_default();
    let offered = sasl::mechanisms(s.config.xmpp.scram, t.tls_exporter().is_some());
    if !offered.contains(&mechanism) {
        return Err(Refusal::Failure("invalid-mechanism"));
    }
    if let Some((hash, plus)) = ScramHash::from_mechanism(mechanism) {
        let result = sasl::scram(s, t, auth, hash, plus).await;
        count_login(
            "scram",
            match &result {
                Ok(_) => "success",
                Err(_) => "failure",
            },
        );
        let (user, data) = result?;
        return Ok((user, ChatAuth::Password, Some(data)));
    }
    plain(s, t, auth)
        .await
        .map(|(user, how)| (user, how, None))
        .map_err(Refusal::Failure)
}

/// SASL PLAIN; returns the user and how they proved it, or the SASL failure condition. The
/// check and its throttling are identity's (`Identity::check_chat_secret`).
async fn plain(
    s: &Arc<Services>,
    t: &Transport,
    auth: &Element,
) -> Result<(UserKey, ChatAuth), &'static str> {
    let ip = t.peer.ip();
    let creds = match sasl::parse_plain(&auth.text(), s.domain()) {
        Ok(c) => c,
        Err(e) => {
            count_login("password", "failure");
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
        Ok(Some(how)) => {
            let method = match how {
                ChatAuth::Token(_) => "token",
                ChatAuth::Password => "password",
            };
            count_login(method, "success");
            Ok((creds.user, how))
        }
        Ok(None) => {
            count_login("password", "failure");
            Err("not-authorized")
        }
        // RFC 6120 §6.5.1: the account is disabled (until an operator lifts the ban).
        Err(IdentityError::Banned) => {
            count_login("password", "failure");
            Err("account-disabled")
        }
        Err(IdentityError::Throttled { .. }) => {
            count_login("password", "throttled");
            tracing::info!(%ip, user = %creds.user.user, "SASL throttled");
            Err("not-authorized")
        }
        Err(e) => {
            count_login("password", "error");
            tracing::warn!(error = %e, "checking chat credentials");
            Err("temporary-auth-failure")
        }
    }
}

/// Counts a SASL login attempt. A refused secret counts as a password: a token that is not live
/// is indistinguishable from a wrong password.
fn count_login(method: &'static str, outcome: &'static str) {
    metrics::counter!(LOGINS, "via" => "xmpp_sasl", "method" => method, "outcome" => outcome)
        .increment(1);
}

/// Handles an iq between authentication and bind: bind, legacy session, or an error.
async fn bind_or_answer(
    s: &Arc<Services>,
    t: &mut Transport,
    pending: &PendingAuth,
    iq: Element,
) -> Option<Negotiated> {
    let user = pending.user;
    let is_set = IqType::of(&iq) == Ok(IqType::Set);
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
                match s.hub.bind(
                    user,
                    &resource,
                    tx,
                    s.config.xmpp.max_connections_per_user,
                    pending.auth,
                    pending.revoked.clone(),
                ) {
                    Ok((conn, first)) => {
                        let jid = Jid {
                            resource: Some(resource),
                            ..user.bare_jid(s.domain())
                        };
                        let payload = Element::new("bind", ns::BIND)
                            .with_child(Element::new("jid", ns::BIND).with_text(jid.to_string()));
                        let mut result = iq_result(&iq, s.domain(), Some(payload));
                        result.remove_attr("from");
                        // Enqueued before the client learns it is bound: by the time it acts
                        // (or a test pauses the clock), the session is past every database wait.
                        if first {
                            s.chat.presence_changed(user, true).await;
                        }
                        if t.send(&result).await.is_err() {
                            if s.hub.unregister(user, conn) {
                                s.chat.presence_changed(user, false).await;
                            }
                            return Some(Negotiated::Done);
                        }
                        return Some(Negotiated::Bound(Bound {
                            user,
                            jid,
                            conn,
                            rx,
                            revoked: pending.revoked.clone(),
                            first,
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
