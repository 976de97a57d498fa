//! Rooms across nodes (issue #17): real `parley` processes sharing one database and one
//! `nats-server`, with occupants joined through different nodes. Every node knows every room's
//! occupants (presences on join and leave, nick conflicts), a room message crosses the bus once
//! per other node holding recipients (counted by `parley_cluster_room_messages_total`), and
//! the occupants of a node that dies leave the room for everyone else.

use std::time::Duration;

use parley::xmpp::stream::Element;
use tokio::time::Instant;

use crate::common::cluster::{shared_database, wait_mesh, Nats, Node};
use crate::common::xmpp::{Client, Via};
use crate::common::PASSWORD;

const MUC: &str = "http://jabber.org/protocol/muc";
const LOBBY: &str = "lobby@muc.localhost";
const STANZAS_SENT: &str = "parley_cluster_room_messages_total{kind=\"stanza\"}";
/// How long we wait to be sure a second copy does not come.
const SILENCE: Duration = Duration::from_millis(700);

/// `names.len()` nodes on one database and one NATS, each seeing all the others.
async fn cluster(names: &[&str]) -> (Nats, Vec<Node>) {
    let nats = Nats::start().await;
    let db = shared_database().await;
    let mut nodes = Vec::new();
    for n in names {
        nodes.push(Node::start(&nats, &db, n).await);
    }
    wait_mesh(&nodes.iter().collect::<Vec<_>>()).await;
    (nats, nodes)
}

/// A new user (made through `first`, the node that wrote the development application's file)
/// logged in and available on `n`.
async fn online(first: &Node, n: &Node, login: &str) -> Client {
    let local = first.p.chat_user(login).await;
    let mut c = Client::login_as(n.addrs, Via::DirectTls, &local, PASSWORD, Some("r")).await;
    c.available().await;
    c
}

fn join_xml(nick: &str, id: &str) -> String {
    format!("<presence id='{id}' to='{LOBBY}/{nick}'><x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>")
}

/// Joins the lobby as `nick`: every presence up to the self-presence (or the error), in order.
async fn join(c: &mut Client, nick: &str) -> Vec<Element> {
    let id = format!("join-{nick}");
    c.send_raw(&join_xml(nick, &id)).await;
    let mut seen = Vec::new();
    loop {
        let e = c.expect("a presence", |e| e.name == "presence").await;
        let last = e.attr("id") == Some(id.as_str());
        seen.push(e);
        if last {
            return seen;
        }
    }
}

/// Joins and reads up to the subject message that ends the join; the presences before it.
async fn joined(c: &mut Client, nick: &str) -> Vec<Element> {
    let seen = join(c, nick).await;
    let me = seen.last().expect("a self-presence");
    assert_eq!(me.attr("type"), None, "join refused: {me:?}");
    c.expect("the subject", |e| {
        e.name == "message" && e.child("subject", "jabber:client").is_some()
    })
    .await;
    seen
}

fn from_nick(nick: &str) -> String {
    format!("{LOBBY}/{nick}")
}

/// Waits for the room's presence of `nick` (available, or `unavailable`).
async fn presence_of(c: &mut Client, nick: &str, unavailable: bool) -> Element {
    let from = from_nick(nick);
    let want = unavailable.then_some("unavailable");
    c.expect(&format!("{nick}'s presence"), |e| {
        e.name == "presence" && e.attr("from") == Some(from.as_str()) && e.attr("type") == want
    })
    .await
}

fn groupchat(id: &str, body: &str) -> String {
    format!("<message to='{LOBBY}' type='groupchat' id='{id}'><body>{body}</body></message>")
}

/// The groupchat `id`, once: a second copy within [`SILENCE`] fails.
async fn exactly_once(c: &mut Client, id: &str) -> Element {
    let m = c
        .expect(id, |e| e.name == "message" && e.attr("id") == Some(id))
        .await;
    let keep = c.patience;
    c.patience = SILENCE;
    while let Some(e) = c.try_next().await {
        assert!(
            !(e.name == "message" && e.attr("id") == Some(id)),
            "delivered twice: {e:?}"
        );
    }
    c.patience = keep;
    m
}

