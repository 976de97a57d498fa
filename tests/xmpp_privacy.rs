//! Privacy over real sockets: XEP-0016 lists exactly as the official ConnectyCube SDK writes them
//! (per user a `jid` item for the user and one for `muc.{domain}/{uid}`; `mutualBlock` = items
//! without children), default and active lists, the decline → edit → default flow, and XEP-0191
//! blocking with pushes. Each test is a story between live clients, named after the rule.

use std::time::Duration;

use crate::common::xmpp::{Client, Via};
use crate::common::{test_config, TestServer, PASSWORD};
use parley::xmpp::stream::Element;

const PRIVACY: &str = "jabber:iq:privacy";
const BLOCKING: &str = "urn:xmpp:blocking";
const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
const CLIENT: &str = "jabber:client";

/// The list the SDK's `privacylist.create` sends for one user id.
fn sdk_list(name: &str, uid: &str, action: &str, mutual: bool) -> String {
    let kinds = if mutual {
        ""
    } else {
        "<message/><presence-in/><presence-out/><iq/>"
    };
    format!(
        "<query xmlns='{PRIVACY}'><list name='{name}'>\
         <item type='jid' value='{uid}@localhost' action='{action}' order='1'>{kinds}</item>\
         <item type='jid' value='muc.localhost/{id}' action='{action}' order='2'>{kinds}</item>\
         </list></query>",
        id = uid.split('-').next().unwrap_or_default()
    )
}

async fn set(c: &mut Client, id: &str, query: &str) -> Element {
    c.iq(id, &format!("<iq type='set' id='{id}'>{query}</iq>"))
        .await
}

async fn get(c: &mut Client, id: &str, query: &str) -> Element {
    c.iq(id, &format!("<iq type='get' id='{id}'>{query}</iq>"))
        .await
}

fn condition(e: &Element) -> Option<String> {
    let err = e.child("error", CLIENT)?;
    err.elements()
        .find(|c| c.ns == STANZAS && c.name != "text")
        .map(|c| c.name.clone())
}

fn assert_result(e: &Element) {
    assert_eq!(e.attr("type"), Some("result"), "{e:?}");
}

async fn chat(from: &mut Client, to: &str, id: &str, body: &str) {
    from.send_raw(&format!(
        "<message to='{to}@localhost' type='chat' id='{id}'><body>{body}</body></message>"
    ))
    .await;
}

/// The next message `c` gets, with its body.
async fn receive(c: &mut Client) -> (Element, String) {
    let m = c.expect_named("message").await;
    let body = m
        .child("body", CLIENT)
        .map(|b| b.text())
        .unwrap_or_default();
    (m, body)
}

/// The error bounce for message `id`, with its condition.
async fn bounced(c: &mut Client, id: &str) -> (Element, String) {
    let e = c
        .expect("message error", |e| {
            e.name == "message" && e.attr("id") == Some(id)
        })
        .await;
    assert_eq!(e.attr("type"), Some("error"), "{e:?}");
    let cond = condition(&e).unwrap_or_default();
    (e, cond)
}

/// Proves `c` got no message: a short wait, then a ping round trip with nothing before it.
async fn nothing_arrives(c: &mut Client, id: &str) {
    tokio::time::sleep(Duration::from_millis(150)).await;
    c.send_raw(&format!(
        "<iq type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
    ))
    .await;
    loop {
        let e = c.next().await.expect("stream open");
        assert_ne!(e.name, "message", "no message expected, got {e:?}");
        if e.name == "iq" && e.attr("id") == Some(id) {
            return;
        }
    }
}

