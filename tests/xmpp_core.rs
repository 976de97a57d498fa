//! XMPP over real sockets: negotiation on all three transports, SASL with password and token,
//! bind, 1:1 routing, offline storage, carbons, presence, ping, disco, last activity, stream
//! management. Each test is a story between live clients, named after the rule it proves.

use std::time::Duration;

use crate::common::xmpp::{Client, Via};
use crate::common::{test_config, TestServer, PASSWORD};

const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

fn is_hex_resource(jid: &str) -> bool {
    let res = jid.split_once('/').map(|(_, r)| r).unwrap_or("");
    res.len() >= 16 && res.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn starttls_then_password_auth_binds_a_long_random_resource() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_st").await;
    let mut c = Client::connect(srv.xmpp, Via::StartTls).await;
    let f = c.open().await;
    assert!(f.child("starttls", TLS).is_some(), "{f:?}");
    c.starttls().await;
    let f = c.open().await;
    assert!(f.child("starttls", TLS).is_none(), "no STARTTLS twice");
    let mechs = f.child("mechanisms", SASL).expect("mechanisms");
    let names: Vec<String> = mechs.elements().map(|m| m.text()).collect();
    assert_eq!(
        names,
        ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN"],
        "only what is implemented is offered, strongest first"
    );
    assert_eq!(c.auth(&alice, PASSWORD).await, "success");
    let f = c.open().await;
    assert!(f
        .child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
        .is_some());
    let jid = c.bind(None).await;
    assert!(jid.starts_with(&format!("{alice}@localhost/")), "{jid}");
    assert!(is_hex_resource(&jid), "{jid}");
    srv.stop().await;
}

#[tokio::test]
async fn direct_tls_auth_with_session_token_keeps_the_requested_resource() {
    let srv = TestServer::start().await;
    let (alice, token) = srv.chat_user("alice_dt").await;
    let c = Client::login_as(srv.xmpp, Via::DirectTls, &alice, &token, Some("phone")).await;
    assert_eq!(c.jid, format!("{alice}@localhost/phone"));
    srv.stop().await;
}

