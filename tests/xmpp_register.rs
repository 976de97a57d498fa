//! XEP-0077 in-band registration: off by default (not advertised, `service-unavailable`); on,
//! a client creates an account before logging in, by REST sign-up's rules, at a bounded rate
//! per address, and logs in with the username the result gives.

use parley::config::{Config, PlainAuth};
use parley::xmpp::stream::Element;

use crate::common::xmpp::{Client, Via};
use crate::common::{test_config, TestServer, PASSWORD};

const REGISTER: &str = "jabber:iq:register";
const FEATURE: &str = "http://jabber.org/features/iq-register";

/// Registration on, for the test server's application (the first one of its fresh database).
fn enabled() -> Config {
    let mut c = test_config();
    c.xmpp.register_enabled = true;
    c.xmpp.register_application_id = 1;
    c
}

async fn start(config: Config) -> TestServer {
    let srv = TestServer::start_with(config).await;
    assert_eq!(
        srv.app.id.0, 1,
        "the test application is the database's first"
    );
    srv
}

fn condition(iq: &Element) -> String {
    assert_eq!(iq.attr("type"), Some("error"), "{iq:?}");
    iq.child("error", "jabber:client")
        .and_then(|e| e.elements().next())
        .map(|c| c.name.clone())
        .unwrap_or_default()
}

async fn register(c: &mut Client, id: &str, login: &str, password: &str) -> Element {
    c.iq(
        id,
        &format!(
            "<iq type='set' id='{id}'><query xmlns='{REGISTER}'>\
             <username>{login}</username><password>{password}</password></query></iq>"
        ),
    )
    .await
}

#[tokio::test]
async fn registration_is_off_by_default_unadvertised_and_unavailable() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_noreg").await;
    let mut c = Client::connect(srv.xmpp, Via::Tcp).await;
    let f = c.open().await;
    assert!(f.child("register", FEATURE).is_none(), "{f:?}");
    let r = c
        .iq(
            "g1",
            &format!("<iq type='get' id='g1'><query xmlns='{REGISTER}'/></iq>"),
        )
        .await;
    assert_eq!(condition(&r), "service-unavailable");
    let r = register(&mut c, "s1", "mallory", PASSWORD).await;
    assert_eq!(condition(&r), "service-unavailable");
    assert_eq!(
        c.auth(&alice, PASSWORD).await,
        "success",
        "the stream goes on"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_client_registers_then_logs_in_with_the_username_the_result_gives() {
    let srv = start(enabled()).await;
    let mut c = Client::connect(srv.xmpp, Via::Tcp).await;
    let f = c.open().await;
    assert!(f.child("register", FEATURE).is_some(), "{f:?}");
    let form = c
        .iq(
            "g1",
            &format!("<iq type='get' id='g1'><query xmlns='{REGISTER}'/></iq>"),
        )
        .await;
    assert_eq!(form.attr("type"), Some("result"), "{form:?}");
    let q = form.child("query", REGISTER).expect("form");
    assert!(q.child("username", REGISTER).is_some() && q.child("password", REGISTER).is_some());
    let r = register(&mut c, "s1", "carol_ibr", PASSWORD).await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let local = r
        .child("query", REGISTER)
        .and_then(|q| q.child("username", REGISTER))
        .map(|u| u.text())
        .expect("the account's username");
    assert!(local.ends_with("-1"), "{{user_id}}-{{app_id}}: {local}");
    assert_eq!(c.auth(&local, PASSWORD).await, "success");
    // The same account REST knows, with the login chosen.
    let token = srv.app_token().await;
    let u = srv
        .http
        .get("/users/by_login.json?login=carol_ibr", Some(&token))
        .await;
    assert_eq!(u.status, 200, "{}", u.body);
    let id = u.json()["user"]["id"].as_i64().unwrap();
    assert_eq!(local, srv.local(id));
    srv.stop().await;
}

#[tokio::test]
async fn registration_follows_the_sign_up_rules() {
    let srv = start(enabled()).await;
    srv.signup("dave_taken").await;
    let mut c = Client::connect(srv.xmpp, Via::Tcp).await;
    c.open().await;
    let r = register(&mut c, "s1", "dave_taken", PASSWORD).await;
    assert_eq!(condition(&r), "conflict", "a login already taken");
    let r = register(&mut c, "s2", "erin_short", "short").await;
    assert_eq!(condition(&r), "not-acceptable", "passwords.min_length");
    let text = r
        .child("error", "jabber:client")
        .and_then(|e| e.child("text", "urn:ietf:params:xml:ns:xmpp-stanzas"))
        .map(|t| t.text())
        .unwrap_or_default();
    assert!(text.starts_with("password"), "{text}");
    let r = c
        .iq(
            "s3",
            &format!("<iq type='set' id='s3'><query xmlns='{REGISTER}'><username>x_y_z</username></query></iq>"),
        )
        .await;
    assert_eq!(condition(&r), "not-acceptable", "a password is required");
    srv.stop().await;
}

#[tokio::test]
async fn registrations_are_rate_limited_per_address() {
    let mut cfg = enabled();
    cfg.xmpp.registrations_per_hour_per_ip = 1;
    let srv = start(cfg).await;
    let mut c = Client::connect(srv.xmpp, Via::Tcp).await;
    c.open().await;
    let r = register(&mut c, "s1", "frank_rate", PASSWORD).await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let mut c = Client::connect(srv.xmpp, Via::Tcp).await;
    c.open().await;
    let r = register(&mut c, "s2", "grace_rate", PASSWORD).await;
    assert_eq!(condition(&r), "policy-violation");
    srv.stop().await;
}

#[tokio::test]
async fn registration_needs_a_connection_that_may_carry_a_password() {
    let mut cfg = enabled();
    cfg.xmpp.plain_auth = PlainAuth::Never;
    let srv = start(cfg).await;
    let mut c = Client::connect(srv.xmpp, Via::Tcp).await;
    let f = c.open().await;
    assert!(
        f.child("register", FEATURE).is_none(),
        "not before STARTTLS: {f:?}"
    );
    let r = register(&mut c, "s1", "heidi_clear", PASSWORD).await;
    assert_eq!(condition(&r), "service-unavailable");
    let mut c = Client::connect(srv.xmpp, Via::DirectTls).await;
    let f = c.open().await;
    assert!(f.child("register", FEATURE).is_some(), "over TLS: {f:?}");
    let r = register(&mut c, "s2", "heidi_tls", PASSWORD).await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    srv.stop().await;
}
