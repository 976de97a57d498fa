//! Several nodes (issue #17), what belongs to one user across nodes: revocation (a logout, a
//! password change, a deletion on one node closes the streams resting on it on every node),
//! message carbons to the user's connections on other nodes (once, by the same rules as on one
//! node), last activity and status streaming of a user online on another node. Real
//! `nats-server`, two real `parley` processes on one database, real sockets.

use std::time::Duration;

use parley::xmpp::stream::Element;
use serde_json::json;
use tokio::time::Instant;

use crate::common::cluster::{seen_across, Node, Two};
use crate::common::xmpp::{Client, Via};
use crate::common::PASSWORD;

const CARBONS: &str = "urn:xmpp:carbons:2";
const FORWARD: &str = "urn:xmpp:forward:0";
const STREAMING: &str = "https://connectycube.com/protocol/status_streaming";
const LAST: &str = "jabber:iq:last";

fn bare(local: &str) -> String {
    format!("{local}@localhost")
}

/// Logs in to `n` as `local/resource` with `secret` (a password or a session token).
async fn stream(n: &Node, local: &str, secret: &str, resource: &str) -> Client {
    Client::login_as(n.addrs, Via::DirectTls, local, secret, Some(resource)).await
}

async fn ping_ok(c: &mut Client) {
    let r = c
        .iq(
            "alive",
            "<iq type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
}

// ---- revocation ----

#[tokio::test]
async fn ending_a_session_on_one_node_closes_the_stream_logged_in_with_its_token_on_another() {
    let t = Two::start().await;
    let (tok, _) = t.a.token("alice").await;
    let mut by_token = stream(&t.b, &t.alice, &tok, "by-token").await;
    let mut by_password = stream(&t.b, &t.alice, PASSWORD, "by-password").await;
    let r = t.a.p.http.delete("/session", Some(&tok)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(by_token.stream_error().await, "not-authorized");
    ping_ok(&mut by_password).await;
}

#[tokio::test]
async fn logging_out_on_one_node_closes_the_stream_logged_in_with_that_token_on_another() {
    let t = Two::start().await;
    let (tok, _) = t.a.token("alice").await;
    let (other, _) = t.a.token("alice").await;
    let mut by_token = stream(&t.b, &t.alice, &tok, "by-token").await;
    let mut by_other = stream(&t.b, &t.alice, &other, "by-other").await;
    let r = t.a.p.http.delete("/login", Some(&tok)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(by_token.stream_error().await, "not-authorized");
    ping_ok(&mut by_other).await;
}

#[tokio::test]
async fn a_password_change_on_one_node_resets_the_users_streams_on_another() {
    let t = Two::start().await;
    let (changer, id) = t.a.token("alice").await;
    let (other, _) = t.a.token("alice").await;
    let mut by_password = stream(&t.b, &t.alice, PASSWORD, "by-password").await;
    let mut by_other = stream(&t.b, &t.alice, &other, "by-other").await;
    let mut by_changer = stream(&t.b, &t.alice, &changer, "by-changer").await;
    let r =
        t.a.p
            .http
            .put_json(
                &format!("/users/{id}"),
                Some(&changer),
                json!({"user": {"password": "brand-new-pass", "old_password": PASSWORD}}),
            )
            .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(by_password.stream_error().await, "reset");
    assert_eq!(by_other.stream_error().await, "reset");
    // The session that made the change keeps its stream.
    ping_ok(&mut by_changer).await;
}

#[tokio::test]
async fn deleting_a_user_on_one_node_closes_their_streams_on_another() {
    let t = Two::start().await;
    let (tok, id) = t.a.token("alice").await;
    let mut on_b = stream(&t.b, &t.alice, PASSWORD, "desk").await;
    let r = t.a.p.http.delete(&format!("/users/{id}"), Some(&tok)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(on_b.stream_error().await, "not-authorized");
}

// ---- carbons ----

/// Logs in to `n` as `local/resource`, enables carbons and goes online, announcing XEP-0115
/// caps when `caps` (as a standard client does; the ConnectyCube SDK does not).
async fn carbons_client(n: &Node, local: &str, resource: &str, caps: bool) -> Client {
    let mut c = stream(n, local, PASSWORD, resource).await;
    c.carbons_online(caps).await;
    c
}

/// Every message `c` is sent from now until a short silence (but a late reachability probe).
async fn messages(c: &mut Client) -> Vec<Element> {
    c.patience = Duration::from_millis(700);
    let mut out = Vec::new();
    while let Some(e) = c.try_next().await {
        if e.name == "message" && e.attr("id") != Some("probe") {
            out.push(e);
        }
    }
    out
}

fn forwarded<'a>(carbon: &'a Element, direction: &str) -> Option<&'a Element> {
    carbon
        .child(direction, CARBONS)?
        .child("forwarded", FORWARD)?
        .child("message", "jabber:client")
}

#[tokio::test]
async fn a_message_sent_on_one_node_is_carbon_copied_once_to_the_senders_resource_on_another() {
    let t = Two::start().await;
    let mut desk = carbons_client(&t.a, &t.alice, "desk", false).await;
    // The SDK's way (carbons, no caps) gets sent carbons.
    let mut phone = carbons_client(&t.b, &t.alice, "phone", false).await;
    let mut bob = stream(&t.b, &t.bob, PASSWORD, "web").await;
    seen_across(&mut phone, &mut desk).await;
    seen_across(&mut bob, &mut desk).await;
    desk.send_raw(&format!(
        "<message to='{}' type='chat' id='s1'><body>from the desk</body></message>",
        bare(&t.bob)
    ))
    .await;
    let got = bob
        .expect("the original", |e| e.attr("id") == Some("s1"))
        .await;
    assert!(forwarded(&got, "sent").is_none());
    let on_phone = messages(&mut phone).await;
    assert_eq!(on_phone.len(), 1, "exactly one copy: {on_phone:?}");
    assert_eq!(on_phone[0].attr("to"), Some(phone.jid.as_str()));
    let original = forwarded(&on_phone[0], "sent").expect("a sent carbon");
    assert_eq!(original.attr("id"), Some("s1"));
    assert_eq!(original.attr("from"), Some(desk.jid.as_str()));
    // A private message is not copied, across nodes as on one.
    desk.send_raw(&format!(
        "<message to='{}' type='chat' id='s2'><body>private</body><private xmlns='{CARBONS}'/></message>",
        bare(&t.bob)
    ))
    .await;
    bob.expect("the private original", |e| e.attr("id") == Some("s2"))
        .await;
    assert_eq!(messages(&mut phone).await, Vec::<Element>::new());
}

#[tokio::test]
async fn a_message_to_one_resource_is_carbon_copied_as_received_to_caps_announcing_resources_on_another_node(
) {
    let t = Two::start().await;
    let mut desk = carbons_client(&t.a, &t.alice, "desk", true).await;
    let mut phone = carbons_client(&t.b, &t.alice, "phone", true).await;
    let mut sdk = carbons_client(&t.b, &t.alice, "sdk", false).await;
    let mut bob = stream(&t.a, &t.bob, PASSWORD, "web").await;
    seen_across(&mut phone, &mut bob).await;
    seen_across(&mut sdk, &mut bob).await;
    // To the resource on node A: the caps-announcing resource on node B gets a received copy.
    bob.send_raw(&format!(
        "<message to='{}' type='chat' id='r1'><body>to the desk</body></message>",
        desk.jid
    ))
    .await;
    desk.expect("the original", |e| e.attr("id") == Some("r1"))
        .await;
    let on_phone = messages(&mut phone).await;
    assert_eq!(on_phone.len(), 1, "exactly one copy: {on_phone:?}");
    let original = forwarded(&on_phone[0], "received").expect("a received carbon");
    assert_eq!(original.attr("id"), Some("r1"));
    assert_eq!(original.attr("to"), Some(desk.jid.as_str()));
    assert_eq!(
        messages(&mut sdk).await,
        Vec::<Element>::new(),
        "no caps, no received carbon"
    );
    // To the resource on node B: the caps-announcing resource on node A gets one, and the
    // addressed resource none of its own message.
    bob.send_raw(&format!(
        "<message to='{}' type='chat' id='r2'><body>to the phone</body></message>",
        phone.jid
    ))
    .await;
    let got = phone
        .expect("the original", |e| e.attr("id") == Some("r2"))
        .await;
    assert!(forwarded(&got, "received").is_none());
    assert_eq!(
        messages(&mut phone).await,
        Vec::<Element>::new(),
        "no copy of its own message"
    );
    let on_desk = messages(&mut desk).await;
    assert_eq!(on_desk.len(), 1, "exactly one copy: {on_desk:?}");
    let original = forwarded(&on_desk[0], "received").expect("a received carbon");
    assert_eq!(original.attr("id"), Some("r2"));
    assert_eq!(messages(&mut sdk).await, Vec::<Element>::new());
}

// ---- last activity and status streaming ----

#[tokio::test]
async fn the_last_activity_of_a_user_online_only_on_another_node_is_zero_seconds() {
    let t = Two::start().await;
    // Bob was seen once, a while ago…
    let mut before = stream(&t.a, &t.bob, PASSWORD, "old").await;
    before.close().await;
    drop(before);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // …and is online now, on node B only.
    let mut alice = stream(&t.a, &t.alice, PASSWORD, "web").await;
    let mut bob = stream(&t.b, &t.bob, PASSWORD, "phone").await;
    bob.available().await;
    seen_across(&mut bob, &mut alice).await;
    let r = alice
        .iq(
            "l1",
            &format!(
                "<iq type='get' id='l1' to='{}'><query xmlns='{LAST}'/></iq>",
                bare(&t.bob)
            ),
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let q = r.child("query", LAST).expect("a query");
    assert_eq!(q.attr("seconds"), Some("0"), "online, not offline since");
}

/// Subscribes `c` to `jid`'s status (ConnectyCube status streaming).
async fn follow_status(c: &mut Client, jid: &str) {
    let r = c
        .iq(
            "w1",
            &format!(
                "<iq type='set' id='w1'><subscribe xmlns='{STREAMING}' user_jid='{jid}' enable='true'/></iq>"
            ),
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
}

/// The next status push (a `jabber:iq:last` iq) from `from`.
async fn status_push(c: &mut Client, from: &str, what: &str) -> Element {
    c.expect(what, |e| e.name == "iq" && e.attr("from") == Some(from))
        .await
}

#[tokio::test]
async fn a_status_subscriber_on_one_node_is_told_when_a_user_comes_and_goes_on_another() {
    let t = Two::start().await;
    let mut alice = stream(&t.a, &t.alice, PASSWORD, "web").await;
    follow_status(&mut alice, &bare(&t.bob)).await;
    let from = bare(&t.bob);
    let mut bob = stream(&t.b, &t.bob, PASSWORD, "phone").await;
    let online = status_push(&mut alice, &from, "bob's coming online").await;
    let q = online.child("query", LAST).expect("a last-activity query");
    assert_eq!(q.attr("seconds"), Some("0"));
    assert_eq!(q.text(), "", "online, not offline");
    bob.close().await;
    drop(bob);
    let gone = status_push(&mut alice, &from, "bob's going offline").await;
    assert_eq!(
        gone.child("query", LAST).map(|q| q.text()),
        Some("offline".into())
    );
}

#[tokio::test]
async fn a_status_subscriber_is_told_a_user_of_a_killed_node_went_offline() {
    let t = Two::start().await;
    let mut alice = stream(&t.a, &t.alice, PASSWORD, "web").await;
    let mut bob = stream(&t.b, &t.bob, PASSWORD, "phone").await;
    seen_across(&mut bob, &mut alice).await;
    follow_status(&mut alice, &bare(&t.bob)).await;
    t.b.kill9();
    let from = bare(&t.bob);
    alice.patience = Duration::from_secs(5);
    let gone = status_push(&mut alice, &from, "bob's going offline").await;
    assert_eq!(
        gone.child("query", LAST).map(|q| q.text()),
        Some("offline".into())
    );
}

#[tokio::test]
async fn the_last_activity_of_a_user_of_a_killed_node_counts_from_when_it_was_found_dead() {
    let t = Two::start().await;
    let mut alice = stream(&t.a, &t.alice, PASSWORD, "web").await;
    // Bob's first and only session, on node B: never seen offline before.
    let mut bob = stream(&t.b, &t.bob, PASSWORD, "phone").await;
    seen_across(&mut bob, &mut alice).await;
    t.b.kill9();
    let ask = format!(
        "<iq type='get' id='l1' to='{}'><query xmlns='{LAST}'/></iq>",
        bare(&t.bob)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = alice.iq("l1", &ask).await;
        let seconds = r
            .child("query", LAST)
            .and_then(|q| q.attr("seconds"))
            .map(str::to_owned);
        if r.attr("type") == Some("result") && seconds.as_deref() != Some("0") {
            // Offline, and seen (not "never seen") a moment ago.
            let s: i64 = seconds.unwrap().parse().unwrap();
            assert!((0..10).contains(&s), "{r:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still online or never seen: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