#[tokio::test]
async fn occupants_joined_through_two_nodes_are_presented_to_each_other() {
    let (_nats, n) = cluster(&["node-a", "node-b"]).await;
    let mut alice = online(&n[0], &n[0], "alice").await;
    let mut bob = online(&n[0], &n[1], "bob").await;
    joined(&mut alice, "alice").await;
    // Bob, on the other node, is shown Alice before his own presence, as on one node…
    let seen = joined(&mut bob, "bob").await;
    assert!(
        seen.iter()
            .any(|p| p.attr("from") == Some(from_nick("alice").as_str())),
        "alice was not presented to bob: {seen:?}"
    );
    // …and Alice sees him come in.
    presence_of(&mut alice, "bob", false).await;
    // Leaving is shown across the nodes too.
    bob.send_raw(&format!("<presence to='{LOBBY}/bob' type='unavailable'/>"))
        .await;
    presence_of(&mut alice, "bob", true).await;
}

#[tokio::test]
async fn an_occupant_joined_before_a_node_started_is_known_to_it_from_the_snapshot() {
    let nats = Nats::start().await;
    let db = shared_database().await;
    let a = Node::start(&nats, &db, "node-a").await;
    let mut alice = online(&a, &a, "alice").await;
    joined(&mut alice, "alice").await;
    let b = Node::start(&nats, &db, "node-b").await;
    wait_mesh(&[&a, &b]).await;
    let mut bob = online(&a, &b, "bob").await;
    let seen = joined(&mut bob, "bob").await;
    assert!(
        seen.iter()
            .any(|p| p.attr("from") == Some(from_nick("alice").as_str())),
        "node B did not learn the room's occupants when it joined: {seen:?}"
    );
}

#[tokio::test]
async fn a_room_message_from_one_node_reaches_occupants_on_the_others_exactly_once() {
    let (_nats, n) = cluster(&["node-a", "node-b", "node-c"]).await;
    let mut alice = online(&n[0], &n[0], "alice").await;
    let mut bob = online(&n[0], &n[1], "bob").await;
    let mut carol = online(&n[0], &n[2], "carol").await;
    joined(&mut alice, "alice").await;
    joined(&mut bob, "bob").await;
    presence_of(&mut alice, "bob", false).await;
    joined(&mut carol, "carol").await;
    presence_of(&mut alice, "carol", false).await;
    presence_of(&mut bob, "carol", false).await;
    alice.send_raw(&groupchat("g1", "hello all")).await;
    for c in [&mut bob, &mut carol, &mut alice] {
        let m = exactly_once(c, "g1").await;
        assert_eq!(m.attr("from"), Some(from_nick("alice").as_str()));
        assert_eq!(m.attr("type"), Some("groupchat"));
    }
}

#[tokio::test]
async fn a_room_message_crosses_the_bus_once_per_other_node_with_occupants() {
    let (_nats, n) = cluster(&["node-a", "node-b", "node-c"]).await;
    // Two occupants on A (the sender's node), two on B, and C with a user online but not in
    // the room.
    let mut alice = online(&n[0], &n[0], "alice").await;
    let mut dave = online(&n[0], &n[0], "dave").await;
    let mut bob = online(&n[0], &n[1], "bob").await;
    let mut erin = online(&n[0], &n[1], "erin").await;
    let mut carol = online(&n[0], &n[2], "carol").await;
    joined(&mut alice, "alice").await;
    joined(&mut dave, "dave").await;
    joined(&mut bob, "bob").await;
    joined(&mut erin, "erin").await;
    presence_of(&mut alice, "erin", false).await;
    let before = n[0].metric(STANZAS_SENT).await;
    alice.send_raw(&groupchat("g1", "one per node")).await;
    for c in [&mut bob, &mut erin, &mut dave] {
        exactly_once(c, "g1").await;
    }
    assert_eq!(
        n[0].metric(STANZAS_SENT).await - before,
        1.0,
        "two recipients on one other node: one bus message"
    );
    // Carol joins on C: now two other nodes hold occupants.
    joined(&mut carol, "carol").await;
    presence_of(&mut alice, "carol", false).await;
    let before = n[0].metric(STANZAS_SENT).await;
    alice.send_raw(&groupchat("g2", "and now C")).await;
    for c in [&mut bob, &mut erin, &mut carol] {
        exactly_once(c, "g2").await;
    }
    assert_eq!(n[0].metric(STANZAS_SENT).await - before, 2.0);
}

