//! Authentication that cannot be turned against its owner: wrong passwords are throttled per
//! address and per (account, address) — over XMPP SASL, `POST /session` and `POST /login` alike,
//! with one shared count — while a live session token always logs its owner in. Other clients
//! are simulated by connecting from other loopback addresses (127.0.0.2, …). Each test ends by
//! checking that the server still serves.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use crate::common::xmpp::Client;
use crate::common::{test_config, TestServer, PASSWORD};

const LIMIT: u32 = 2;

async fn server() -> TestServer {
    let mut cfg = test_config();
    cfg.passwords.failures_per_minute = LIMIT;
    TestServer::start_with(cfg).await
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// SASL PLAIN from `from` as `local` with `secret`: `success` or the failure condition.
async fn sasl(srv: &TestServer, from: IpAddr, local: &str, secret: &str) -> String {
    let mut c = Client::connect_from(srv.xmpp, from).await;
    c.open().await;
    c.auth(local, secret).await
}

async fn guess_until_throttled(srv: &TestServer, from: IpAddr, local: &str) {
    for i in 0..LIMIT {
        assert_eq!(
            sasl(srv, from, local, &format!("guess-{i}")).await,
            "not-authorized"
        );
    }
}

fn session_body(srv: &TestServer, login: &str, password: &str) -> serde_json::Value {
    json!({"application_id": srv.app.id.0, "auth_key": srv.app.auth_key,
           "user": {"login": login, "password": password}})
}

fn assert_throttled(r: &crate::common::http::Resp) {
    assert_eq!(r.status, 429, "{}", r.body);
    let after: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After in seconds: {:?}", r.headers));
    assert!((1..=60).contains(&after), "Retry-After {after}");
    let msg = r.field_error("base").expect("errors.base");
    assert!(msg.contains("Too many failed login attempts"), "{msg}");
}

#[tokio::test]
async fn sasl_guessing_is_throttled_for_that_account_from_that_address_only() {
    let srv = server().await;
    let (alice, _) = srv.chat_user("alice_thr").await;
    guess_until_throttled(&srv, ip(2), &alice).await;
    // Even the right password is not checked from the guessing address…
    assert_eq!(sasl(&srv, ip(2), &alice, PASSWORD).await, "not-authorized");
    // …while the owner, elsewhere, logs in with it.
    assert_eq!(sasl(&srv, ip(1), &alice, PASSWORD).await, "success");
    srv.assert_serving().await;
    srv.stop().await;
}

#[tokio::test]
async fn sasl_guessing_throttles_the_address_for_every_account() {
    let srv = server().await;
    let (alice, _) = srv.chat_user("alice_addr").await;
    let (bob, _) = srv.chat_user("bob_addr").await;
    guess_until_throttled(&srv, ip(3), &alice).await;
    assert_eq!(sasl(&srv, ip(3), &bob, PASSWORD).await, "not-authorized");
    assert_eq!(sasl(&srv, ip(1), &bob, PASSWORD).await, "success");
    srv.assert_serving().await;
    srv.stop().await;
}

#[tokio::test]
async fn a_token_login_works_while_the_password_is_guessed_from_another_address() {
    let srv = server().await;
    let (alice, token) = srv.chat_user("alice_tok").await;
    guess_until_throttled(&srv, ip(4), &alice).await;
    assert_eq!(sasl(&srv, ip(1), &alice, &token).await, "success");
    srv.assert_serving().await;
    srv.stop().await;
}

#[tokio::test]
async fn a_live_token_is_accepted_even_from_a_throttled_address() {
    let srv = server().await;
    let (alice, token) = srv.chat_user("alice_nat").await;
    // Someone behind the same address guesses; the owner's token still opens the account.
    guess_until_throttled(&srv, ip(5), &alice).await;
    assert_eq!(sasl(&srv, ip(5), &alice, &token).await, "success");
    // A wrong "token" is a password guess like any other, and is refused unchecked.
    let forged = "0".repeat(40);
    assert_eq!(sasl(&srv, ip(5), &alice, &forged).await, "not-authorized");
    srv.assert_serving().await;
    srv.stop().await;
}

#[tokio::test]
async fn post_session_password_guessing_gets_429_with_retry_after() {
    let srv = server().await;
    srv.signup("carol_rest").await;
    let guesser = srv.http.via_ip(ip(6));
    for i in 0..LIMIT {
        let r = guesser
            .post_json(
                "/session",
                None,
                session_body(&srv, "carol_rest", &format!("guess-{i}")),
            )
            .await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    let r = guesser
        .post_json("/session", None, session_body(&srv, "carol_rest", PASSWORD))
        .await;
    assert_throttled(&r);
    // The owner, elsewhere, is not locked out.
    let r = srv
        .http
        .post_json("/session", None, session_body(&srv, "carol_rest", PASSWORD))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    srv.assert_serving().await;
    srv.stop().await;
}

#[tokio::test]
async fn post_login_password_guessing_gets_429_with_retry_after() {
    let srv = server().await;
    srv.signup("dave_login").await;
    let guesser = srv.http.via_ip(ip(7));
    let token = srv.app_token().await;
    for i in 0..LIMIT {
        let r = guesser
            .post_json(
                "/login",
                Some(&token),
                json!({"login": "dave_login", "password": format!("guess-{i}")}),
            )
            .await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    let r = guesser
        .post_json(
            "/login",
            Some(&token),
            json!({"login": "dave_login", "password": PASSWORD}),
        )
        .await;
    assert_throttled(&r);
    srv.assert_serving().await;
    srv.stop().await;
}

#[tokio::test]
async fn guessing_logins_that_do_not_exist_is_throttled_per_address() {
    let mut cfg = test_config();
    cfg.passwords.failures_per_minute = LIMIT;
    let srv = TestServer::start_with(cfg).await;
    let guesser = srv.http.via_ip(ip(8));
    let token = srv.app_token().await;
    for i in 0..LIMIT {
        let r = guesser
            .post_json(
                "/login",
                Some(&token),
                json!({"login": format!("nobody_{i}"), "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    let r = guesser
        .post_json(
            "/login",
            Some(&token),
            json!({"login": "nobody_x", "password": PASSWORD}),
        )
        .await;
    assert_throttled(&r);
    srv.assert_serving().await;
    srv.stop().await;
}

#[tokio::test]
async fn rest_and_xmpp_password_guesses_share_one_count() {
    let srv = server().await;
    let (erin, _) = srv.chat_user("erin_shared").await;
    let guesser = srv.http.via_ip(ip(9));
    for i in 0..LIMIT {
        let r = guesser
            .post_json(
                "/session",
                None,
                session_body(&srv, "erin_shared", &format!("guess-{i}")),
            )
            .await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    assert_eq!(sasl(&srv, ip(9), &erin, PASSWORD).await, "not-authorized");
    srv.assert_serving().await;
    srv.stop().await;
}

#[tokio::test]
async fn the_throttle_releases_after_a_minute_of_the_servers_clock() {
    let srv = server().await;
    let (frank, _) = srv.chat_user("frank_wait").await;
    let guesser = srv.http.via_ip(ip(10));
    guess_until_throttled(&srv, ip(10), &frank).await;
    let r = guesser
        .post_json("/session", None, session_body(&srv, "frank_wait", PASSWORD))
        .await;
    assert_throttled(&r);
    srv.clock.advance(Duration::from_secs(61));
    let r = guesser
        .post_json("/session", None, session_body(&srv, "frank_wait", PASSWORD))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(sasl(&srv, ip(10), &frank, PASSWORD).await, "success");
    srv.assert_serving().await;
    srv.stop().await;
}
