//! Several nodes as one server (issue #17). First the bus's contract, one suite run against
//! both implementations (in-process and a real `nats-server`); then stories across real
//! `parley` processes sharing one database and one NATS: 1:1 messages and presence, resource
//! conflicts, REST → XMPP from any node, a node killed mid-story, a NATS outage.

use std::time::Duration;

use bytes::Bytes;
use parley::hub::bus::{local::LocalNet, nats, Attached, BusError, Limits, To};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::common::cluster::{seen_across, Nats, Node, Two};
use crate::common::xmpp::{Client, Via};
use crate::common::PASSWORD;

const LIMITS: Limits = Limits {
    max_message_bytes: 4096,
    send_queue: 64,
    receive_queue: 64,
};

/// How long a payload may take to cross; also how long we wait to be sure one does not.
const PATIENCE: Duration = Duration::from_secs(5);
const SILENCE: Duration = Duration::from_millis(500);

async fn recv(a: &mut Attached) -> Option<Bytes> {
    tokio::time::timeout(PATIENCE, a.inbox.recv())
        .await
        .ok()
        .flatten()
}

async fn nothing(a: &mut Attached) -> bool {
    tokio::time::timeout(SILENCE, a.inbox.recv()).await.is_err()
}

/// A way to attach named nodes to one bus.
trait Net {
    async fn attach(&self, name: &str) -> Attached;
}

impl Net for LocalNet {
    async fn attach(&self, name: &str) -> Attached {
        LocalNet::attach(self, name, LIMITS)
    }
}

struct NatsNet(Nats, String);

impl Net for NatsNet {
    async fn attach(&self, name: &str) -> Attached {
        nats::connect(
            &self.0.url(),
            nats::Subjects::new(&self.1),
            name,
            LIMITS,
            PATIENCE,
        )
        .await
        .expect("connected to nats-server")
    }
}

async fn a_payload_to_a_node_reaches_that_node_only(net: impl Net) {
    let a = net.attach("a").await;
    let mut b = net.attach("b").await;
    let mut c = net.attach("c").await;
    a.bus
        .send(To::Node("b"), Bytes::from_static(b"for b"))
        .unwrap();
    assert_eq!(recv(&mut b).await.as_deref(), Some(&b"for b"[..]));
    assert!(nothing(&mut c).await, "c heard b's payload");
}

async fn a_broadcast_reaches_every_other_node_but_not_the_sender(net: impl Net) {
    let mut a = net.attach("a").await;
    let mut b = net.attach("b").await;
    let mut c = net.attach("c").await;
    a.bus.send(To::All, Bytes::from_static(b"all")).unwrap();
    assert_eq!(recv(&mut b).await.as_deref(), Some(&b"all"[..]));
    assert_eq!(recv(&mut c).await.as_deref(), Some(&b"all"[..]));
    assert!(nothing(&mut a).await, "the sender heard its own broadcast");
}

/// Order holds (within the receive queue's bound) per sender and per kind of destination (to the node, to all): NATS keeps order
/// per subject, and a node's two subscriptions are two subjects.
async fn payloads_from_one_sender_arrive_in_order(net: impl Net) {
    let a = net.attach("a").await;
    let mut b = net.attach("b").await;
    for i in 0..50u32 {
        let (to, tag) = if i % 2 == 0 {
            (To::Node("b"), "n")
        } else {
            (To::All, "a")
        };
        a.bus.send(to, Bytes::from(format!("{tag}{i}"))).unwrap();
    }
    let (mut node, mut all) = (Vec::new(), Vec::new());
    for _ in 0..50 {
        let p = recv(&mut b).await.expect("every payload arrives");
        let p = String::from_utf8(p.to_vec()).unwrap();
        let n: u32 = p[1..].parse().unwrap();
        if p.starts_with('n') {
            node.push(n)
        } else {
            all.push(n)
        }
    }
    assert!(node.windows(2).all(|w| w[0] < w[1]), "{node:?}");
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
    assert_eq!(node.len() + all.len(), 50);
}

async fn a_payload_over_the_size_bound_is_refused_by_the_sender(net: impl Net) {
    let a = net.attach("a").await;
    let mut b = net.attach("b").await;
    let big = Bytes::from(vec![b'x'; LIMITS.max_message_bytes + 1]);
    assert_eq!(
        a.bus.send(To::Node("b"), big),
        Err(BusError::TooLarge {
            len: LIMITS.max_message_bytes + 1,
            max: LIMITS.max_message_bytes
        })
    );
    assert!(nothing(&mut b).await);
}

