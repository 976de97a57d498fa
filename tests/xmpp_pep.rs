//! XEP-0163 Personal Eventing on a persistent XEP-0060 subset: publish with publish-options,
//! notifications to the owner and to contacts whose verified entity capabilities (XEP-0115)
//! ask `NODE+notify` (never to strangers), access models `presence`, `open` and `whitelist`,
//! retract, items, delete node, node configuration, the last item on coming online, the
//! bounds, and slixmpp's PEP plugins (avatars, nickname) against a Parley.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parley::xmpp::ext::pep::caps::ver_of;
use parley::xmpp::stream::Element;

use crate::common::python;
use crate::common::xmpp::{Client, Via};
use crate::common::{test_config, TestServer, PASSWORD};

const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
const NICK: &str = "http://jabber.org/protocol/nick";
const DEVICELIST: &str = "eu.siacs.conversations.axolotl.devicelist";
const BOOKMARKS: &str = "urn:xmpp:bookmarks:1";

struct User {
    local: String,
    token: String,
}

impl User {
    fn bare(&self) -> String {
        format!("{}@localhost", self.local)
    }
}

async fn user(srv: &TestServer, login: &str) -> User {
    let (local, token) = srv.chat_user(login).await;
    User { local, token }
}

async fn login(srv: &TestServer, u: &User) -> Client {
    Client::login(srv.xmpp, Via::Tcp, &u.local, PASSWORD).await
}

/// `contact` asks for `owner`'s presence and `owner` approves: the `presence` access model
/// admits `contact` from then on.
async fn approve(owner: &mut Client, contact: &mut Client, o: &User, c: &User) {
    contact
        .send_raw(&format!("<presence to='{}' type='subscribe'/>", o.bare()))
        .await;
    owner
        .expect("subscription request", |e| {
            e.name == "presence" && e.attr("type") == Some("subscribe")
        })
        .await;
    owner
        .send_raw(&format!("<presence to='{}' type='subscribed'/>", c.bare()))
        .await;
    contact
        .expect("subscription approval", |e| {
            e.name == "presence" && e.attr("type") == Some("subscribed")
        })
        .await;
}

/// The disco#info a client with `notify` interests answers, and its XEP-0115 hash. Each call
/// is another client software (its own name), so its hash is new to the server.
fn caps_query(notify: &[&str]) -> (Element, String) {
    static CLIENTS: AtomicUsize = AtomicUsize::new(0);
    let name = format!("pep-test {}", CLIENTS.fetch_add(1, Ordering::Relaxed));
    let mut q = Element::new("query", DISCO_INFO).with_child(
        Element::new("identity", DISCO_INFO)
            .with_attr("category", "client")
            .with_attr("type", "pc")
            .with_attr("name", name),
    );
    q.push(Element::new("feature", DISCO_INFO).with_attr("var", DISCO_INFO));
    for n in notify {
        q.push(Element::new("feature", DISCO_INFO).with_attr("var", format!("{n}+notify")));
    }
    let ver = ver_of(&q).expect("a hashable answer");
    (q, ver)
}

/// Goes online advertising `ver` and answers the server's disco#info about it with `answer`.
async fn online_with(c: &mut Client, ver: &str, answer: &Element) {
    c.send_raw(&format!(
        "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' \
         node='https://parley.test/client' ver='{ver}'/></presence>"
    ))
    .await;
    let ask = c
        .expect("the server's caps query", |e| {
            e.name == "iq" && e.attr("type") == Some("get")
        })
        .await;
    let q = ask.child("query", DISCO_INFO).expect("a disco#info query");
    assert_eq!(
        q.attr("node"),
        Some(format!("https://parley.test/client#{ver}").as_str())
    );
    let mut reply = answer.clone();
    reply.set_attr("node", q.attr("node").unwrap_or_default());
    c.send_raw(&format!(
        "<iq type='result' id='{}' to='{}'>{}</iq>",
        ask.attr("id").unwrap_or_default(),
        ask.attr("from").unwrap_or_default(),
        reply.to_stream_xml()
    ))
    .await;
}

/// Online with caps wanting notifications of `notify`; returns once the server had time to
/// verify them.
async fn online_wanting(c: &mut Client, notify: &[&str]) {
    let (q, ver) = caps_query(notify);
    online_with(c, &ver, &q).await;
    settle(c).await;
}

