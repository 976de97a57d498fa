//! Hostile callers against the bounds on what they can make the server hold: request-head and
//! body time, keep-alive idle time, connections per IP (REST and XMPP), request rates per
//! address and per token, message rate per user (REST and XMPP), the session nonce, the
//! password-hashing queue and the prepared-statement cache. Each test sets the one limit it
//! exercises low and checks the server still serves afterwards.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::xmpp::{Client, Via, STREAM_HEADER, WS_OPEN};
use crate::common::{test_config, TestServer, PASSWORD};

/// The server still answers: `GET /healthz` is 200 (retried briefly while slots come back).
async fn still_serves(srv: &TestServer) {
    for _ in 0..50 {
        if srv.http.get("/healthz", None).await.status == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server no longer answers /healthz");
}

/// Reads until the server closes the socket; returns what it sent and when it closed.
async fn read_until_closed(s: &mut TcpStream, patience: Duration) -> (Vec<u8>, Instant) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(patience, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server should have closed the connection");
    (out, closed)
}

#[tokio::test]
async fn a_trickled_request_head_is_closed_after_the_header_timeout() {
    let mut cfg = test_config();
    cfg.http.header_timeout_secs = 1;
    cfg.http.keepalive_idle_secs = 30;
    let srv = TestServer::start_with(cfg).await;
    let mut s = TcpStream::connect(srv.http.addr).await.unwrap();
    let start = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One header line every 200 ms: never idle, never complete.
    let trickle = async {
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if s.write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(4), trickle)
        .await
        .ok();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(3)).await;
    let held = closed.duration_since(start);
    assert!(
        held < Duration::from_secs(4),
        "a trickled head was held {held:?}"
    );
    still_serves(&srv).await;
    srv.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_time() {
    let mut cfg = test_config();
    cfg.http.keepalive_idle_secs = 1;
    cfg.http.header_timeout_secs = 10;
    let srv = TestServer::start_with(cfg).await;
    let mut s = TcpStream::connect(srv.http.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let idle_from = Instant::now();
    let (rest, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    let idle = closed.duration_since(idle_from);
    assert!(
        idle >= Duration::from_millis(800) && idle < Duration::from_secs(3),
        "closed after {idle:?}"
    );
    still_serves(&srv).await;
    srv.stop().await;
}

#[tokio::test]
async fn a_request_body_slower_than_the_body_timeout_gets_408_and_the_connection_closes() {
    let mut cfg = test_config();
    cfg.http.body_timeout_secs = 1;
    let srv = TestServer::start_with(cfg).await;
    let mut s = TcpStream::connect(srv.http.addr).await.unwrap();
    s.write_all(
        b"POST /session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"app",
    )
    .await
    .unwrap();
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"errors\""), "{text}");
    still_serves(&srv).await;
    srv.stop().await;
}

#[tokio::test]
async fn rest_connections_past_the_per_ip_cap_get_503_with_retry_after() {
    let mut cfg = test_config();
    cfg.http.max_connections_per_ip = 3;
    let srv = TestServer::start_with(cfg).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(srv.http.addr).await.unwrap());
    }
    // Let the server accept all three before the fourth.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = srv.http.get("/healthz", None).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.field_error("base").is_some(), "{}", r.body);
    drop(held);
    still_serves(&srv).await;
    srv.stop().await;
}

#[tokio::test]
async fn xmpp_connections_past_the_per_ip_cap_get_policy_violation_on_every_listener() {
    let mut cfg = test_config();
    cfg.xmpp.max_connections_per_ip = 2;
    let srv = TestServer::start_with(cfg).await;
    let (alice, _) = srv.chat_user("alice_cap").await;
    // Two connections on two listeners fill the address's share of all XMPP listeners.
    let first = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let second = Client::login(srv.xmpp, Via::Ws, &alice, PASSWORD).await;
    for via in [Via::Tcp, Via::DirectTls, Via::Ws] {
        let mut c = Client::connect(srv.xmpp, via).await;
        c.send_raw(if via == Via::Ws {
            WS_OPEN
        } else {
            STREAM_HEADER
        })
        .await;
        assert_eq!(c.stream_error().await, "policy-violation", "{via:?}");
    }
    drop(first);
    drop(second);
    // The slots come back when the streams end; a new login is served.
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = Client::connect(srv.xmpp, Via::Tcp).await;
        c.send_raw(STREAM_HEADER).await;
        if c.next().await.is_some_and(|h| h.name == "stream")
            && c.next().await.is_some_and(|f| f.name == "features")
        {
            ok = true;
            break;
        }
    }
    assert!(ok, "XMPP refused connections after the others closed");
    Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    still_serves(&srv).await;
    srv.stop().await;
}

