//! Calls: the ICE servers a client gets (STUN, and TURN with short-lived credentials in the TURN
//! REST API scheme coturn's `use-auth-secret` checks), and the call signals REST may send on a
//! user's behalf (`POST /calls/reject`, for a device that declines a call without an XMPP
//! connection). Signals are never stored; the fan-out delivers them live. Owns no media.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha1::Sha1;

use super::events::ChatEvent;
use super::params::{self, Keys};
use super::{Actor, Chat, ChatError};
use crate::config::CallsConfig;
use crate::model::ObjectId;

/// The WebRTC module's name in signal `extraParams`.
pub const MODULE: &str = "WebRTCVideoChat";
/// Longest `sessionID` accepted (the SDK sends a UUID).
const MAX_SESSION_ID_CHARS: usize = 128;
/// Longest `platform` accepted (`web`, `ios`, `android`, …).
const MAX_PLATFORM_CHARS: usize = 32;

/// One entry of an RTCPeerConnection's `iceServers`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The ICE servers for `user` at unix time `now`: the `stun:` URLs as they are and, when a TURN
/// secret is set, the `turn:`/`turns:` URLs with the username `{expiry}:{user}` and the
/// credential base64(HMAC-SHA1(secret, username)) — the rule coturn applies, so the TURN server
/// needs no database of users. Without a secret TURN URLs are left out (they would only fail).
pub fn ice_servers(config: &CallsConfig, user: i64, now: i64) -> (Vec<IceServer>, u64) {
    let is_turn = |u: &&String| u.starts_with("turn:") || u.starts_with("turns:");
    let stun: Vec<String> = config
        .ice_urls
        .iter()
        .filter(|u| u.starts_with("stun:") || u.starts_with("stuns:"))
        .cloned()
        .collect();
    let turn: Vec<String> = config.ice_urls.iter().filter(is_turn).cloned().collect();
    let mut out = Vec::new();
    if !stun.is_empty() {
        out.push(IceServer {
            urls: stun,
            username: None,
            credential: None,
        });
    }
    if !turn.is_empty() && !config.turn_secret.is_empty() {
        let ttl = config.turn_ttl_secs.max(1);
        let expiry = now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        let username = format!("{expiry}:{user}");
        out.push(IceServer {
            urls: turn,
            credential: Some(turn_credential(&config.turn_secret, &username)),
            username: Some(username),
        });
    }
    (out, config.turn_ttl_secs)
}

/// coturn's `use-auth-secret` password for `username`: base64(HMAC-SHA1(secret, username)).
pub fn turn_credential(secret: &str, username: &str) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// `POST /calls/reject`: who declines which call.
pub struct Reject {
    /// The caller, who gets the signal.
    pub recipient: Option<i64>,
    pub session_id: Option<String>,
    pub platform: Option<String>,
    pub user_info: Option<Value>,
}

impl Chat {
    /// Sends the `reject` signal of call `session_id` from the actor to the caller, as the SDK's
    /// own reject over XMPP does: a headline with `moduleIdentifier=WebRTCVideoChat`,
    /// `signalType=reject`, `sessionID`, `callerID` (the caller), `platform` and `userInfo`.
    pub async fn reject_call(&self, actor: &Actor, r: Reject) -> Result<ObjectId, ChatError> {
        let to = r
            .recipient
            .ok_or_else(|| ChatError::invalid("recipientId", "is required"))?;
        let session = r
            .session_id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ChatError::invalid("sessionID", "is required"))?;
        if session.chars().count() > MAX_SESSION_ID_CHARS {
            return Err(ChatError::invalid(
                "sessionID",
                format!("is longer than {MAX_SESSION_ID_CHARS} characters"),
            ));
        }
        params::check_text("sessionID", &session)?;
        let mut signal = Map::new();
        signal.insert("signalType".into(), Value::from("reject"));
        signal.insert("sessionID".into(), Value::from(session));
        signal.insert("callerID".into(), Value::from(to));
        if let Some(p) = r.platform.filter(|p| !p.is_empty()) {
            if p.chars().count() > MAX_PLATFORM_CHARS {
                return Err(ChatError::invalid(
                    "platform",
                    format!("is longer than {MAX_PLATFORM_CHARS} characters"),
                ));
            }
            params::check_text("platform", &p)?;
            signal.insert("platform".into(), Value::from(p));
        }
        match r.user_info {
            None | Some(Value::Null) => {}
            Some(Value::Object(info)) => {
                // Its keys become element names under <userInfo>: the custom-parameter rules.
                params::check(
                    Some("userInfo"),
                    &info,
                    Keys::AllNames,
                    self.custom_bounds(),
                    &[],
                )?;
                signal.insert("userInfo".into(), Value::Object(info));
            }
            Some(_) => return Err(ChatError::invalid("userInfo", "must be an object")),
        }
        self.require_user(actor.app.id, to, "recipientId").await?;
        let id = ObjectId::generate(self.clock().unix_seconds());
        self.events().publish(ChatEvent::CallSignal {
            app: actor.app.id,
            id: id.clone(),
            from: actor.user.0,
            to,
            params: signal,
        });
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(urls: &[&str], secret: &str) -> CallsConfig {
        CallsConfig {
            ice_urls: urls.iter().map(|u| u.to_string()).collect(),
            turn_secret: secret.into(),
            turn_ttl_secs: 600,
        }
    }

    #[test]
    fn turn_credentials_follow_the_turn_rest_api_scheme() {
        let c = config(&["stun:s:3478", "turn:t:3478?transport=udp"], "s3cret");
        let (servers, ttl) = ice_servers(&c, 77, 1_000);
        assert_eq!(ttl, 600);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, ["stun:s:3478"]);
        assert_eq!(servers[0].username, None);
        assert_eq!(servers[1].urls, ["turn:t:3478?transport=udp"]);
        assert_eq!(servers[1].username.as_deref(), Some("1600:77"));
        // RFC 2104 HMAC-SHA1 of "1600:77" under "s3cret", base64: computed independently with
        // `printf '1600:77' | openssl dgst -sha1 -hmac s3cret -binary | base64`.
        assert_eq!(
            servers[1].credential.as_deref(),
            Some("uvLPX87Kvit68Vi+cWuxCHM1UKY=")
        );
    }

    #[test]
    fn without_a_secret_only_stun_urls_are_handed_out() {
        let c = config(&["stun:s:3478", "turns:t:5349?transport=tcp"], "");
        let (servers, _) = ice_servers(&c, 1, 0);
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].urls, ["stun:s:3478"]);
    }
}
