//! RFC 6120 errors as values: stanza errors (§8.3) with their type, defined condition and the
//! legacy `code` attribute the official SDK still reads (XEP-0086), and stream errors (§4.9).
//! Pure values and their XML; it decides nothing about *when* an error is due (handlers do) and
//! never closes a stream (the transport does).

use super::super::ns;
use super::super::stream::{Element, Fault, Node};

/// RFC 6120 §8.3.2: what the sender may do about a stanza error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// Give up: retrying will not help.
    Cancel,
    /// Proceed: the condition was only a warning.
    Continue,
    /// Change the data sent, then retry.
    Modify,
    /// Provide credentials, then retry.
    Auth,
    /// Wait, then retry unchanged.
    Wait,
}

impl ErrorType {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Auth => "auth",
            ErrorType::Wait => "wait",
        }
    }
}

/// RFC 6120 §8.3.3: the defined stanza error conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Condition {
    BadRequest,
    Conflict,
    FeatureNotImplemented,
    Forbidden,
    Gone,
    InternalServerError,
    ItemNotFound,
    JidMalformed,
    NotAcceptable,
    NotAllowed,
    NotAuthorized,
    PolicyViolation,
    RecipientUnavailable,
    Redirect,
    RegistrationRequired,
    RemoteServerNotFound,
    RemoteServerTimeout,
    ResourceConstraint,
    ServiceUnavailable,
    SubscriptionRequired,
    UndefinedCondition,
    UnexpectedRequest,
}

impl Condition {
    /// Every condition, for tests and tables.
    pub const ALL: [Condition; 22] = [
        Condition::BadRequest,
        Condition::Conflict,
        Condition::FeatureNotImplemented,
        Condition::Forbidden,
        Condition::Gone,
        Condition::InternalServerError,
        Condition::ItemNotFound,
        Condition::JidMalformed,
        Condition::NotAcceptable,
        Condition::NotAllowed,
        Condition::NotAuthorized,
        Condition::PolicyViolation,
        Condition::RecipientUnavailable,
        Condition::Redirect,
        Condition::RegistrationRequired,
        Condition::RemoteServerNotFound,
        Condition::RemoteServerTimeout,
        Condition::ResourceConstraint,
        Condition::ServiceUnavailable,
        Condition::SubscriptionRequired,
        Condition::UndefinedCondition,
        Condition::UnexpectedRequest,
    ];

    /// The element name in `urn:ietf:params:xml:ns:xmpp-stanzas`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Condition::BadRequest => "bad-request",
            Condition::Conflict => "conflict",
            Condition::FeatureNotImplemented => "feature-not-implemented",
            Condition::Forbidden => "forbidden",
            Condition::Gone => "gone",
            Condition::InternalServerError => "internal-server-error",
            Condition::ItemNotFound => "item-not-found",
            Condition::JidMalformed => "jid-malformed",
            Condition::NotAcceptable => "not-acceptable",
            Condition::NotAllowed => "not-allowed",
            Condition::NotAuthorized => "not-authorized",
            Condition::PolicyViolation => "policy-violation",
            Condition::RecipientUnavailable => "recipient-unavailable",
            Condition::Redirect => "redirect",
            Condition::RegistrationRequired => "registration-required",
            Condition::RemoteServerNotFound => "remote-server-not-found",
            Condition::RemoteServerTimeout => "remote-server-timeout",
            Condition::ResourceConstraint => "resource-constraint",
            Condition::ServiceUnavailable => "service-unavailable",
            Condition::SubscriptionRequired => "subscription-required",
            Condition::UndefinedCondition => "undefined-condition",
            Condition::UnexpectedRequest => "unexpected-request",
        }
    }

    /// The legacy numeric `code` (XEP-0086 §3; `policy-violation`, newer than that table, is
    /// sent as 406 like `not-acceptable`). The ConnectyCube SDK reads this number.
    pub const fn code(self) -> u16 {
        match self {
            Condition::Gone | Condition::Redirect => 302,
            Condition::BadRequest | Condition::JidMalformed | Condition::UnexpectedRequest => 400,
            Condition::NotAuthorized => 401,
            Condition::Forbidden => 403,
            Condition::ItemNotFound
            | Condition::RecipientUnavailable
            | Condition::RemoteServerNotFound => 404,
            Condition::NotAllowed => 405,
            Condition::NotAcceptable | Condition::PolicyViolation => 406,
            Condition::RegistrationRequired | Condition::SubscriptionRequired => 407,
            Condition::Conflict => 409,
            Condition::InternalServerError
            | Condition::ResourceConstraint
            | Condition::UndefinedCondition => 500,
            Condition::FeatureNotImplemented => 501,
            Condition::ServiceUnavailable => 503,
            Condition::RemoteServerTimeout => 504,
        }
    }
}