#[tokio::test]
async fn websocket_open_is_answered_with_framing_open_and_prefixed_features() {
    let srv = TestServer::start().await;
    let (alice, token) = srv.chat_user("alice_ws").await;
    let mut c = Client::connect(srv.xmpp, Via::Ws).await;
    c.send_raw(crate::common::xmpp::WS_OPEN).await;
    let open = c.next().await.unwrap();
    assert_eq!(open.name, "open");
    assert_eq!(open.ns, "urn:ietf:params:xml:ns:xmpp-framing");
    assert_eq!(open.attr("from"), Some("localhost"));
    assert_eq!(open.attr("version"), Some("1.0"));
    // The features element parses standalone only because it declares the stream prefix.
    let f = c.next().await.unwrap();
    assert_eq!(f.ns, "http://etherx.jabber.org/streams");
    assert!(f.child("mechanisms", SASL).is_some());
    assert_eq!(c.auth(&alice, &token).await, "success");
    c.open().await;
    let jid = c.bind(None).await;
    assert!(is_hex_resource(&jid));
    c.close().await;
    let end = c.next().await;
    assert!(
        matches!(&end, Some(e) if e.name == "close") || end.is_none(),
        "{end:?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn wss_serves_the_websocket_listener_over_tls_when_configured() {
    let mut cfg = test_config();
    cfg.ws.tls = true;
    let srv = TestServer::start_with(cfg).await;
    let (alice, token) = srv.chat_user("alice_wss").await;
    let (bob, _) = srv.chat_user("bob_wss").await;
    let mut a = Client::login(srv.xmpp, Via::Wss, &alice, &token).await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    a.send_raw(&format!(
        "<message xmlns='jabber:client' to='{bob}@localhost' type='chat'><body>secure</body></message>"
    ))
    .await;
    let m = b.expect_named("message").await;
    assert_eq!(m.attr("from"), Some(a.jid.as_str()));
    srv.stop().await;
}

#[tokio::test]
async fn connections_per_user_are_capped_at_bind() {
    let mut cfg = test_config();
    cfg.xmpp.max_connections_per_user = 1;
    let srv = TestServer::start_with(cfg).await;
    let (alice, _) = srv.chat_user("alice_cap").await;
    let _a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let mut c = Client::connect(srv.xmpp, Via::Tcp).await;
    c.open().await;
    assert_eq!(c.auth(&alice, PASSWORD).await, "success");
    c.open().await;
    c.send_raw("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        .await;
    let r = c.expect_named("iq").await;
    assert_eq!(r.attr("type"), Some("error"));
    assert!(r
        .child("error", "jabber:client")
        .and_then(|e| e.child("resource-constraint", STANZAS))
        .is_some());
    srv.stop().await;
}

/// Issue #7 made token logins cheaper; a session that is gone must still not log in.
#[tokio::test]
async fn a_logged_out_or_deleted_session_token_cannot_log_in() {
    let srv = TestServer::start().await;
    let (alice, token) = srv.chat_user("alice_gone").await;
    let mut c = Client::connect(srv.xmpp, Via::Tcp).await;
    c.open().await;
    assert_eq!(c.auth(&alice, &token).await, "success");
    // Logged out: the session is an application session again, no longer Alice's.
    let r = srv.http.delete("/login.json", Some(&token)).await;
    assert!(r.status < 300, "{} {}", r.status, r.body);
    let mut c = Client::connect(srv.xmpp, Via::Tcp).await;
    c.open().await;
    assert_eq!(c.auth(&alice, &token).await, "not-authorized");
    // Deleted.
    let (bob, token) = srv.chat_user("bob_gone").await;
    let r = srv.http.delete("/session.json", Some(&token)).await;
    assert!(r.status < 300, "{} {}", r.status, r.body);
    let mut c = Client::connect(srv.xmpp, Via::Tcp).await;
    c.open().await;
    assert_eq!(c.auth(&bob, &token).await, "not-authorized");
    srv.stop().await;
}

#[tokio::test]
async fn wrong_password_gets_not_authorized_and_the_client_may_retry() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_bad").await;
    let mut c = Client::connect(srv.xmpp, Via::Tcp).await;
    c.open().await;
    assert_eq!(c.auth(&alice, "wrong-password").await, "not-authorized");
    assert_eq!(c.auth("nobody", "x").await, "not-authorized");
    assert_eq!(c.auth(&alice, PASSWORD).await, "success");
    srv.stop().await;
}

#[tokio::test]
async fn repeated_sasl_failures_are_throttled_even_with_the_right_password() {
    let mut cfg = test_config();
    cfg.passwords.failures_per_minute = 2;
    let srv = TestServer::start_with(cfg).await;
    let (alice, _) = srv.chat_user("alice_thr").await;
    let mut c = Client::connect(srv.xmpp, Via::Tcp).await;
    c.open().await;
    assert_eq!(c.auth(&alice, "bad-1").await, "not-authorized");
    assert_eq!(c.auth(&alice, "bad-2").await, "not-authorized");
    assert_eq!(c.auth(&alice, PASSWORD).await, "not-authorized");
    srv.stop().await;
}

#[tokio::test]
async fn without_loopback_plain_auth_starttls_is_required_first() {
    let mut cfg = test_config();
    cfg.xmpp.plain_auth = parley::config::PlainAuth::Never;
    let srv = TestServer::start_with(cfg).await;
    let (alice, _) = srv.chat_user("alice_req").await;
    let mut c = Client::connect(srv.xmpp, Via::Tcp).await;
    let f = c.open().await;
    let st = f.child("starttls", TLS).expect("starttls offered");
    assert!(st.child("required", TLS).is_some());
    assert!(f.child("mechanisms", SASL).is_none());
    assert_eq!(c.auth(&alice, PASSWORD).await, "encryption-required");
    // Over STARTTLS it works.
    Client::login(srv.xmpp, Via::StartTls, &alice, PASSWORD).await;
    srv.stop().await;
}

/// Queued stanzas are written together (issue #7): a burst must still arrive whole and in
/// order, on a TCP stream and in one-element WebSocket frames alike.
#[tokio::test]
async fn a_burst_of_messages_arrives_complete_and_in_order_over_tcp_and_websocket() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_burst").await;
    let (bob, _) = srv.chat_user("bob_burst").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let mut b_tcp = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    let mut b_ws = Client::login(srv.xmpp, Via::Ws, &bob, PASSWORD).await;
    let mut burst = String::new();
    for i in 0..200 {
        burst.push_str(&format!(
            "<message to='{bob}@localhost' type='chat' id='m{i}' xmlns='jabber:client'>\
             <body>n{i}</body></message>"
        ));
    }
    a.send_raw(&burst).await;
    for b in [&mut b_tcp, &mut b_ws] {
        for i in 0..200 {
            let m = b.expect_named("message").await;
            assert_eq!(m.attr("id"), Some(format!("m{i}").as_str()));
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn chat_message_reaches_every_resource_with_the_senders_full_jid_and_children_unchanged() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_msg").await;
    let (bob, token) = srv.chat_user("bob_msg").await;
    let mut a = Client::login(srv.xmpp, Via::Ws, &alice, PASSWORD).await;
    let mut b1 = Client::login(srv.xmpp, Via::StartTls, &bob, PASSWORD).await;
    let mut b2 = Client::login(srv.xmpp, Via::DirectTls, &bob, &token).await;
    a.send_raw(&format!(
        "<message to='{bob}@localhost' type='chat' id='6b0809bbf5504c5e53000000' xmlns='jabber:client'>\
         <body>hi &amp; bye</body><extraParams xmlns='jabber:client'><save_to_history>1</save_to_history>\
         <attachment uid='u1' type='image' size='12'/><nested><a>1</a></nested></extraParams></message>"
    ))
    .await;
    for b in [&mut b1, &mut b2] {
        let m = b.expect_named("message").await;
        assert_eq!(m.attr("from"), Some(a.jid.as_str()));
        assert_eq!(m.attr("type"), Some("chat"));
        assert_eq!(m.attr("id"), Some("6b0809bbf5504c5e53000000"));
        assert_eq!(m.child("body", "jabber:client").unwrap().text(), "hi & bye");
        let extra = m.child("extraParams", "jabber:client").unwrap();
        let att = extra.child("attachment", "jabber:client").unwrap();
        assert_eq!(att.attr("size"), Some("12"));
        let nested = extra.child("nested", "jabber:client").unwrap();
        assert_eq!(nested.child("a", "jabber:client").unwrap().text(), "1");
    }
    // A reply to one full JID reaches only that resource.
    b1.send_raw(&format!(
        "<message to='{}' type='chat'><body>back</body></message>",
        a.jid
    ))
    .await;
    let m = a.expect_named("message").await;
    assert_eq!(m.attr("from"), Some(b1.jid.as_str()));
    srv.stop().await;
}

#[tokio::test]
async fn chat_to_an_offline_user_is_delivered_at_next_login_oldest_first_with_delay() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_off").await;
    let (bob, _) = srv.chat_user("bob_off").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    for i in 1..=3 {
        a.send_raw(&format!(
            "<message to='{bob}@localhost' type='chat' id='m{i}'><body>n{i}</body></message>"
        ))
        .await;
    }
    // Typing notifications and headlines are not kept.
    a.send_raw(&format!("<message to='{bob}@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")).await;
    a.send_raw(&format!(
        "<message to='{bob}@localhost' type='headline'><body>signal</body></message>"
    ))
    .await;
    // An iq round trip proves the server has handled everything sent before it.
    a.iq(
        "p1",
        "<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;
    let mut b = Client::login(srv.xmpp, Via::Ws, &bob, PASSWORD).await;
    b.send_raw("<presence/>").await;
    let mut got = Vec::new();
    while got.len() < 3 {
        let m = b.expect_named("message").await;
        let delay = m.child("delay", "urn:xmpp:delay").expect("delay stamp");
        assert!(delay.attr("stamp").is_some_and(|s| s.ends_with('Z')));
        assert_eq!(m.attr("from"), Some(a.jid.as_str()));
        got.push(m.child("body", "jabber:client").unwrap().text());
    }
    assert_eq!(got, ["n1", "n2", "n3"]);
    // Nothing else (the chat state and the headline were not stored), and nothing twice.
    let p = b
        .iq(
            "p2",
            "<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
    assert_eq!(p.attr("type"), Some("result"));
    let mut b2 = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    b2.send_raw("<presence/>").await;
    let e = b2
        .iq(
            "p3",
            "<iq type='get' id='p3'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
    assert_eq!(e.attr("type"), Some("result"));
    srv.stop().await;
}

#[tokio::test]
async fn headline_is_relayed_live_with_from_stamped() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_hl").await;
    let (bob, _) = srv.chat_user("bob_hl").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let mut b = Client::login(srv.xmpp, Via::Ws, &bob, PASSWORD).await;
    a.send_raw(&format!("<message to='{bob}@localhost' type='headline' id='h1'><extraParams xmlns='jabber:client'><moduleIdentifier>SystemNotifications</moduleIdentifier></extraParams></message>")).await;
    let m = b.expect_named("message").await;
    assert_eq!(m.attr("from"), Some(a.jid.as_str()));
    assert_eq!(m.attr("type"), Some("headline"));
    srv.stop().await;
}

#[tokio::test]
async fn ping_is_answered_and_unknown_iq_gets_exactly_one_service_unavailable() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_iq").await;
    let mut a = Client::login(srv.xmpp, Via::Ws, &alice, PASSWORD).await;
    let r = a
        .iq(
            "x:ping",
            "<iq type='get' id='x:ping' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    let r = a
        .iq(
            "u1",
            "<iq type='get' id='u1'><query xmlns='urn:example:unknown'/></iq>",
        )
        .await;
    assert_eq!(r.attr("type"), Some("error"));
    let err = r.child("error", "jabber:client").unwrap();
    assert!(err.child("service-unavailable", STANZAS).is_some());
    assert_eq!(err.attr("code"), Some("503"));
    // Exactly one answer: the next thing we get answers the next request.
    let r = a
        .iq(
            "u2",
            "<iq type='set' id='u2'><query xmlns='urn:example:unknown'/></iq>",
        )
        .await;
    assert_eq!(r.attr("type"), Some("error"));
    srv.stop().await;
}

#[tokio::test]
async fn disco_info_advertises_exactly_the_registered_features() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_disco").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let r = a.iq("d1", "<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let q = r
        .child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    let features: Vec<&str> = q
        .elements()
        .filter(|e| e.name == "feature")
        .filter_map(|e| e.attr("var"))
        .collect();
    for f in [
        "urn:xmpp:ping",
        "urn:xmpp:carbons:2",
        "jabber:iq:last",
        "http://jabber.org/protocol/disco#info",
        "msgoffline",
    ] {
        assert!(features.contains(&f), "{f} missing from {features:?}");
    }
    assert!(
        !features.contains(&"http://jabber.org/protocol/muc"),
        "MUC is not served here"
    );
    let identity = q
        .child("identity", "http://jabber.org/protocol/disco#info")
        .unwrap();
    assert_eq!(identity.attr("category"), Some("server"));
    srv.stop().await;
}

#[tokio::test]
async fn carbons_send_only_sent_copies_to_the_senders_other_resources() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_cc").await;
    let (bob, _) = srv.chat_user("bob_cc").await;
    let mut a1 = Client::login(srv.xmpp, Via::Ws, &alice, PASSWORD).await;
    let mut a2 = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    let r = a2
        .iq(
            "c1",
            "<iq type='set' id='c1'><enable xmlns='urn:xmpp:carbons:2'/></iq>",
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    a1.send_raw(&format!(
        "<message to='{bob}@localhost' type='chat' id='cc1'><body>carbon me</body></message>"
    ))
    .await;
    let m = b.expect_named("message").await;
    assert!(m.child("sent", "urn:xmpp:carbons:2").is_none());
    let c = a2.expect_named("message").await;
    let fwd = c
        .child("sent", "urn:xmpp:carbons:2")
        .and_then(|s| s.child("forwarded", "urn:xmpp:forward:0"))
        .and_then(|f| f.child("message", "jabber:client"))
        .expect("a sent carbon");
    assert_eq!(fwd.attr("id"), Some("cc1"));
    assert_eq!(fwd.attr("from"), Some(a1.jid.as_str()));
    // Bob replies: the original reaches both of Alice's resources, and no `received` carbon.
    b.send_raw(&format!(
        "<message to='{alice}@localhost' type='chat' id='cc2'><body>hi</body></message>"
    ))
    .await;
    for a in [&mut a1, &mut a2] {
        let m = a.expect_named("message").await;
        assert_eq!(m.attr("id"), Some("cc2"));
        assert!(m.child("received", "urn:xmpp:carbons:2").is_none());
    }
    srv.stop().await;
}

#[tokio::test]
async fn initial_presence_is_echoed_and_unavailable_is_sent_on_close() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_pr").await;
    let (bob, _) = srv.chat_user("bob_pr").await;
    let mut a1 = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    a1.available().await;
    let mut a2 = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    a2.available().await;
    let p = a1
        .expect("a2's presence", |e| {
            e.name == "presence" && e.attr("from") == Some(a2.jid.as_str())
        })
        .await;
    assert_eq!(p.attr("to"), Some(format!("{alice}@localhost").as_str()));
    // …and the newcomer is told about a1.
    let mut a3 = Client::login(srv.xmpp, Via::Ws, &alice, PASSWORD).await;
    a3.send_raw("<presence/>").await;
    a3.expect("a1's presence", |e| {
        e.name == "presence" && e.attr("from") == Some(a1.jid.as_str())
    })
    .await;
    // Directed presence to Bob, then the close tells Bob and a1 it is gone.
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    a2.send_raw(&format!("<presence to='{bob}@localhost'/>"))
        .await;
    b.expect("directed presence", |e| {
        e.name == "presence" && e.attr("from") == Some(a2.jid.as_str())
    })
    .await;
    a2.close().await;
    for c in [&mut a1, &mut b] {
        c.expect("unavailable", |e| {
            e.name == "presence" && e.attr("type") == Some("unavailable")
        })
        .await;
    }
    srv.stop().await;
}

#[tokio::test]
async fn last_activity_is_zero_while_online_and_counts_from_logout() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_la").await;
    let (bob, _) = srv.chat_user("bob_la").await;
    let mut a = Client::login(srv.xmpp, Via::Ws, &alice, PASSWORD).await;
    let q =
        format!("<iq type='get' id='l1' to='{bob}@localhost'><query xmlns='jabber:iq:last'/></iq>");
    let r = a.iq("l1", &q).await;
    assert_eq!(r.attr("type"), Some("error"), "never seen: {r:?}");
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    let r = a.iq("l1", &q).await;
    assert_eq!(r.attr("type"), Some("result"));
    assert_eq!(r.attr("from"), Some(format!("{bob}@localhost").as_str()));
    let secs = |r: &parley::xmpp::stream::Element| {
        r.child("query", "jabber:iq:last")
            .and_then(|q| q.attr("seconds"))
            .and_then(|s| s.parse::<i64>().ok())
    };
    assert_eq!(secs(&r), Some(0));
    // Status streaming tells us when Bob's logout is fully recorded.
    a.iq("s1", &format!("<iq type='set' id='s1'><subscribe xmlns='https://connectycube.com/protocol/status_streaming' user_jid='{bob}@localhost' enable='true'/></iq>")).await;
    b.close().await;
    let gone = a
        .expect("offline push", |e| {
            e.name == "iq"
                && e.child("query", "jabber:iq:last")
                    .is_some_and(|q| q.text() == "offline")
        })
        .await;
    assert_eq!(gone.attr("from"), Some(format!("{bob}@localhost").as_str()));
    // Move the server's clock on instead of sleeping.
    srv.clock.advance(Duration::from_secs(42));
    let r = a.iq("l1", &q).await;
    let n = secs(&r);
    assert!(n.is_some_and(|s| (42..50).contains(&s)), "{n:?}");
    srv.stop().await;
}

