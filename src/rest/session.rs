//! `/session` and `/login`: sessions as the SDKs create and use them.

use serde_json::{json, Value};

use super::users::user_json;
use super::{ApiError, Ctx, Params, Reply};
use crate::identity::{Credentials, SessionRequest};
use crate::model::time::iso;
use crate::model::{Session, User};

fn session_json(s: &Session, token: &str, user: Option<&User>) -> Value {
    let nonce = s.nonce.map_or(Value::Null, Value::from);
    let mut v = json!({
        "id": s.id.0,
        "user_id": s.user_id.map(|u| u.0).unwrap_or(0),
        "application_id": s.application_id,
        "token": token,
        "nonce": nonce,
        "ts": s.ts,
        "created_at": iso(s.created_at),
        "updated_at": iso(s.updated_at),
    });
    if let (Some(u), Value::Object(m)) = (user, &mut v) {
        m.insert("user".into(), user_json(u));
    }
    json!({ "session": v })
}

/// Login or email with password, from `prefix[login]` (or top-level when `prefix` is empty).
fn credentials(p: &Params, prefix: &[&str]) -> Result<Option<Credentials>, ApiError> {
    let at = |k: &'static str| -> Vec<&str> {
        prefix.iter().copied().chain(std::iter::once(k)).collect()
    };
    let password = p.str(&at("password"))?;
    let login = p.str(&at("login"))?.filter(|s| !s.is_empty());
    let email = p.str(&at("email"))?.filter(|s| !s.is_empty());
    Ok(match (login, email) {
        (None, None) => None,
        (login, email) => {
            let password =
                password.ok_or_else(|| ApiError::invalid("password", "cannot be blank"))?;
            Some(match login {
                Some(login) => Credentials::Login { login, password },
                None => Credentials::Email {
                    email: email.unwrap_or_default(),
                    password,
                },
            })
        }
    })
}

/// `POST /session`: an application session, or a user session with `user[login|email]` and
/// `user[password]` (creating a missing user when the application allows). Signed requests are
/// verified; the (timestamp, nonce) pair is recorded so it cannot be replayed.
pub async fn create(ctx: Ctx) -> Result<Reply, ApiError> {
    let p = &ctx.params;
    let unsupported = if let Some(provider) = p.str(&["provider"])? {
        Some(("provider".to_string(), format!("`{provider}` sign-in is not supported by this server; use login or email with a password")))
    } else if p.flag(&["user", "guest"])? {
        Some((
            "user[guest]".to_string(),
            "guest sessions are not supported by this server".to_string(),
        ))
    } else {
        None
    };
    let req = SessionRequest {
        application_id: p.i64(&["application_id"])?.map(crate::model::AppId),
        auth_key: p.str(&["auth_key"])?,
        timestamp: p.i64(&["timestamp"])?,
        // A number (what the SDKs send): text, or digits beyond 64 bits, is a 422 naming it.
        nonce: p.i64(&["nonce"])?,
        signature: p.str(&["signature"])?,
        credentials: credentials(p, &["user"])?,
        unsupported,
        signed_pairs: p.flatten(),
        peer: Some(ctx.peer.ip()),
    };
    let (session, user, token) = ctx.state.identity.create_session(req).await?;
    Ok(Reply::created(session_json(
        &session,
        &token,
        user.as_ref(),
    )))
}

/// `GET /session`: the caller's session, with its user.
pub async fn get(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.caller().await?;
    Ok(Reply::ok(session_json(
        &c.session,
        &c.token,
        c.user.as_ref(),
    )))
}

/// `DELETE /session`: ends the session; its token stops working at once.
pub async fn destroy(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.caller().await?;
    ctx.state.identity.destroy_session(&c).await?;
    Ok(Reply::empty())
}

/// `POST /login`: binds the caller's session to the user (`login` or `email`, and `password`,
/// top-level as the SDK sends them, or under `user[...]`).
pub async fn login(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.caller().await?;
    let creds = match credentials(&ctx.params, &[])? {
        Some(c) => c,
        None => credentials(&ctx.params, &["user"])?
            .ok_or_else(|| ApiError::invalid("login", "or email is required"))?,
    };
    let user = ctx.state.identity.login(&c, creds, ctx.peer.ip()).await?;
    Ok(Reply::ok(json!({ "user": user_json(&user) })))
}

/// `DELETE /login`: the session goes back to being an application session.
pub async fn logout(ctx: Ctx) -> Result<Reply, ApiError> {
    let c = ctx.caller().await?;
    ctx.state.identity.logout(&c).await?;
    Ok(Reply::empty())
}
