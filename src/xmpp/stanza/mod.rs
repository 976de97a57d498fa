//! Stanza-level vocabulary: JIDs, the user a JID names, and the typed stanza parts handlers
//! read instead of raw attributes: RFC 6120 stanza and stream errors (`error`), the
//! message/presence/iq `type` values (`kind`), the ConnectyCube `<extraParams>` payload
//! (`extra_params`) and the ConnectyCube chat message (`message`). Pure values and their XML, no I/O; it routes and decides nothing.

use std::fmt;

use super::ns;
use super::stream::Element;
use crate::model::{AppId, UserId};

pub mod error;
pub mod extra_params;
pub mod kind;
pub mod message;

pub use error::{Condition, ErrorType, StanzaError, StreamCondition};
pub use kind::{is_error, IqType, MessageType, PresenceType, UnknownType};
pub use message::{message_from_view, CcMessage};

/// `local@domain/resource`, each part as written (no stringprep: local parts are numeric ids).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Jid {
    pub local: Option<String>,
    pub domain: String,
    pub resource: Option<String>,
}

impl Jid {
    pub fn parse(s: &str) -> Option<Jid> {
        let (rest, resource) = match s.split_once('/') {
            Some((a, r)) if !r.is_empty() => (a, Some(r.to_owned())),
            Some(_) => return None,
            None => (s, None),
        };
        let (local, domain) = match rest.split_once('@') {
            Some((l, d)) if !l.is_empty() => (Some(l.to_owned()), d),
            Some(_) => return None,
            None => (None, rest),
        };
        if domain.is_empty() || domain.contains('@') {
            return None;
        }
        Some(Jid {
            local,
            domain: domain.to_ascii_lowercase(),
            resource,
        })
    }

    pub fn bare(&self) -> Jid {
        Jid {
            resource: None,
            ..self.clone()
        }
    }

    /// The user this JID names on `domain`, if it is a `{user_id}-{app_id}` JID there.
    pub fn user(&self, domain: &str) -> Option<UserKey> {
        if !self.domain.eq_ignore_ascii_case(domain) {
            return None;
        }
        UserKey::from_local(self.local.as_deref()?)
    }

    /// The user this JID names on `domain` if `caller` may reach them (see
    /// [`UserKey::same_app`]); `None` for any other JID.
    pub fn peer_of(&self, domain: &str, caller: &UserKey) -> Option<UserKey> {
        self.user(domain).filter(|u| caller.same_app(u))
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.local {
            write!(f, "{l}@")?;
        }
        f.write_str(&self.domain)?;
        if let Some(r) = &self.resource {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

pub use crate::model::UserKey;

impl UserKey {
    /// Parses `{user_id}-{app_id}`.
    pub fn from_local(local: &str) -> Option<UserKey> {
        let (u, a) = local.split_once('-')?;
        if u.is_empty() || a.is_empty() || !u.bytes().chain(a.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(UserKey {
            app: AppId(a.parse().ok()?),
            user: UserId(u.parse().ok()?),
        })
    }

    /// **The tenant rule**, written once: a user reaches only users of their own application.
    /// Stanza routing (`session::resolve`, the entry point of every message, presence and iq
    /// addressed to a user), roster contacts, status streaming and last activity all ask it; a
    /// JID of another application is answered as if no such user existed.
    pub fn same_app(&self, other: &UserKey) -> bool {
        self.app == other.app
    }

    pub fn local(&self) -> String {
        format!("{}-{}", self.user, self.app)
    }

    pub fn bare_jid(&self, domain: &str) -> Jid {
        Jid {
            local: Some(self.local()),
            domain: domain.to_owned(),
            resource: None,
        }
    }
}

impl From<&crate::chat::ChatError> for StanzaError {
    /// The one mapping from chat-domain refusals to RFC 6120 conditions.
    fn from(e: &crate::chat::ChatError) -> Self {
        use crate::chat::ChatError as E;
        let base = match e {
            E::Forbidden(_) => Self::forbidden(),
            E::NotFound(_) => Self::item_not_found(),
            E::Invalid { .. } => Self::bad_request(),
            E::Identity(_) => Self::not_authorized(),
            E::Db(_) | E::Unavailable(_) => Self::internal_server_error(),
            E::RateLimited { .. } => Self::policy_violation_wait(),
        };
        match e {
            E::Db(_) => base,
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
    fn user_jids_parse_into_app_and_user() {
        let j = Jid::parse("1001-42@localhost/abc").unwrap();
        assert_eq!(j.resource.as_deref(), Some("abc"));
        let k = j.user("localhost").unwrap();
        assert_eq!((k.user, k.app), (UserId(1001), AppId(42)));
        assert_eq!(k.bare_jid("localhost").to_string(), "1001-42@localhost");
        assert!(Jid::parse("x@").is_none());
        assert!(Jid::parse("1001-42@other")
            .unwrap()
            .user("localhost")
            .is_none());
        assert!(UserKey::from_local("10a-42").is_none());
    }

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
