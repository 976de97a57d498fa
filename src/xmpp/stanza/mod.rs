//! Stanza-level vocabulary: JIDs, the user a JID names, and the typed stanza parts handlers
//! read instead of raw attributes: RFC 6120 stanza and stream errors (`error`), the
//! message/presence/iq `type` values (`kind`), the ConnectyCube `<extraParams>` payload
//! (`extra_params`) and the ConnectyCube chat message (`message`). Pure values and their XML, no I/O; it routes and decides nothing.

use super::ns;
use super::stream::Element;

pub mod error;
pub mod extra_params;
pub mod kind;
pub mod message;

pub use error::{Condition, ErrorType, StanzaError, StreamCondition};
pub use kind::{is_error, IqType, MessageType, PresenceType, UnknownType};
pub use message::{message_from_view, CcMessage};

pub use crate::model::jid::Jid;
pub use crate::model::UserKey;

impl From<&crate::identity::IdentityError> for StanzaError {
    /// The one mapping from identity refusals (account data asked over XMPP) to RFC 6120
    /// conditions.
    fn from(e: &crate::identity::IdentityError) -> Self {
        use crate::identity::IdentityError as E;
        match e {
            E::NotFound(_) => Self::item_not_found(),
            E::Invalid { .. } => Self::not_acceptable().with_text(e.to_string()),
            E::Forbidden(_) => Self::forbidden(),
            E::Throttled { .. } | E::Busy(_) => Self::policy_violation_wait(),
            // The database's own words stay in the log; `wait`: try again.
            E::Db(_) | E::Internal(_) => Self::internal_server_error(),
            _ => Self::not_authorized(),
        }
    }
}

impl From<&crate::chat::ChatError> for StanzaError {
    /// The one mapping from chat-domain refusals to RFC 6120 conditions.
    fn from(e: &crate::chat::ChatError) -> Self {
        use crate::chat::ChatError as E;
        let base = match e {
            // The store failed, not a rule: `wait`, and stream management does not ack it.
            e if e.is_store_failure() => Self::internal_server_error(),
            E::Forbidden(_) => Self::forbidden(),
            E::NotFound(_) => Self::item_not_found(),
            E::Invalid { .. } => Self::bad_request(),
            E::Identity(_) => Self::not_authorized(),
            E::Db(_) | E::Unavailable(_) => Self::internal_server_error(),
            E::RateLimited { .. } => Self::policy_violation_wait(),
        };
        match e {
            // The database's own words stay in the log.
            E::Db(_) | E::Identity(crate::identity::IdentityError::Db(_)) => base,
            other => base.with_text(other.to_string()),
        }
    }
}

/// `<iq type='result'>` answering `req`, with an optional payload.
pub fn iq_result(req: &Element, server: &str, payload: Option<Element>) -> Element {
    let mut e = Element::new("iq", ns::CLIENT).with_attr("type", "result");
    if let Some(id) = req.attr("id") {
        e.set_attr("id", id);
    }
    e.set_attr("from", req.attr("to").unwrap_or(server));
    if let Some(from) = req.attr("from") {
        e.set_attr("to", from);
    }
    if let Some(p) = payload {
        e.push(p);
    }
    e
}

/// A long random hex string (resources, stream ids, server iq ids).
pub fn random_hex(bytes: usize) -> String {
    use rand_core::RngCore;
    let mut b = vec![0u8; bytes];
    rand_core::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanza_error_swaps_addresses_and_carries_the_legacy_code() {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("id", "1")
            .with_attr("from", "1-2@localhost/r")
            .with_attr("type", "get");
        let e = StanzaError::service_unavailable().reply_to(&iq, "localhost");
        assert_eq!(e.attr("to"), Some("1-2@localhost/r"));
        assert_eq!(e.attr("from"), Some("localhost"));
        let err = e.child("error", ns::CLIENT).unwrap();
        assert_eq!(err.attr("code"), Some("503"));
        assert!(err.child("service-unavailable", ns::STANZAS).is_some());
    }
}
