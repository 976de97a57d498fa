//! Offline storage (XEP-0160 behaviour, XEP-0203 stamps): a `chat`/`normal` message with a body
//! or a chat marker, addressed to a user with no connection, is kept (bounded per user) and
//! delivered oldest first with `<delay from=domain stamp=…/>` at the user's next initial
//! presence. Pending subscription requests (`presence type=subscribe`) wait here too, once per
//! sender. Bounded per user (`xmpp.offline_max_per_user`), per sender
//! (`xmpp.offline_max_per_sender`) and in bytes per stanza; a message past a bound bounces with
//! `<service-unavailable/>`. Must not keep headlines (signalling, system messages) or bare chat
//! states.

use time::format_description::well_known::Rfc3339;

use crate::db;
use crate::xmpp::dispatch::{
    BoxFuture, Extension, Flow, Hook, On, Phase, Registration, Routed, Spec, To,
};
use crate::xmpp::ns;
use crate::xmpp::stanza::{Jid, MessageType, PresenceType, StanzaError, UserKey};
use crate::xmpp::stream::{reader, Element};
use crate::xmpp::Services;

/// XEP-0333 chat markers.
const MARKERS: &str = "urn:xmpp:chat-markers:0";

pub const HANDLERS: &[Registration] = &[Registration {
    kind: crate::xmpp::dispatch::Kind::Nonza,
    ns: ns::MSGOFFLINE,
    handler: None,
    features: &[ns::MSGOFFLINE],
    for_users: false,
}];

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[Spec {
    name: "XEP-0160 / XEP-0203 offline messages with delay",
    status: "complete",
    notes: "bounded per user (`xmpp.offline_max_per_user`)",
    ejabberd: "mod_offline",
    prosody: "mod_offline",
}];

pub const EXTENSION: Extension = Extension {
    handlers: HANDLERS,
    hooks: &[
        Hook {
            on: On::Message,
            phase: Phase::Undelivered,
            run: keep_message,
        },
        Hook {
            on: On::Presence,
            phase: Phase::Undelivered,
            run: keep_subscription,
        },
    ],
    specs: SPECS,
};

/// Undelivered hook: a message worth keeping waits for its recipient; past a bound the sender
/// gets the refusal.
fn keep_message(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        let To::User(target, _) = m.to else {
            return Flow::Next;
        };
        if m.message_type() == Ok(MessageType::Error) || !worth_keeping(&m.stanza) {
            return Flow::Next;
        }
        match keep(&m.services, target, &m.stanza).await {
            Ok(()) => Flow::Next,
            Err(refused) => Flow::Refuse(refused.stanza_error()),
        }
    })
}

/// Undelivered hook: RFC 6121 §3.1.3, a subscription request to an offline contact waits for
/// its next login (once per sender, bounded per recipient).
fn keep_subscription(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        if let To::User(target, _) = m.to {
            if m.presence_type() == Ok(PresenceType::Subscribe) {
                store_subscription(&m.services, target, &m.bare, &m.stanza).await;
            }
        }
        Flow::Next
    })
}

/// Whether `msg` is kept when its recipient is offline.
pub fn worth_keeping(msg: &Element) -> bool {
    // An unknown type is not kept (RFC 6121 would let it count as `normal`; it never has).
    matches!(
        MessageType::of(msg),
        Ok(MessageType::Chat | MessageType::Normal)
    ) && (msg.child("body", ns::CLIENT).is_some() || msg.child_ns(MARKERS).is_some())
}

/// Why a message was not kept offline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// No such user.
    Unknown,
    /// `xmpp.offline_max_per_user` messages wait already.
    UserFull,
    /// `xmpp.offline_max_per_sender` messages from this sender wait already.
    SenderFull,
    /// Larger than a kept stanza may be (see [`max_kept_bytes`]).
    TooLarge,
    /// The database failed (logged).
    Failed,
}

impl Refused {
    /// The bounce the sender gets (one condition for every refusal, as the per-user bound has
    /// always answered; the text tells which). A failed store is not a refusal: `wait`, and
    /// stream management does not ack it, so the sender sends it again rather than believe it
    /// kept.
    pub fn stanza_error(self) -> StanzaError {
        let refusal = StanzaError::service_unavailable();
        let (error, text) = match self {
            Self::Unknown => (refusal, "the recipient is unknown"),
            Self::UserFull => (refusal, "the recipient cannot take more offline messages"),
            Self::SenderFull => (
                refusal,
                "the recipient cannot take more offline messages from you",
            ),
            Self::TooLarge => (refusal, "the message is too large to keep offline"),
            Self::Failed => (
                StanzaError::internal_server_error(),
                "the message could not be kept offline",
            ),
        };
        error.with_text(text)
    }
}

/// The largest stanza kept offline: what [`take`] can read back. A stanza read from a stream is
/// at most `xmpp.max_stanza_bytes`; with the `from` and history stamps the server adds it grows
/// a little, and messages built from REST requests are bounded by the HTTP body instead, so the
/// store checks it rather than keeping something that could not be delivered.
fn max_kept_bytes(services: &Services) -> usize {
    services.config.xmpp.max_stanza_bytes.saturating_mul(2)
}