async fn a_node_reports_the_bus_up(net: impl Net) {
    let a = net.attach("a").await;
    assert!(a.bus.is_up());
}

/// The contract, instantiated for each implementation.
macro_rules! contract {
    ($($name:ident),*) => {
        mod in_process {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(parley::hub::bus::local::LocalNet::new()).await;
                }
            )*
        }
        mod over_nats {
            $(
                #[tokio::test]
                async fn $name() {
                    let nats = crate::common::cluster::Nats::start().await;
                    super::$name(super::NatsNet(nats, stringify!($name).replace('_', "-"))).await;
                }
            )*
        }
    };
}

contract!(
    a_payload_to_a_node_reaches_that_node_only,
    a_broadcast_reaches_every_other_node_but_not_the_sender,
    payloads_from_one_sender_arrive_in_order,
    a_payload_over_the_size_bound_is_refused_by_the_sender,
    a_node_reports_the_bus_up
);

#[tokio::test]
async fn an_in_process_outage_is_reported_and_refuses_sends() {
    let net = LocalNet::new();
    let a = net.attach("a", LIMITS);
    net.set_up(false);
    assert!(!a.bus.is_up());
    assert_eq!(
        a.bus.send(To::All, Bytes::from_static(b"x")),
        Err(BusError::Down)
    );
}

// ---- stories across real processes ----

impl Two {
    fn jid(&self, local: &str) -> String {
        format!("{local}@localhost")
    }
}

async fn readyz(n: &Node) -> Value {
    let r = n.admin.get("/readyz", None).await;
    assert_eq!(r.status, 200, "a degraded node stays ready: {}", r.body);
    r.json()
}

