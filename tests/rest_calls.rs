//! Calls: ICE servers with TURN credentials a real coturn accepts, and `POST /calls/reject`
//! delivering the reject signal to the caller's live streams.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::xmpp::{Client, Via};
use crate::common::{test_config, TestServer, PASSWORD};

const TURN_SECRET: &str = "test-turn-secret-4f1c";

/// A coturn `turnserver` on loopback checking credentials with `use-auth-secret`; killed on drop.
struct Coturn {
    child: Child,
    port: u16,
    _dir: tempdir::Dir,
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Coturn {
    fn start() -> Coturn {
        let port = free_udp_port();
        let dir = std::env::temp_dir().join(format!("parley-coturn-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("turnserver")
            .args([
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                &format!("--listening-port={port}"),
                "--use-auth-secret",
                &format!("--static-auth-secret={TURN_SECRET}"),
                "--realm=parley.test",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--allow-loopback-peers",
                "--min-port=49160",
                "--max-port=49200",
                &format!("--userdb={}", dir.join("turndb").display()),
                &format!("--pidfile={}", dir.join("pid").display()),
                "--log-file=stdout",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("coturn's turnserver (apt-get install coturn; .ci/run installs it)");
        // Ready once it answers a STUN binding on its port.
        let c = Coturn {
            child,
            port,
            _dir: tempdir::Dir(dir),
        };
        for _ in 0..50 {
            if c.allocates("nobody", "nothing").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// Runs a TURN allocation with these credentials: `Some(true)` allocated, `Some(false)`
    /// refused; `None` when the server did not answer at all yet.
    fn allocates(&self, username: &str, password: &str) -> Option<bool> {
        let out = Command::new("turnutils_uclient")
            .args(["-u", username, "-w", password, "-p", &self.port.to_string()])
            .args(["-n", "1", "-m", "1", "-l", "10", "-y", "127.0.0.1"])
            .output()
            .expect("turnutils_uclient (package coturn)");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Some(true)
        } else if text.contains("Cannot complete Allocation") {
            Some(false)
        } else {
            None
        }
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

async fn server_with_turn(port: u16) -> TestServer {
    let mut c = test_config();
    c.calls.ice_urls = vec![
        format!("stun:127.0.0.1:{port}"),
        format!("turn:127.0.0.1:{port}?transport=udp"),
    ];
    c.calls.turn_secret = TURN_SECRET.into();
    c.calls.turn_ttl_secs = 600;
    TestServer::start_with(c).await
}

#[tokio::test]
async fn a_turn_credential_from_ice_servers_is_accepted_by_coturn() {
    let turn = tokio::task::spawn_blocking(Coturn::start).await.unwrap();
    let srv = server_with_turn(turn.port).await;
    let (token, id) = srv.user_token("alice_turn").await;
    let r = srv.http.get("/calls/ice_servers", Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["ttl"], 600);
    let servers = body["ice_servers"].as_array().unwrap();
    assert_eq!(
        servers[0]["urls"][0],
        format!("stun:127.0.0.1:{}", turn.port)
    );
    assert!(servers[0].get("credential").is_none());
    let t = &servers[1];
    let username = t["username"].as_str().unwrap().to_owned();
    let credential = t["credential"].as_str().unwrap().to_owned();
    let (expiry, user) = username.split_once(':').unwrap();
    let expiry = expiry.to_owned();
    assert_eq!(user, id.to_string());
    let left = expiry.parse::<i64>().unwrap() - srv.clock.unix_seconds();
    assert!((590..=600).contains(&left), "expires in {left} s");
    let (ok, forged) = tokio::task::spawn_blocking(move || {
        let ok = turn.allocates(&username, &credential);
        // Another user id under the same credential is what coturn's HMAC check refuses.
        let forged = turn.allocates(&format!("{expiry}:1"), &credential);
        (ok, forged)
    })
    .await
    .unwrap();
    assert_eq!(ok, Some(true), "coturn allocates with the credential");
    assert_eq!(
        forged,
        Some(false),
        "coturn refuses a username it was not issued for"
    );
    srv.stop().await;
}

#[tokio::test]
async fn ice_servers_need_a_user_session() {
    let srv = server_with_turn(3478).await;
    let r = srv.http.get("/calls/ice_servers", None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    srv.stop().await;
}

#[tokio::test]
async fn without_a_turn_secret_only_stun_is_handed_out() {
    let mut c = test_config();
    c.calls.ice_urls = vec!["stun:127.0.0.1:3478".into(), "turn:127.0.0.1:3478".into()];
    let srv = TestServer::start_with(c).await;
    let (token, _) = srv.user_token("alice_stun").await;
    let r = srv.http.get("/calls/ice_servers", Some(&token)).await;
    assert_eq!(
        r.json()["ice_servers"],
        json!([{"urls": ["stun:127.0.0.1:3478"]}]),
        "{}",
        r.body
    );
    srv.stop().await;
}

#[tokio::test]
async fn reject_sends_the_reject_signal_to_the_callers_live_streams() {
    let srv = TestServer::start().await;
    let (bob_local, _) = srv.chat_user("bob_call").await;
    let bob_id: i64 = bob_local.split('-').next().unwrap().parse().unwrap();
    let (alice_token, alice_id) = srv.user_token("alice_call").await;
    let mut bob = Client::login(srv.xmpp, Via::Tcp, &bob_local, PASSWORD).await;
    bob.available().await;
    let r = srv
        .http
        .post_json(
            "/calls/reject",
            Some(&alice_token),
            json!({"recipientId": bob_id, "sessionID": "5f1c-call", "platform": "web",
                   "userInfo": {"name": "Alice"}}),
        )
        .await;
    assert_eq!((r.status, r.json()), (200, json!({})), "{}", r.body);
    let m = bob
        .expect("the reject signal", |e| {
            e.name == "message" && e.attr("type") == Some("headline")
        })
        .await;
    assert_eq!(
        m.attr("from")
            .map(|f| f.split('/').next().unwrap_or_default().to_owned()),
        Some(format!("{}@localhost", srv.local(alice_id)))
    );
    let x = m
        .child("extraParams", "jabber:client")
        .expect("extraParams");
    let field = |n: &str| x.child(n, "jabber:client").map(|c| c.text());
    assert_eq!(
        field("moduleIdentifier").as_deref(),
        Some("WebRTCVideoChat")
    );
    assert_eq!(field("signalType").as_deref(), Some("reject"));
    assert_eq!(field("sessionID").as_deref(), Some("5f1c-call"));
    assert_eq!(field("callerID"), Some(bob_id.to_string()));
    assert_eq!(field("platform").as_deref(), Some("web"));
    let info = x.child("userInfo", "jabber:client").expect("userInfo");
    assert_eq!(
        info.child("name", "jabber:client")
            .map(|n| n.text())
            .as_deref(),
        Some("Alice")
    );
    srv.stop().await;
}

#[tokio::test]
async fn reject_names_a_missing_recipient_or_session() {
    let srv = TestServer::start().await;
    let (token, _) = srv.user_token("alice_rj").await;
    let r = srv
        .http
        .post_json("/calls/reject", Some(&token), json!({"sessionID": "s"}))
        .await;
    assert_eq!(r.status, 422);
    assert!(r.field_error("recipientId").is_some(), "{}", r.body);
    let (_, bob) = srv.user_token("bob_rj").await;
    let r = srv
        .http
        .post_json("/calls/reject", Some(&token), json!({"recipientId": bob}))
        .await;
    assert_eq!(r.status, 422);
    assert!(r.field_error("sessionID").is_some(), "{}", r.body);
    srv.stop().await;
}

#[tokio::test]
async fn reject_to_a_user_of_another_application_is_refused() {
    let srv = TestServer::start().await;
    let (token, _) = srv.user_token("alice_rx").await;
    let other = srv.other_app("calls_other").await;
    let (_, stranger) = srv.user_token_in(&other, "carol_rx").await;
    let r = srv
        .http
        .post_json(
            "/calls/reject",
            Some(&token),
            json!({"recipientId": stranger, "sessionID": "s"}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.field_error("recipientId").is_some(), "{}", r.body);
    srv.stop().await;
}

#[tokio::test]
async fn user_info_keys_that_cannot_be_element_names_are_refused() {
    let srv = TestServer::start().await;
    let (token, _) = srv.user_token("alice_ui").await;
    let (_, bob) = srv.user_token("bob_ui").await;
    let r = srv
        .http
        .post_json(
            "/calls/reject",
            Some(&token),
            json!({"recipientId": bob, "sessionID": "s", "userInfo": {"a b></x": 1}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = srv.http.get("/healthz", None).await;
    assert_eq!(r.status, 200);
    srv.stop().await;
}