#[tokio::test]
async fn binding_the_same_resource_again_replaces_the_old_stream_with_conflict() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_cf").await;
    let mut old = Client::login_as(srv.xmpp, Via::Tcp, &alice, PASSWORD, Some("r1")).await;
    let _new = Client::login_as(srv.xmpp, Via::Tcp, &alice, PASSWORD, Some("r1")).await;
    assert_eq!(old.stream_error().await, "conflict");
    srv.stop().await;
}

#[tokio::test]
async fn stream_management_acks_and_resume_after_a_dropped_socket_lose_nothing() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_sm").await;
    let (bob, _) = srv.chat_user("bob_sm").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    b.send_raw("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    let enabled = b.expect_named("enabled").await;
    assert_eq!(enabled.attr("resume"), Some("true"));
    let id = enabled.attr("id").unwrap().to_owned();
    // Client → server acks count our stanzas.
    b.send_raw("<message to='localhost'/><r xmlns='urn:xmpp:sm:3'/>")
        .await;
    let ack = b.expect_named("a").await;
    assert_eq!(ack.attr("h"), Some("1"));
    // One message received and acked, one received but not acked, then the socket drops.
    a.send_raw(&format!(
        "<message to='{bob}@localhost' type='chat' id='s1'><body>one</body></message>"
    ))
    .await;
    b.expect_named("message").await;
    b.send_raw("<a xmlns='urn:xmpp:sm:3' h='1'/>").await;
    a.send_raw(&format!(
        "<message to='{bob}@localhost' type='chat' id='s2'><body>two</body></message>"
    ))
    .await;
    b.expect_named("message").await;
    b.drop_socket();
    // Sent while Bob is away: kept for the parked session, not offline.
    a.send_raw(&format!(
        "<message to='{bob}@localhost' type='chat' id='s3'><body>three</body></message>"
    ))
    .await;
    a.iq(
        "p",
        "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;

    let mut b2 = Client::connect(srv.xmpp, Via::Tcp).await;
    b2.open().await;
    assert_eq!(b2.auth(&bob, PASSWORD).await, "success");
    b2.open().await;
    b2.send_raw(&format!(
        "<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='1'/>"
    ))
    .await;
    let resumed = b2.expect_named("resumed").await;
    assert_eq!(resumed.attr("h"), Some("1"));
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let m = b2.expect_named("message").await;
        ids.push(m.attr("id").unwrap_or_default().to_owned());
    }
    assert_eq!(
        ids,
        ["s2", "s3"],
        "un-acked and missed stanzas, in order, once"
    );
    // The resumed stream is live in both directions.
    b2.send_raw(&format!(
        "<message to='{alice}@localhost' type='chat' id='s4'><body>back</body></message>"
    ))
    .await;
    let m = a.expect_named("message").await;
    assert_eq!(m.attr("id"), Some("s4"));
    srv.stop().await;
}

