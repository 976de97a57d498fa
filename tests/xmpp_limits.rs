//! Bad input closes only the offending stream, with the RFC 6120 condition, while another
//! client goes on chatting: oversized stanzas, a billion-laughs DTD, broken XML, a stanza
//! before authentication, an unknown namespace, and the same on WebSocket frames.

use crate::common::xmpp::{Client, Via, STREAM_HEADER, WS_OPEN};
use crate::common::{TestServer, PASSWORD};

const BILLION_LAUGHS: &str = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><message><body>&lol9;</body></message>"#;

/// Two clients that must keep talking while a third misbehaves.
struct Bystanders {
    a: Client,
    b: Client,
    bob: String,
    n: u32,
}

impl Bystanders {
    async fn new(srv: &TestServer, tag: &str) -> Self {
        let (alice, _) = srv.chat_user(&format!("alice_{tag}")).await;
        let (bob, _) = srv.chat_user(&format!("bob_{tag}")).await;
        let a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
        let b = Client::login(srv.xmpp, Via::Ws, &bob, PASSWORD).await;
        Bystanders { a, b, bob, n: 0 }
    }

    async fn still_chatting(&mut self) {
        self.n += 1;
        let id = format!("still{}", self.n);
        self.a
            .send_raw(&format!(
                "<message to='{}@localhost' type='chat' id='{id}'><body>ok</body></message>",
                self.bob
            ))
            .await;
        let m = self.b.expect_named("message").await;
        assert_eq!(m.attr("id"), Some(id.as_str()));
    }
}

async fn logged_in(srv: &TestServer, tag: &str, via: Via) -> Client {
    let (eve, _) = srv.chat_user(&format!("eve_{tag}")).await;
    Client::login(srv.xmpp, via, &eve, PASSWORD).await
}

#[tokio::test]
async fn ten_mib_stanza_is_a_policy_violation_on_tcp_and_websocket() {
    let srv = TestServer::start().await;
    let mut ok = Bystanders::new(&srv, "big").await;
    let big = "x".repeat(10 << 20);
    let mut eve = logged_in(&srv, "big", Via::Tcp).await;
    // The server closes long before all of it is read; ignore the write error.
    let _ = eve
        .try_send_raw(&format!(
            "<message to='a@localhost'><body>{big}</body></message>"
        ))
        .await;
    assert_eq!(eve.stream_error().await, "policy-violation");
    ok.still_chatting().await;

    let mut eve = logged_in(&srv, "bigws", Via::Ws).await;
    let _ = eve
        .try_send_raw(&format!(
            "<message to='a@localhost'><body>{big}</body></message>"
        ))
        .await;
    assert_eq!(eve.stream_error().await, "policy-violation");
    ok.still_chatting().await;
    srv.stop().await;
}

#[tokio::test]
async fn billion_laughs_is_refused_before_any_expansion() {
    let srv = TestServer::start().await;
    let mut ok = Bystanders::new(&srv, "lol").await;
    let mut eve = Client::connect(srv.xmpp, Via::Tcp).await;
    eve.send_raw(BILLION_LAUGHS).await;
    let header = eve.next().await.expect("a stream header before the error");
    assert_eq!(header.name, "stream");
    assert_eq!(eve.stream_error().await, "policy-violation");
    ok.still_chatting().await;

    let mut eve = Client::connect(srv.xmpp, Via::Ws).await;
    eve.send_raw(WS_OPEN).await;
    eve.next().await;
    eve.next().await;
    eve.send_raw("<!DOCTYPE x [<!ENTITY a 'aaaa'>]><message><body>&a;</body></message>")
        .await;
    assert_eq!(eve.stream_error().await, "policy-violation");
    ok.still_chatting().await;
    srv.stop().await;
}

#[tokio::test]
async fn malformed_xml_is_not_well_formed() {
    let srv = TestServer::start().await;
    let mut ok = Bystanders::new(&srv, "nwf").await;
    let mut eve = logged_in(&srv, "nwf", Via::Tcp).await;
    eve.send_raw("<message><body>x</message></body>").await;
    assert_eq!(eve.stream_error().await, "not-well-formed");
    let mut eve = logged_in(&srv, "nwf2", Via::Ws).await;
    eve.send_raw("<message xmlns='jabber:client'><body>&undefined;</body></message>")
        .await;
    assert_eq!(eve.stream_error().await, "not-well-formed");
    ok.still_chatting().await;
    srv.stop().await;
}

#[tokio::test]
async fn stanza_before_authentication_is_not_authorized() {
    let srv = TestServer::start().await;
    let mut ok = Bystanders::new(&srv, "na").await;
    let mut eve = Client::connect(srv.xmpp, Via::Tcp).await;
    eve.open().await;
    eve.send_raw("<message to='1-1@localhost' type='chat'><body>spam</body></message>")
        .await;
    assert_eq!(eve.stream_error().await, "not-authorized");
    ok.still_chatting().await;
    srv.stop().await;
}

#[tokio::test]
async fn unknown_namespace_is_invalid_namespace() {
    let srv = TestServer::start().await;
    let mut ok = Bystanders::new(&srv, "ns").await;
    let mut eve = logged_in(&srv, "ns", Via::Tcp).await;
    eve.send_raw("<foo xmlns='urn:example:nope'/>").await;
    assert_eq!(eve.stream_error().await, "invalid-namespace");
    // A stream header in the wrong namespace, too.
    let mut eve = Client::connect(srv.xmpp, Via::Tcp).await;
    eve.send_raw(&STREAM_HEADER.replace("jabber:client", "jabber:server"))
        .await;
    eve.next().await;
    assert_eq!(eve.stream_error().await, "invalid-namespace");
    ok.still_chatting().await;
    srv.stop().await;
}

#[tokio::test]
async fn too_deep_nesting_is_a_policy_violation() {
    let srv = TestServer::start().await;
    let mut ok = Bystanders::new(&srv, "deep").await;
    let mut eve = logged_in(&srv, "deep", Via::Tcp).await;
    eve.send_raw(&format!("<message>{}", "<a>".repeat(100)))
        .await;
    assert_eq!(eve.stream_error().await, "policy-violation");
    ok.still_chatting().await;
    srv.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_negotiating_is_closed_with_connection_timeout() {
    let srv = TestServer::start().await;
    let mut ok = Bystanders::new(&srv, "slow").await;
    let mut eve = Client::connect(srv.xmpp, Via::Tcp).await;
    eve.open().await;
    eve.patience = std::time::Duration::from_secs(100_000);
    // Virtual time: jump past the negotiation deadline instead of waiting for it.
    tokio::time::pause();
    tokio::time::advance(std::time::Duration::from_secs(31)).await;
    assert_eq!(eve.stream_error().await, "connection-timeout");
    tokio::time::resume();
    ok.still_chatting().await;
    srv.stop().await;
}