#[tokio::test]
async fn requests_past_the_token_rate_get_429_with_retry_after() {
    let mut cfg = test_config();
    cfg.http.requests_per_sec_per_token = 1;
    cfg.http.request_burst_per_token = 3;
    let srv = TestServer::start_with(cfg).await;
    let token = srv.app_token().await;
    for _ in 0..3 {
        assert_eq!(srv.http.get("/session", Some(&token)).await.status, 200);
    }
    let r = srv.http.get("/session", Some(&token)).await;
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        r.field_error("base").is_some_and(|m| m.contains("token")),
        "{}",
        r.body
    );
    // Another token is not affected, and the limited one recovers.
    let other = srv.app_token().await;
    assert_eq!(srv.http.get("/session", Some(&other)).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(srv.http.get("/session", Some(&token)).await.status, 200);
    still_serves(&srv).await;
    srv.stop().await;
}

#[tokio::test]
async fn requests_past_the_address_rate_get_429_with_retry_after() {
    let mut cfg = test_config();
    cfg.http.requests_per_sec_per_ip = 1;
    cfg.http.request_burst_per_ip = 10;
    let srv = TestServer::start_with(cfg).await;
    let mut limited = None;
    for _ in 0..20 {
        let r = srv.http.get("/healthz", None).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 200);
    }
    let r = limited.expect("20 requests in a moment from one address are limited");
    assert!(r.header("retry-after").is_some(), "{r:?}");
    assert!(r.field_error("base").is_some(), "{}", r.body);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    still_serves(&srv).await;
    srv.stop().await;
}

#[tokio::test]
async fn messages_past_the_user_rate_get_429_over_rest() {
    let mut cfg = test_config();
    cfg.chat.messages_per_sec_per_user = 1;
    cfg.chat.message_burst_per_user = 2;
    let srv = TestServer::start_with(cfg).await;
    let (alice, _) = srv.user_token("alice_rate").await;
    let (bob, bob_id) = srv.user_token("bob_rate").await;
    let send = |token: String, text: &'static str| {
        let http = srv.http.clone();
        async move {
            http.post_json(
                "/chat/Message",
                Some(&token),
                json!({"recipient_id": bob_id, "message": text}),
            )
            .await
        }
    };
    assert_eq!(send(alice.clone(), "one").await.status, 201);
    let sys = srv
        .http
        .post_json(
            "/chat/Message/system",
            Some(&alice),
            json!({"recipientId": bob_id, "k": "v"}),
        )
        .await;
    assert_eq!(sys.status, 200, "{}", sys.body);
    let r = send(alice.clone(), "three").await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.field_error("base").is_some(), "{}", r.body);
    // Not stored: bob's history holds only the first message.
    let dialogs = srv.http.get("/chat/Dialog", Some(&bob)).await.json();
    assert_eq!(dialogs["items"][0]["last_message"], "one");
    // Other users are not affected.
    let (carol, _) = srv.user_token("carol_rate").await;
    assert_eq!(send(carol, "hi").await.status, 201);
    still_serves(&srv).await;
    srv.stop().await;
}