#[tokio::test]
async fn a_nick_held_through_another_node_is_a_conflict() {
    let (_nats, n) = cluster(&["node-a", "node-b"]).await;
    let mut alice = online(&n[0], &n[0], "alice").await;
    let mut bob = online(&n[0], &n[1], "bob").await;
    let mut carol = online(&n[0], &n[1], "carol").await;
    joined(&mut alice, "Sam").await;
    // Carol (on B) is shown Sam: node B knows the nick is held.
    let seen = joined(&mut carol, "carol").await;
    assert!(seen
        .iter()
        .any(|p| p.attr("from") == Some(from_nick("Sam").as_str())));
    let refused = join(&mut bob, "Sam").await;
    let e = refused.last().unwrap();
    assert_eq!(e.attr("type"), Some("error"), "{e:?}");
    let condition = e
        .child("error", "jabber:client")
        .and_then(|err| err.elements().next())
        .map(|c| c.name.clone());
    assert_eq!(condition.as_deref(), Some("conflict"));
    // Another nick is fine.
    joined(&mut bob, "bob").await;
}

#[tokio::test]
async fn a_killed_nodes_occupants_leave_the_room_for_the_others_within_seconds() {
    let (_nats, n) = cluster(&["node-a", "node-b"]).await;
    let mut alice = online(&n[0], &n[0], "alice").await;
    let mut bob = online(&n[0], &n[1], "bob").await;
    joined(&mut alice, "alice").await;
    joined(&mut bob, "bob").await;
    presence_of(&mut alice, "bob", false).await;
    n[1].kill9();
    let started = Instant::now();
    let gone = presence_of(&mut alice, "bob", true).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "noticed after {:?}",
        started.elapsed()
    );
    let role = gone
        .child("x", "http://jabber.org/protocol/muc#user")
        .and_then(|x| x.child("item", "http://jabber.org/protocol/muc#user"))
        .and_then(|i| i.attr("role").map(str::to_owned));
    assert_eq!(role.as_deref(), Some("none"));
    // The room no longer counts Bob: his nick is free again.
    let mut carol = online(&n[0], &n[0], "carol").await;
    joined(&mut carol, "bob").await;
}