async fn wait_for<F, Fut>(what: &str, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn login(n: &Node, local: &str, resource: &str) -> Client {
    let mut c = Client::login_as(n.addrs, Via::DirectTls, local, PASSWORD, Some(resource)).await;
    c.available().await;
    c
}

/// Logs in and waits until `other` knows the session (its announcement crossed).
async fn login_seen(n: &Node, local: &str, resource: &str, probe: &mut Client) -> Client {
    let mut c = login(n, local, resource).await;
    seen_across(&mut c, probe).await;
    c
}

fn body_of(e: &parley::xmpp::stream::Element) -> String {
    e.child("body", "jabber:client")
        .map(|b| b.text())
        .unwrap_or_default()
}

fn chat(to: &str, id: &str, body: &str) -> String {
    format!("<message to='{to}' type='chat' id='{id}'><body>{body}</body></message>")
}

#[tokio::test]
async fn a_message_to_a_user_on_another_node_reaches_them_by_bare_and_by_full_jid() {
    let t = Two::start().await;
    let mut alice = login(&t.a, &t.alice, "web").await;
    let mut bob = login_seen(&t.b, &t.bob, "phone", &mut alice).await;
    alice
        .send_raw(&chat(&t.jid(&t.bob), "m1", "to the bare JID"))
        .await;
    let m = bob
        .expect("m1", |e| e.name == "message" && e.attr("id") == Some("m1"))
        .await;
    assert_eq!(body_of(&m), "to the bare JID");
    assert_eq!(
        m.attr("from"),
        Some(format!("{}/web", t.jid(&t.alice)).as_str())
    );
    let full = format!("{}/phone", t.jid(&t.bob));
    alice.send_raw(&chat(&full, "m2", "to the full JID")).await;
    let m = bob
        .expect("m2", |e| e.name == "message" && e.attr("id") == Some("m2"))
        .await;
    assert_eq!(body_of(&m), "to the full JID");
    // And back, B → A.
    bob.send_raw(&chat(&t.jid(&t.alice), "m3", "back")).await;
    let m = alice
        .expect("m3", |e| e.name == "message" && e.attr("id") == Some("m3"))
        .await;
    assert_eq!(body_of(&m), "back");
}

#[tokio::test]
async fn a_message_to_a_user_online_on_another_node_is_not_stored_offline() {
    let t = Two::start().await;
    let mut alice = login(&t.a, &t.alice, "web").await;
    let mut bob = login_seen(&t.b, &t.bob, "phone", &mut alice).await;
    alice.send_raw(&chat(&t.jid(&t.bob), "live1", "live")).await;
    bob.expect("live1", |e| e.attr("id") == Some("live1")).await;
    bob.close().await;
    drop(bob);
    // Bob comes back (on node A this time): nothing waits for him offline.
    let mut again = Client::login_as(t.a.addrs, Via::DirectTls, &t.bob, PASSWORD, Some("p2")).await;
    again.send_raw("<presence/>").await;
    again.patience = Duration::from_secs(2);
    while let Some(e) = again.try_next().await {
        assert!(
            !(e.name == "message" && body_of(&e) == "live"),
            "the live message was also stored offline: {e:?}"
        );
    }
}

/// Alice and Bob subscribe to each other's presence (over the nodes: subscription presences
/// cross like any stanza).
async fn befriend(t: &Two, alice: &mut Client, bob: &mut Client) {
    let (a, b) = (t.jid(&t.alice), t.jid(&t.bob));
    alice
        .send_raw(&format!("<presence to='{b}' type='subscribe'/>"))
        .await;
    bob.expect("subscribe", |e| e.attr("type") == Some("subscribe"))
        .await;
    bob.send_raw(&format!("<presence to='{a}' type='subscribed'/>"))
        .await;
    bob.send_raw(&format!("<presence to='{a}' type='subscribe'/>"))
        .await;
    alice
        .expect("subscribe", |e| e.attr("type") == Some("subscribe"))
        .await;
    alice
        .send_raw(&format!("<presence to='{b}' type='subscribed'/>"))
        .await;
    bob.expect("subscribed", |e| e.attr("type") == Some("subscribed"))
        .await;
}

#[tokio::test]
async fn presence_reaches_contacts_on_another_node() {
    let t = Two::start().await;
    let mut alice = login(&t.a, &t.alice, "web").await;
    let mut bob = login_seen(&t.b, &t.bob, "phone", &mut alice).await;
    befriend(&t, &mut alice, &mut bob).await;
    bob.send_raw("<presence><show>away</show></presence>").await;
    let bob_full = format!("{}/phone", t.jid(&t.bob));
    let p = alice
        .expect("bob's away", |e| {
            e.name == "presence"
                && e.attr("from") == Some(bob_full.as_str())
                && e.child("show", "jabber:client").is_some()
        })
        .await;
    assert_eq!(p.child("show", "jabber:client").unwrap().text(), "away");
    // A contact logging in on node A is told Bob (on node B) is available.
    alice.close().await;
    let mut alice2 =
        Client::login_as(t.a.addrs, Via::DirectTls, &t.alice, PASSWORD, Some("w2")).await;
    alice2.send_raw("<presence/>").await;
    alice2
        .expect("bob's presence on login", |e| {
            e.name == "presence" && e.attr("from") == Some(bob_full.as_str())
        })
        .await;
}

#[tokio::test]
async fn binding_a_resource_held_on_another_node_closes_the_older_stream_with_conflict() {
    let t = Two::start().await;
    let mut alice = login(&t.a, &t.alice, "web").await;
    let mut old = login_seen(&t.b, &t.bob, "phone", &mut alice).await;
    let mut new = login(&t.a, &t.bob, "phone").await;
    assert_eq!(old.stream_error().await, "conflict");
    // The resource now lives on node A: messages to it reach the new stream.
    let full = format!("{}/phone", t.jid(&t.bob));
    alice.send_raw(&chat(&full, "after", "new stream")).await;
    let m = new.expect("after", |e| e.attr("id") == Some("after")).await;
    assert_eq!(body_of(&m), "new stream");
}

#[tokio::test]
async fn a_system_message_posted_on_one_node_reaches_the_recipient_on_another_once() {
    let t = Two::start().await;
    let mut alice = login(&t.a, &t.alice, "web").await;
    let mut bob = login_seen(&t.b, &t.bob, "phone", &mut alice).await;
    let (alice_token, _) = t.a.token("alice").await;
    let (_, bob_id) = t.a.token("bob").await;
    let r =
        t.a.p
            .http
            .post_json(
                "/chat/Message/system",
                Some(&alice_token),
                json!({"recipientId": bob_id, "note": "cross-node"}),
            )
            .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = bob
        .expect("the system message", |e| {
            e.name == "message" && e.attr("type") == Some("headline")
        })
        .await;
    let x = m
        .child("extraParams", "jabber:client")
        .expect("extraParams");
    assert_eq!(
        x.child("note", "jabber:client").unwrap().text(),
        "cross-node"
    );
    bob.patience = SILENCE;
    while let Some(e) = bob.try_next().await {
        assert!(e.attr("type") != Some("headline"), "delivered twice: {e:?}");
    }
}

#[tokio::test]
async fn a_killed_nodes_users_go_unavailable_and_messages_to_them_wait_offline() {
    let t = Two::start().await;
    let mut alice = login(&t.a, &t.alice, "web").await;
    let mut bob = login_seen(&t.b, &t.bob, "phone", &mut alice).await;
    befriend(&t, &mut alice, &mut bob).await;
    let bob_full = format!("{}/phone", t.jid(&t.bob));
    t.b.kill9();
    let started = Instant::now();
    alice
        .expect("bob's unavailable presence", |e| {
            e.name == "presence"
                && e.attr("from") == Some(bob_full.as_str())
                && e.attr("type") == Some("unavailable")
        })
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "noticed after {:?}",
        started.elapsed()
    );
    alice
        .send_raw(&chat(&t.jid(&t.bob), "while-dead", "kept for later"))
        .await;
    // Bob reconnects to the surviving node and finds it waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut back = Client::login_as(t.a.addrs, Via::DirectTls, &t.bob, PASSWORD, Some("p2")).await;
    back.send_raw("<presence/>").await;
    let m = back
        .expect("the offline message", |e| {
            e.name == "message" && body_of(e) == "kept for later"
        })
        .await;
    assert!(m.child("delay", "urn:xmpp:delay").is_some(), "{m:?}");
}