#[tokio::test]
async fn messages_past_the_user_rate_get_policy_violation_over_xmpp_and_are_not_relayed() {
    let mut cfg = test_config();
    cfg.chat.messages_per_sec_per_user = 1;
    cfg.chat.message_burst_per_user = 2;
    let srv = TestServer::start_with(cfg).await;
    let (alice, _) = srv.chat_user("alice_xrate").await;
    let (bob, _) = srv.chat_user("bob_xrate").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    let mut burst = String::new();
    for i in 0..3 {
        burst.push_str(&format!(
            "<message to='{bob}@localhost' type='chat' id='r{i}'><body>n{i}</body></message>"
        ));
    }
    a.send_raw(&burst).await;
    let err = a
        .expect("the refusal", |e| {
            e.name == "message" && e.attr("type") == Some("error")
        })
        .await;
    assert_eq!(err.attr("id"), Some("r2"));
    let error = err.child("error", "jabber:client").expect("error child");
    assert_eq!(error.attr("type"), Some("wait"));
    assert!(error
        .child("policy-violation", "urn:ietf:params:xml:ns:xmpp-stanzas")
        .is_some());
    for i in 0..2 {
        let m = b.expect_named("message").await;
        assert_eq!(m.attr("id"), Some(format!("r{i}").as_str()));
    }
    // The third never arrives: a ping answered first proves nothing else is queued.
    let pong = b
        .iq(
            "p1",
            "<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
    assert_eq!(pong.attr("type"), Some("result"));
    // After the refill the sender is served again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.send_raw(&format!(
        "<message to='{bob}@localhost' type='chat' id='r9'><body>later</body></message>"
    ))
    .await;
    let m = b.expect_named("message").await;
    assert_eq!(m.attr("id"), Some("r9"));
    still_serves(&srv).await;
    srv.stop().await;
}

