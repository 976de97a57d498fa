//! SASL PLAIN (RFC 4616) credentials as ConnectyCube clients send them: authcid
//! `{user_id}-{app_id}`, authzid empty or the same bare JID, password = the user's password or
//! a live session token. Parsing only; the check is `Identity::check_chat_secret`.

use base64::Engine;

use crate::xmpp::stanza::{Jid, UserKey};

#[derive(Debug, PartialEq, Eq)]
pub struct PlainCredentials {
    pub user: UserKey,
    pub secret: String,
}

/// Why a PLAIN payload is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PlainError {
    /// Not base64, not three NUL-separated parts, not UTF-8.
    Malformed,
    /// The authcid names no user, or the authzid is someone else.
    NotAuthorized,
}

pub fn parse_plain(b64: &str, domain: &str) -> Result<PlainCredentials, PlainError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| PlainError::Malformed)?;
    let text = String::from_utf8(raw).map_err(|_| PlainError::Malformed)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(authcid), Some(secret), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed);
    };
    let local = authcid.split('@').next().unwrap_or(authcid);
    let user = UserKey::from_local(local).ok_or(PlainError::NotAuthorized)?;
    if !authzid.is_empty() {
        let z = Jid::parse(authzid).ok_or(PlainError::NotAuthorized)?;
        if z.local.as_deref() != Some(local) {
            return Err(PlainError::NotAuthorized);
        }
        let _ = domain;
    }
    if secret.is_empty() {
        return Err(PlainError::NotAuthorized);
    }
    Ok(PlainCredentials {
        user,
        secret: secret.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AppId, UserId};

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn plain_accepts_empty_or_matching_authzid() {
        let c = parse_plain(&b64("\u{0}1001-42\u{0}pw"), "localhost").unwrap();
        assert_eq!(c.user.user, UserId(1001));
        assert_eq!(c.user.app, AppId(42));
        assert!(parse_plain(
            &b64("1001-42@chat.quickblox.com\u{0}1001-42\u{0}pw"),
            "localhost"
        )
        .is_ok());
        assert_eq!(
            parse_plain(&b64("9-42@localhost\u{0}1001-42\u{0}pw"), "localhost"),
            Err(PlainError::NotAuthorized)
        );
        assert_eq!(parse_plain("!!", "localhost"), Err(PlainError::Malformed));
        assert_eq!(
            parse_plain(&b64("\0alice\0pw"), "localhost"),
            Err(PlainError::NotAuthorized)
        );
    }
}
