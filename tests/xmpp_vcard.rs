//! vCard-temp (XEP-0054) in step with the REST user, and private XML storage (XEP-0049).

use parley::xmpp::stream::Element;
use serde_json::json;

use crate::common::xmpp::{Client, Via};
use crate::common::{test_config, TestServer, PASSWORD};

const VCARD: &str = "vcard-temp";
const PRIVATE: &str = "jabber:iq:private";

fn id_of(local: &str) -> i64 {
    local.split('-').next().unwrap().parse().unwrap()
}

fn vcard_text(r: &Element, path: &[&str]) -> Option<String> {
    let mut e = r.child("vCard", VCARD)?;
    for p in path {
        e = e.child(p, VCARD)?;
    }
    Some(e.text())
}

#[tokio::test]
async fn a_vcard_shows_the_rest_full_name_and_avatar() {
    let srv = TestServer::start().await;
    let (alice, token) = srv.chat_user("alice_vc").await;
    let r = srv
        .http
        .put_json(
            &format!("/users/{}", id_of(&alice)),
            Some(&token),
            json!({"user": {"full_name": "Alice Liddell", "avatar": "https://img.example/a.png"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut c = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let r = c
        .iq(
            "v1",
            "<iq type='get' id='v1'><vCard xmlns='vcard-temp'/></iq>",
        )
        .await;
    assert_eq!(
        vcard_text(&r, &["FN"]).as_deref(),
        Some("Alice Liddell"),
        "{r:?}"
    );
    assert_eq!(
        vcard_text(&r, &["PHOTO", "EXTVAL"]).as_deref(),
        Some("https://img.example/a.png")
    );
    srv.stop().await;
}

#[tokio::test]
async fn setting_ones_vcard_updates_the_rest_user_and_keeps_the_rest_of_it() {
    let srv = TestServer::start().await;
    let (alice, token) = srv.chat_user("alice_vs").await;
    let mut c = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let r = c
        .iq(
            "v2",
            "<iq type='set' id='v2'><vCard xmlns='vcard-temp'><FN>Alice L.</FN>\
             <NICKNAME>al</NICKNAME><PHOTO><EXTVAL>https://img.example/b.png</EXTVAL></PHOTO>\
             </vCard></iq>",
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let u = srv
        .http
        .get(&format!("/users/{}", id_of(&alice)), Some(&token))
        .await
        .json();
    assert_eq!(u["user"]["full_name"], "Alice L.");
    assert_eq!(u["user"]["avatar"], "https://img.example/b.png");
    let r = c
        .iq(
            "v3",
            "<iq type='get' id='v3'><vCard xmlns='vcard-temp'/></iq>",
        )
        .await;
    assert_eq!(
        vcard_text(&r, &["NICKNAME"]).as_deref(),
        Some("al"),
        "{r:?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn another_user_reads_a_vcard_but_cannot_set_it() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_vo").await;
    let (bob, _) = srv.chat_user("bob_vo").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    a.iq(
        "s",
        "<iq type='set' id='s'><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>",
    )
    .await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    let r = b
        .iq(
            "g",
            &format!(
                "<iq type='get' id='g' to='{alice}@localhost'><vCard xmlns='vcard-temp'/></iq>"
            ),
        )
        .await;
    assert_eq!(vcard_text(&r, &["FN"]).as_deref(), Some("Alice"), "{r:?}");
    let r = b
        .iq(
            "x",
            &format!(
                "<iq type='set' id='x' to='{alice}@localhost'><vCard xmlns='vcard-temp'><FN>Mallory</FN></vCard></iq>"
            ),
        )
        .await;
    assert_eq!(r.attr("type"), Some("error"), "{r:?}");
    let r = a
        .iq(
            "g2",
            "<iq type='get' id='g2'><vCard xmlns='vcard-temp'/></iq>",
        )
        .await;
    assert_eq!(vcard_text(&r, &["FN"]).as_deref(), Some("Alice"));
    srv.stop().await;
}

#[tokio::test]
async fn a_binval_photo_is_kept_and_the_rest_avatar_left_alone() {
    let srv = TestServer::start().await;
    let (alice, token) = srv.chat_user("alice_vb").await;
    srv.http
        .put_json(
            &format!("/users/{}", id_of(&alice)),
            Some(&token),
            json!({"user": {"avatar": "https://img.example/rest.png"}}),
        )
        .await;
    let mut c = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    c.iq(
        "b",
        "<iq type='set' id='b'><vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE>\
         <BINVAL>iVBORw0KGgo=</BINVAL></PHOTO></vCard></iq>",
    )
    .await;
    let r = c
        .iq(
            "g",
            "<iq type='get' id='g'><vCard xmlns='vcard-temp'/></iq>",
        )
        .await;
    assert_eq!(
        vcard_text(&r, &["PHOTO", "BINVAL"]).as_deref(),
        Some("iVBORw0KGgo=")
    );
    let u = srv
        .http
        .get(&format!("/users/{}", id_of(&alice)), Some(&token))
        .await
        .json();
    assert_eq!(u["user"]["avatar"], "https://img.example/rest.png");
    srv.stop().await;
}

#[tokio::test]
async fn a_vcard_the_rest_rules_refuse_is_not_acceptable_and_changes_nothing() {
    let srv = TestServer::start().await;
    let (alice, token) = srv.chat_user("alice_vn").await;
    let mut c = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let long = "x".repeat(201);
    let r = c
        .iq(
            "n",
            &format!(
                "<iq type='set' id='n'><vCard xmlns='vcard-temp'><FN>{long}</FN></vCard></iq>"
            ),
        )
        .await;
    let err = r.child("error", "jabber:client").expect("an error");
    assert!(
        err.child("not-acceptable", "urn:ietf:params:xml:ns:xmpp-stanzas")
            .is_some(),
        "{r:?}"
    );
    let u = srv
        .http
        .get(&format!("/users/{}", id_of(&alice)), Some(&token))
        .await
        .json();
    assert_eq!(u["user"]["full_name"], "alice_vn", "unchanged: {u}");
    srv.stop().await;
}

#[tokio::test]
async fn private_storage_keeps_an_element_per_namespace() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_ps").await;
    let mut c = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let r = c
        .iq(
            "p1",
            "<iq type='set' id='p1'><query xmlns='jabber:iq:private'>\
             <storage xmlns='storage:bookmarks'><conference jid='room@muc.localhost' name='R'/>\
             </storage></query></iq>",
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let r = c
        .iq(
            "p2",
            "<iq type='get' id='p2'><query xmlns='jabber:iq:private'>\
             <storage xmlns='storage:bookmarks'/></query></iq>",
        )
        .await;
    let conf = r
        .child("query", PRIVATE)
        .and_then(|q| q.child("storage", "storage:bookmarks"))
        .and_then(|s| s.child("conference", "storage:bookmarks"))
        .expect("the stored element");
    assert_eq!(conf.attr("jid"), Some("room@muc.localhost"));
    // Nothing stored under another namespace: the empty element back.
    let r = c
        .iq(
            "p3",
            "<iq type='get' id='p3'><query xmlns='jabber:iq:private'><prefs xmlns='x:none'/></query></iq>",
        )
        .await;
    let p = r
        .child("query", PRIVATE)
        .and_then(|q| q.child("prefs", "x:none"))
        .expect("the empty element");
    assert!(p.elements().next().is_none());
    srv.stop().await;
}

#[tokio::test]
async fn private_storage_refuses_reserved_namespaces_and_other_accounts() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_pr").await;
    let (bob, _) = srv.chat_user("bob_pr").await;
    let mut c = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let r = c
        .iq(
            "r1",
            "<iq type='set' id='r1'><query xmlns='jabber:iq:private'><x/></query></iq>",
        )
        .await;
    assert_eq!(
        r.attr("type"),
        Some("error"),
        "jabber:client is not the client's: {r:?}"
    );
    let r = c
        .iq(
            "r2",
            &format!(
                "<iq type='get' id='r2' to='{bob}@localhost'><query xmlns='jabber:iq:private'>\
                 <storage xmlns='storage:bookmarks'/></query></iq>"
            ),
        )
        .await;
    assert_eq!(r.attr("type"), Some("error"), "{r:?}");
    srv.stop().await;
}

#[tokio::test]
async fn private_storage_is_bounded_per_user() {
    let mut config = test_config();
    config.xmpp.private_max_items = 2;
    let srv = TestServer::start_with(config).await;
    let (alice, _) = srv.chat_user("alice_pb").await;
    let mut c = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let set = |i: u32| {
        format!("<iq type='set' id='s{i}'><query xmlns='jabber:iq:private'><d xmlns='x:{i}'/></query></iq>")
    };
    for i in 0..2 {
        let r = c.iq(&format!("s{i}"), &set(i)).await;
        assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    }
    let r = c.iq("s2", &set(2)).await;
    let err = r.child("error", "jabber:client").expect("refused");
    assert!(
        err.child("resource-constraint", "urn:ietf:params:xml:ns:xmpp-stanzas")
            .is_some(),
        "{r:?}"
    );
    // Replacing one already kept is not a new element.
    let r = c.iq("s1", &set(1)).await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    srv.stop().await;
}