async fn three(srv: &TestServer, tag: &str) -> (Client, Client, Client, [String; 3]) {
    let (a, _) = srv.chat_user(&format!("alice_{tag}")).await;
    let (b, _) = srv.chat_user(&format!("bob_{tag}")).await;
    let (c, _) = srv.chat_user(&format!("carol_{tag}")).await;
    let ca = Client::login(srv.xmpp, Via::Tcp, &a, PASSWORD).await;
    let cb = Client::login(srv.xmpp, Via::Ws, &b, PASSWORD).await;
    let cc = Client::login(srv.xmpp, Via::Tcp, &c, PASSWORD).await;
    (ca, cb, cc, [a, b, c])
}

#[tokio::test]
async fn a_default_deny_list_bounces_the_denied_users_messages_and_only_inbound() {
    let srv = TestServer::start().await;
    let (mut a, mut b, mut c, [alice, bob, carol]) = three(&srv, "deny").await;
    assert_result(&set(&mut a, "l1", &sdk_list("bl", &bob, "deny", false)).await);
    // A list takes effect once it is the default.
    chat(&mut b, &alice, "m0", "before default").await;
    assert_eq!(receive(&mut a).await.1, "before default");
    assert_result(
        &set(
            &mut a,
            "d1",
            &format!("<query xmlns='{PRIVACY}'><default name='bl'/></query>"),
        )
        .await,
    );

    chat(&mut b, &alice, "m1", "blocked").await;
    let (e, cond) = bounced(&mut b, "m1").await;
    assert_eq!(cond, "service-unavailable");
    assert_eq!(e.attr("from"), Some(format!("{alice}@localhost").as_str()));
    assert!(
        e.child("error", CLIENT)
            .and_then(|x| x.child("blocked", "urn:xmpp:blocking:errors"))
            .is_none(),
        "the block is not revealed to the blocked user"
    );
    nothing_arrives(&mut a, "q1").await;

    // Deny is inbound only: A still reaches B.
    chat(&mut a, &bob, "m2", "from alice").await;
    assert_eq!(receive(&mut b).await.1, "from alice");
    // A third user is unaffected.
    chat(&mut c, &alice, "m3", "from carol").await;
    assert_eq!(receive(&mut a).await.1, "from carol");
    // Nor are B's messages to others.
    chat(&mut b, &carol, "m4", "bob to carol").await;
    assert_eq!(receive(&mut c).await.1, "bob to carol");
    srv.stop().await;
}

#[tokio::test]
async fn a_mutual_block_refuses_both_directions() {
    let srv = TestServer::start().await;
    let (mut a, mut b, mut c, [alice, bob, _carol]) = three(&srv, "mutual").await;
    assert_result(&set(&mut a, "l1", &sdk_list("bl", &bob, "deny", true)).await);
    assert_result(
        &set(
            &mut a,
            "d1",
            &format!("<query xmlns='{PRIVACY}'><default name='bl'/></query>"),
        )
        .await,
    );

    chat(&mut b, &alice, "m1", "blocked in").await;
    assert_eq!(bounced(&mut b, "m1").await.1, "service-unavailable");
    chat(&mut a, &bob, "m2", "blocked out").await;
    let (e, cond) = bounced(&mut a, "m2").await;
    assert_eq!(cond, "not-acceptable");
    assert!(e
        .child("error", CLIENT)
        .and_then(|x| x.child("blocked", "urn:xmpp:blocking:errors"))
        .is_some());
    nothing_arrives(&mut a, "q1").await;
    nothing_arrives(&mut b, "q2").await;
    // Carol still reaches both.
    chat(&mut c, &alice, "m3", "hi a").await;
    assert_eq!(receive(&mut a).await.1, "hi a");
    chat(&mut c, &bob, "m4", "hi b").await;
    assert_eq!(receive(&mut b).await.1, "hi b");
    srv.stop().await;
}