/// A ping round trip and a moment: what the server does after an answer (verifying caps,
/// queueing notifications) has happened by then.
async fn settle(c: &mut Client) {
    c.iq(
        "settle",
        "<iq type='get' id='settle'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn nick(name: &str) -> String {
    format!("<nick xmlns='{NICK}'>{name}</nick>")
}

/// A publish iq of one item, with publish-options fields if any.
fn publish(id: &str, node: &str, item_id: &str, payload: &str, options: &[(&str, &str)]) -> String {
    let opts = if options.is_empty() {
        String::new()
    } else {
        let fields: String = options
            .iter()
            .map(|(k, v)| format!("<field var='{k}'><value>{v}</value></field>"))
            .collect();
        format!(
            "<publish-options><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#publish-options</value></field>\
             {fields}</x></publish-options>"
        )
    };
    format!(
        "<iq type='set' id='{id}'><pubsub xmlns='{PUBSUB}'><publish node='{node}'>\
         <item id='{item_id}'>{payload}</item></publish>{opts}</pubsub></iq>"
    )
}

fn items_query(id: &str, to: &str, node: &str, extra: &str) -> String {
    format!(
        "<iq type='get' id='{id}' to='{to}'><pubsub xmlns='{PUBSUB}'>\
         <items node='{node}'{extra}/></pubsub></iq>"
    )
}

fn is_result(r: &Element) -> bool {
    r.attr("type") == Some("result")
}

/// The stanza error's condition and application condition.
fn error_of(r: &Element) -> (String, Option<String>) {
    assert_eq!(r.attr("type"), Some("error"), "expected an error: {r:?}");
    let e = r.child("error", "jabber:client").expect("an error element");
    let cond = e
        .elements()
        .find(|c| c.ns == STANZAS && c.name != "text")
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let app = e
        .elements()
        .find(|c| c.ns == ERRORS)
        .map(|c| c.name.clone());
    (cond, app)
}

/// The item ids (and payload texts) of an items result.
fn item_texts(r: &Element) -> Vec<(String, String)> {
    assert!(is_result(r), "{r:?}");
    r.child("pubsub", PUBSUB)
        .and_then(|p| p.child("items", PUBSUB))
        .map(|items| {
            items
                .elements()
                .map(|i| {
                    let text = i.elements().next().map(Element::text).unwrap_or_default();
                    (i.attr("id").unwrap_or_default().to_owned(), text)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn event_items(m: &Element) -> Option<&Element> {
    m.child("event", EVENT)?.child("items", EVENT)
}

/// Waits for a PEP event about `node`.
async fn expect_event(c: &mut Client, node: &str) -> Element {
    c.expect("a PEP event", |e| {
        e.name == "message"
            && e.child("event", EVENT)
                .and_then(|ev| ev.elements().next())
                .is_some_and(|x| x.attr("node") == Some(node))
    })
    .await
}

/// Nothing about `node` arrives within a short wait.
async fn no_event(c: &mut Client, node: &str) {
    c.patience = Duration::from_millis(500);
    while let Some(e) = c.try_next().await {
        let about = e
            .child("event", EVENT)
            .and_then(|ev| ev.elements().next())
            .and_then(|x| x.attr("node"));
        assert_ne!(about, Some(node), "unexpected event: {e:?}");
    }
    c.patience = Duration::from_secs(10);
}

/// Alice and her contact Bob (approved), and Carol, a stranger: all logged in, not online.
struct Story {
    srv: TestServer,
    alice: User,
    bob: User,
    carol: User,
    a: Client,
    b: Client,
    c: Client,
}

async fn story(prefix: &str) -> Story {
    story_with(TestServer::start().await, prefix).await
}

async fn story_with(srv: TestServer, prefix: &str) -> Story {
    let alice = user(&srv, &format!("{prefix}_alice")).await;
    let bob = user(&srv, &format!("{prefix}_bob")).await;
    let carol = user(&srv, &format!("{prefix}_carol")).await;
    let mut a = login(&srv, &alice).await;
    let mut b = login(&srv, &bob).await;
    let c = login(&srv, &carol).await;
    approve(&mut a, &mut b, &alice, &bob).await;
    Story {
        srv,
        alice,
        bob,
        carol,
        a,
        b,
        c,
    }
}

#[tokio::test]
async fn a_publish_reaches_the_owner_and_contacts_whose_caps_want_it_never_strangers() {
    let mut s = story("pep_notify").await;
    s.a.available().await;
    online_wanting(&mut s.b, &[NICK]).await;
    online_wanting(&mut s.c, &[NICK]).await;
    let r =
        s.a.iq("p1", &publish("p1", NICK, "current", &nick("Alice"), &[]))
            .await;
    assert!(is_result(&r), "{r:?}");
    let published = r
        .child("pubsub", PUBSUB)
        .and_then(|p| p.child("publish", PUBSUB))
        .and_then(|p| p.child("item", PUBSUB))
        .and_then(|i| i.attr("id"));
    assert_eq!(published, Some("current"));

    let m = expect_event(&mut s.b, NICK).await;
    assert_eq!(m.attr("from"), Some(s.alice.bare().as_str()));
    assert_eq!(m.attr("type"), Some("headline"));
    let item = event_items(&m)
        .and_then(|i| i.child("item", EVENT))
        .unwrap();
    assert_eq!(item.attr("id"), Some("current"));
    assert_eq!(
        item.child("nick", NICK).map(Element::text).as_deref(),
        Some("Alice")
    );
    // The owner's own resources hear of it too.
    expect_event(&mut s.a, NICK).await;
    // Carol wants nick notifications but has no subscription to Alice's presence.
    no_event(&mut s.c, NICK).await;
    s.srv.stop().await;
}

#[tokio::test]
async fn a_contact_whose_caps_do_not_ask_for_the_node_gets_no_notification() {
    let mut s = story("pep_nonotify").await;
    online_wanting(&mut s.b, &["urn:xmpp:avatar:metadata"]).await;
    let r =
        s.a.iq("p1", &publish("p1", NICK, "current", &nick("Alice"), &[]))
            .await;
    assert!(is_result(&r), "{r:?}");
    no_event(&mut s.b, NICK).await;
    s.srv.stop().await;
}

#[tokio::test]
async fn caps_whose_answer_does_not_hash_to_the_advertised_ver_are_not_trusted() {
    let mut s = story("pep_badcaps").await;
    let (answer, _) = caps_query(&[NICK]);
    // The answer asks for nick notifications, but the ver claimed is another one.
    online_with(&mut s.b, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", &answer).await;
    settle(&mut s.b).await;
    let r =
        s.a.iq("p1", &publish("p1", NICK, "current", &nick("Alice"), &[]))
            .await;
    assert!(is_result(&r), "{r:?}");
    no_event(&mut s.b, NICK).await;
    s.srv.stop().await;
}

#[tokio::test]
async fn the_presence_access_model_admits_contacts_and_refuses_strangers() {
    let mut s = story("pep_presence").await;
    s.a.iq("p1", &publish("p1", NICK, "current", &nick("Alice"), &[]))
        .await;
    let alice = s.alice.bare();
    let r = s.b.iq("i1", &items_query("i1", &alice, NICK, "")).await;
    assert_eq!(item_texts(&r), [("current".to_owned(), "Alice".to_owned())]);
    let r = s.c.iq("i2", &items_query("i2", &alice, NICK, "")).await;
    assert_eq!(
        error_of(&r),
        (
            "not-authorized".to_owned(),
            Some("presence-subscription-required".to_owned())
        )
    );
    s.srv.stop().await;
}

#[tokio::test]
async fn a_whitelist_node_is_the_owners_alone_and_max_items_max_keeps_many() {
    let mut s = story("pep_whitelist").await;
    online_wanting(&mut s.b, &[BOOKMARKS]).await;
    let opts = [
        ("pubsub#access_model", "whitelist"),
        ("pubsub#max_items", "max"),
        ("pubsub#persist_items", "true"),
    ];
    for room in ["a@muc.localhost", "b@muc.localhost", "c@muc.localhost"] {
        let conf = "<conference xmlns='urn:xmpp:bookmarks:1' name='r' autojoin='true'/>";
        let r =
            s.a.iq("b", &publish("b", BOOKMARKS, room, conf, &opts))
                .await;
        assert!(is_result(&r), "{r:?}");
    }
    let alice = s.alice.bare();
    let r =
        s.a.iq("i1", &items_query("i1", &alice, BOOKMARKS, ""))
            .await;
    let ids: Vec<String> = item_texts(&r).into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids,
        ["a@muc.localhost", "b@muc.localhost", "c@muc.localhost"]
    );
    let r =
        s.b.iq("i2", &items_query("i2", &alice, BOOKMARKS, ""))
            .await;
    assert_eq!(
        error_of(&r),
        ("not-allowed".to_owned(), Some("closed-node".to_owned()))
    );
    // Bob wants bookmark notifications, but not of someone else's whitelist node.
    no_event(&mut s.b, BOOKMARKS).await;
    s.srv.stop().await;
}

#[tokio::test]
async fn an_open_omemo_bundle_is_fetched_by_another_user_who_is_no_contact() {
    let mut s = story("pep_omemo").await;
    let open = [("pubsub#access_model", "open")];
    let list = "<list xmlns='eu.siacs.conversations.axolotl'><device id='4242'/></list>";
    let r =
        s.a.iq("d", &publish("d", DEVICELIST, "current", list, &open))
            .await;
    assert!(is_result(&r), "{r:?}");
    let bundle_node = "eu.siacs.conversations.axolotl.bundles:4242";
    let bundle = "<bundle xmlns='eu.siacs.conversations.axolotl'>\
                  <signedPreKeyPublic signedPreKeyId='1'>BASE64KEY</signedPreKeyPublic>\
                  <identityKey>IDENTITY</identityKey></bundle>";
    let r =
        s.a.iq("b", &publish("b", bundle_node, "current", bundle, &open))
            .await;
    assert!(is_result(&r), "{r:?}");

    // Carol is not Alice's contact: an OMEMO client still fetches the list, then the bundle.
    let alice = s.alice.bare();
    let r = s.c.iq("l", &items_query("l", &alice, DEVICELIST, "")).await;
    let list = r
        .child("pubsub", PUBSUB)
        .and_then(|p| p.child("items", PUBSUB))
        .and_then(|i| i.child("item", PUBSUB))
        .and_then(|i| i.child("list", "eu.siacs.conversations.axolotl"))
        .and_then(|l| l.child("device", "eu.siacs.conversations.axolotl"))
        .and_then(|d| d.attr("id"));
    assert_eq!(list, Some("4242"));
    let r =
        s.c.iq(
            "k",
            &items_query("k", &alice, bundle_node, " max_items='1'"),
        )
        .await;
    let key = r
        .child("pubsub", PUBSUB)
        .and_then(|p| p.child("items", PUBSUB))
        .and_then(|i| i.child("item", PUBSUB))
        .and_then(|i| i.child("bundle", "eu.siacs.conversations.axolotl"))
        .and_then(|b| b.child("identityKey", "eu.siacs.conversations.axolotl"))
        .map(Element::text);
    assert_eq!(key.as_deref(), Some("IDENTITY"));
    s.srv.stop().await;
}

#[tokio::test]
async fn publish_options_that_disagree_with_the_node_are_precondition_not_met() {
    let mut s = story("pep_precondition").await;
    let open = [("pubsub#access_model", "open")];
    let r =
        s.a.iq(
            "p1",
            &publish(
                "p1",
                DEVICELIST,
                "current",
                "<list xmlns='eu.siacs.conversations.axolotl'/>",
                &open,
            ),
        )
        .await;
    assert!(is_result(&r), "{r:?}");
    let presence = [("pubsub#access_model", "presence")];
    let r =
        s.a.iq(
            "p2",
            &publish(
                "p2",
                DEVICELIST,
                "current",
                "<list xmlns='eu.siacs.conversations.axolotl'/>",
                &presence,
            ),
        )
        .await;
    assert_eq!(
        error_of(&r),
        (
            "conflict".to_owned(),
            Some("precondition-not-met".to_owned())
        )
    );
    // Reconfigured by its owner, the same publish then succeeds (what OMEMO clients do).
    let r =
        s.a.iq(
            "c1",
            &format!(
                "<iq type='set' id='c1'><pubsub xmlns='{OWNER}'><configure node='{DEVICELIST}'>\
                 <x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#node_config</value></field>\
                 <field var='pubsub#access_model'><value>presence</value></field></x>\
                 </configure></pubsub></iq>"
            ),
        )
        .await;
    assert!(is_result(&r), "{r:?}");
    let r =
        s.a.iq(
            "p3",
            &publish(
                "p3",
                DEVICELIST,
                "current",
                "<list xmlns='eu.siacs.conversations.axolotl'/>",
                &presence,
            ),
        )
        .await;
    assert!(is_result(&r), "{r:?}");
    s.srv.stop().await;
}

#[tokio::test]
async fn node_configuration_is_shown_to_its_owner_only() {
    let mut s = story("pep_config").await;
    let opts = [("pubsub#access_model", "open"), ("pubsub#max_items", "5")];
    s.a.iq("p", &publish("p", NICK, "current", &nick("A"), &opts))
        .await;
    let get = format!(
        "<iq type='get' id='g'><pubsub xmlns='{OWNER}'><configure node='{NICK}'/></pubsub></iq>"
    );
    let r = s.a.iq("g", &get).await;
    assert!(is_result(&r), "{r:?}");
    let form = r
        .child("pubsub", OWNER)
        .and_then(|p| p.child("configure", OWNER))
        .and_then(|c| c.child("x", "jabber:x:data"))
        .expect("a configuration form");
    let value = |var: &str| {
        form.elements()
            .find(|f| f.attr("var") == Some(var))
            .and_then(|f| f.child("value", "jabber:x:data"))
            .map(Element::text)
    };
    assert_eq!(value("pubsub#access_model").as_deref(), Some("open"));
    assert_eq!(value("pubsub#max_items").as_deref(), Some("5"));
    assert_eq!(value("pubsub#persist_items").as_deref(), Some("1"));
    // Another user's node configuration: not theirs to read.
    let get = format!(
        "<iq type='get' id='g2' to='{}'><pubsub xmlns='{OWNER}'><configure node='{NICK}'/></pubsub></iq>",
        s.alice.bare()
    );
    let r = s.b.iq("g2", &get).await;
    assert_eq!(r.attr("type"), Some("error"));
    s.srv.stop().await;
}

#[tokio::test]
async fn items_are_kept_up_to_max_items_and_read_by_id_or_newest_first_bounded() {
    let mut s = story("pep_items").await;
    let opts = [("pubsub#max_items", "3")];
    for i in 1..=5 {
        let r =
            s.a.iq(
                "p",
                &publish(
                    "p",
                    "urn:test:feed",
                    &format!("i{i}"),
                    &nick(&format!("n{i}")),
                    &opts,
                ),
            )
            .await;
        assert!(is_result(&r), "{r:?}");
    }
    let alice = s.alice.bare();
    let r =
        s.b.iq("all", &items_query("all", &alice, "urn:test:feed", ""))
            .await;
    let ids: Vec<String> = item_texts(&r).into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids,
        ["i3", "i4", "i5"],
        "the three newest, in publication order"
    );
    let r =
        s.b.iq(
            "max",
            &items_query("max", &alice, "urn:test:feed", " max_items='1'"),
        )
        .await;
    assert_eq!(item_texts(&r), [("i5".to_owned(), "n5".to_owned())]);
    let by_id = format!(
        "<iq type='get' id='id' to='{alice}'><pubsub xmlns='{PUBSUB}'><items node='urn:test:feed'>\
         <item id='i4'/></items></pubsub></iq>"
    );
    let r = s.b.iq("id", &by_id).await;
    assert_eq!(item_texts(&r), [("i4".to_owned(), "n4".to_owned())]);
    // Re-publishing an id replaces it and makes it the newest.
    s.a.iq(
        "p",
        &publish("p", "urn:test:feed", "i3", &nick("again"), &opts),
    )
    .await;
    let r =
        s.b.iq(
            "max",
            &items_query("max", &alice, "urn:test:feed", " max_items='1'"),
        )
        .await;
    assert_eq!(item_texts(&r), [("i3".to_owned(), "again".to_owned())]);
    s.srv.stop().await;
}

#[tokio::test]
async fn retract_removes_the_item_and_tells_contacts_when_asked_to_notify() {
    let mut s = story("pep_retract").await;
    online_wanting(&mut s.b, &["urn:test:feed"]).await;
    let opts = [("pubsub#max_items", "10")];
    s.a.iq(
        "p",
        &publish("p", "urn:test:feed", "one", &nick("1"), &opts),
    )
    .await;
    s.a.iq(
        "p",
        &publish("p", "urn:test:feed", "two", &nick("2"), &opts),
    )
    .await;
    expect_event(&mut s.b, "urn:test:feed").await;
    expect_event(&mut s.b, "urn:test:feed").await;
    let retract = format!(
        "<iq type='set' id='r'><pubsub xmlns='{PUBSUB}'><retract node='urn:test:feed' notify='true'>\
         <item id='one'/></retract></pubsub></iq>"
    );
    let r = s.a.iq("r", &retract).await;
    assert!(is_result(&r), "{r:?}");
    let m = expect_event(&mut s.b, "urn:test:feed").await;
    let gone = event_items(&m)
        .and_then(|i| i.child("retract", EVENT))
        .and_then(|r| r.attr("id"));
    assert_eq!(gone, Some("one"));
    let alice = s.alice.bare();
    let r =
        s.b.iq("i", &items_query("i", &alice, "urn:test:feed", ""))
            .await;
    let ids: Vec<String> = item_texts(&r).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["two"]);
    let r = s.a.iq("r", &retract).await;
    assert_eq!(error_of(&r).0, "item-not-found");
    s.srv.stop().await;
}

#[tokio::test]
async fn deleting_a_node_removes_its_items_and_tells_contacts() {
    let mut s = story("pep_delete").await;
    online_wanting(&mut s.b, &[NICK]).await;
    s.a.iq("p", &publish("p", NICK, "current", &nick("Alice"), &[]))
        .await;
    expect_event(&mut s.b, NICK).await;
    let delete = format!(
        "<iq type='set' id='d'><pubsub xmlns='{OWNER}'><delete node='{NICK}'/></pubsub></iq>"
    );
    let r = s.a.iq("d", &delete).await;
    assert!(is_result(&r), "{r:?}");
    let m = expect_event(&mut s.b, NICK).await;
    assert!(m
        .child("event", EVENT)
        .and_then(|e| e.child("delete", EVENT))
        .is_some());
    let alice = s.alice.bare();
    let r = s.b.iq("i", &items_query("i", &alice, NICK, "")).await;
    assert_eq!(error_of(&r).0, "item-not-found");
    // Only the owner deletes: Bob cannot delete Alice's nodes.
    let theirs = format!(
        "<iq type='set' id='d2' to='{alice}'><pubsub xmlns='{OWNER}'><delete node='{NICK}'/></pubsub></iq>"
    );
    let r = s.b.iq("d2", &theirs).await;
    assert_eq!(r.attr("type"), Some("error"));
    s.srv.stop().await;
}

#[tokio::test]
async fn publishing_to_someone_elses_account_is_forbidden() {
    let mut s = story("pep_foreign").await;
    let mut iq = publish("p", NICK, "current", &nick("Mallory"), &[]);
    iq = iq.replacen(
        "<iq type='set' id='p'>",
        &format!("<iq type='set' id='p' to='{}'>", s.alice.bare()),
        1,
    );
    let r = s.b.iq("p", &iq).await;
    assert_eq!(error_of(&r).0, "forbidden");
    s.srv.stop().await;
}

#[tokio::test]
async fn a_contact_coming_online_is_sent_the_last_item_of_each_node_it_wants() {
    let mut s = story("pep_last").await;
    s.a.iq("p", &publish("p", NICK, "current", &nick("Before"), &[]))
        .await;
    s.a.iq("p", &publish("p", NICK, "current", &nick("Latest"), &[]))
        .await;
    // Bob was not online; his first presence with caps wanting nick brings the last item.
    let (q, ver) = caps_query(&[NICK]);
    online_with(&mut s.b, &ver, &q).await;
    let m = expect_event(&mut s.b, NICK).await;
    assert_eq!(m.attr("from"), Some(s.alice.bare().as_str()));
    let text = event_items(&m)
        .and_then(|i| i.child("item", EVENT))
        .and_then(|i| i.child("nick", NICK))
        .map(Element::text);
    assert_eq!(text.as_deref(), Some("Latest"));
    // Carol, a stranger with the same caps (known now: no new query), gets nothing of Alice's.
    s.c.send_raw(&format!(
        "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' \
         node='https://parley.test/client' ver='{ver}'/></presence>"
    ))
    .await;
    no_event(&mut s.c, NICK).await;
    s.srv.stop().await;
}

#[tokio::test]
async fn a_new_subscriber_is_sent_the_owners_last_items_when_approved() {
    let mut s = story("pep_approved").await;
    s.a.iq("p", &publish("p", NICK, "current", &nick("Alice"), &[]))
        .await;
    // Carol is online wanting nicks, but not Alice's contact: nothing yet.
    online_wanting(&mut s.c, &[NICK]).await;
    no_event(&mut s.c, NICK).await;
    s.c.send_raw(&format!(
        "<presence to='{}' type='subscribe'/>",
        s.alice.bare()
    ))
    .await;
    s.a.expect("subscription request", |e| {
        e.name == "presence" && e.attr("type") == Some("subscribe")
    })
    .await;
    s.a.send_raw(&format!(
        "<presence to='{}' type='subscribed'/>",
        s.carol.bare()
    ))
    .await;
    let m = expect_event(&mut s.c, NICK).await;
    assert_eq!(m.attr("from"), Some(s.alice.bare().as_str()));
    s.srv.stop().await;
}

#[tokio::test]
async fn a_deleted_user_leaves_no_nodes_or_items_behind() {
    let mut s = story("pep_gone").await;
    s.a.iq("p", &publish("p", NICK, "current", &nick("Alice"), &[]))
        .await;
    let id: i64 = s.alice.local.split('-').next().unwrap().parse().unwrap();
    let count = |table: &'static str| {
        let pool = s.srv.pool.clone();
        async move {
            let c = pool.get().await.unwrap();
            let sql = format!("SELECT count(*) FROM {table} WHERE user_id = $1");
            c.query_one(&sql, &[&id]).await.unwrap().get::<_, i64>(0)
        }
    };
    assert_eq!((count("pep_nodes").await, count("pep_items").await), (1, 1));
    let r = s
        .srv
        .http
        .delete(&format!("/users/{id}"), Some(&s.alice.token))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((count("pep_nodes").await, count("pep_items").await), (0, 0));
    s.srv.stop().await;
}

#[tokio::test]
async fn the_account_advertises_pep_and_lists_the_nodes_the_asker_may_see() {
    let mut s = story("pep_disco").await;
    let r =
        s.a.iq(
            "i",
            &format!("<iq type='get' id='i'><query xmlns='{DISCO_INFO}'/></iq>"),
        )
        .await;
    let q = r.child("query", DISCO_INFO).expect("disco#info");
    assert!(q.elements().any(|i| i.name == "identity"
        && i.attr("category") == Some("pubsub")
        && i.attr("type") == Some("pep")));
    let features: Vec<&str> = q
        .elements()
        .filter(|f| f.name == "feature")
        .filter_map(|f| f.attr("var"))
        .collect();
    for f in [
        "",
        "#publish",
        "#publish-options",
        "#retract-items",
        "#retrieve-items",
        "#delete-nodes",
        "#access-whitelist",
        "#access-open",
    ] {
        assert!(
            features.contains(&format!("{PUBSUB}{f}").as_str()),
            "{f} missing: {features:?}"
        );
    }
    s.a.iq("p", &publish("p", NICK, "current", &nick("A"), &[]))
        .await;
    s.a.iq(
        "p",
        &publish(
            "p",
            BOOKMARKS,
            "r@muc.localhost",
            "<conference xmlns='urn:xmpp:bookmarks:1'/>",
            &[("pubsub#access_model", "whitelist")],
        ),
    )
    .await;
    let items = |id: &str, to: &str| {
        format!("<iq type='get' id='{id}' to='{to}'><query xmlns='{DISCO_ITEMS}'/></iq>")
    };
    let nodes = |r: &Element| -> Vec<String> {
        r.child("query", DISCO_ITEMS)
            .map(|q| {
                q.elements()
                    .filter_map(|i| i.attr("node").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let alice = s.alice.bare();
    let r = s.a.iq("o", &items("o", &alice)).await;
    assert_eq!(
        nodes(&r),
        [NICK, BOOKMARKS],
        "the owner sees every node, by name"
    );
    let r = s.b.iq("c", &items("c", &alice)).await;
    assert_eq!(nodes(&r), [NICK]);
    s.srv.stop().await;
}

#[tokio::test]
async fn a_payload_over_the_bound_is_refused_as_payload_too_big() {
    let mut config = test_config();
    config.xmpp.pep_max_payload_bytes = 100;
    let mut s = story_with(TestServer::start_with(config).await, "pep_payload").await;
    let big = nick(&"x".repeat(200));
    let r = s.a.iq("p", &publish("p", NICK, "current", &big, &[])).await;
    assert_eq!(
        error_of(&r),
        (
            "not-acceptable".to_owned(),
            Some("payload-too-big".to_owned())
        )
    );
    let r =
        s.a.iq("p", &publish("p", NICK, "current", &nick("fits"), &[]))
            .await;
    assert!(is_result(&r), "{r:?}");
    s.srv.stop().await;
}

#[tokio::test]
async fn nodes_per_user_and_bytes_per_user_are_bounded() {
    let mut config = test_config();
    config.xmpp.pep_max_nodes_per_user = 2;
    config.xmpp.pep_max_bytes_per_user = 200;
    let mut s = story_with(TestServer::start_with(config).await, "pep_bounds").await;
    for node in ["urn:n:1", "urn:n:2"] {
        let r =
            s.a.iq("p", &publish("p", node, "current", &nick("a"), &[]))
                .await;
        assert!(is_result(&r), "{r:?}");
    }
    let r =
        s.a.iq("p", &publish("p", "urn:n:3", "current", &nick("a"), &[]))
            .await;
    assert_eq!(error_of(&r).0, "not-allowed");
    // Publishing to a node one already has is fine; past the byte bound it is not.
    let r =
        s.a.iq(
            "p",
            &publish("p", "urn:n:1", "current", &nick(&"y".repeat(150)), &[]),
        )
        .await;
    assert_eq!(error_of(&r).0, "resource-constraint");
    let r =
        s.a.iq("p", &publish("p", "urn:n:1", "current", &nick("b"), &[]))
            .await;
    assert!(is_result(&r), "{r:?}");
    s.srv.stop().await;
}

#[tokio::test]
async fn a_publish_without_exactly_one_payload_or_with_an_overlong_node_is_a_bad_request() {
    let mut config = test_config();
    config.xmpp.pep_max_id_bytes = 16;
    let mut s = story_with(TestServer::start_with(config).await, "pep_bad").await;
    let r = s.a.iq("p", &publish("p", NICK, "current", "", &[])).await;
    assert_eq!(
        error_of(&r),
        (
            "bad-request".to_owned(),
            Some("payload-required".to_owned())
        )
    );
    let r =
        s.a.iq(
            "p",
            &publish("p", &"n".repeat(17), "current", &nick("a"), &[]),
        )
        .await;
    assert_eq!(error_of(&r).0, "bad-request");
    s.srv.stop().await;
}

const SLIXMPP_PEP: &str = r#"
import asyncio, ssl, sys
import slixmpp

jid, password, host, port, peer = sys.argv[1:6]

class Bot(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(jid, password)
        self.nick = None
        self.avatar = None
        self.got_nick = asyncio.Event()
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("user_nick_publish", self.on_nick)
        self.add_event_handler("failed_auth", lambda e: self.disconnect())

    def on_nick(self, msg):
        self.nick = msg["pubsub_event"]["items"]["item"]["nick"]["nick"]
        self.got_nick.set()

    async def start(self, event):
        try:
            self.send_presence()
            await self.get_roster()
            data = b"\x89PNG-parley-avatar"
            await self["xep_0084"].publish_avatar(data)
            avatar_id = self["xep_0084"].generate_id(data)
            await self["xep_0084"].publish_avatar_metadata(
                items=[{"id": avatar_id, "type": "image/png", "bytes": len(data)}])
            got = await self["xep_0060"].get_item(self.boundjid.bare, "urn:xmpp:avatar:data", avatar_id)
            self.avatar = got["pubsub"]["items"]["item"]["avatar_data"]["value"] == data
            # The contact's nick arrives as the last item once our caps are known.
            await asyncio.wait_for(self.got_nick.wait(), 15)
        except Exception as e:
            print("ERROR", repr(e))
        finally:
            self.disconnect()

bot = Bot()
for p in ["xep_0030", "xep_0060", "xep_0115", "xep_0163", "xep_0084", "xep_0172"]:
    bot.register_plugin(p)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
bot.ssl_context = ctx
bot.connect((host, int(port)), force_starttls=True)
asyncio.get_event_loop().run_until_complete(asyncio.wait_for(bot.disconnected, 40))
print("NICK", bot.nick)
print("AVATAR", bot.avatar)
"#;

/// slixmpp's PEP plugins as Bob: his avatar (XEP-0084) published and read back, Alice's nick
/// (XEP-0172) received through caps-based notification; our client reads Bob's avatar
/// metadata as his contact.
#[tokio::test]
async fn slixmpp_publishes_an_avatar_and_hears_a_contacts_nickname() {
    if !python::has("slixmpp", python::SLIXMPP) {
        return;
    }
    let mut s = story("pep_slix").await;
    // Mutual: Alice may read Bob's presence-model nodes too.
    approve(&mut s.b, &mut s.a, &s.bob, &s.alice).await;
    s.b.close().await;
    let r =
        s.a.iq("p", &publish("p", NICK, "current", &nick("Alice"), &[]))
            .await;
    assert!(is_result(&r), "{r:?}");
    let addr = s.srv.xmpp.tcp;
    let out = python::script(
        SLIXMPP_PEP,
        [
            s.bob.bare().to_string(),
            PASSWORD.to_string(),
            addr.ip().to_string(),
            addr.port().to_string(),
            s.alice.bare().to_string(),
        ],
    )
    .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("slixmpp finished")
        .expect("slixmpp output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let why = format!(
        "slixmpp:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("NICK Alice"), "{why}");
    assert!(stdout.contains("AVATAR True"), "{why}");
    let r =
        s.a.iq(
            "m",
            &items_query("m", &s.bob.bare(), "urn:xmpp:avatar:metadata", ""),
        )
        .await;
    let info = r
        .child("pubsub", PUBSUB)
        .and_then(|p| p.child("items", PUBSUB))
        .and_then(|i| i.child("item", PUBSUB))
        .and_then(|i| i.child("metadata", "urn:xmpp:avatar:metadata"))
        .and_then(|m| m.child("info", "urn:xmpp:avatar:metadata"))
        .and_then(|i| i.attr("type"));
    assert_eq!(info, Some("image/png"), "{r:?}");
    s.srv.stop().await;
}
