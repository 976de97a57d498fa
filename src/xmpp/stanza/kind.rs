//! The `type` attribute of the three stanzas as enums (RFC 6120 §8.2.3, RFC 6121 §4.7.1 and
//! §5.2.2), so a handler matches on a value instead of comparing strings. Pure parsing: what an
//! unknown type means is the caller's decision (RFC 6121 lets a message of unknown type be
//! treated as `normal`; an iq without a known type is a `bad-request`).

use std::fmt;

use super::super::stream::Element;
use super::StanzaError;

/// A `type` attribute this vocabulary does not know (or an iq without one). Holds nothing of
/// the value: it came from the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownType;

impl fmt::Display for UnknownType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown stanza type")
    }
}

impl std::error::Error for UnknownType {}

impl From<UnknownType> for StanzaError {
    /// RFC 6120 §8.3.3.1: a stanza the server cannot make sense of.
    fn from(_: UnknownType) -> Self {
        StanzaError::bad_request()
    }
}

/// Whether `stanza` (a message, presence or iq) is an error: `type='error'` is spelled the same
/// in all three (RFC 6120 §8.3.1), so this holds for any of them. An error is never answered
/// with another error.
pub fn is_error(stanza: &Element) -> bool {
    // The three enums read "error" alike; one of them is enough for any stanza.
    IqType::of(stanza) == Ok(IqType::Error)
}

/// RFC 6121 §5.2.2: a message's `type`; absent means `normal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageType {
    Chat,
    Groupchat,
    Headline,
    Normal,
    Error,
}

impl MessageType {
    pub fn from_attr(a: Option<&str>) -> Result<Self, UnknownType> {
        Ok(match a {
            None | Some("normal") => MessageType::Normal,
            Some("chat") => MessageType::Chat,
            Some("groupchat") => MessageType::Groupchat,
            Some("headline") => MessageType::Headline,
            Some("error") => MessageType::Error,
            Some(_) => return Err(UnknownType),
        })
    }

    /// The `type` of `el`.
    pub fn of(el: &Element) -> Result<Self, UnknownType> {
        Self::from_attr(el.attr("type"))
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            MessageType::Chat => "chat",
            MessageType::Groupchat => "groupchat",
            MessageType::Headline => "headline",
            MessageType::Normal => "normal",
            MessageType::Error => "error",
        }
    }
}

/// RFC 6121 §4.7.1: a presence's `type`; absent means available (there is no
/// `type='available'` on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PresenceType {
    Available,
    Unavailable,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Probe,
    Error,
}

impl PresenceType {
    pub fn from_attr(a: Option<&str>) -> Result<Self, UnknownType> {
        Ok(match a {
            None => PresenceType::Available,
            Some("unavailable") => PresenceType::Unavailable,
            Some("subscribe") => PresenceType::Subscribe,
            Some("subscribed") => PresenceType::Subscribed,
            Some("unsubscribe") => PresenceType::Unsubscribe,
            Some("unsubscribed") => PresenceType::Unsubscribed,
            Some("probe") => PresenceType::Probe,
            Some("error") => PresenceType::Error,
            Some(_) => return Err(UnknownType),
        })
    }

    /// The `type` of `el`.
    pub fn of(el: &Element) -> Result<Self, UnknownType> {
        Self::from_attr(el.attr("type"))
    }

    /// The type's name; `available` is a name only (see [`PresenceType::attr`]).
    pub const fn as_str(self) -> &'static str {
        match self {
            PresenceType::Available => "available",
            PresenceType::Unavailable => "unavailable",
            PresenceType::Subscribe => "subscribe",
            PresenceType::Subscribed => "subscribed",
            PresenceType::Unsubscribe => "unsubscribe",
            PresenceType::Unsubscribed => "unsubscribed",
            PresenceType::Probe => "probe",
            PresenceType::Error => "error",
        }
    }

    /// A subscription presence (RFC 6121 §3): `subscribe`, `subscribed`, `unsubscribe` or
    /// `unsubscribed`.
    pub const fn is_subscription(self) -> bool {
        matches!(
            self,
            PresenceType::Subscribe
                | PresenceType::Subscribed
                | PresenceType::Unsubscribe
                | PresenceType::Unsubscribed
        )
    }

    /// The attribute to write: none for available.
    pub const fn attr(self) -> Option<&'static str> {
        match self {
            PresenceType::Available => None,
            other => Some(other.as_str()),
        }
    }
}