#[tokio::test]
async fn names_and_list_round_trip_the_sdk_items_in_order() {
    let srv = TestServer::start().await;
    let (mut a, _b, _c, [_alice, bob, carol]) = three(&srv, "names").await;
    let r = get(&mut a, "n0", &format!("<query xmlns='{PRIVACY}'/>")).await;
    assert_result(&r);
    assert_eq!(r.child("query", PRIVACY).unwrap().elements().count(), 0);

    assert_result(&set(&mut a, "l1", &sdk_list("bl", &bob, "deny", false)).await);
    assert_result(&set(&mut a, "l2", &sdk_list("other", &carol, "allow", true)).await);
    assert_result(
        &set(
            &mut a,
            "d1",
            &format!("<query xmlns='{PRIVACY}'><default name='bl'/></query>"),
        )
        .await,
    );
    assert_result(
        &set(
            &mut a,
            "a1",
            &format!("<query xmlns='{PRIVACY}'><active name='other'/></query>"),
        )
        .await,
    );

    let r = get(&mut a, "n1", &format!("<query xmlns='{PRIVACY}'/>")).await;
    let q = r.child("query", PRIVACY).unwrap();
    assert_eq!(
        q.child("default", PRIVACY).and_then(|d| d.attr("name")),
        Some("bl")
    );
    assert_eq!(
        q.child("active", PRIVACY).and_then(|d| d.attr("name")),
        Some("other")
    );
    let names: Vec<&str> = q
        .elements()
        .filter(|e| e.name == "list")
        .filter_map(|e| e.attr("name"))
        .collect();
    assert_eq!(names, ["bl", "other"]);

    let r = get(
        &mut a,
        "g1",
        &format!("<query xmlns='{PRIVACY}'><list name='bl'/></query>"),
    )
    .await;
    let list = r
        .child("query", PRIVACY)
        .unwrap()
        .child("list", PRIVACY)
        .unwrap();
    assert_eq!(list.attr("name"), Some("bl"));
    let items: Vec<&Element> = list.elements().collect();
    assert_eq!(items.len(), 2);
    let uid = bob.split('-').next().unwrap();
    assert_eq!(
        items[0].attr("value"),
        Some(format!("{bob}@localhost").as_str())
    );
    assert_eq!(items[0].attr("action"), Some("deny"));
    assert_eq!(items[0].attr("order"), Some("1"));
    assert_eq!(items[0].attr("type"), Some("jid"));
    let kinds: Vec<&str> = items[0].elements().map(|k| k.name.as_str()).collect();
    assert_eq!(kinds, ["message", "presence-in", "presence-out", "iq"]);
    assert_eq!(
        items[1].attr("value"),
        Some(format!("muc.localhost/{uid}").as_str())
    );
    // The mutual-block list keeps its items without children.
    let r = get(
        &mut a,
        "g2",
        &format!("<query xmlns='{PRIVACY}'><list name='other'/></query>"),
    )
    .await;
    let list = r
        .child("query", PRIVACY)
        .unwrap()
        .child("list", PRIVACY)
        .unwrap();
    assert!(list.elements().all(|i| i.elements().count() == 0));
    srv.stop().await;
}

