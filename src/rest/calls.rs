//! `/calls`: the ICE servers (STUN, TURN with short-lived credentials) for a user's calls, and
//! `POST /calls/reject` (decline a call without an XMPP connection). Each handler parses, calls
//! one `chat::calls` function, renders.

use serde_json::json;

use super::{ApiError, Ctx, Reply};
use crate::chat::calls::{self, Reject};

/// `GET /calls/ice_servers`: `{"ice_servers": [{urls, username?, credential?}], "ttl": secs}`,
/// ready for `RTCPeerConnection({iceServers})` or the SDK's `videochat.iceServers`.
pub async fn ice_servers(ctx: Ctx) -> Result<Reply, ApiError> {
    let a = ctx.actor().await?;
    let now = ctx.state.identity.clock().unix_seconds();
    let (servers, ttl) = calls::ice_servers(&ctx.state.config.calls, a.user.0, now);
    Ok(Reply::ok(json!({ "ice_servers": servers, "ttl": ttl })))
}

/// `POST /calls/reject` `{recipientId, sessionID, platform, userInfo}` → `{}`: the caller
/// (`recipientId`) gets the `reject` signal of the call from the session's user.
pub async fn reject(ctx: Ctx) -> Result<Reply, ApiError> {
    let a = ctx.actor().await?;
    ctx.state.chat.admit_message(a.app.id, a.user)?;
    let r = Reject {
        recipient: ctx.params.i64(&["recipientId"])?,
        session_id: ctx.params.str(&["sessionID"])?,
        platform: ctx.params.str(&["platform"])?,
        user_info: ctx.params.get(&["userInfo"]).cloned(),
    };
    ctx.state.chat.reject_call(&a, r).await?;
    Ok(Reply::ok(json!({})))
}