/// RFC 6120 §8.2.3: an iq's `type`, which is required.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IqType {
    Get,
    Set,
    Result,
    Error,
}

impl IqType {
    pub fn from_attr(a: Option<&str>) -> Result<Self, UnknownType> {
        Ok(match a {
            Some("get") => IqType::Get,
            Some("set") => IqType::Set,
            Some("result") => IqType::Result,
            Some("error") => IqType::Error,
            None | Some(_) => return Err(UnknownType),
        })
    }

    /// The `type` of `el`.
    pub fn of(el: &Element) -> Result<Self, UnknownType> {
        Self::from_attr(el.attr("type"))
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            IqType::Get => "get",
            IqType::Set => "set",
            IqType::Result => "result",
            IqType::Error => "error",
        }
    }

    /// A request (`get`/`set`) that must be answered, as opposed to an answer.
    pub const fn is_request(self) -> bool {
        matches!(self, IqType::Get | IqType::Set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_without_a_type_is_normal() {
        assert_eq!(MessageType::from_attr(None), Ok(MessageType::Normal));
    }

    #[test]
    fn every_message_type_reads_back_from_its_name() {
        use MessageType::*;
        for t in [Chat, Groupchat, Headline, Normal, Error] {
            assert_eq!(MessageType::from_attr(Some(t.as_str())), Ok(t));
        }
    }

    #[test]
    fn a_message_type_outside_rfc_6121_is_unknown_not_guessed() {
        assert_eq!(MessageType::from_attr(Some("Chat")), Err(UnknownType));
        assert_eq!(MessageType::from_attr(Some("")), Err(UnknownType));
    }

    #[test]
    fn a_presence_without_a_type_is_available_and_writes_no_type() {
        assert_eq!(PresenceType::from_attr(None), Ok(PresenceType::Available));
        assert_eq!(PresenceType::Available.attr(), None);
    }

    #[test]
    fn available_is_not_a_presence_type_on_the_wire() {
        assert_eq!(PresenceType::from_attr(Some("available")), Err(UnknownType));
    }

    #[test]
    fn every_presence_type_but_available_reads_back_from_its_attribute() {
        use PresenceType::*;
        for t in [
            Unavailable,
            Subscribe,
            Subscribed,
            Unsubscribe,
            Unsubscribed,
            Probe,
            Error,
        ] {
            assert_eq!(PresenceType::from_attr(t.attr()), Ok(t));
        }
    }

    #[test]
    fn the_four_subscription_types_and_no_other_are_subscriptions() {
        use PresenceType::*;
        for t in [Subscribe, Subscribed, Unsubscribe, Unsubscribed] {
            assert!(t.is_subscription());
        }
        for t in [Available, Unavailable, Probe, Error] {
            assert!(!t.is_subscription());
        }
    }

    #[test]
    fn an_error_is_type_error_whichever_the_stanza() {
        use super::super::super::ns;
        for name in ["message", "presence", "iq"] {
            let el = Element::new(name, ns::CLIENT);
            assert!(!is_error(&el));
            assert!(is_error(&el.clone().with_attr("type", "error")));
            assert!(!is_error(&el.with_attr("type", "Error")));
        }
    }

    #[test]
    fn an_iq_needs_one_of_its_four_types() {
        use IqType::*;
        for t in [Get, Set, Result, Error] {
            assert_eq!(IqType::from_attr(Some(t.as_str())), Ok(t));
        }
        assert_eq!(IqType::from_attr(None), Err(UnknownType));
        assert_eq!(IqType::from_attr(Some("normal")), Err(UnknownType));
    }

    #[test]
    fn only_get_and_set_are_requests() {
        assert!(IqType::Get.is_request() && IqType::Set.is_request());
        assert!(!IqType::Result.is_request() && !IqType::Error.is_request());
    }

    #[test]
    fn an_unknown_type_is_answered_as_a_bad_request() {
        assert_eq!(StanzaError::from(UnknownType), StanzaError::bad_request());
    }

    #[test]
    fn the_type_enums_are_one_byte() {
        assert_eq!(std::mem::size_of::<MessageType>(), 1);
        assert_eq!(std::mem::size_of::<PresenceType>(), 1);
        assert_eq!(std::mem::size_of::<IqType>(), 1);
    }
}
