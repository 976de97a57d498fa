//! Offline storage (XEP-0160 behaviour, XEP-0203 stamps): a `chat`/`normal` message with a body
//! or a chat marker, addressed to a user with no connection, is kept (bounded per user) and
//! delivered oldest first with `<delay from=domain stamp=…/>` at the user's next initial
//! presence. Pending subscription requests (`presence type=subscribe`) wait here too. Must not
//! keep headlines (signalling, system messages) or bare chat states.

use time::format_description::well_known::Rfc3339;

use crate::db;
use crate::xmpp::dispatch::Registration;
use crate::xmpp::ns;
use crate::xmpp::stanza::UserKey;
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

/// Whether `msg` is kept when its recipient is offline.
pub fn worth_keeping(msg: &Element) -> bool {
    matches!(msg.attr("type").unwrap_or("normal"), "chat" | "normal")
        && (msg.child("body", ns::CLIENT).is_some() || msg.child_ns(MARKERS).is_some())
}

/// Keeps `msg` for `user`; false when there is no such user, the user's store is full or the
/// database failed.
pub async fn store(services: &Services, user: UserKey, msg: &Element) -> bool {
    match services
        .identity
        .unknown_users(user.app, &[user.user.0])
        .await
    {
        Ok(missing) if missing.is_empty() => {}
        Ok(_) => return false,
        Err(e) => {
            tracing::warn!(error = %e, "checking an offline recipient");
            return false;
        }
    }
    let now = services.clock.now();
    match db::xmpp::offline_push(
        &services.pool,
        user.app,
        user.user,
        &msg.to_stream_xml(),
        now,
        services.config.xmpp.offline_max_per_user,
    )
    .await
    {
        Ok(stored) => stored,
        Err(e) => {
            tracing::warn!(error = %e, "storing an offline message");
            false
        }
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
        // Stored stanzas were accepted under the limit; leave room for the stamps we add.
        max_stanza_bytes: limits.max_stanza_bytes.saturating_mul(2),
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
