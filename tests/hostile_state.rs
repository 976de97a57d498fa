//! Hostile: state a caller can make the server hold is bounded, with a clear error past each
//! bound, and the server keeps serving. Each test sets a small limit in its own server's
//! configuration: occupants per dialog and public subscribers (422 naming `occupants_ids`),
//! roster items, waiting subscription requests, status-streaming subscriptions, directed
//! presences, rooms joined, the parked stream-management queue (by bytes: nothing is lost) and
//! offline messages per sender.

use std::collections::BTreeSet;
use std::time::Duration;

use parley::config::Config;
use parley::xmpp::stream::Element;
use serde_json::json;

use crate::common::xmpp::{Client, Via};
use crate::common::{test_config, TestServer, PASSWORD};

const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
const ROSTER: &str = "jabber:iq:roster";
const STATUS: &str = "https://connectycube.com/protocol/status_streaming";

/// The RFC 6120 condition of an error stanza.
fn condition(el: &Element) -> Option<String> {
    el.child("error", "jabber:client")?
        .elements()
        .find(|c| c.ns == STANZAS && c.name != "text")
        .map(|c| c.name.clone())
}

/// The server still answers REST and a fresh XMPP session.
async fn assert_still_serving(srv: &TestServer, tag: &str) {
    let r = srv.http.get("/healthz", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (who, _) = srv.chat_user(&format!("after_{tag}")).await;
    let mut c = Client::login(srv.xmpp, Via::Tcp, &who, PASSWORD).await;
    let r = c
        .iq(
            "alive",
            "<iq type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"));
}