#[tokio::test]
async fn the_default_list_is_declined_then_edited_then_made_default_again() {
    let srv = TestServer::start().await;
    let (mut a, mut b, mut c, [alice, bob, carol]) = three(&srv, "edit").await;
    assert_result(&set(&mut a, "l1", &sdk_list("bl", &bob, "deny", false)).await);
    assert_result(
        &set(
            &mut a,
            "d1",
            &format!("<query xmlns='{PRIVACY}'><default name='bl'/></query>"),
        )
        .await,
    );
    // While it is the default it can be neither edited nor deleted.
    let r = set(&mut a, "l2", &sdk_list("bl", &carol, "deny", false)).await;
    assert_eq!(condition(&r).as_deref(), Some("conflict"));
    let r = set(
        &mut a,
        "x1",
        &format!("<query xmlns='{PRIVACY}'><list name='bl'/></query>"),
    )
    .await;
    assert_eq!(condition(&r).as_deref(), Some("conflict"));
    // Decline: no default, nothing enforced.
    assert_result(
        &set(
            &mut a,
            "d2",
            &format!("<query xmlns='{PRIVACY}'><default/></query>"),
        )
        .await,
    );
    let r = get(&mut a, "n1", &format!("<query xmlns='{PRIVACY}'/>")).await;
    assert!(r
        .child("query", PRIVACY)
        .unwrap()
        .child("default", PRIVACY)
        .is_none());
    chat(&mut b, &alice, "m1", "declined").await;
    assert_eq!(receive(&mut a).await.1, "declined");
    // Edit: now Carol is denied, not Bob; then default again.
    assert_result(&set(&mut a, "l3", &sdk_list("bl", &carol, "deny", false)).await);
    assert_result(
        &set(
            &mut a,
            "d3",
            &format!("<query xmlns='{PRIVACY}'><default name='bl'/></query>"),
        )
        .await,
    );
    chat(&mut b, &alice, "m2", "bob again").await;
    assert_eq!(receive(&mut a).await.1, "bob again");
    chat(&mut c, &alice, "m3", "carol").await;
    assert_eq!(bounced(&mut c, "m3").await.1, "service-unavailable");
    nothing_arrives(&mut a, "q1").await;
    // Decline and delete.
    assert_result(
        &set(
            &mut a,
            "d4",
            &format!("<query xmlns='{PRIVACY}'><default/></query>"),
        )
        .await,
    );
    assert_result(
        &set(
            &mut a,
            "x2",
            &format!("<query xmlns='{PRIVACY}'><list name='bl'/></query>"),
        )
        .await,
    );
    let r = get(
        &mut a,
        "g1",
        &format!("<query xmlns='{PRIVACY}'><list name='bl'/></query>"),
    )
    .await;
    assert_eq!(condition(&r).as_deref(), Some("item-not-found"));
    chat(&mut c, &alice, "m4", "carol free").await;
    assert_eq!(receive(&mut a).await.1, "carol free");
    srv.stop().await;
}

#[tokio::test]
async fn malformed_lists_are_bad_requests_and_unknown_lists_are_not_found() {
    let srv = TestServer::start().await;
    let (mut a, _b, _c, [_alice, bob, _carol]) = three(&srv, "bad").await;
    for (i, q) in [
        format!("<query xmlns='{PRIVACY}'><list name='x'><item type='jid' value='{bob}@localhost' action='nope' order='1'/></list></query>"),
        format!("<query xmlns='{PRIVACY}'><list name='x'><item type='jid' value='{bob}@localhost' action='deny'/></list></query>"),
        format!("<query xmlns='{PRIVACY}'><list name='x'><item type='jid' action='deny' order='1'/></list></query>"),
        format!("<query xmlns='{PRIVACY}'><list name='x'><item type='jid' value='{bob}@localhost' action='deny' order='1'/><item action='allow' order='1'/></list></query>"),
        format!("<query xmlns='{PRIVACY}'><list name='x'><item action='deny' order='1'><body/></item></list></query>"),
        format!("<query xmlns='{PRIVACY}'><list><item action='deny' order='1'/></list></query>"),
        format!("<query xmlns='{PRIVACY}'><default/><active/></query>"),
    ]
    .iter()
    .enumerate()
    {
        let r = set(&mut a, &format!("b{i}"), q).await;
        assert_eq!(condition(&r).as_deref(), Some("bad-request"), "{q}");
    }
    let r = get(&mut a, "n1", &format!("<query xmlns='{PRIVACY}'/>")).await;
    assert_eq!(
        r.child("query", PRIVACY).unwrap().elements().count(),
        0,
        "nothing stored"
    );
    for (id, q) in [
        (
            "u1",
            format!("<query xmlns='{PRIVACY}'><default name='nope'/></query>"),
        ),
        (
            "u2",
            format!("<query xmlns='{PRIVACY}'><active name='nope'/></query>"),
        ),
        (
            "u3",
            format!("<query xmlns='{PRIVACY}'><list name='nope'/></query>"),
        ),
    ] {
        let r = set(&mut a, id, &q).await;
        assert_eq!(condition(&r).as_deref(), Some("item-not-found"), "{q}");
    }
    let r = get(
        &mut a,
        "u4",
        &format!("<query xmlns='{PRIVACY}'><list name='nope'/></query>"),
    )
    .await;
    assert_eq!(condition(&r).as_deref(), Some("item-not-found"));
    srv.stop().await;
}