#[tokio::test]
async fn during_a_nats_outage_each_node_serves_its_own_users_and_reports_degraded() {
    let mut t = Two::start().await;
    let mut alice = login(&t.a, &t.alice, "web").await;
    let carol = t.a.p.chat_user("carol").await;
    let mut carol = login(&t.a, &carol, "desk").await;
    let mut bob = login_seen(&t.b, &t.bob, "phone", &mut alice).await;
    t.nats.kill().await;
    wait_for("node A degraded", || async {
        readyz(&t.a).await["cluster"] == "degraded"
    })
    .await;
    // Local service goes on.
    let carol_jid = carol.jid.clone();
    alice
        .send_raw(&chat(&carol_jid, "local", "same node"))
        .await;
    carol
        .expect("local", |e| e.attr("id") == Some("local"))
        .await;
    // A message to Bob (on the unreachable node) is stored offline rather than lost.
    alice
        .send_raw(&chat(&t.jid(&t.bob), "outage", "during the outage"))
        .await;
    t.nats.restart().await;
    wait_for("node A up again", || async {
        readyz(&t.a).await["cluster"] == "up"
    })
    .await;
    t.wait_peers().await;
    // What was sent during the outage was kept: Bob finds it at his next login…
    bob.close().await;
    drop(bob);
    let mut bob = Client::login_as(t.b.addrs, Via::DirectTls, &t.bob, PASSWORD, Some("p2")).await;
    bob.send_raw("<presence/>").await;
    bob.expect("the outage message, offline", |e| {
        e.name == "message" && body_of(e) == "during the outage"
    })
    .await;
    // …and live delivery across the nodes works again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        alice
            .send_raw(&chat(&t.jid(&t.bob), "again", "after"))
            .await;
        let got = tokio::time::timeout(Duration::from_millis(300), async {
            bob.expect("again", |e| e.attr("id") == Some("again")).await
        })
        .await;
        if got.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no live delivery after the outage"
        );
    }
}

#[tokio::test]
async fn a_roster_change_is_pushed_to_the_users_connections_on_other_nodes() {
    let t = Two::start().await;
    let mut web = login(&t.a, &t.alice, "web").await;
    let mut tab = login_seen(&t.b, &t.alice, "tab", &mut web).await;
    let bob = t.jid(&t.bob);
    web.iq(
        "r1",
        &format!("<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='{bob}' name='Bob'/></query></iq>"),
    )
    .await;
    let push = tab
        .expect("the roster push", |e| {
            e.name == "iq" && e.attr("type") == Some("set")
        })
        .await;
    let item = push
        .child("query", "jabber:iq:roster")
        .and_then(|q| q.child("item", "jabber:iq:roster"))
        .expect("an item");
    assert_eq!(item.attr("jid"), Some(bob.as_str()));
    assert_eq!(
        push.attr("to"),
        Some(format!("{}/tab", t.jid(&t.alice)).as_str())
    );
}
