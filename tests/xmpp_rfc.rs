//! RFC 6120/6121 corner cases that third-party clients depend on: iqs without `to` handled for
//! the account, and ill-formed XML answered at once with a stream error, before and after
//! authentication.

use std::time::Duration;

use crate::common::xmpp::{Client, Via};
use crate::common::{TestServer, PASSWORD};

const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// A stream error must come promptly, not after some idle timeout.
const PROMPTLY: Duration = Duration::from_secs(3);

async fn prompt_stream_error(c: &mut Client) -> String {
    tokio::time::timeout(PROMPTLY, c.stream_error())
        .await
        .expect("a stream error promptly")
}

#[tokio::test]
async fn iq_without_to_is_answered_from_the_account_not_the_domain() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_noto").await;
    let mut c = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let bare = format!("{alice}@localhost");
    let r = c
        .iq(
            "r1",
            "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    // RFC 6120 §8.1.2.1: no `from`, or the account's bare JID; never the domain.
    assert!(
        r.attr("from").is_none_or(|f| f == bare),
        "{:?}",
        r.attr("from")
    );
    srv.stop().await;
}

#[tokio::test]
async fn disco_info_on_ones_own_account_answers_as_the_account() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_dacc").await;
    let mut c = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    for (id, to) in [
        ("d1", String::new()),
        ("d2", format!(" to='{alice}@localhost'")),
    ] {
        let r = c
            .iq(
                id,
                &format!("<iq type='get' id='{id}'{to}><query xmlns='{DISCO_INFO}'/></iq>"),
            )
            .await;
        let q = r.child("query", DISCO_INFO).expect("disco#info answer");
        let identity = q.child("identity", DISCO_INFO).expect("an identity");
        assert_eq!(
            (identity.attr("category"), identity.attr("type")),
            (Some("account"), Some("registered")),
            "{r:?}"
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn disco_info_on_the_domain_still_answers_as_the_server() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_dsrv").await;
    let mut c = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let r = c
        .iq(
            "d3",
            &format!("<iq type='get' id='d3' to='localhost'><query xmlns='{DISCO_INFO}'/></iq>"),
        )
        .await;
    let q = r.child("query", DISCO_INFO).expect("disco#info answer");
    let identity = q.child("identity", DISCO_INFO).expect("an identity");
    assert_eq!(identity.attr("category"), Some("server"), "{r:?}");
    assert_eq!(r.attr("from"), Some("localhost"));
    srv.stop().await;
}

#[tokio::test]
async fn ill_formed_xml_after_authentication_ends_the_stream_at_once() {
    let srv = TestServer::start().await;
    for (i, bad) in ["<<", "&bogus;", "<message><</message>"].iter().enumerate() {
        let (eve, _) = srv.chat_user(&format!("eve_nwf_after{i}")).await;
        let mut c = Client::login(srv.xmpp, Via::Tcp, &eve, PASSWORD).await;
        c.send_raw(bad).await;
        assert_eq!(
            prompt_stream_error(&mut c).await,
            "not-well-formed",
            "{bad}"
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn ill_formed_xml_before_authentication_ends_the_stream_at_once() {
    let srv = TestServer::start().await;
    for bad in [
        "<<",
        "&bogus;",
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'<",
    ] {
        let mut c = Client::connect(srv.xmpp, Via::Tcp).await;
        c.open().await;
        c.send_raw(bad).await;
        assert_eq!(
            prompt_stream_error(&mut c).await,
            "not-well-formed",
            "{bad}"
        );
    }
    srv.stop().await;
}
