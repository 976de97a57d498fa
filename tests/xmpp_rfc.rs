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

#[tokio::test]
async fn software_version_names_parley_and_its_version_only() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_ver").await;
    let mut c = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let r = c
        .iq(
            "v1",
            "<iq type='get' id='v1' to='localhost'><query xmlns='jabber:iq:version'/></iq>",
        )
        .await;
    let q = r.child("query", "jabber:iq:version").expect("a version");
    assert_eq!(
        q.child("name", "jabber:iq:version").map(|n| n.text()),
        Some("Parley".into())
    );
    assert!(q.child("version", "jabber:iq:version").is_some(), "{r:?}");
    assert!(
        q.child("os", "jabber:iq:version").is_none(),
        "the OS is not told"
    );
    srv.stop().await;
}

#[tokio::test]
async fn entity_time_is_the_servers_clock_in_utc() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_time").await;
    let mut c = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let r = c
        .iq(
            "t1",
            "<iq type='get' id='t1' to='localhost'><time xmlns='urn:xmpp:time'/></iq>",
        )
        .await;
    let t = r.child("time", "urn:xmpp:time").expect("a time");
    assert_eq!(
        t.child("tzo", "urn:xmpp:time").map(|n| n.text()),
        Some("+00:00".into())
    );
    let utc = t
        .child("utc", "urn:xmpp:time")
        .map(|n| n.text())
        .unwrap_or_default();
    let expected = parley::model::time::iso(srv.clock.now());
    // Same minute as the server's clock, in XEP-0082 form.
    assert_eq!(utc.get(..16), expected.get(..16), "{utc} vs {expected}");
    assert!(utc.ends_with('Z'), "{utc}");
    srv.stop().await;
}

#[tokio::test]
async fn version_and_time_of_another_users_bare_jid_are_not_answered_for_them() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_vt").await;
    let (bob, _) = srv.chat_user("bob_vt").await;
    let mut c = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let r = c
        .iq(
            "v2",
            &format!("<iq type='get' id='v2' to='{bob}@localhost'><query xmlns='jabber:iq:version'/></iq>"),
        )
        .await;
    assert_eq!(r.attr("type"), Some("error"), "{r:?}");
    srv.stop().await;
}