#[tokio::test]
async fn unacked_stanzas_of_a_stream_not_resumed_go_to_offline_storage() {
    let mut cfg = test_config();
    cfg.xmpp.sm_resume_secs = 0;
    let srv = TestServer::start_with(cfg).await;
    let (alice, _) = srv.chat_user("alice_sm2").await;
    let (bob, _) = srv.chat_user("bob_sm2").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    b.send_raw("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    b.expect_named("enabled").await;
    a.send_raw(&format!(
        "<message to='{bob}@localhost' type='chat' id='u1'><body>lost?</body></message>"
    ))
    .await;
    b.expect_named("message").await;
    b.drop_socket();
    // The window is zero: the session ends and its un-acked message waits offline.
    let mut later = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut b2 = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
        b2.send_raw("<presence/><iq type='get' id='z'><ping xmlns='urn:xmpp:ping'/></iq>")
            .await;
        loop {
            let e = b2.next().await.expect("open stream");
            if e.name == "message" {
                later = Some(e);
                break;
            }
            if e.attr("id") == Some("z") {
                break;
            }
        }
        if later.is_some() {
            break;
        }
    }
    let m = later.expect("the un-acked message was kept offline");
    assert_eq!(m.attr("id"), Some("u1"));
    assert!(m.child("delay", "urn:xmpp:delay").is_some());
    srv.stop().await;
}