#[tokio::test]
async fn a_non_numeric_session_nonce_is_refused_naming_it() {
    let srv = TestServer::start().await;
    let r = srv
        .http
        .post_json(
            "/session",
            None,
            json!({"application_id": srv.app.id.0, "auth_key": srv.app.auth_key, "nonce": "not-a-number"}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.field_error("nonce").is_some(), "{}", r.body);
    still_serves(&srv).await;
    srv.stop().await;
}

#[tokio::test]
async fn a_huge_session_nonce_is_refused_naming_it() {
    let srv = TestServer::start().await;
    let huge = "9".repeat(500_000);
    let r = srv
        .http
        .post_form(
            "/session",
            None,
            &format!(
                "application_id={}&auth_key={}&nonce={huge}",
                srv.app.id.0, srv.app.auth_key
            ),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.field_error("nonce").is_some(), "{}", r.body);
    // A numeric nonce is kept and answered as a number.
    let ok = srv
        .http
        .post_json(
            "/session",
            None,
            json!({"application_id": srv.app.id.0, "auth_key": srv.app.auth_key, "nonce": 4242}),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(ok.json()["session"]["nonce"], 4242);
    srv.stop().await;
}

#[tokio::test]
async fn password_work_past_the_hashing_queue_gets_503_with_retry_after() {
    let mut cfg = test_config();
    cfg.passwords.max_pending_hashes = 1;
    // Slow enough that concurrent logins overlap.
    cfg.passwords.argon2_memory_kib = 16 * 1024;
    cfg.passwords.argon2_iterations = 3;
    let srv = TestServer::start_with(cfg).await;
    let mut calls = Vec::new();
    for i in 0..12 {
        let http = srv.http.clone();
        let body = json!({"application_id": srv.app.id.0, "auth_key": srv.app.auth_key,
                          "user": {"login": format!("flood_{i}"), "password": PASSWORD}});
        calls.push(tokio::spawn(async move {
            http.post_json("/session", None, body).await
        }));
    }
    let mut created = 0;
    let mut busy = 0;
    for c in calls {
        let r = c.await.unwrap();
        match r.status {
            201 => created += 1,
            503 => {
                assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
                assert!(r.field_error("base").is_some(), "{}", r.body);
                busy += 1;
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    assert!(created >= 1, "no login was served");
    assert!(
        busy >= 1,
        "12 concurrent new logins never filled a queue of 1"
    );
    // The queue drains: a login afterwards is served.
    let (token, _) = srv.user_token("after_flood").await;
    assert_eq!(srv.http.get("/session", Some(&token)).await.status, 200);
    srv.stop().await;
}

#[tokio::test]
async fn xmpp_password_login_past_the_hashing_queue_gets_temporary_auth_failure() {
    let mut cfg = test_config();
    cfg.passwords.max_pending_hashes = 1;
    cfg.passwords.argon2_memory_kib = 16 * 1024;
    cfg.passwords.argon2_iterations = 3;
    let srv = TestServer::start_with(cfg).await;
    let (alice, _) = srv.chat_user("alice_hq").await;
    let mut logins = Vec::new();
    for _ in 0..8 {
        let addrs = srv.xmpp;
        let alice = alice.clone();
        logins.push(tokio::spawn(async move {
            let mut c = Client::connect(addrs, Via::Tcp).await;
            c.open().await;
            c.auth(&alice, PASSWORD).await
        }));
    }
    let mut answers = Vec::new();
    for l in logins {
        answers.push(l.await.unwrap());
    }
    assert!(answers.iter().any(|a| a == "success"), "{answers:?}");
    assert!(
        answers.iter().any(|a| a == "temporary-auth-failure"),
        "{answers:?}"
    );
    assert!(
        answers
            .iter()
            .all(|a| a == "success" || a == "temporary-auth-failure"),
        "{answers:?}"
    );
    Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    srv.stop().await;
}

/// Statements cached across every pooled connection of the server.
async fn cached_statements(srv: &TestServer) -> usize {
    let max = srv.pool.status().max_size;
    let mut clients = Vec::new();
    for _ in 0..max {
        clients.push(srv.pool.get().await.unwrap());
    }
    clients.iter().map(|c| c.statement_cache.size()).sum()
}

/// Filters whose SQL differs for each `i` (operators and how many conditions), on `field`.
fn filter_shape(i: usize, field: &str, extra: &str) -> String {
    let ops = ["lt", "lte", "gt", "gte"];
    let mut q = format!("{field}[{}]={}", ops[i % 4], 1_000 + i);
    for op in ops.iter().take((i / 4) % 4) {
        q.push_str(&format!("&{extra}[{op}]=10"));
    }
    q
}

#[tokio::test]
async fn distinct_filter_combinations_do_not_grow_the_statement_cache() {
    // The push outbox worker polls with its own fixed statements on whichever pooled connection
    // it gets, which would count here; this test is about what callers' filters add.
    let mut c = crate::common::test_config();
    c.push.workers_enabled = false;
    let srv = TestServer::start_with(c).await;
    let users = srv.users("filters", 2).await;
    let (token, other) = (users[0].0.clone(), users[1].1);
    let d = srv
        .dialog(&token, json!({"type": 3, "occupants_ids": [other]}))
        .await;
    let dialog = d["_id"].as_str().unwrap().to_string();
    let run = |i: usize| {
        let http = srv.http.clone();
        let (token, dialog) = (token.clone(), dialog.clone());
        async move {
            let paths = [
                format!(
                    "/chat/Message?chat_dialog_id={dialog}&{}",
                    filter_shape(i, "date_sent", "updated_at")
                ),
                format!(
                    "/chat/Dialog?{}",
                    filter_shape(i, "last_message_date_sent", "updated_at")
                ),
                format!(
                    "/users/v2?id[in]=1,2&{}",
                    filter_shape(i, "created_at", "updated_at")
                ),
            ];
            for p in paths {
                let r = http.get(&p, Some(&token)).await;
                assert_eq!(r.status, 200, "{p}: {}", r.body);
            }
        }
    };
    // Open every pooled connection, then warm up: every fixed statement these endpoints use,
    // on every connection.
    cached_statements(&srv).await;
    for _ in 0..30 {
        run(0).await;
    }
    let before = cached_statements(&srv).await;
    for i in 1..16 {
        run(i).await;
    }
    let after = cached_statements(&srv).await;
    assert!(
        after <= before + 4,
        "15 new filter combinations per endpoint grew the statement caches from {before} to {after}"
    );
    still_serves(&srv).await;
    srv.stop().await;
}
