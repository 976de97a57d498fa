//! The operator's commands on the `parley` binary: `user list|show|delete|ban|unban`,
//! `session kick`, `stats`. Each builds one result with a JSON form (`--json`, for scripts)
//! and a text form for a person. The account rules are identity's (`identity::operator`); the
//! counts are `db::stats`; the live numbers come from a running server's admin listener
//! (`GET /stats`), since the command runs in its own process.
//!
//! User fields are whatever users typed: the text form escapes control characters (a full
//! name must not drive the operator's terminal) and cuts long values; the JSON form is exact.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::db::{self, DbPool};
use crate::identity::{Identity, IdentityError};
use crate::model::account::Ban;
use crate::model::{AppId, Clock, User, UserId};

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// List users in id order: of one application, or of all.
    List {
        /// Only this application's users.
        #[arg(long)]
        app: Option<i64>,
        /// Users per page (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Users to skip.
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// Show one user, with their ban if any.
    Show { id: i64 },
    /// Delete a user as DELETE /users/{id} does; their live streams close.
    Delete { id: i64 },
    /// Ban a user: their sessions end, their live streams close, and they cannot log in
    /// (REST 403, XMPP <account-disabled/>) until unbanned.
    Ban {
        id: i64,
        /// A note for operators (shown by `user show`, never to the user).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a ban.
    Unban { id: i64 },
}

#[derive(Subcommand, Debug)]
pub enum SessionCommand {
    /// End every session of a user and close their live streams (they may log in again).
    Kick { user: i64 },
}

/// A command's result, in both forms.
pub struct Report {
    pub json: Value,
    pub text: String,
}

impl Report {
    /// Prints the JSON form (`--json`) or the text form on stdout.
    pub fn print(&self, json: bool) {
        if json {
            println!("{:#}", self.json);
        } else {
            print!("{}", self.text);
        }
    }
}

pub async fn user(identity: &Identity, cmd: UserCommand) -> Result<Report, IdentityError> {
    Ok(match cmd {
        UserCommand::List { app, limit, offset } => {
            let (users, total) = identity.list_users(app.map(AppId), limit, offset).await?;
            let mut text = format!(
                "{:<8} {:<5} {:<24} {:<28} {:<24} {:<20} BANNED\n",
                "ID", "APP", "LOGIN", "EMAIL", "FULL NAME", "LAST REQUEST"
            );
            for (u, ban) in &users {
                text += &format!(
                    "{:<8} {:<5} {:<24} {:<28} {:<24} {:<20} {}\n",
                    u.id,
                    u.application_id,
                    shown(u.login.as_deref(), 24),
                    shown(u.email.as_deref(), 28),
                    shown(u.full_name.as_deref(), 24),
                    u.last_request_at
                        .map(short_date)
                        .unwrap_or_else(|| "-".into()),
                    if ban.is_some() { "yes" } else { "-" },
                );
            }
            text += &format!("{} of {total} users (offset {offset})\n", users.len());
            Report {
                json: json!({
                    "total": total,
                    "offset": offset,
                    "limit": limit,
                    "users": users.iter().map(|(u, b)| user_json(u, b.as_ref())).collect::<Vec<_>>(),
                }),
                text,
            }
        }
        UserCommand::Show { id } => {
            let (u, ban) = identity.find_user(UserId(id)).await?;
            let mut text = String::new();
            let opt = |v: &Option<String>| shown(v.as_deref(), 200);
            for (k, v) in [
                ("id", u.id.to_string()),
                ("application", u.application_id.to_string()),
                ("login", opt(&u.login)),
                ("email", opt(&u.email)),
                ("full name", opt(&u.full_name)),
                ("external id", opt(&u.external_id)),
                ("created", short_date(u.created_at)),
                ("updated", short_date(u.updated_at)),
                (
                    "last request",
                    u.last_request_at
                        .map(short_date)
                        .unwrap_or_else(|| "-".into()),
                ),
            ] {
                text += &format!("{k:<14} {v}\n");
            }
            match &ban {
                Some(b) => {
                    text += &format!(
                        "{:<14} since {} ({})\n",
                        "banned",
                        short_date(b.at),
                        shown(b.reason.as_deref(), 200)
                    )
                }
                None => text += &format!("{:<14} no\n", "banned"),
            }
            Report {
                json: user_json(&u, ban.as_ref()),
                text,
            }
        }
        UserCommand::Delete { id } => {
            let u = identity.operator_delete_user(UserId(id)).await?;
            done(&u, "deleted", format!("User {id} deleted\n"))
        }
        UserCommand::Ban { id, reason } => {
            let u = identity.ban_user(UserId(id), reason).await?;
            done(
                &u,
                "banned",
                format!("User {id} banned; their sessions ended and live streams closed\n"),
            )
        }
        UserCommand::Unban { id } => {
            let u = identity.unban_user(UserId(id)).await?;
            done(&u, "unbanned", format!("User {id} unbanned\n"))
        }
    })
}

pub async fn session(identity: &Identity, cmd: SessionCommand) -> Result<Report, IdentityError> {
    match cmd {
        SessionCommand::Kick { user } => {
            let ended = identity.kick_user(UserId(user)).await?;
            Ok(Report {
                json: json!({"id": user, "kicked": true, "sessions_ended": ended}),
                text: format!(
                    "User {user} kicked: {ended} session(s) ended, live streams closed\n"
                ),
            })
        }
    }
}

/// `parley stats`: the database's counts, and the live numbers of the server whose admin
/// listener is `admin` (said plainly when none answers).
pub async fn stats(pool: &DbPool, clock: &Clock, admin: SocketAddr) -> Result<Report, db::DbError> {
    /// Applications the text form lists one by one; the JSON form has them all.
    const SHOWN_APPS: usize = 20;
    let apps = db::stats::per_app(pool, clock.now()).await?;
    let mut total = db::stats::Counts::default();
    for (_, _, c) in &apps {
        total.users += c.users;
        total.banned_users += c.banned_users;
        total.live_sessions += c.live_sessions;
        total.dialogs += c.dialogs;
        total.messages += c.messages;
    }
    let counts = |c: &db::stats::Counts| {
        json!({"users": c.users, "banned_users": c.banned_users, "live_user_sessions": c.live_sessions,
               "dialogs": c.dialogs, "messages": c.messages})
    };
    let row = |name: &str, c: &db::stats::Counts| {
        format!(
            "  {name:<28} {:>10} {:>8} {:>10} {:>10} {:>12}\n",
            c.users, c.banned_users, c.live_sessions, c.dialogs, c.messages
        )
    };
    let mut text = format!(
        "Database\n  {:<28} {:>10} {:>8} {:>10} {:>10} {:>12}\n",
        "APPLICATION", "USERS", "BANNED", "SESSIONS", "DIALOGS", "MESSAGES"
    );
    for (id, name, c) in apps.iter().take(SHOWN_APPS) {
        text += &row(&format!("{id} {}", shown(Some(name), 20)), c);
    }
    if apps.len() > SHOWN_APPS {
        text += &format!(
            "  … {} more applications (--json lists them)\n",
            apps.len() - SHOWN_APPS
        );
    }
    text += &row("total", &total);
    // Pushes and webhooks waiting in the outbox, and those that failed for good.
    let queues = db::push::queue_counts(pool).await?;
    let (outbox, dead) = queues
        .iter()
        .fold((0, 0), |(o, d), (_, qo, qd)| (o + qo, d + qd));
    text += &format!(
        "Push outbox
  {outbox} waiting, {dead} dead letters
"
    );
    for (id, qo, qd) in queues
        .iter()
        .filter(|(_, o, d)| *o > 0 || *d > 0)
        .take(SHOWN_APPS)
    {
        text += &format!(
            "  application {id}: {qo} waiting, {qd} dead letters
"
        );
    }
    let admin = reachable(admin);
    let live = match fetch_stats(admin).await {
        Ok(v) => {
            text += &live_text(admin, &v);
            v
        }
        Err(e) => {
            text += &format!("Server\n  not running (no answer on {admin}: {e})\n");
            Value::Null
        }
    };
    let json = json!({
        "database": {
            "total": counts(&total),
            "applications": apps.iter().map(|(id, name, c)| {
                let mut v = counts(c);
                v["application_id"] = json!(id);
                v["name"] = json!(name);
                v
            }).collect::<Vec<_>>(),
        },
        "push": {
            "outbox": outbox,
            "dead_letters": dead,
            "applications": queues.iter().map(|(id, o, d)| json!({
                "application_id": id, "outbox": o, "dead_letters": d,
            })).collect::<Vec<_>>(),
        },
        "server": live,
    });
    Ok(Report { json, text })
}

fn live_text(admin: SocketAddr, v: &Value) -> String {
    let n = |path: &[&str]| {
        path.iter()
            .try_fold(v, |v, k| v.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    format!(
        "Server (admin {admin}, version {}, up {} s)\n  \
         connections   REST {}, XMPP {} (TCP, TLS and WebSocket)\n  \
         XMPP streams  {} bound, {} users online, {} authenticating, {} parked\n  \
         rooms         {} live, {} occupants\n  \
         queues        {} stanzas queued to streams, largest queue {}\n",
        shown(v.get("version").and_then(Value::as_str), 20),
        n(&["uptime_secs"]),
        n(&["connections", "rest"]),
        n(&["connections", "xmpp"]),
        n(&["xmpp", "streams"]),
        n(&["xmpp", "users_online"]),
        n(&["xmpp", "authenticating"]),
        n(&["xmpp", "parked_sessions"]),
        n(&["rooms", "live"]),
        n(&["rooms", "occupants"]),
        n(&["queues", "outbound_stanzas"]),
        n(&["queues", "largest_outbound"]),
    )
}

/// A listener bound to every address (`0.0.0.0`) answers on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// How long `parley stats` waits for a server's admin listener.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(3);
/// The most of an answer read (the document is a few hundred bytes).
const MAX_ANSWER: u64 = 64 * 1024;

/// `GET /stats` on the admin listener: one HTTP/1.1 request, `Connection: close`, the answer
/// read to its end within [`ADMIN_TIMEOUT`] and [`MAX_ANSWER`] bytes.
async fn fetch_stats(addr: SocketAddr) -> Result<Value, String> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let req = format!("GET /stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        s.take(MAX_ANSWER)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(raw)
    };
    let raw = tokio::time::timeout(ADMIN_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {} s", ADMIN_TIMEOUT.as_secs()))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("not an HTTP answer")?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!("GET /stats answered {status} (an older Parley?)"));
    }
    serde_json::from_str(body).map_err(|e| format!("unreadable /stats: {e}"))
}

fn user_json(u: &User, ban: Option<&Ban>) -> Value {
    json!({
        "id": u.id.0,
        "application_id": u.application_id.0,
        "login": u.login,
        "email": u.email,
        "full_name": u.full_name,
        "external_id": u.external_id,
        "created_at": date(u.created_at),
        "updated_at": date(u.updated_at),
        "last_request_at": u.last_request_at.map(date),
        "banned": ban.is_some(),
        "banned_at": ban.map(|b| date(b.at)),
        "ban_reason": ban.and_then(|b| b.reason.clone()),
    })
}

fn done(u: &User, what: &str, text: String) -> Report {
    let mut json = json!({"id": u.id.0, "application_id": u.application_id.0});
    json[what] = json!(true);
    Report { json, text }
}

fn date(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// A UTC time to the second, for a person (`2025-01-31 12:00:00Z`).
fn short_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{} {:02}:{:02}:{:02}Z",
        t.date(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A user-typed value for a terminal: control characters escaped, at most `max` characters
/// (cut with `…`), `-` when absent.
fn shown(v: Option<&str>, max: usize) -> String {
    let Some(v) = v else { return "-".into() };
    let long = v.chars().count() > max;
    let mut out = String::new();
    for (i, c) in v.chars().enumerate() {
        if long && i + 1 >= max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_cannot_drive_the_operators_terminal() {
        assert_eq!(shown(Some("a\u{1b}[31mb\n"), 50), "a\\u{1b}[31mb\\n");
        assert_eq!(shown(Some("abcdef"), 4), "abc…");
        assert_eq!(shown(Some("abcd"), 4), "abcd");
        assert_eq!(shown(None, 4), "-");
    }

    #[test]
    fn an_admin_listener_on_every_address_is_asked_on_loopback() {
        let any: SocketAddr = "0.0.0.0:9090".parse().unwrap();
        assert_eq!(reachable(any), "127.0.0.1:9090".parse().unwrap());
        let any6: SocketAddr = "[::]:9090".parse().unwrap();
        assert_eq!(reachable(any6), "[::1]:9090".parse().unwrap());
        let one: SocketAddr = "10.0.0.5:9090".parse().unwrap();
        assert_eq!(reachable(one), one);
    }
}