/// Room left for the `<delay/>` added on delivery.
const DELAY_ROOM: usize = 512;

async fn user_exists(services: &Services, user: UserKey) -> Result<(), Refused> {
    match services
        .identity
        .unknown_users(user.app, &[user.user.0])
        .await
    {
        Ok(missing) if missing.is_empty() => Ok(()),
        Ok(_) => Err(Refused::Unknown),
        Err(e) => {
            tracing::warn!(error = %e, "checking an offline recipient");
            Err(Refused::Failed)
        }
    }
}

/// The sender of `msg` as counted per sender: its bare JID.
fn sender_of(msg: &Element) -> Option<String> {
    msg.attr("from")
        .and_then(Jid::parse)
        .map(|j| j.bare().to_string())
}

async fn push(
    services: &Services,
    user: UserKey,
    msg: &Element,
    bounds: Option<db::xmpp::OfflineBounds>,
) -> Result<(), Refused> {
    let xml = msg.to_stream_xml();
    if xml.len().saturating_add(DELAY_ROOM) > max_kept_bytes(services) {
        return Err(Refused::TooLarge);
    }
    let sender = sender_of(msg);
    let now = services.clock.now();
    match db::xmpp::offline_push(
        &services.pool,
        user.app,
        user.user,
        sender.as_deref(),
        &xml,
        now,
        bounds,
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(db::xmpp::OfflineRefusal::UserFull)) => Err(Refused::UserFull),
        Ok(Err(db::xmpp::OfflineRefusal::SenderFull)) => Err(Refused::SenderFull),
        Err(e) => {
            tracing::warn!(error = %e, "storing an offline message");
            Err(Refused::Failed)
        }
    }
}

/// Keeps `msg` for `user` within the per-user and per-sender bounds.
pub async fn keep(services: &Services, user: UserKey, msg: &Element) -> Result<(), Refused> {
    user_exists(services, user).await?;
    let cfg = &services.config.xmpp;
    let bounds = db::xmpp::OfflineBounds {
        per_user: cfg.offline_max_per_user,
        per_sender: cfg.offline_max_per_sender,
    };
    push(services, user, msg, Some(bounds)).await
}

/// Keeps `msg` for `user`; false when there is no such user, the user's store (or this
/// sender's share of it) is full or the database failed.
pub async fn store(services: &Services, user: UserKey, msg: &Element) -> bool {
    keep(services, user, msg).await.is_ok()
}

/// A stanza that reached a stream-management queue of `user` (`bare`) but was never
/// acknowledged: a message worth keeping waits offline, whatever the count bounds say. It was
/// accepted for delivery already, and the queues that held it are bounded by bytes
/// (`xmpp.sm_unacked_bytes`, `xmpp.sm_parked_queue_bytes`), which bounds these too.
pub async fn keep_unacked(services: &Services, user: UserKey, bare: &str, mut msg: Element) {
    if msg.name != "message" || !worth_keeping(&msg) {
        return;
    }
    msg.set_attr("to", bare);
    let _ = push(services, user, &msg, None).await;
}

/// A subscription request (`presence type=subscribe`) from `sender` (bare JID) to an offline
/// `user` waits for the user's next login: once per sender, at most `xmpp.roster_max_items`
/// in all; others are dropped silently (RFC 6121 lets a server drop duplicate requests).
pub async fn store_subscription(services: &Services, user: UserKey, sender: &str, el: &Element) {
    if user_exists(services, user).await.is_err() {
        return;
    }
    let xml = el.to_stream_xml();
    if xml.len().saturating_add(DELAY_ROOM) > max_kept_bytes(services) {
        return;
    }
    let now = services.clock.now();
    if let Err(e) = db::xmpp::offline_push_subscription(
        &services.pool,
        user.app,
        user.user,
        sender,
        &xml,
        now,
        services.config.xmpp.roster_max_items,
    )
    .await
    {
        tracing::warn!(error = %e, "storing a subscription request");
    }
}

/// Takes every message kept for `user`, oldest first, each with its delay stamp.
pub async fn take(services: &Services, user: UserKey) -> Vec<Element> {
    let rows = match db::xmpp::offline_take(&services.pool, user.app, user.user).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "reading offline messages");
            return Vec::new();
        }
    };
    let limits = services.transport_config().limits;
    let scope = [(String::new(), ns::CLIENT.to_owned())];
    let limits = reader::Limits {
        // Stored stanzas were checked against this when kept.
        max_stanza_bytes: max_kept_bytes(services),
        ..limits
    };
    rows.into_iter()
        .filter_map(|(xml, at)| {
            let mut msg = reader::parse_element(xml.as_bytes(), &scope, &limits).ok()?;
            let stamp = at.format(&Rfc3339).ok()?;
            msg.push(
                Element::new("delay", ns::DELAY)
                    .with_attr("from", services.domain())
                    .with_attr("stamp", stamp),
            );
            Some(msg)
        })
        .collect()
}