/// A ping round trip: everything sent before it has been handled.
async fn sync(c: &mut Client, id: &str) {
    let r = c
        .iq(
            id,
            &format!("<iq type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"),
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
}

/// Waits (briefly) for the answer to the stanza with `id`, which must be an error.
async fn error_for(c: &mut Client, id: &str) -> Element {
    let e = c
        .expect("error answer", |e| {
            e.attr("id") == Some(id) && e.attr("type") == Some("error")
        })
        .await;
    assert!(condition(&e).is_some(), "{e:?}");
    e
}

fn config(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = test_config();
    f(&mut c);
    c
}

#[tokio::test]
async fn occupants_past_the_dialog_bound_are_refused_with_422_naming_occupants_ids() {
    let srv = TestServer::start_with(config(|c| c.chat.max_occupants_per_dialog = 3)).await;
    let u = srv.users("occ", 5).await;
    let (owner, ids) = (&u[0].0, u.iter().map(|x| x.1).collect::<Vec<_>>());
    // The owner and three others are four occupants.
    let r = srv
        .http
        .post_json(
            "/chat/Dialog.json",
            Some(owner),
            json!({"type": 2, "name": "big", "occupants_ids": [ids[1], ids[2], ids[3]]}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.field_error("occupants_ids").is_some(), "{}", r.body);

    let d = srv
        .dialog(
            owner,
            json!({"type": 2, "name": "full", "occupants_ids": [ids[1], ids[2]]}),
        )
        .await;
    let dialog_id = d["_id"].as_str().unwrap();
    let path = format!("/chat/Dialog/{dialog_id}.json");
    let r = srv
        .http
        .put_json(
            &path,
            Some(owner),
            json!({"push_all": {"occupants_ids": [ids[3]]}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.field_error("occupants_ids").is_some(), "{}", r.body);
    // Nothing was written.
    let r = srv
        .http
        .get(&format!("/chat/Dialog.json?_id={dialog_id}"), Some(owner))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let occupants = r.json()["items"][0]["occupants_ids"].as_array().cloned();
    assert_eq!(occupants.map(|o| o.len()), Some(3), "{}", r.body);
    assert_still_serving(&srv, "occ").await;
    srv.stop().await;
}

#[tokio::test]
async fn one_request_listing_more_ids_than_a_dialog_holds_is_refused_with_422() {
    let srv = TestServer::start_with(config(|c| c.chat.max_occupants_per_dialog = 3)).await;
    let u = srv.users("ids", 2).await;
    let d = srv
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "g", "occupants_ids": [u[1].1]}),
        )
        .await;
    let path = format!("/chat/Dialog/{}.json", d["_id"].as_str().unwrap());
    let many: Vec<i64> = (1..=5_000).collect();
    let r = srv
        .http
        .put_json(
            &path,
            Some(&u[0].0),
            json!({"pull_all": {"occupants_ids": many}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.field_error("occupants_ids").is_some(), "{}", r.body);
    assert_still_serving(&srv, "ids").await;
    srv.stop().await;
}

#[tokio::test]
async fn public_dialog_subscribers_past_the_bound_are_refused_with_422() {
    let srv = TestServer::start_with(config(|c| c.chat.max_public_subscribers = 2)).await;
    let u = srv.users("pub", 3).await;
    let d = srv
        .dialog(&u[0].0, json!({"type": 4, "name": "square"}))
        .await;
    let path = format!("/chat/Dialog/{}/subscribe.json", d["_id"].as_str().unwrap());
    // The owner is the first subscriber.
    let r = srv.http.post_json(&path, Some(&u[1].0), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = srv.http.post_json(&path, Some(&u[2].0), json!({})).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.field_error("occupants_ids").is_some(), "{}", r.body);
    assert_still_serving(&srv, "pub").await;
    srv.stop().await;
}

fn roster_set(id: &str, jid: &str) -> String {
    format!("<iq type='set' id='{id}'><query xmlns='{ROSTER}'><item jid='{jid}'/></query></iq>")
}

#[tokio::test]
async fn roster_items_past_the_bound_are_not_allowed() {
    let srv = TestServer::start_with(config(|c| c.xmpp.roster_max_items = 2)).await;
    let (alice, _) = srv.chat_user("alice_rb").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    for (i, who) in ["c1", "c2"].iter().enumerate() {
        let id = format!("r{i}");
        let r = a
            .iq(&id, &roster_set(&id, &format!("{who}@localhost")))
            .await;
        assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    }
    let r = a.iq("r3", &roster_set("r3", "c3@localhost")).await;
    assert_eq!(r.attr("type"), Some("error"));
    assert_eq!(condition(&r).as_deref(), Some("not-allowed"));
    // An existing item can still change.
    let r = a.iq("r4", &roster_set("r4", "c1@localhost")).await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    // A subscription request would add an item too.
    let (bob, _) = srv.chat_user("bob_rb").await;
    a.send_raw(&format!(
        "<presence id='s1' type='subscribe' to='{bob}@localhost'/>"
    ))
    .await;
    let e = error_for(&mut a, "s1").await;
    assert_eq!(condition(&e).as_deref(), Some("not-allowed"));
    let r = a
        .iq(
            "g",
            &format!("<iq type='get' id='g'><query xmlns='{ROSTER}'/></iq>"),
        )
        .await;
    let items = r.child("query", ROSTER).unwrap().elements().count();
    assert_eq!(items, 2);
    assert_still_serving(&srv, "rb").await;
    srv.stop().await;
}

#[tokio::test]
async fn an_oversized_roster_item_is_not_acceptable() {
    let srv = TestServer::start_with(config(|c| c.xmpp.roster_item_max_bytes = 200)).await;
    let (alice, _) = srv.chat_user("alice_rs").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let groups = "<group>friends-and-family</group>".repeat(20);
    let r = a
        .iq(
            "big",
            &format!(
                "<iq type='set' id='big'><query xmlns='{ROSTER}'><item jid='c@localhost'>{groups}</item></query></iq>"
            ),
        )
        .await;
    assert_eq!(condition(&r).as_deref(), Some("not-acceptable"), "{r:?}");
    assert_still_serving(&srv, "rs").await;
    srv.stop().await;
}

/// Logs `local` in, sends initial presence and returns what arrived before a ping's answer
/// (offline stanzas are delivered while the presence is handled).
async fn login_and_drain(srv: &TestServer, local: &str) -> Vec<Element> {
    let mut c = Client::login(srv.xmpp, Via::Tcp, local, PASSWORD).await;
    c.send_raw("<presence/><iq type='get' id='drain'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let mut got = Vec::new();
    loop {
        let e = c.next().await.expect("open stream");
        if e.attr("id") == Some("drain") {
            return got;
        }
        got.push(e);
    }
}

#[tokio::test]
async fn subscription_requests_waiting_for_a_user_are_kept_once_per_sender_and_bounded() {
    let srv = TestServer::start_with(config(|c| c.xmpp.roster_max_items = 2)).await;
    let (bob, _) = srv.chat_user("bob_sr").await;
    let mut senders = Vec::new();
    for i in 0..3 {
        let (s, _) = srv.chat_user(&format!("stranger_sr{i}")).await;
        let mut c = Client::login(srv.xmpp, Via::Tcp, &s, PASSWORD).await;
        // The same stranger asking again and again waits once.
        for _ in 0..5 {
            c.send_raw(&format!(
                "<presence type='subscribe' to='{bob}@localhost'/>"
            ))
            .await;
        }
        sync(&mut c, "sync").await;
        senders.push(s);
    }
    let got = login_and_drain(&srv, &bob).await;
    let requests: Vec<String> = got
        .iter()
        .filter(|e| e.name == "presence" && e.attr("type") == Some("subscribe"))
        .map(|e| e.attr("from").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        requests,
        [
            format!("{}@localhost", senders[0]),
            format!("{}@localhost", senders[1])
        ],
        "once per sender, at most roster_max_items in all"
    );
    assert_still_serving(&srv, "sr").await;
    srv.stop().await;
}

fn status_subscribe(id: &str, jid: &str) -> String {
    format!(
        "<iq type='set' id='{id}'><subscribe xmlns='{STATUS}' user_jid='{jid}' enable='true'/></iq>"
    )
}

#[tokio::test]
async fn status_streaming_subscriptions_are_bounded_per_connection() {
    let srv = TestServer::start_with(config(|c| c.xmpp.status_subscriptions_max = 2)).await;
    let (alice, _) = srv.chat_user("alice_ssb").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    for i in 0..2 {
        let id = format!("s{i}");
        let r = a
            .iq(
                &id,
                &status_subscribe(&id, &format!("{}@localhost", srv.local(1000 + i))),
            )
            .await;
        assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    }
    let r = a
        .iq(
            "s2",
            &status_subscribe("s2", &format!("{}@localhost", srv.local(2000))),
        )
        .await;
    assert_eq!(condition(&r).as_deref(), Some("not-allowed"), "{r:?}");
    // Renewing one held already is no new subscription.
    let r = a
        .iq(
            "s3",
            &status_subscribe("s3", &format!("{}@localhost", srv.local(1000))),
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    assert_eq!(srv.hub().status_subscription_counts(), (2, 2));
    assert_still_serving(&srv, "ssb").await;
    srv.stop().await;
}

#[tokio::test]
async fn status_streaming_subscriptions_end_with_the_subscribing_connection() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_sse").await;
    let mut a = Client::login(srv.xmpp, Via::Ws, &alice, PASSWORD).await;
    for i in 0..20 {
        let id = format!("s{i}");
        let r = a
            .iq(
                &id,
                &status_subscribe(&id, &format!("{}@localhost", srv.local(1000 + i))),
            )
            .await;
        assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    }
    assert_eq!(srv.hub().status_subscription_counts(), (20, 20));
    a.close().await;
    let mut counts = (usize::MAX, usize::MAX);
    for _ in 0..200 {
        counts = srv.hub().status_subscription_counts();
        if counts == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        counts,
        (0, 0),
        "nothing is left behind for a closed connection"
    );
    assert_still_serving(&srv, "sse").await;
    srv.stop().await;
}

#[tokio::test]
async fn directed_presences_past_the_bound_are_refused() {
    let srv = TestServer::start_with(config(|c| c.xmpp.directed_presences_max = 2)).await;
    let (alice, _) = srv.chat_user("alice_dp").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    a.available().await;
    let to = |n: i64| format!("{}@localhost", srv.local(5000 + n));
    a.send_raw(&format!(
        "<presence id='d0' to='{}'/><presence id='d1' to='{}'/>",
        to(0),
        to(1)
    ))
    .await;
    sync(&mut a, "p1").await;
    a.send_raw(&format!("<presence id='d2' to='{}'/>", to(2)))
        .await;
    let e = error_for(&mut a, "d2").await;
    assert_eq!(condition(&e).as_deref(), Some("not-allowed"));
    // Again to a JID already remembered, and unavailable to one, are fine; then there is room.
    a.send_raw(&format!(
        "<presence id='d3' to='{}'/><presence id='d4' type='unavailable' to='{}'/><presence id='d5' to='{}'/>",
        to(0),
        to(1),
        to(2)
    ))
    .await;
    let r = a
        .iq(
            "p2",
            "<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
    assert_eq!(
        r.attr("type"),
        Some("result"),
        "no error came before: {r:?}"
    );
    assert_still_serving(&srv, "dp").await;
    srv.stop().await;
}

#[tokio::test]
async fn rooms_joined_past_the_bound_are_refused() {
    let srv = TestServer::start_with(config(|c| c.xmpp.rooms_joined_max = 1)).await;
    let u = srv.users("rj", 2).await;
    let mut rooms = Vec::new();
    for i in 0..2 {
        let d = srv
            .dialog(
                &u[0].0,
                json!({"type": 2, "name": format!("g{i}"), "occupants_ids": [u[1].1]}),
            )
            .await;
        rooms.push(format!(
            "{}_{}@muc.localhost",
            srv.app.id.0,
            d["_id"].as_str().unwrap()
        ));
    }
    let mut a = Client::login(srv.xmpp, Via::Tcp, &srv.local(u[0].1), PASSWORD).await;
    let me = u[0].1;
    a.send_raw(&format!(
        "<presence id='j0' to='{}/{me}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>",
        rooms[0]
    ))
    .await;
    sync(&mut a, "p").await;
    a.send_raw(&format!(
        "<presence id='j1' to='{}/{me}'><x xmlns='http://jabber.org/protocol/muc'/></presence>",
        rooms[1]
    ))
    .await;
    let e = error_for(&mut a, "j1").await;
    assert_eq!(condition(&e).as_deref(), Some("not-allowed"));
    assert_still_serving(&srv, "rj").await;
    srv.stop().await;
}

#[tokio::test]
async fn a_room_presence_past_its_byte_bound_is_not_acceptable() {
    let srv = TestServer::start_with(config(|c| c.xmpp.room_presence_max_bytes = 200)).await;
    let u = srv.users("rp", 2).await;
    let d = srv
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "g", "occupants_ids": [u[1].1]}),
        )
        .await;
    let room = format!(
        "{}_{}@muc.localhost",
        srv.app.id.0,
        d["_id"].as_str().unwrap()
    );
    let mut a = Client::login(srv.xmpp, Via::Tcp, &srv.local(u[0].1), PASSWORD).await;
    let me = u[0].1;
    let status = "s".repeat(300);
    a.send_raw(&format!(
        "<presence id='big' to='{room}/{me}'><x xmlns='http://jabber.org/protocol/muc'/><status>{status}</status></presence>"
    ))
    .await;
    let e = error_for(&mut a, "big").await;
    assert_eq!(condition(&e).as_deref(), Some("not-acceptable"));
    // A presence within the bound joins.
    a.send_raw(&format!(
        "<presence id='small' to='{room}/{me}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x><status>here</status></presence>"
    ))
    .await;
    sync(&mut a, "p").await;
    assert_eq!(
        srv.hub()
            .rooms
            .occupants(&(srv.app.id, d["_id"].as_str().unwrap().to_owned()))
            .len(),
        1
    );
    assert_still_serving(&srv, "rp").await;
    srv.stop().await;
}

#[tokio::test]
async fn a_parked_session_past_its_byte_bound_ends_and_its_messages_wait_offline() {
    let srv = TestServer::start_with(config(|c| {
        c.xmpp.sm_parked_queue_bytes = 2_000;
        c.xmpp.sm_resume_secs = 3_600;
    }))
    .await;
    let (alice, _) = srv.chat_user("alice_pq").await;
    let (bob, _) = srv.chat_user("bob_pq").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    b.send_raw("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    let id = b
        .expect_named("enabled")
        .await
        .attr("id")
        .unwrap()
        .to_owned();
    b.drop_socket();
    // Ten messages of about 500 bytes each: far more than the parked session may hold.
    let body = "x".repeat(500);
    let sent: BTreeSet<String> = (0..10).map(|i| format!("pq{i}")).collect();
    for i in &sent {
        a.send_raw(&format!(
            "<message to='{bob}@localhost' type='chat' id='{i}'><body>{body}</body></message>"
        ))
        .await;
    }
    sync(&mut a, "sent").await;
    // Every message reaches Bob at a later login, none twice.
    let mut got = Vec::new();
    for _ in 0..100 {
        got.extend(
            login_and_drain(&srv, &bob)
                .await
                .into_iter()
                .filter(|e| e.name == "message")
                .map(|e| e.attr("id").unwrap_or_default().to_owned()),
        );
        if got.len() >= sent.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(unique, sent, "nothing lost");
    assert_eq!(got.len(), sent.len(), "nothing twice");
    // The parked session is gone: it cannot be resumed.
    let mut b2 = Client::connect(srv.xmpp, Via::Tcp).await;
    b2.open().await;
    assert_eq!(b2.auth(&bob, PASSWORD).await, "success");
    b2.open().await;
    b2.send_raw(&format!(
        "<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='0'/>"
    ))
    .await;
    assert_eq!(b2.expect_named("failed").await.name, "failed");
    assert_still_serving(&srv, "pq").await;
    srv.stop().await;
}

#[tokio::test]
async fn offline_messages_past_the_per_sender_bound_bounce_and_another_sender_gets_through() {
    let srv = TestServer::start_with(config(|c| c.xmpp.offline_max_per_sender = 2)).await;
    let (bob, _) = srv.chat_user("bob_ps").await;
    let (eve, _) = srv.chat_user("eve_ps").await;
    let (alice, _) = srv.chat_user("alice_ps").await;
    let mut e = Client::login(srv.xmpp, Via::Tcp, &eve, PASSWORD).await;
    let msg = |id: &str| {
        format!("<message to='{bob}@localhost' type='chat' id='{id}'><body>hi</body></message>")
    };
    e.send_raw(&format!("{}{}", msg("e1"), msg("e2"))).await;
    sync(&mut e, "p").await;
    e.send_raw(&msg("e3")).await;
    let bounce = error_for(&mut e, "e3").await;
    assert_eq!(condition(&bounce).as_deref(), Some("service-unavailable"));
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    a.send_raw(&msg("a1")).await;
    let r = a
        .iq(
            "p",
            "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
    assert_eq!(
        r.attr("type"),
        Some("result"),
        "no bounce for another sender: {r:?}"
    );
    let got: Vec<String> = login_and_drain(&srv, &bob)
        .await
        .into_iter()
        .filter(|e| e.name == "message")
        .map(|e| e.attr("id").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(got, ["e1", "e2", "a1"]);
    assert_still_serving(&srv, "ps").await;
    srv.stop().await;
}