#[tokio::test]
async fn status_streaming_subscription_pushes_when_the_user_comes_online() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_ss").await;
    let (bob, _) = srv.chat_user("bob_ss").await;
    let mut a = Client::login(srv.xmpp, Via::Ws, &alice, PASSWORD).await;
    let r = a.iq("s1", &format!("<iq type='set' id='s1'><subscribe xmlns='https://connectycube.com/protocol/status_streaming' user_jid='{bob}@localhost' enable='true'/></iq>")).await;
    assert_eq!(r.attr("type"), Some("result"));
    let _b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    let push = a
        .expect("status push", |e| {
            e.name == "iq" && e.child("query", "jabber:iq:last").is_some()
        })
        .await;
    assert_eq!(push.attr("from"), Some(format!("{bob}@localhost").as_str()));
    assert_eq!(push.attr("type"), Some("result"));
    srv.stop().await;
}

#[tokio::test]
async fn csi_and_tigase_mobile_are_answered_and_kept() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_csi").await;
    let mut a = Client::login(srv.xmpp, Via::Ws, &alice, PASSWORD).await;
    let r = a.iq("m1", "<iq type='set' id='m1'><mobile xmlns='http://tigase.org/protocol/mobile#v2' enable='true'/></iq>").await;
    assert_eq!(r.attr("type"), Some("result"));
    a.send_raw("<active xmlns='urn:xmpp:csi:0'/>").await;
    let r = a
        .iq(
            "m2",
            "<iq type='get' id='m2'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    srv.stop().await;
}