/// An RFC 6120 stanza error: its type, its defined condition and an optional human text. The
/// legacy `code` is not stored: it follows from the condition ([`StanzaError::code`]), so the
/// two cannot disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StanzaError {
    pub kind: ErrorType,
    pub condition: Condition,
    pub text: Option<String>,
    /// An application-specific condition (RFC 6120 §8.3.4): `(name, namespace)`, such as
    /// XEP-0060's `<precondition-not-met xmlns='…pubsub#errors'/>`.
    pub app: Option<(&'static str, &'static str)>,
    /// An application-specific condition with content, such as XEP-0363's
    /// `<file-too-large><max-file-size>N</max-file-size></file-too-large>` (boxed: every
    /// handler's `Result` carries a `StanzaError`, which stays small).
    pub app_element: Option<Box<Element>>,
}

impl StanzaError {
    /// An error of `kind` with `condition`.
    pub const fn new(kind: ErrorType, condition: Condition) -> Self {
        StanzaError {
            kind,
            condition,
            text: None,
            app: None,
            app_element: None,
        }
    }

    /// The legacy numeric `code` written with the error (XEP-0086), the condition's.
    pub const fn code(&self) -> u16 {
        self.condition.code()
    }

    pub const fn service_unavailable() -> Self {
        Self::new(ErrorType::Cancel, Condition::ServiceUnavailable)
    }
    pub const fn bad_request() -> Self {
        Self::new(ErrorType::Modify, Condition::BadRequest)
    }
    pub const fn item_not_found() -> Self {
        Self::new(ErrorType::Cancel, Condition::ItemNotFound)
    }
    pub const fn not_allowed() -> Self {
        Self::new(ErrorType::Cancel, Condition::NotAllowed)
    }
    pub const fn forbidden() -> Self {
        Self::new(ErrorType::Auth, Condition::Forbidden)
    }
    pub const fn not_authorized() -> Self {
        Self::new(ErrorType::Auth, Condition::NotAuthorized)
    }
    pub const fn internal_server_error() -> Self {
        Self::new(ErrorType::Wait, Condition::InternalServerError)
    }
    pub const fn resource_constraint() -> Self {
        Self::new(ErrorType::Wait, Condition::ResourceConstraint)
    }
    pub const fn remote_server_not_found() -> Self {
        Self::new(ErrorType::Cancel, Condition::RemoteServerNotFound)
    }
    pub const fn recipient_unavailable() -> Self {
        Self::new(ErrorType::Wait, Condition::RecipientUnavailable)
    }
    pub const fn not_acceptable() -> Self {
        Self::new(ErrorType::Modify, Condition::NotAcceptable)
    }
    /// RFC 6120 §8.3.3.12, type `wait`: a rate limit; the client may retry later.
    pub const fn policy_violation_wait() -> Self {
        Self::new(ErrorType::Wait, Condition::PolicyViolation)
    }
    pub const fn conflict() -> Self {
        Self::new(ErrorType::Cancel, Condition::Conflict)
    }

    pub fn with_text(mut self, t: impl Into<String>) -> Self {
        self.text = Some(t.into());
        self
    }

    pub fn with_app(mut self, name: &'static str, ns: &'static str) -> Self {
        self.app = Some((name, ns));
        self
    }

    pub fn with_app_element(mut self, e: Element) -> Self {
        self.app_element = Some(Box::new(e));
        self
    }

    pub fn to_element(&self) -> Element {
        let mut e = Element::new("error", ns::CLIENT)
            .with_attr("type", self.kind.as_str())
            .with_attr("code", self.code().to_string())
            .with_child(Element::new(self.condition.as_str(), ns::STANZAS));
        if let Some(t) = &self.text {
            e.push(Element::new("text", ns::STANZAS).with_text(t.clone()));
        }
        if let Some((name, ns)) = self.app {
            e.push(Element::new(name, ns));
        }
        if let Some(a) = &self.app_element {
            e.push(Element::clone(a));
        }
        e
    }

