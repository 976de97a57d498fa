//! `--parley` provisioning through Parley's ConnectyCube REST API: an application session, users
//! signed up (or logged in when they exist) with a user session each, and group dialogs
//! (type 2) whose `xmpp_room_jid` the MUC scenario joins. Shapes follow
//! `docs/protocol/connectycube-api.md` §2–§3 and the seed's `POST /chat/Dialog`.

use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::http::{self, Client};

/// What the REST API needs to reach one application.
#[derive(Clone)]
pub struct Api {
    pub addr: SocketAddr,
    pub host: String,
    pub app_id: u64,
    pub auth_key: String,
}

/// A provisioned user: REST identity plus a live session token.
#[derive(Clone, Debug)]
pub struct ParleyUser {
    pub id: u64,
    pub password: String,
    pub token: String,
}

/// A group dialog as the MUC scenario needs it.
#[derive(Clone, Debug)]
pub struct Dialog {
    pub id: String,
    pub room_jid: String,
}

fn err(what: &str, r: &http::Response) -> String {
    format!(
        "{what}: HTTP {} {}",
        r.status,
        String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
    )
}

impl Api {
    pub fn client(&self) -> Client {
        Client::new(self.addr, &self.host)
    }

    /// `POST /session` without a user: an application token.
    pub async fn app_session(&self, c: &mut Client) -> Result<String, String> {
        let body = json!({"application_id": self.app_id, "auth_key": self.auth_key});
        let r = c
            .request("POST", "/session", &[], Some(body.to_string().as_bytes()))
            .await
            .map_err(|e| format!("POST /session: {e}"))?;
        if !r.ok() {
            return Err(err("POST /session", &r));
        }
        r.json()
            .and_then(|v| v["session"]["token"].as_str().map(str::to_string))
            .ok_or_else(|| "POST /session: no session.token in the answer".into())
    }

    async fn user_session(
        &self,
        c: &mut Client,
        login: &str,
        password: &str,
    ) -> Result<(u64, String), String> {
        let body = json!({"application_id": self.app_id, "auth_key": self.auth_key,
                          "user": {"login": login, "password": password}});
        let r = c
            .request("POST", "/session", &[], Some(body.to_string().as_bytes()))
            .await
            .map_err(|e| format!("POST /session (user): {e}"))?;
        if !r.ok() {
            return Err(err("POST /session (user)", &r));
        }
        let v = r.json().unwrap_or(Value::Null);
        let s = &v["session"];
        match (s["user_id"].as_u64(), s["token"].as_str()) {
            (Some(id), Some(t)) if id > 0 => Ok((id, t.to_string())),
            _ => Err("POST /session (user): no user_id/token in the answer".into()),
        }
    }

    /// Whether a session token (from the provisioning cache) is still live: `GET /session`,
    /// which also extends it. Sessions expire (2 h by default), so a cache outlives its tokens.
    pub async fn session_live(&self, c: &mut Client, token: &str) -> bool {
        matches!(
            c.request("GET", "/session", &[("CB-Token", token)], None).await,
            Ok(r) if r.ok()
        )
    }

    /// A user session for `login`: `POST /session` with the user's credentials first (it signs
    /// a missing user up when the application allows it, one password hash), else `POST /users`
    /// (an existing login is fine) and the session again.
    pub async fn provision_user(
        &self,
        c: &mut Client,
        app_token: &str,
        login: &str,
        password: &str,
    ) -> Result<ParleyUser, String> {
        if let Ok((id, token)) = self.user_session(c, login, password).await {
            return Ok(ParleyUser {
                id,
                password: password.to_string(),
                token,
            });
        }
        let body = json!({"user": {"login": login, "password": password}});
        let r = c
            .request(
                "POST",
                "/users",
                &[("CB-Token", app_token)],
                Some(body.to_string().as_bytes()),
            )
            .await
            .map_err(|e| format!("POST /users: {e}"))?;
        let taken = r.status == 422 && String::from_utf8_lossy(&r.body).contains("taken");
        if !r.ok() && !taken {
            return Err(err("POST /users", &r));
        }
        let (id, token) = self.user_session(c, login, password).await?;
        Ok(ParleyUser {
            id,
            password: password.to_string(),
            token,
        })
    }

    /// `POST /chat/Dialog` type 2 by `owner` with `occupants`.
    pub async fn create_group(
        &self,
        c: &mut Client,
        owner_token: &str,
        name: &str,
        occupants: &[u64],
    ) -> Result<Dialog, String> {
        let ids: Vec<String> = occupants.iter().map(u64::to_string).collect();
        let body = json!({"type": 2, "name": name, "occupants_ids": ids.join(",")});
        let r = c
            .request(
                "POST",
                "/chat/Dialog",
                &[("CB-Token", owner_token)],
                Some(body.to_string().as_bytes()),
            )
            .await
            .map_err(|e| format!("POST /chat/Dialog: {e}"))?;
        if !r.ok() {
            return Err(err("POST /chat/Dialog", &r));
        }
        let v = r.json().unwrap_or(Value::Null);
        match (v["_id"].as_str(), v["xmpp_room_jid"].as_str()) {
            (Some(id), Some(jid)) => Ok(Dialog {
                id: id.to_string(),
                room_jid: jid.to_string(),
            }),
            _ => Err("POST /chat/Dialog: no _id/xmpp_room_jid in the answer".into()),
        }
    }
}