#[tokio::test]
async fn an_active_list_applies_while_its_connection_lives() {
    let srv = TestServer::start().await;
    let (mut a, mut b, _c, [alice, bob, _carol]) = three(&srv, "active").await;
    assert_result(&set(&mut a, "l1", &sdk_list("bl", &bob, "deny", false)).await);
    assert_result(
        &set(
            &mut a,
            "a1",
            &format!("<query xmlns='{PRIVACY}'><active name='bl'/></query>"),
        )
        .await,
    );
    chat(&mut b, &alice, "m1", "blocked").await;
    assert_eq!(bounced(&mut b, "m1").await.1, "service-unavailable");
    // Declining the active list lifts it.
    assert_result(
        &set(
            &mut a,
            "a2",
            &format!("<query xmlns='{PRIVACY}'><active/></query>"),
        )
        .await,
    );
    chat(&mut b, &alice, "m2", "open").await;
    assert_eq!(receive(&mut a).await.1, "open");
    srv.stop().await;
}

#[tokio::test]
async fn directed_presence_from_a_denied_user_is_dropped_silently() {
    let srv = TestServer::start().await;
    let (mut a, mut b, _c, [alice, bob, _carol]) = three(&srv, "pres").await;
    assert_result(&set(&mut a, "l1", &sdk_list("bl", &bob, "deny", false)).await);
    assert_result(
        &set(
            &mut a,
            "d1",
            &format!("<query xmlns='{PRIVACY}'><default name='bl'/></query>"),
        )
        .await,
    );
    b.send_raw(&format!("<presence to='{alice}@localhost'/>"))
        .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    a.send_raw("<iq type='get' id='q1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    loop {
        let e = a.next().await.expect("open");
        assert!(
            !(e.name == "presence" && e.attr("from") == Some(b.jid.as_str())),
            "presence from a denied user: {e:?}"
        );
        if e.attr("id") == Some("q1") {
            break;
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn blocking_command_blocks_both_ways_pushes_and_unblocks_all() {
    let srv = TestServer::start().await;
    let (mut a, mut b, _c, [alice, bob, _carol]) = three(&srv, "xep191").await;
    let mut a2 = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    for (c, id) in [(&mut a, "g1"), (&mut a2, "g2")] {
        let r = get(c, id, &format!("<blocklist xmlns='{BLOCKING}'/>")).await;
        assert_result(&r);
        assert_eq!(
            r.child("blocklist", BLOCKING).unwrap().elements().count(),
            0
        );
    }
    let r = set(
        &mut a,
        "b1",
        &format!("<block xmlns='{BLOCKING}'><item jid='{bob}@localhost'/></block>"),
    )
    .await;
    assert_result(&r);
    // (The pusher's own copy may arrive before or after its result; the other one is checked.)
    let p = a2
        .expect("block push", |e| {
            e.name == "iq" && e.child("block", BLOCKING).is_some()
        })
        .await;
    let item = p
        .child("block", BLOCKING)
        .unwrap()
        .elements()
        .next()
        .unwrap();
    assert_eq!(item.attr("jid"), Some(format!("{bob}@localhost").as_str()));
    chat(&mut b, &alice, "m1", "in").await;
    assert_eq!(bounced(&mut b, "m1").await.1, "service-unavailable");
    chat(&mut a, &bob, "m2", "out").await;
    let (e, cond) = bounced(&mut a, "m2").await;
    assert_eq!(cond, "not-acceptable");
    assert!(e
        .child("error", CLIENT)
        .and_then(|x| x.child("blocked", "urn:xmpp:blocking:errors"))
        .is_some());
    nothing_arrives(&mut a2, "q1").await;
    nothing_arrives(&mut b, "q2").await;
    let r = get(&mut a2, "g3", &format!("<blocklist xmlns='{BLOCKING}'/>")).await;
    let jids: Vec<&str> = r
        .child("blocklist", BLOCKING)
        .unwrap()
        .elements()
        .filter_map(|i| i.attr("jid"))
        .collect();
    let bob_jid = format!("{bob}@localhost");
    assert_eq!(jids, [bob_jid.as_str()]);
    // Malformed and empty blocks are refused.
    let r = set(&mut a, "b2", &format!("<block xmlns='{BLOCKING}'/>")).await;
    assert_eq!(condition(&r).as_deref(), Some("bad-request"));
    let r = set(
        &mut a,
        "b3",
        &format!("<block xmlns='{BLOCKING}'><item/></block>"),
    )
    .await;
    assert_eq!(condition(&r).as_deref(), Some("bad-request"));
    // Unblock all: an empty unblock push, and messages flow again.
    assert_result(&set(&mut a, "u1", &format!("<unblock xmlns='{BLOCKING}'/>")).await);
    let p = a2
        .expect("unblock push", |e| {
            e.name == "iq" && e.child("unblock", BLOCKING).is_some()
        })
        .await;
    assert_eq!(p.child("unblock", BLOCKING).unwrap().elements().count(), 0);
    chat(&mut b, &alice, "m3", "free").await;
    assert_eq!(receive(&mut a).await.1, "free");
    srv.stop().await;
}

#[tokio::test]
async fn disco_advertises_privacy_lists_and_blocking() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_pdisco").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let r = a.iq("d1", "<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let q = r
        .child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    let features: Vec<&str> = q.elements().filter_map(|e| e.attr("var")).collect();
    assert!(features.contains(&PRIVACY), "{features:?}");
    assert!(features.contains(&BLOCKING), "{features:?}");
    srv.stop().await;
}

#[tokio::test]
async fn a_blocked_subscriber_sees_the_user_go_unavailable_and_its_presence_is_not_delivered() {
    let srv = TestServer::start().await;
    let (mut a, mut b, _c, [alice, bob, _carol]) = three(&srv, "rpres").await;
    // Alice subscribes to Bob and Bob approves: Bob's presence flows to Alice.
    a.send_raw(&format!(
        "<presence to='{bob}@localhost' type='subscribe'/>"
    ))
    .await;
    b.expect("subscribe request", |e| e.attr("type") == Some("subscribe"))
        .await;
    b.send_raw(&format!(
        "<presence to='{alice}@localhost' type='subscribed'/>"
    ))
    .await;
    a.expect("subscribed", |e| e.attr("type") == Some("subscribed"))
        .await;
    // Bob subscribes to Alice too, and sees her online.
    b.send_raw(&format!(
        "<presence to='{alice}@localhost' type='subscribe'/>"
    ))
    .await;
    a.expect("subscribe request", |e| e.attr("type") == Some("subscribe"))
        .await;
    a.send_raw(&format!(
        "<presence to='{bob}@localhost' type='subscribed'/>"
    ))
    .await;
    b.expect("subscribed", |e| e.attr("type") == Some("subscribed"))
        .await;
    a.available().await;
    let a_jid = a.jid.clone();
    b.expect("alice online", |e| {
        e.name == "presence" && e.attr("from") == Some(a_jid.as_str()) && e.attr("type").is_none()
    })
    .await;
    // Alice blocks Bob (XEP-0191): he sees her go unavailable, and his broadcast presence no
    // longer reaches her.
    let r = set(
        &mut a,
        "b1",
        &format!("<block xmlns='{BLOCKING}'><item jid='{bob}@localhost'/></block>"),
    )
    .await;
    assert_result(&r);
    b.expect("alice unavailable", |e| {
        e.name == "presence"
            && e.attr("from") == Some(a_jid.as_str())
            && e.attr("type") == Some("unavailable")
    })
    .await;
    b.available().await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    a.send_raw("<iq type='get' id='q1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    loop {
        let e = a.next().await.expect("open");
        assert!(
            !(e.name == "presence" && e.attr("from") == Some(b.jid.as_str())),
            "presence from a blocked contact: {e:?}"
        );
        if e.attr("id") == Some("q1") {
            break;
        }
    }
    // Unblocked, a fresh presence of Bob reaches Alice again.
    assert_result(&set(&mut a, "u1", &format!("<unblock xmlns='{BLOCKING}'/>")).await);
    b.send_raw("<presence><status>back</status></presence>")
        .await;
    a.expect("bob's presence", |e| {
        e.name == "presence" && e.attr("from") == Some(b.jid.as_str())
    })
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn iqs_from_a_denied_user_are_refused_on_the_owners_behalf_and_when_routed() {
    let srv = TestServer::start().await;
    let (mut a, mut b, mut c, [alice, bob, _carol]) = three(&srv, "iq").await;
    assert_result(&set(&mut a, "l1", &sdk_list("bl", &bob, "deny", false)).await);
    assert_result(
        &set(
            &mut a,
            "d1",
            &format!("<query xmlns='{PRIVACY}'><default name='bl'/></query>"),
        )
        .await,
    );
    let last = format!(
        "<iq type='get' id='x1' to='{alice}@localhost'><query xmlns='jabber:iq:last'/></iq>"
    );
    let r = b.iq("x1", &last).await;
    assert_eq!(condition(&r).as_deref(), Some("service-unavailable"));
    let r = c.iq("x1", &last).await;
    assert_result(&r);
    let ping = format!(
        "<iq type='get' id='x2' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
        a.jid
    );
    let r = b.iq("x2", &ping).await;
    assert_eq!(condition(&r).as_deref(), Some("service-unavailable"));
    nothing_arrives(&mut a, "q1").await;
    srv.stop().await;
}

#[tokio::test]
async fn list_and_block_list_sizes_are_capped_by_config() {
    let mut cfg = test_config();
    cfg.xmpp.privacy_max_items = 2;
    cfg.xmpp.privacy_max_lists = 1;
    cfg.xmpp.blocklist_max = 1;
    let srv = TestServer::start_with(cfg).await;
    let (mut a, _b, _c, [_alice, bob, carol]) = three(&srv, "caps").await;
    assert_result(&set(&mut a, "l1", &sdk_list("bl", &bob, "deny", false)).await);
    let r = set(&mut a, "l2", &sdk_list("second", &carol, "deny", false)).await;
    assert_eq!(
        condition(&r).as_deref(),
        Some("not-allowed"),
        "one list only"
    );
    let three_items = format!(
        "<query xmlns='{PRIVACY}'><list name='bl'>\
         <item action='deny' order='1'/><item action='deny' order='2'/><item action='deny' order='3'/>\
         </list></query>"
    );
    let r = set(&mut a, "l3", &three_items).await;
    assert_eq!(
        condition(&r).as_deref(),
        Some("not-allowed"),
        "two items only"
    );
    let r = set(&mut a, "b1", &format!("<block xmlns='{BLOCKING}'><item jid='{bob}@localhost'/><item jid='{carol}@localhost'/></block>")).await;
    assert_eq!(
        condition(&r).as_deref(),
        Some("not-allowed"),
        "one blocked JID only"
    );
    assert_result(
        &set(
            &mut a,
            "b2",
            &format!("<block xmlns='{BLOCKING}'><item jid='{bob}@localhost'/></block>"),
        )
        .await,
    );
    srv.stop().await;
}