    /// The error reply to `stanza` (RFC 6120 §8.3): same name and id, from/to swapped, the
    /// original payload kept.
    pub fn reply_to(&self, stanza: &Element, server: &str) -> Element {
        let mut e = Element::new(&stanza.name, ns::CLIENT).with_attr("type", "error");
        if let Some(id) = stanza.attr("id") {
            e.set_attr("id", id);
        }
        e.set_attr("from", stanza.attr("to").unwrap_or(server));
        if let Some(from) = stanza.attr("from") {
            e.set_attr("to", from);
        }
        e.children = stanza
            .children
            .iter()
            .filter(|n| !matches!(n, Node::Element(c) if c.name == "error"))
            .cloned()
            .collect();
        e.push(self.to_element());
        e
    }
}

/// RFC 6120 §4.9.3: the defined stream error conditions. A stream error ends the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamCondition {
    BadFormat,
    BadNamespacePrefix,
    Conflict,
    ConnectionTimeout,
    HostGone,
    HostUnknown,
    ImproperAddressing,
    InternalServerError,
    InvalidFrom,
    InvalidNamespace,
    InvalidXml,
    NotAuthorized,
    NotWellFormed,
    PolicyViolation,
    RemoteConnectionFailed,
    Reset,
    ResourceConstraint,
    RestrictedXml,
    SeeOtherHost,
    SystemShutdown,
    UndefinedCondition,
    UnsupportedEncoding,
    UnsupportedFeature,
    UnsupportedStanzaType,
    UnsupportedVersion,
}

impl StreamCondition {
    /// Every condition, for tests and for [`StreamCondition::parse`].
    pub const ALL: [StreamCondition; 25] = [
        StreamCondition::BadFormat,
        StreamCondition::BadNamespacePrefix,
        StreamCondition::Conflict,
        StreamCondition::ConnectionTimeout,
        StreamCondition::HostGone,
        StreamCondition::HostUnknown,
        StreamCondition::ImproperAddressing,
        StreamCondition::InternalServerError,
        StreamCondition::InvalidFrom,
        StreamCondition::InvalidNamespace,
        StreamCondition::InvalidXml,
        StreamCondition::NotAuthorized,
        StreamCondition::NotWellFormed,
        StreamCondition::PolicyViolation,
        StreamCondition::RemoteConnectionFailed,
        StreamCondition::Reset,
        StreamCondition::ResourceConstraint,
        StreamCondition::RestrictedXml,
        StreamCondition::SeeOtherHost,
        StreamCondition::SystemShutdown,
        StreamCondition::UndefinedCondition,
        StreamCondition::UnsupportedEncoding,
        StreamCondition::UnsupportedFeature,
        StreamCondition::UnsupportedStanzaType,
        StreamCondition::UnsupportedVersion,
    ];

    /// The element name in `urn:ietf:params:xml:ns:xmpp-streams`.
    pub const fn as_str(self) -> &'static str {
        match self {
            StreamCondition::BadFormat => "bad-format",
            StreamCondition::BadNamespacePrefix => "bad-namespace-prefix",
            StreamCondition::Conflict => "conflict",
            StreamCondition::ConnectionTimeout => "connection-timeout",
            StreamCondition::HostGone => "host-gone",
            StreamCondition::HostUnknown => "host-unknown",
            StreamCondition::ImproperAddressing => "improper-addressing",
            StreamCondition::InternalServerError => "internal-server-error",
            StreamCondition::InvalidFrom => "invalid-from",
            StreamCondition::InvalidNamespace => "invalid-namespace",
            StreamCondition::InvalidXml => "invalid-xml",
            StreamCondition::NotAuthorized => "not-authorized",
            StreamCondition::NotWellFormed => "not-well-formed",
            StreamCondition::PolicyViolation => "policy-violation",
            StreamCondition::RemoteConnectionFailed => "remote-connection-failed",
            StreamCondition::Reset => "reset",
            StreamCondition::ResourceConstraint => "resource-constraint",
            StreamCondition::RestrictedXml => "restricted-xml",
            StreamCondition::SeeOtherHost => "see-other-host",
            StreamCondition::SystemShutdown => "system-shutdown",
            StreamCondition::UndefinedCondition => "undefined-condition",
            StreamCondition::UnsupportedEncoding => "unsupported-encoding",
            StreamCondition::UnsupportedFeature => "unsupported-feature",
            StreamCondition::UnsupportedStanzaType => "unsupported-stanza-type",
            StreamCondition::UnsupportedVersion => "unsupported-version",
        }
    }

    /// The condition named `name`, for conditions that reach the adapter as names from layers
    /// that may not import XMPP types (a revocation's `reset` / `not-authorized` from `hub/`).
    pub fn parse(name: &str) -> Option<StreamCondition> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The condition a revocation ends its streams with: `hub/` names it (`reset` for a
    /// password change, `not-authorized` otherwise) because it may not import XMPP types; a
    /// name this table does not know ends the stream as `not-authorized`.
    pub fn of_revocation(name: &str) -> StreamCondition {
        Self::parse(name).unwrap_or(StreamCondition::NotAuthorized)
    }

    /// `<stream:error>` carrying this condition (RFC 6120 §4.9.2).
    pub fn to_element(self) -> Element {
        Element::new("error", ns::STREAMS)
            .with_child(Element::new(self.as_str(), ns::STREAM_ERRORS))
    }
}