#[tokio::test]
async fn server_pings_an_idle_client_and_closes_it_when_it_never_answers() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_idle").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    a.patience = Duration::from_secs(100_000);
    // Virtual time from here on: while both sides wait, the runtime jumps to the server's idle
    // deadline (5 minutes), then to the ping timeout.
    tokio::time::pause();
    let ping = a.expect_named("iq").await;
    assert!(ping.child("ping", "urn:xmpp:ping").is_some());
    assert_eq!(ping.attr("type"), Some("get"));
    assert_eq!(a.stream_error().await, "connection-timeout");
    srv.stop().await;
}

const ROSTER: &str = "jabber:iq:roster";

fn roster_item(iq: &parley::xmpp::stream::Element) -> Option<&parley::xmpp::stream::Element> {
    iq.child("query", ROSTER)?.child("item", ROSTER)
}

#[tokio::test]
async fn roster_set_is_pushed_to_every_connection_and_returned_by_get() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_ro").await;
    let (bob, _) = srv.chat_user("bob_ro").await;
    let mut a1 = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let mut a2 = Client::login(srv.xmpp, Via::Ws, &alice, PASSWORD).await;
    let r = a1
        .iq(
            "g0",
            "<iq type='get' id='g0'><query xmlns='jabber:iq:roster'/></iq>",
        )
        .await;
    assert!(roster_item(&r).is_none(), "empty at first");
    let r = a1.iq("s1", &format!("<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='{bob}@localhost' name='Bob'><group>Friends</group></item></query></iq>")).await;
    assert_eq!(r.attr("type"), Some("result"));
    let push = a2
        .expect("roster push", |e| {
            e.name == "iq" && e.attr("type") == Some("set")
        })
        .await;
    let item = roster_item(&push).unwrap();
    assert_eq!(item.attr("name"), Some("Bob"));
    assert_eq!(item.attr("subscription"), Some("none"));
    let r = a2
        .iq(
            "g1",
            "<iq type='get' id='g1'><query xmlns='jabber:iq:roster'/></iq>",
        )
        .await;
    let item = roster_item(&r).unwrap();
    assert_eq!(item.attr("jid"), Some(format!("{bob}@localhost").as_str()));
    assert_eq!(item.child("group", ROSTER).unwrap().text(), "Friends");
    let r = a1.iq("s2", &format!("<iq type='set' id='s2'><query xmlns='jabber:iq:roster'><item jid='{bob}@localhost' subscription='remove'/></query></iq>")).await;
    assert_eq!(r.attr("type"), Some("result"));
    let r = a1
        .iq(
            "g2",
            "<iq type='get' id='g2'><query xmlns='jabber:iq:roster'/></iq>",
        )
        .await;
    assert!(roster_item(&r).is_none());
    srv.stop().await;
}

