//! The operator's commands (`parley user …`, `parley session kick`, `parley stats`), run as the
//! real binary against the database of a running server, as an operator would on its host: what
//! they change in the database reaches the server's live streams through `NOTIFY
//! parley_revoke`, and a banned user can neither open a REST session nor log in over XMPP.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::xmpp::{Client, Via};
use crate::common::{conn_string, TestServer, PASSWORD};

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// `parley ARGS` against the server's database, its admin listener at `admin`. Run without
/// blocking: the server under test lives on this test's runtime.
async fn parley_at(srv: &TestServer, admin: SocketAddr, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(args)
        .env("PARLEY_DATABASE_URL", conn_string(&srv.pg))
        .env("PARLEY_ADMIN_ADDR", admin.to_string())
        .env("PARLEY_LOG", "warn")
        .output()
        .await
        .expect("run parley");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn parley(srv: &TestServer, args: &[&str]) -> Run {
    let run = parley_at(srv, srv.admin_addr(), args).await;
    assert!(run.ok, "parley {args:?} failed: {}", run.stderr);
    run
}

/// The server's notice listener is in place (its `LISTEN` has run on its own connection):
/// a command run before that would notify nobody.
async fn listening(srv: &TestServer) -> i32 {
    let c = srv.pool.get().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = c
            .query_opt(
                "SELECT pid FROM pg_stat_activity
                 WHERE datname = current_database() AND query = 'LISTEN parley_revoke'",
                &[],
            )
            .await
            .unwrap();
        if let Some(r) = row {
            return r.get(0);
        }
        assert!(
            Instant::now() < deadline,
            "the server never listened for revocations"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn session_for(srv: &TestServer, login: &str, password: &str) -> crate::common::http::Resp {
    srv.http
        .post_json(
            "/session",
            None,
            json!({"application_id": srv.app.id.0, "auth_key": srv.app.auth_key,
                   "user": {"login": login, "password": password}}),
        )
        .await
}

async fn sasl(srv: &TestServer, local: &str, secret: &str) -> String {
    let mut c = Client::connect(srv.xmpp, Via::Tcp).await;
    c.open().await;
    c.auth(local, secret).await
}

#[tokio::test]
async fn user_list_pages_through_users_of_one_application_or_of_all() {
    let srv = TestServer::start().await;
    let ids: Vec<i64> = srv
        .users("lister", 3)
        .await
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    let other = srv.other_app("elsewhere").await;
    let (_, stranger) = srv.user_token_in(&other, "stranger").await;

    let all = parley(&srv, &["user", "list", "--json"]).await.json();
    assert_eq!(all["total"], 4);
    let listed: Vec<i64> = all["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, [ids.clone(), vec![stranger]].concat());

    let app = srv.app.id.0.to_string();
    let page = parley(
        &srv,
        &[
            "user", "list", "--app", &app, "--limit", "2", "--offset", "1", "--json",
        ],
    )
    .await
    .json();
    assert_eq!(page["total"], 3);
    let paged: Vec<i64> = page["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_i64().unwrap())
        .collect();
    assert_eq!(paged, ids[1..]);

    let text = parley(&srv, &["user", "list"]).await.stdout;
    assert!(text.starts_with("ID"), "{text}");
    assert!(
        text.contains("lister_u0") && text.contains("stranger"),
        "{text}"
    );
    assert!(text.contains("4 of 4 users"), "{text}");

    let refused = parley_at(&srv, srv.admin_addr(), &["user", "list", "--limit", "0"]).await;
    assert!(
        !refused.ok && refused.stderr.contains("limit"),
        "{}",
        refused.stderr
    );
    srv.stop().await;
}

#[tokio::test]
async fn user_show_prints_one_user_and_names_a_missing_one() {
    let srv = TestServer::start().await;
    let (_, id) = srv.user_token("shown").await;
    let v = parley(&srv, &["user", "show", &id.to_string(), "--json"])
        .await
        .json();
    assert_eq!(v["id"], id);
    assert_eq!(v["application_id"], srv.app.id.0);
    assert_eq!(v["login"], "shown");
    assert_eq!(v["banned"], false);
    let text = parley(&srv, &["user", "show", &id.to_string()])
        .await
        .stdout;
    assert!(text.contains("login") && text.contains("shown"), "{text}");
    assert!(text.contains("banned         no"), "{text}");

    let missing = parley_at(&srv, srv.admin_addr(), &["user", "show", "999999"]).await;
    assert!(!missing.ok);
    assert!(
        missing.stderr.contains("User 999999 not found"),
        "{}",
        missing.stderr
    );
    srv.stop().await;
}

#[tokio::test]
async fn user_delete_removes_the_account_and_closes_its_live_stream() {
    let srv = TestServer::start().await;
    listening(&srv).await;
    let (token, id) = srv.user_token("deleted_by_operator").await;
    let mut stream = Client::login(srv.xmpp, Via::Tcp, &srv.local(id), PASSWORD).await;
    let out = parley(&srv, &["user", "delete", &id.to_string(), "--json"])
        .await
        .json();
    assert_eq!(out["deleted"], true);
    assert_eq!(stream.stream_error().await, "not-authorized");
    assert_eq!(srv.http.get("/session", Some(&token)).await.status, 401);
    let again = parley_at(&srv, srv.admin_addr(), &["user", "show", &id.to_string()]).await;
    assert!(
        !again.ok && again.stderr.contains("not found"),
        "{}",
        again.stderr
    );
    srv.assert_serving().await;
    srv.stop().await;
}

#[tokio::test]
async fn a_banned_user_cannot_open_a_rest_session_until_unbanned() {
    let srv = TestServer::start().await;
    let (_, id) = srv.user_token("banned_rest").await;
    parley(&srv, &["user", "ban", &id.to_string(), "--reason", "spam"]).await;

    let r = session_for(&srv, "banned_rest", PASSWORD).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"errors": {"base": ["This account is banned"]}})
    );
    // The operator's note is not the user's business.
    assert!(!r.body.contains("spam"));
    // Binding an application session to the user is a session too.
    let app_token = srv.app_token().await;
    let login = srv
        .http
        .post_form(
            "/login",
            Some(&app_token),
            &format!("login=banned_rest&password={PASSWORD}"),
        )
        .await;
    assert_eq!(login.status, 403, "{}", login.body);
    // Without the password, nothing tells that the account is banned.
    assert_eq!(
        session_for(&srv, "banned_rest", "wrong-password")
            .await
            .status,
        401
    );

    parley(&srv, &["user", "unban", &id.to_string()]).await;
    assert_eq!(session_for(&srv, "banned_rest", PASSWORD).await.status, 201);
    srv.stop().await;
}

#[tokio::test]
async fn a_banned_user_cannot_log_in_over_xmpp() {
    let srv = TestServer::start().await;
    let (_, id) = srv.user_token("banned_xmpp").await;
    parley(&srv, &["user", "ban", &id.to_string()]).await;
    let local = srv.local(id);
    // RFC 6120 §6.5.1, for the holder of the right password only.
    assert_eq!(sasl(&srv, &local, PASSWORD).await, "account-disabled");
    assert_eq!(sasl(&srv, &local, "wrong-password").await, "not-authorized");
    parley(&srv, &["user", "unban", &id.to_string()]).await;
    assert_eq!(sasl(&srv, &local, PASSWORD).await, "success");
    srv.stop().await;
}

#[tokio::test]
async fn a_ban_ends_the_users_sessions_and_closes_their_live_streams() {
    let srv = TestServer::start().await;
    listening(&srv).await;
    let (token, id) = srv.user_token("banned_live").await;
    let mut stream = Client::login(srv.xmpp, Via::Ws, &srv.local(id), &token).await;
    parley(&srv, &["user", "ban", &id.to_string(), "--reason", "abuse"]).await;
    assert_eq!(stream.stream_error().await, "not-authorized");
    assert_eq!(srv.http.get("/session", Some(&token)).await.status, 401);

    let shown = parley(&srv, &["user", "show", &id.to_string(), "--json"])
        .await
        .json();
    assert_eq!(shown["banned"], true);
    assert_eq!(shown["ban_reason"], "abuse");
    assert!(shown["banned_at"].is_string(), "{shown}");
    srv.assert_serving().await;
    srv.stop().await;
}

#[tokio::test]
async fn session_kick_closes_the_live_xmpp_streams_of_a_running_server() {
    let srv = TestServer::start().await;
    listening(&srv).await;
    let (token, id) = srv.user_token("kicked").await;
    let local = srv.local(id);
    let mut by_password = Client::login(srv.xmpp, Via::Tcp, &local, PASSWORD).await;
    let mut by_token = Client::login(srv.xmpp, Via::DirectTls, &local, &token).await;
    let out = parley(&srv, &["session", "kick", &id.to_string(), "--json"])
        .await
        .json();
    assert_eq!(out["sessions_ended"], 1);
    assert_eq!(by_password.stream_error().await, "not-authorized");
    assert_eq!(by_token.stream_error().await, "not-authorized");
    assert_eq!(srv.http.get("/session", Some(&token)).await.status, 401);
    // A kick is not a ban.
    assert_eq!(sasl(&srv, &local, PASSWORD).await, "success");
    srv.assert_serving().await;
    srv.stop().await;
}

#[tokio::test]
async fn a_kick_reaches_a_server_whose_notice_connection_dropped() {
    let srv = TestServer::start().await;
    let first = listening(&srv).await;
    let c = srv.pool.get().await.unwrap();
    c.execute("SELECT pg_terminate_backend($1)", &[&first])
        .await
        .unwrap();
    // The server listens again, on a new connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while listening(&srv).await == first {
        assert!(Instant::now() < deadline, "the listener never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, id) = srv.user_token("kicked_later").await;
    let mut stream = Client::login(srv.xmpp, Via::Tcp, &srv.local(id), PASSWORD).await;
    parley(&srv, &["session", "kick", &id.to_string()]).await;
    assert_eq!(stream.stream_error().await, "not-authorized");
    srv.stop().await;
}

#[tokio::test]
async fn stats_shows_a_connected_user() {
    let srv = TestServer::start().await;
    let (_, id) = srv.user_token("counted").await;
    let mut stream = Client::login(srv.xmpp, Via::Tcp, &srv.local(id), PASSWORD).await;
    stream.available().await;

    let v = parley(&srv, &["stats", "--json"]).await.json();
    assert_eq!(v["server"]["xmpp"]["users_online"], 1, "{v:#}");
    assert_eq!(v["server"]["xmpp"]["streams"], 1, "{v:#}");
    assert_eq!(v["server"]["connections"]["xmpp"], 1, "{v:#}");
    assert_eq!(v["database"]["total"]["users"], 1, "{v:#}");
    assert_eq!(v["database"]["total"]["live_user_sessions"], 1, "{v:#}");
    let apps = v["database"]["applications"].as_array().unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0]["application_id"], srv.app.id.0);

    let text = parley(&srv, &["stats"]).await.stdout;
    assert!(text.contains("1 bound, 1 users online"), "{text}");
    // The same numbers, read-only, for monitoring.
    let r = srv.admin().get("/stats", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["xmpp"]["users_online"], 1);
    srv.stop().await;
}

#[tokio::test]
async fn stats_without_a_running_server_says_so_and_prints_the_database_part() {
    let srv = TestServer::start().await;
    srv.user_token("counted_offline").await;
    // An address nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let run = parley_at(&srv, closed, &["stats"]).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.contains("not running"), "{}", run.stdout);
    assert!(run.stdout.contains("total"), "{}", run.stdout);
    let v = parley_at(&srv, closed, &["stats", "--json"]).await.json();
    assert_eq!(v["server"], Value::Null);
    assert_eq!(v["database"]["total"]["users"], 1);
    srv.stop().await;
}