impl From<Fault> for StreamCondition {
    /// What the stream reader refuses, as the condition the stream ends with.
    fn from(f: Fault) -> Self {
        match f {
            Fault::NotWellFormed => StreamCondition::NotWellFormed,
            Fault::PolicyViolation => StreamCondition::PolicyViolation,
            Fault::RestrictedXml => StreamCondition::RestrictedXml,
            Fault::InvalidNamespace => StreamCondition::InvalidNamespace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_named_constructor_keeps_its_type_condition_and_legacy_code() {
        let table = [
            (
                StanzaError::service_unavailable(),
                "cancel",
                "service-unavailable",
                503,
            ),
            (StanzaError::bad_request(), "modify", "bad-request", 400),
            (
                StanzaError::item_not_found(),
                "cancel",
                "item-not-found",
                404,
            ),
            (StanzaError::not_allowed(), "cancel", "not-allowed", 405),
            (StanzaError::forbidden(), "auth", "forbidden", 403),
            (StanzaError::not_authorized(), "auth", "not-authorized", 401),
            (
                StanzaError::internal_server_error(),
                "wait",
                "internal-server-error",
                500,
            ),
            (
                StanzaError::resource_constraint(),
                "wait",
                "resource-constraint",
                500,
            ),
            (
                StanzaError::remote_server_not_found(),
                "cancel",
                "remote-server-not-found",
                404,
            ),
            (
                StanzaError::recipient_unavailable(),
                "wait",
                "recipient-unavailable",
                404,
            ),
            (
                StanzaError::not_acceptable(),
                "modify",
                "not-acceptable",
                406,
            ),
            (
                StanzaError::policy_violation_wait(),
                "wait",
                "policy-violation",
                406,
            ),
            (StanzaError::conflict(), "cancel", "conflict", 409),
        ];
        for (e, kind, condition, code) in table {
            assert_eq!(
                (e.kind.as_str(), e.condition.as_str(), e.code()),
                (kind, condition, code)
            );
        }
    }

    #[test]
    fn every_stanza_condition_has_a_distinct_name_and_a_legacy_code() {
        let mut names: Vec<&str> = Condition::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Condition::ALL.len());
        assert!(Condition::ALL
            .iter()
            .all(|c| (300..600).contains(&c.code())));
    }

    #[test]
    fn a_stream_condition_parses_back_from_its_name() {
        for c in StreamCondition::ALL {
            assert_eq!(StreamCondition::parse(c.as_str()), Some(c));
        }
        assert_eq!(StreamCondition::parse("no-such-condition"), None);
    }

    #[test]
    fn a_revocation_ends_the_stream_with_its_condition_or_not_authorized() {
        assert_eq!(
            StreamCondition::of_revocation("reset"),
            StreamCondition::Reset
        );
        assert_eq!(
            StreamCondition::of_revocation("something-else"),
            StreamCondition::NotAuthorized
        );
    }

    #[test]
    fn a_reader_fault_ends_the_stream_with_the_same_condition() {
        use Fault::*;
        for f in [
            NotWellFormed,
            PolicyViolation,
            RestrictedXml,
            InvalidNamespace,
        ] {
            assert_eq!(StreamCondition::from(f).as_str(), f.condition());
        }
    }

    #[test]
    fn a_stream_error_is_the_condition_inside_stream_error() {
        let e = StreamCondition::ConnectionTimeout.to_element();
        assert!(e.is("error", ns::STREAMS));
        assert!(e.child("connection-timeout", ns::STREAM_ERRORS).is_some());
    }
}