#[tokio::test]
async fn approved_subscription_makes_presence_flow_to_the_subscriber() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_sub").await;
    let (bob, _) = srv.chat_user("bob_sub").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    a.send_raw(&format!(
        "<presence to='{bob}@localhost' type='subscribe'/>"
    ))
    .await;
    let push = a.expect_named("iq").await;
    assert_eq!(roster_item(&push).unwrap().attr("ask"), Some("subscribe"));
    let req = b
        .expect("subscribe request", |e| e.attr("type") == Some("subscribe"))
        .await;
    assert_eq!(
        req.attr("from"),
        Some(format!("{alice}@localhost").as_str())
    );
    b.send_raw(&format!(
        "<presence to='{alice}@localhost' type='subscribed'/>"
    ))
    .await;
    let push = a
        .expect("push with subscription=to", |e| {
            e.name == "iq" && roster_item(e).and_then(|i| i.attr("subscription")) == Some("to")
        })
        .await;
    assert!(roster_item(&push).unwrap().attr("ask").is_none());
    a.expect("subscribed", |e| e.attr("type") == Some("subscribed"))
        .await;
    // Bob comes online: Alice, a subscriber, gets his presence; and the reverse is not implied.
    b.send_raw("<presence><status>here</status></presence>")
        .await;
    let p = a
        .expect("bob's presence", |e| {
            e.name == "presence" && e.attr("from") == Some(b.jid.as_str())
        })
        .await;
    assert_eq!(
        p.child("status", "jabber:client")
            .map(|s| s.text())
            .as_deref(),
        Some("here")
    );
    // A fresh login of Alice is told Bob is online (probe).
    let mut a2 = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    a2.send_raw("<presence/>").await;
    a2.expect("probe answer", |e| {
        e.name == "presence" && e.attr("from") == Some(b.jid.as_str())
    })
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn chat_to_a_user_that_does_not_exist_is_bounced_not_stored() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_ghost").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let ghost = srv.local(987_654_321);
    a.send_raw(&format!(
        "<message to='{ghost}@localhost' type='chat' id='g1'><body>anyone?</body></message>"
    ))
    .await;
    let e = a.expect_named("message").await;
    assert_eq!(e.attr("type"), Some("error"));
    assert_eq!(e.attr("id"), Some("g1"));
    assert!(e
        .child("error", "jabber:client")
        .and_then(|e| e.child("service-unavailable", STANZAS))
        .is_some());
    srv.stop().await;
}