fn codes(p: &Element) -> Vec<String> {
    p.child("x", "http://jabber.org/protocol/muc#user")
        .map(|x| {
            x.elements()
                .filter(|e| e.name == "status")
                .filter_map(|e| e.attr("code").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_kick_made_on_one_node_takes_the_occupant_out_on_the_node_holding_them() {
    let (_nats, n) = cluster(&["node-a", "node-b"]).await;
    let mut alice = online(&n[0], &n[0], "alice").await;
    let mut bob = online(&n[0], &n[1], "bob").await;
    let mut carol = online(&n[0], &n[1], "carol").await;
    joined(&mut alice, "alice").await;
    joined(&mut bob, "bob").await;
    joined(&mut carol, "carol").await;
    presence_of(&mut alice, "carol", false).await;
    // Alice (the owner, on A) kicks Bob (joined on B).
    let r = alice
        .iq(
            "k1",
            &format!(
                "<iq type='set' id='k1' to='{LOBBY}'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='bob' role='none'/></query></iq>"
            ),
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let mine = presence_of(&mut bob, "bob", true).await;
    let cs = codes(&mine);
    assert!(
        cs.contains(&"307".into()) && cs.contains(&"110".into()),
        "{cs:?}"
    );
    for c in [&mut alice, &mut carol] {
        let seen = presence_of(c, "bob", true).await;
        assert!(codes(&seen).contains(&"307".into()));
    }
    // Out on every node: a groupchat from Bob is refused, and his nick is free.
    bob.send_raw(&groupchat("after", "still here?")).await;
    let e = bob
        .expect("the refusal", |e| e.attr("id") == Some("after"))
        .await;
    assert_eq!(e.attr("type"), Some("error"), "{e:?}");
    let mut dave = online(&n[0], &n[0], "dave").await;
    joined(&mut dave, "bob").await;
}

/// A user's session token and the application id, signed in through `n`.
async fn token(n: &Node, login: &str) -> (String, i64) {
    let dev: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(n.p.data.join("dev-application.json")).unwrap(),
    )
    .unwrap();
    let body = serde_json::json!({"application_id": dev["application_id"], "auth_key": dev["auth_key"],
                                  "user": {"login": login, "password": PASSWORD}});
    let r = n.p.http.post_json("/session", None, body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    (
        r.json()["session"]["token"].as_str().unwrap().to_owned(),
        dev["application_id"].as_i64().unwrap(),
    )
}

/// The user id of a chat user's local part (`{id}-{app}`).
fn id_of(c: &Client) -> i64 {
    c.jid
        .split(['-', '@'])
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no user id in {}", c.jid))
}

#[tokio::test]
async fn a_dialog_rooms_message_reaches_members_on_another_node_joined_or_not_in_one_bus_message() {
    let (_nats, n) = cluster(&["node-a", "node-b"]).await;
    let mut alice = online(&n[0], &n[0], "alice").await;
    let mut bob = online(&n[0], &n[1], "bob").await;
    let mut carol = online(&n[0], &n[1], "carol").await;
    let (alice_token, app) = token(&n[0], "alice").await;
    let (alice_id, bob_id, carol_id) = (id_of(&alice), id_of(&bob), id_of(&carol));
    let r = n[0]
        .p
        .http
        .post_json(
            "/chat/Dialog",
            Some(&alice_token),
            serde_json::json!({"type": 2, "name": "G", "occupants_ids": [bob_id, carol_id]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let room = format!("{app}_{}@muc.localhost", r.json()["_id"].as_str().unwrap());
    // As the SDK does: the nick is the user id; Carol stays out of the room.
    for (c, id) in [(&mut alice, alice_id), (&mut bob, bob_id)] {
        c.send_raw(&format!(
            "<presence id='j' to='{room}/{id}'><x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>"
        ))
        .await;
        c.expect("the self-presence", |e| {
            e.name == "presence" && e.attr("id") == Some("j")
        })
        .await;
    }
    let bob_nick = format!("{room}/{bob_id}");
    alice
        .expect("bob's join", |e| {
            e.name == "presence" && e.attr("from") == Some(bob_nick.as_str())
        })
        .await;
    let before = n[0].metric(STANZAS_SENT).await;
    alice
        .send_raw(&format!(
            "<message to='{room}' type='groupchat' id='d1'><body>to the group</body></message>"
        ))
        .await;
    for c in [&mut bob, &mut carol, &mut alice] {
        let m = exactly_once(c, "d1").await;
        assert_eq!(m.attr("from"), Some(format!("{room}/{alice_id}").as_str()));
    }
    assert_eq!(
        n[0].metric(STANZAS_SENT).await - before,
        1.0,
        "a joined occupant and a member on node B: one bus message"
    );
}

/// Another connection (`resource`) of the user behind `c`, logged in and available on `n`.
async fn again(n: &Node, c: &Client, resource: &str) -> Client {
    let local = c.jid.split('@').next().expect("a local part").to_owned();
    let mut c = Client::login_as(n.addrs, Via::DirectTls, &local, PASSWORD, Some(resource)).await;
    c.available().await;
    c
}

/// Nothing with this id arrives within [`SILENCE`].
async fn never(c: &mut Client, id: &str) {
    let keep = c.patience;
    c.patience = SILENCE;
    while let Some(e) = c.try_next().await {
        assert!(e.attr("id") != Some(id), "delivered: {e:?}");
    }
    c.patience = keep;
}

#[tokio::test]
async fn a_private_message_reaches_the_occupants_joined_connections_on_every_node_and_no_other() {
    let (_nats, n) = cluster(&["node-a", "node-b"]).await;
    let mut alice = online(&n[0], &n[0], "alice").await;
    let mut bob_a = online(&n[0], &n[0], "bob").await;
    let mut bob_b = again(&n[1], &bob_a, "r2").await;
    // Bob's third connection, on B, is online but not in the room.
    let mut bob_out = again(&n[1], &bob_a, "r3").await;
    let mut carol = online(&n[0], &n[1], "carol").await;
    joined(&mut alice, "alice").await;
    joined(&mut bob_a, "bob").await;
    joined(&mut bob_b, "bob").await;
    // Node B's announcements keep their order: once Alice sees Carol, A knows B holds Bob too.
    joined(&mut carol, "carol").await;
    presence_of(&mut alice, "carol", false).await;
    alice
        .send_raw(&format!(
            "<message to='{LOBBY}/bob' type='chat' id='p1'><body>psst</body></message>"
        ))
        .await;
    for (c, resource) in [(&mut bob_a, "r"), (&mut bob_b, "r2")] {
        let m = exactly_once(c, "p1").await;
        assert_eq!(m.attr("from"), Some(from_nick("alice").as_str()));
        assert_eq!(m.attr("type"), Some("chat"));
        let to = m.attr("to").unwrap_or_default();
        assert!(to.ends_with(&format!("/{resource}")), "addressed to {to}");
    }
    never(&mut bob_out, "p1").await;
    never(&mut carol, "p1").await;
}

#[tokio::test]
async fn a_user_joined_through_two_nodes_has_one_nick_and_a_join_under_another_changes_it() {
    let (_nats, n) = cluster(&["node-a", "node-b"]).await;
    let mut alice = online(&n[0], &n[0], "alice").await;
    let mut carol = online(&n[0], &n[1], "carol").await;
    let mut bob_b = online(&n[0], &n[1], "bob").await;
    let mut bob_a = again(&n[0], &bob_b, "r2").await;
    joined(&mut alice, "alice").await;
    joined(&mut carol, "carol").await;
    presence_of(&mut alice, "carol", false).await;
    joined(&mut bob_b, "bob").await;
    presence_of(&mut alice, "bob", false).await;
    // Bob, in as "bob" through B, joins through A as "robert": a nick change (XEP-0045 §7.6).
    bob_a.send_raw(&join_xml("robert", "j2")).await;
    let old = presence_of(&mut bob_a, "bob", true).await;
    let cs = codes(&old);
    assert!(
        cs.contains(&"303".into()) && cs.contains(&"110".into()),
        "{cs:?}"
    );
    let new = presence_of(&mut bob_a, "robert", false).await;
    assert!(codes(&new).contains(&"110".into()));
    // Everyone, on either node, sees "bob" become "robert"…
    for c in [&mut alice, &mut carol] {
        let gone = presence_of(c, "bob", true).await;
        assert!(codes(&gone).contains(&"303".into()), "{gone:?}");
        let nick = gone
            .child("x", "http://jabber.org/protocol/muc#user")
            .and_then(|x| x.child("item", "http://jabber.org/protocol/muc#user"))
            .and_then(|i| i.attr("nick").map(str::to_owned));
        assert_eq!(nick.as_deref(), Some("robert"));
        presence_of(c, "robert", false).await;
    }
    // …Bob's connection on B is told its nick changed, and speaks as "robert" from there too.
    let mine = presence_of(&mut bob_b, "bob", true).await;
    assert!(codes(&mine).contains(&"303".into()), "{mine:?}");
    presence_of(&mut bob_b, "robert", false).await;
    bob_b.send_raw(&groupchat("g1", "one nick")).await;
    for c in [&mut alice, &mut carol] {
        let m = exactly_once(c, "g1").await;
        assert_eq!(m.attr("from"), Some(from_nick("robert").as_str()));
    }
}
