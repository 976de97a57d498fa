//! SASL as XMPP carries it (RFC 6120 §6). PLAIN (RFC 4616) credentials as ConnectyCube clients
//! send them: authcid `{user_id}-{app_id}`, authzid empty or the same bare JID, password = the
//! user's password or a live session token (parsing only; the check is
//! `Identity::check_chat_secret`). SCRAM-SHA-1/-256 and their `-PLUS` variants (RFC 5802, 7677,
//! 9266): the exchange of `<challenge>`/`<response>` elements, bounded to two responses; the
//! math and the proof check are identity's (`identity::scram`, `Identity::scram_start`/`_finish`).
//! A token is not a password: SCRAM cannot check it, so token logins stay on PLAIN.

use std::sync::Arc;

use base64::Engine;

use crate::config::ScramOffer;
use crate::identity::scram::{self, Binding, ScramError, ScramHash};
use crate::identity::{IdentityError, ScramFailure};
use crate::xmpp::ns;
use crate::xmpp::stanza::{Jid, StreamCondition, UserKey};
use crate::xmpp::stream::transport::ReadError;
use crate::xmpp::stream::{Element, Packet, Transport};
use crate::xmpp::Services;

/// Why a SASL exchange ended without success.
pub(super) enum Refusal {
    /// Answer `<failure>` with this RFC 6120 §6.5 condition; the client may try again.
    Failure(&'static str),
    /// The stream is over (closed, broken, or ended with a stream error already sent).
    Gone,
}

/// The mechanisms a connection offers, strongest first: SCRAM with channel binding when the
/// connection has `tls-exporter` data (TLS 1.3), SCRAM, then PLAIN; SCRAM as `xmpp.scram` says.
pub(super) fn mechanisms(offer: ScramOffer, channel_binding: bool) -> Vec<&'static str> {
    let hashes: &[ScramHash] = match offer {
        ScramOffer::Off => &[],
        ScramOffer::Sha256 => &[ScramHash::Sha256],
        ScramOffer::All => &ScramHash::ALL,
    };
    let mut out = Vec::new();
    if channel_binding {
        out.extend(hashes.iter().map(|h| h.mechanism_plus()));
    }
    out.extend(hashes.iter().map(|h| h.mechanism()));
    out.push("PLAIN");
    out
}

/// Base64 text of a SASL element (`=` is empty data), bounded before decoding.
fn decode_data(text: &str) -> Result<Vec<u8>, Refusal> {
    let text = text.trim();
    if text.len() > scram::MAX_MESSAGE_BYTES.div_ceil(3) * 4 {
        return Err(Refusal::Failure("malformed-request"));
    }
    if text == "=" {
        return Ok(Vec::new());
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| Refusal::Failure("incorrect-encoding"))
}

fn b64(data: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Sends `el`; `Gone` when the connection broke.
async fn send(t: &mut Transport, el: Element) -> Result<(), Refusal> {
    t.send(&el).await.map_err(|_| Refusal::Gone)
}

/// The client's next `<response>` during an exchange. `<abort/>` ends it with `aborted`;
/// anything else ends the stream.
async fn response(t: &mut Transport) -> Result<Vec<u8>, Refusal> {
    let el = match t.next_packet().await {
        Ok(Packet::Stanza(el)) => el,
        Ok(Packet::StreamEnd) => {
            t.close().await;
            return Err(Refusal::Gone);
        }
        Ok(Packet::StreamStart(_)) => {
            t.fail(StreamCondition::NotWellFormed).await;
            return Err(Refusal::Gone);
        }
        Err(ReadError::Fault(f)) => {
            t.fail(f.into()).await;
            return Err(Refusal::Gone);
        }
        Err(ReadError::Closed | ReadError::Io(_)) => {
            t.abandon();
            return Err(Refusal::Gone);
        }
    };
    match (el.ns.as_str(), el.name.as_str()) {
        (ns::SASL, "response") => decode_data(&el.text()),
        (ns::SASL, "abort") => Err(Refusal::Failure("aborted")),
        _ => {
            t.fail(StreamCondition::NotAuthorized).await;
            Err(Refusal::Gone)
        }
    }
}

fn refused(e: ScramError) -> Refusal {
    Refusal::Failure(match e {
        ScramError::Malformed | ScramError::Extension => "malformed-request",
        ScramError::ChannelBindingUnsupported
        | ScramError::ChannelBindingMismatch
        | ScramError::Downgrade
        | ScramError::NotAuthorized => "not-authorized",
    })
}

/// A SCRAM exchange after `<auth mechanism=…>`: the user and the base64 server-final message
/// for `<success>`. `plus` is the `-PLUS` variant (the caller checked it was offered).
pub(super) async fn scram(
    s: &Arc<Services>,
    t: &mut Transport,
    auth: &Element,
    hash: ScramHash,
    plus: bool,
) -> Result<(UserKey, String), Refusal> {
    let ip = t.peer.ip();
    let mut client_first = decode_data(&auth.text())?;
    if auth.text().trim().is_empty() {
        // No initial response: an empty challenge asks for the client-first message.
        send(t, Element::new("challenge", ns::SASL)).await?;
        client_first = response(t).await?;
    }
    let first = match scram::parse_client_first(&client_first) {
        Ok(f) => f,
        Err(e) => {
            s.identity.login_attempt_failed(ip);
            return Err(refused(e));
        }
    };
    let Some(user) = scram_user(&first.username, first.authzid.as_deref()) else {
        s.identity.login_attempt_failed(ip);
        return Err(Refusal::Failure("not-authorized"));
    };
    let exporter = t.tls_exporter();
    let binding = Binding {
        mechanism_plus: plus,
        offered: exporter.is_some(),
        tls_exporter: exporter.as_ref().map(|e| e.as_slice()),
    };
    let (login, server_first) = s
        .identity
        .scram_start(user.app, user.user, hash, &first, binding, ip)
        .await
        .map_err(|f| failure(f, user))?;
    send(
        t,
        Element::new("challenge", ns::SASL).with_text(b64(&server_first)),
    )
    .await?;
    let client_final = response(t).await?;
    let server_final = s
        .identity
        .scram_finish(login, &client_final, ip)
        .await
        .map_err(|f| failure(f, user))?;
    Ok((user, b64(&server_final)))
}

fn failure(f: ScramFailure, user: UserKey) -> Refusal {
    match f {
        ScramFailure::Refused(e) => refused(e),
        // RFC 6120 §6.5.1: the account is disabled (until an operator lifts the ban).
        ScramFailure::Identity(IdentityError::Banned) => Refusal::Failure("account-disabled"),
        ScramFailure::Identity(IdentityError::Throttled { .. }) => {
            tracing::info!(user = %user.user, "SASL throttled");
            Refusal::Failure("not-authorized")
        }
        ScramFailure::Identity(e) => {
            tracing::warn!(error = %e, "checking SCRAM credentials");
            Refusal::Failure("temporary-auth-failure")
        }
    }
}

/// The account a SCRAM username names (`{user_id}-{app_id}`, or that bare JID), with an authzid
/// that is empty or the same account, as PLAIN takes them.
fn scram_user(username: &str, authzid: Option<&str>) -> Option<UserKey> {
    let local = username.split('@').next().unwrap_or(username);
    let user = UserKey::from_local(local)?;
    if let Some(z) = authzid {
        if Jid::parse(z)?.local.as_deref() != Some(local) {
            return None;
        }
    }
    Some(user)
}

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