#[tokio::test]
async fn message_without_to_goes_to_the_senders_own_resources() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_self").await;
    let mut a1 = Client::login(srv.xmpp, Via::Ws, &alice, PASSWORD).await;
    let mut a2 = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    // A whitespace-only WebSocket frame is a keepalive, not an error.
    a1.send_raw(" \n").await;
    a1.send_raw("<message xmlns='jabber:client' type='chat' id='n1'><body>note</body></message>")
        .await;
    let m = a2.expect_named("message").await;
    assert_eq!(m.attr("id"), Some("n1"));
    assert_eq!(m.attr("from"), Some(a1.jid.as_str()));
    srv.stop().await;
}

#[tokio::test]
async fn subscription_request_to_an_offline_user_waits_for_its_next_login() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_sreq").await;
    let (bob, _) = srv.chat_user("bob_sreq").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    a.send_raw(&format!(
        "<presence to='{bob}@localhost' type='subscribe'/>"
    ))
    .await;
    a.iq(
        "p",
        "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    b.send_raw("<presence/>").await;
    let req = b
        .expect("stored request", |e| e.attr("type") == Some("subscribe"))
        .await;
    assert_eq!(
        req.attr("from"),
        Some(format!("{alice}@localhost").as_str())
    );
    assert!(req.child("delay", "urn:xmpp:delay").is_some());
    srv.stop().await;
}
