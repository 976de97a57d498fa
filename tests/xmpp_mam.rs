//! XEP-0313 message archives over the history REST serves, and XEP-0359 stanza ids: a user's
//! archive is their private dialogs as `GET /chat/Message` shows them, a room's is its dialog's
//! history for whoever may read it; filters, RSM paging both ways, `<fin/>`, the live
//! `<stanza-id/>` equal to the archive id, and slixmpp's MAM plugin reading an archive.

use parley::db::archive::{self, Filter, Scope};
use parley::model::UserId;
use parley::xmpp::stream::Element;
use serde_json::{json, Value};

use crate::common::python;
use crate::common::xmpp::{Client, Via};
use crate::common::{test_config, TestServer, PASSWORD};

const MAM: &str = "urn:xmpp:mam:2";
const RSM: &str = "http://jabber.org/protocol/rsm";
const SID: &str = "urn:xmpp:sid:0";
const FORWARD: &str = "urn:xmpp:forward:0";
const CLIENT: &str = "jabber:client";

/// A user: REST token, id, XMPP local part.
struct User {
    token: String,
    id: i64,
    local: String,
}

async fn user(srv: &TestServer, login: &str) -> User {
    let (token, id) = srv.user_token(login).await;
    User {
        token,
        id,
        local: srv.local(id),
    }
}

/// Stores a private message from `from` to `to` through REST, sent at `date_sent`.
async fn say(srv: &TestServer, from: &User, to: &User, text: &str, date_sent: i64) -> String {
    post(
        srv,
        from,
        json!({"recipient_id": to.id, "message": text, "date_sent": date_sent}),
    )
    .await
}

async fn post(srv: &TestServer, from: &User, body: Value) -> String {
    let r = srv
        .http
        .post_json("/chat/Message.json", Some(&from.token), body)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["_id"].as_str().unwrap().to_owned()
}

async fn login(srv: &TestServer, u: &User) -> Client {
    Client::login(srv.xmpp, Via::Tcp, &u.local, PASSWORD).await
}

/// The archive query `<iq type='set'>` with form fields and an RSM set (raw XML).
fn query(id: &str, to: Option<&str>, fields: &[(&str, &str)], rsm: &str) -> String {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    let fields: String = fields
        .iter()
        .map(|(var, v)| format!("<field var='{var}'><value>{v}</value></field>"))
        .collect();
    let form = format!(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>{fields}</x>"
    );
    let set = if rsm.is_empty() {
        String::new()
    } else {
        format!("<set xmlns='{RSM}'>{rsm}</set>")
    };
    format!("<iq type='set' id='{id}'{to}><query xmlns='{MAM}' queryid='q-{id}'>{form}{set}</query></iq>")
}

/// What one query brought back: the result messages, then the answer.
struct Answer {
    results: Vec<Element>,
    iq: Element,
}

impl Answer {
    fn ok(&self) -> &Element {
        assert_eq!(self.iq.attr("type"), Some("result"), "{:?}", self.iq);
        self.iq.child("fin", MAM).expect("fin")
    }

    fn error(&self) -> String {
        assert_eq!(self.iq.attr("type"), Some("error"), "{:?}", self.iq);
        let e = self.iq.child("error", CLIENT).expect("error");
        e.elements().next().map(|c| c.name.clone()).unwrap()
    }

    /// The archived messages' bodies, in the order received.
    fn bodies(&self) -> Vec<String> {
        self.results
            .iter()
            .map(|m| {
                inner(m)
                    .child("body", CLIENT)
                    .map(|b| b.text())
                    .unwrap_or_default()
            })
            .collect()
    }

    fn ids(&self) -> Vec<String> {
        self.results
            .iter()
            .map(|m| {
                m.child("result", MAM)
                    .unwrap()
                    .attr("id")
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    fn complete(&self) -> bool {
        self.ok().attr("complete") == Some("true")
    }

    fn set(&self) -> &Element {
        self.ok().child("set", RSM).expect("rsm set")
    }

    fn count(&self) -> Option<i64> {
        self.set()
            .child("count", RSM)
            .map(|c| c.text().parse().unwrap())
    }

    fn first_index(&self) -> Option<i64> {
        self.set()
            .child("first", RSM)
            .and_then(|f| f.attr("index"))
            .map(|i| i.parse().unwrap())
    }

    fn first(&self) -> Option<String> {
        self.set().child("first", RSM).map(|f| f.text())
    }

    fn last(&self) -> Option<String> {
        self.set().child("last", RSM).map(|f| f.text())
    }
}

fn inner(result_message: &Element) -> &Element {
    result_message
        .child("result", MAM)
        .and_then(|r| r.child("forwarded", FORWARD))
        .and_then(|f| f.child("message", CLIENT))
        .expect("forwarded message")
}

async fn ask(c: &mut Client, xml: &str) -> Answer {
    let id = xml
        .split("id='")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .unwrap()
        .to_owned();
    c.send_raw(xml).await;
    let mut results = Vec::new();
    loop {
        let e = c.next().await.expect("stream open");
        if e.name == "iq" && e.attr("id") == Some(id.as_str()) {
            return Answer { results, iq: e };
        }
        if e.name == "message" && e.child("result", MAM).is_some() {
            assert_eq!(
                e.child("result", MAM).unwrap().attr("queryid"),
                Some(format!("q-{id}").as_str())
            );
            results.push(e);
        }
    }
}

/// Alice with five messages to Bob (m1..m5, sent at 1010, 1020, … 1050, alternating sides),
/// plus one to Carol (at 1035, so it sits among them) and one in a group with both.
struct Story {
    srv: TestServer,
    alice: User,
    bob: User,
    carol: User,
    ids: Vec<String>,
    to_carol: String,
}

async fn story(prefix: &str) -> Story {
    story_with(TestServer::start().await, prefix).await
}

async fn story_with(srv: TestServer, prefix: &str) -> Story {
    let alice = user(&srv, &format!("{prefix}_alice")).await;
    let bob = user(&srv, &format!("{prefix}_bob")).await;
    let carol = user(&srv, &format!("{prefix}_carol")).await;
    let mut ids = Vec::new();
    for i in 1..=5 {
        let (from, to) = if i % 2 == 1 {
            (&alice, &bob)
        } else {
            (&bob, &alice)
        };
        ids.push(say(&srv, from, to, &format!("m{i}"), 1000 + 10 * i).await);
    }
    let to_carol = say(&srv, &alice, &carol, "to carol", 1035).await;
    let group = srv
        .dialog(
            &alice.token,
            json!({"type": 2, "name": "G", "occupants_ids": [bob.id, carol.id]}),
        )
        .await;
    post(
        &srv,
        &alice,
        json!({"chat_dialog_id": group["_id"], "message": "to the group", "date_sent": 1020}),
    )
    .await;
    Story {
        srv,
        alice,
        bob,
        carol,
        ids,
        to_carol,
    }
}

#[tokio::test]
async fn a_users_archive_is_their_private_dialogs_in_date_order() {
    let s = story("mam_all").await;
    let mut a = login(&s.srv, &s.alice).await;
    let r = ask(&mut a, &query("all", None, &[], "")).await;
    assert_eq!(r.bodies(), ["m1", "m2", "m3", "to carol", "m4", "m5"]);
    assert!(r.complete());
    assert_eq!(r.count(), Some(6));
    assert_eq!(r.first_index(), Some(0));
    assert_eq!(r.first().as_deref(), Some(s.ids[0].as_str()));
    assert_eq!(r.last().as_deref(), Some(s.ids[4].as_str()));
    s.srv.stop().await;
}

#[tokio::test]
async fn a_result_forwards_the_stored_message_as_live_delivery_encodes_it() {
    let s = story("mam_shape").await;
    let mut a = login(&s.srv, &s.alice).await;
    let r = ask(&mut a, &query("shape", None, &[], "<max>2</max>")).await;
    let own = format!("{}@localhost", s.alice.local);
    let bob = format!("{}@localhost", s.bob.local);
    let second = &r.results[1];
    assert_eq!(second.attr("from"), Some(own.as_str()));
    assert_eq!(second.attr("to"), Some(a.jid.as_str()));
    let result = second.child("result", MAM).unwrap();
    assert_eq!(result.attr("id"), Some(s.ids[1].as_str()));
    let fwd = result.child("forwarded", FORWARD).unwrap();
    assert_eq!(
        fwd.child("delay", "urn:xmpp:delay").unwrap().attr("stamp"),
        Some("1970-01-01T00:17:00Z")
    );
    let m = inner(second);
    assert_eq!(m.attr("type"), Some("chat"));
    assert_eq!(m.attr("from"), Some(bob.as_str()));
    assert_eq!(m.attr("to"), Some(own.as_str()));
    assert_eq!(m.attr("id"), Some(s.ids[1].as_str()));
    let x = m.child("extraParams", CLIENT).expect("extraParams");
    assert_eq!(
        x.child("message_id", CLIENT).map(|e| e.text()).as_deref(),
        Some(s.ids[1].as_str())
    );
    assert_eq!(
        x.child("date_sent", CLIENT).map(|e| e.text()).as_deref(),
        Some("1020")
    );
    assert_eq!(r.iq.attr("from"), Some(own.as_str()));
    s.srv.stop().await;
}

#[tokio::test]
async fn max_pages_forward_with_after_until_the_page_that_completes() {
    let s = story("mam_fwd").await;
    let mut a = login(&s.srv, &s.alice).await;
    let with = format!("{}@localhost", s.bob.local);
    let f = [("with", with.as_str())];
    let p1 = ask(&mut a, &query("p1", None, &f, "<max>2</max>")).await;
    assert_eq!(p1.bodies(), ["m1", "m2"]);
    assert!(!p1.complete());
    assert_eq!((p1.count(), p1.first_index()), (Some(5), Some(0)));
    let after = format!("<max>2</max><after>{}</after>", p1.last().unwrap());
    let p2 = ask(&mut a, &query("p2", None, &f, &after)).await;
    assert_eq!(p2.bodies(), ["m3", "m4"]);
    assert!(!p2.complete());
    assert_eq!(p2.first_index(), Some(2));
    let after = format!("<max>2</max><after>{}</after>", p2.last().unwrap());
    let p3 = ask(&mut a, &query("p3", None, &f, &after)).await;
    assert_eq!(p3.bodies(), ["m5"]);
    assert!(p3.complete());
    assert_eq!(p3.first_index(), Some(4));
    s.srv.stop().await;
}

#[tokio::test]
async fn a_page_read_backwards_is_counted_but_carries_no_first_index() {
    let s = story("mam_noindex").await;
    let mut a = login(&s.srv, &s.alice).await;
    let with = format!("{}@localhost", s.bob.local);
    let f = [("with", with.as_str())];
    let back = ask(&mut a, &query("n1", None, &f, "<max>2</max><before/>")).await;
    assert_eq!(back.bodies(), ["m4", "m5"]);
    assert_eq!(back.count(), Some(5));
    assert_eq!(
        back.first_index(),
        None,
        "slixmpp would stop after this page"
    );
    let fwd = ask(&mut a, &query("n2", None, &f, "<max>2</max>")).await;
    assert_eq!((fwd.count(), fwd.first_index()), (Some(5), Some(0)));
    s.srv.stop().await;
}

#[tokio::test]
async fn an_empty_before_is_the_last_page_and_before_pages_backwards() {
    let s = story("mam_back").await;
    let mut a = login(&s.srv, &s.alice).await;
    let with = format!("{}@localhost", s.bob.local);
    let f = [("with", with.as_str())];
    let p1 = ask(&mut a, &query("b1", None, &f, "<max>2</max><before/>")).await;
    assert_eq!(p1.bodies(), ["m4", "m5"], "a page is in archive order");
    assert!(!p1.complete());
    let before = format!("<max>2</max><before>{}</before>", p1.first().unwrap());
    let p2 = ask(&mut a, &query("b2", None, &f, &before)).await;
    assert_eq!(p2.bodies(), ["m2", "m3"]);
    assert!(!p2.complete());
    let before = format!("<max>2</max><before>{}</before>", p2.first().unwrap());
    let p3 = ask(&mut a, &query("b3", None, &f, &before)).await;
    assert_eq!(p3.bodies(), ["m1"]);
    assert!(p3.complete(), "nothing lies before the first message");
    s.srv.stop().await;
}

#[tokio::test]
async fn with_selects_the_private_dialog_with_that_user() {
    let s = story("mam_with").await;
    let mut a = login(&s.srv, &s.alice).await;
    let carol = format!("{}@localhost/phone", s.carol.local);
    let r = ask(&mut a, &query("w", None, &[("with", &carol)], "")).await;
    assert_eq!(r.bodies(), ["to carol"], "the resource is ignored");
    assert_eq!(r.ids(), std::slice::from_ref(&s.to_carol));
    s.srv.stop().await;
}

#[tokio::test]
async fn with_a_jid_that_names_no_user_here_matches_nothing() {
    let s = story("mam_nobody").await;
    let other = s.srv.other_app("mam_other").await;
    let (_, stranger) = s.srv.user_token_in(&other, "mam_stranger").await;
    let mut a = login(&s.srv, &s.alice).await;
    for (n, jid) in [
        format!("{stranger}-{}@localhost", other.id.0),
        "juliet@capulet.lit".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let r = ask(&mut a, &query(&format!("n{n}"), None, &[("with", jid)], "")).await;
        assert!(r.results.is_empty(), "{jid}");
        assert!(r.complete());
        assert_eq!(r.count(), Some(0));
    }
    s.srv.stop().await;
}

#[tokio::test]
async fn start_and_end_bound_date_sent_inclusively() {
    let s = story("mam_time").await;
    let mut a = login(&s.srv, &s.alice).await;
    let f = [
        ("start", "1970-01-01T00:17:00Z"),
        ("end", "1970-01-01T00:17:20Z"),
    ];
    let r = ask(&mut a, &query("t", None, &f, "")).await;
    assert_eq!(r.bodies(), ["m2", "m3", "to carol", "m4"]);
    assert_eq!(r.count(), Some(4));
    let bad = ask(&mut a, &query("t2", None, &[("start", "yesterday")], "")).await;
    assert_eq!(bad.error(), "bad-request");
    s.srv.stop().await;
}

#[tokio::test]
async fn after_id_and_before_id_bound_the_result_set() {
    let s = story("mam_ids").await;
    let mut a = login(&s.srv, &s.alice).await;
    let f = [
        ("after-id", s.ids[0].as_str()),
        ("before-id", s.ids[4].as_str()),
    ];
    let r = ask(&mut a, &query("ab", None, &f, "<max>2</max>")).await;
    assert_eq!(r.bodies(), ["m2", "m3"]);
    assert_eq!(r.count(), Some(4), "the bounds define the result set");
    assert_eq!(r.first_index(), Some(0));
    assert!(!r.complete());
    s.srv.stop().await;
}

#[tokio::test]
async fn ids_fetch_exactly_those_messages() {
    let s = story("mam_idlist").await;
    let mut a = login(&s.srv, &s.alice).await;
    let xml = query("ids", None, &[], "").replace(
        "</x>",
        &format!(
            "<field var='ids'><value>{}</value><value>{}</value></field></x>",
            s.ids[3], s.to_carol
        ),
    );
    let r = ask(&mut a, &xml).await;
    assert_eq!(r.bodies(), ["to carol", "m4"]);
    s.srv.stop().await;
}

#[tokio::test]
async fn a_cursor_that_is_not_in_the_archive_is_item_not_found() {
    let s = story("mam_cursor").await;
    let mut b = login(&s.srv, &s.bob).await;
    // Alice's message to Carol is not in Bob's archive.
    let after = format!("<after>{}</after>", s.to_carol);
    assert_eq!(
        ask(&mut b, &query("c1", None, &[], &after)).await.error(),
        "item-not-found"
    );
    let f = [("before-id", "not-an-id")];
    assert_eq!(
        ask(&mut b, &query("c2", None, &f, "")).await.error(),
        "item-not-found"
    );
    s.srv.stop().await;
}

#[tokio::test]
async fn what_the_user_deleted_for_themselves_or_cleared_is_not_in_their_archive() {
    let s = story("mam_hidden").await;
    let srv = &s.srv;
    let r = srv
        .http
        .delete(&format!("/chat/Message/{}", s.ids[1]), Some(&s.alice.token))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = srv
        .http
        .get("/chat/Dialog", Some(&s.alice.token))
        .await
        .json();
    let with_carol = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["last_message_id"] == s.to_carol.as_str())
        .unwrap()["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = srv
        .http
        .delete(
            &format!("/chat/Dialog/clearHistory/{with_carol}"),
            Some(&s.alice.token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut a = login(srv, &s.alice).await;
    assert_eq!(
        ask(&mut a, &query("h", None, &[], "")).await.bodies(),
        ["m1", "m3", "m4", "m5"]
    );
    // Bob still has his whole conversation.
    let mut b = login(srv, &s.bob).await;
    assert_eq!(
        ask(&mut b, &query("hb", None, &[], "")).await.bodies(),
        ["m1", "m2", "m3", "m4", "m5"]
    );
    s.srv.stop().await;
}

#[tokio::test]
async fn edits_show_the_edited_body_and_deletions_for_everyone_are_gone() {
    let s = story("mam_edit").await;
    let srv = &s.srv;
    let r = srv
        .http
        .put_json(
            &format!("/chat/Message/{}", s.ids[0]),
            Some(&s.alice.token),
            json!({"message": "m1 (edited)"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = srv
        .http
        .delete(
            &format!("/chat/Message/{}?force=1", s.ids[2]),
            Some(&s.alice.token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut b = login(srv, &s.bob).await;
    assert_eq!(
        ask(&mut b, &query("e", None, &[], "")).await.bodies(),
        ["m1 (edited)", "m2", "m4", "m5"]
    );
    s.srv.stop().await;
}

#[tokio::test]
async fn max_is_bounded_by_mam_max_page() {
    let mut cfg = test_config();
    cfg.xmpp.mam_max_page = 3;
    let s = story_with(TestServer::start_with(cfg).await, "mam_bound").await;
    let mut a = login(&s.srv, &s.alice).await;
    let r = ask(&mut a, &query("big", None, &[], "<max>50</max>")).await;
    assert_eq!(r.bodies(), ["m1", "m2", "m3"]);
    assert!(!r.complete());
    let r = ask(&mut a, &query("none", None, &[], "")).await;
    assert_eq!(r.results.len(), 3, "no max is the largest page");
    let r = ask(&mut a, &query("neg", None, &[], "<max>-1</max>")).await;
    assert_eq!(r.error(), "bad-request");
    s.srv.stop().await;
}

#[tokio::test]
async fn count_and_index_are_left_out_beyond_mam_count_max() {
    let mut cfg = test_config();
    cfg.xmpp.mam_count_max = 2;
    let s = story_with(TestServer::start_with(cfg).await, "mam_nocount").await;
    let mut a = login(&s.srv, &s.alice).await;
    let r = ask(&mut a, &query("nc", None, &[], "<max>2</max>")).await;
    assert_eq!(r.bodies(), ["m1", "m2"]);
    assert_eq!((r.count(), r.first_index()), (None, None));
    assert!(r.first().is_some() && r.last().is_some());
    s.srv.stop().await;
}

#[tokio::test]
async fn max_zero_answers_the_count_alone() {
    let s = story("mam_zero").await;
    let mut a = login(&s.srv, &s.alice).await;
    let r = ask(&mut a, &query("z", None, &[], "<max>0</max>")).await;
    assert!(r.results.is_empty());
    assert_eq!(r.count(), Some(6));
    assert!(!r.complete());
    s.srv.stop().await;
}

#[tokio::test]
async fn paging_by_index_and_unknown_fields_are_refused() {
    let s = story("mam_refuse").await;
    let mut a = login(&s.srv, &s.alice).await;
    let r = ask(&mut a, &query("i", None, &[], "<index>3</index>")).await;
    assert_eq!(r.error(), "feature-not-implemented");
    let r = ask(&mut a, &query("u", None, &[("full-text-search", "m")], "")).await;
    assert_eq!(r.error(), "bad-request");
    s.srv.stop().await;
}

#[tokio::test]
async fn another_users_archive_is_not_served() {
    let s = story("mam_other").await;
    let mut a = login(&s.srv, &s.alice).await;
    let bob = format!("{}@localhost", s.bob.local);
    let r = ask(&mut a, &query("o", Some(&bob), &[], "")).await;
    assert_eq!(r.error(), "service-unavailable");
    assert!(r.results.is_empty());
    s.srv.stop().await;
}

/// A group of Alice (owner), Bob and Carol with three stored messages: (room JID, message ids).
async fn room(s: &Story) -> (String, Vec<String>) {
    let d = s
        .srv
        .dialog(
            &s.alice.token,
            json!({"type": 2, "name": "R", "occupants_ids": [s.bob.id]}),
        )
        .await;
    let dialog = d["_id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for (i, who) in [&s.alice, &s.bob, &s.alice].into_iter().enumerate() {
        ids.push(
            post(
                &s.srv,
                who,
                json!({"chat_dialog_id": dialog, "message": format!("r{i}"), "date_sent": 2000 + i}),
            )
            .await,
        );
    }
    (format!("{}_{dialog}@muc.localhost", s.srv.app.id.0), ids)
}

#[tokio::test]
async fn a_room_archive_is_its_dialogs_history_for_its_members() {
    let s = story("mam_room").await;
    let (rjid, ids) = room(&s).await;
    let mut b = login(&s.srv, &s.bob).await;
    let r = ask(&mut b, &query("r", Some(&rjid), &[], "")).await;
    assert_eq!(r.bodies(), ["r0", "r1", "r2"]);
    assert_eq!(r.ids(), ids);
    assert_eq!(r.results[0].attr("from"), Some(rjid.as_str()));
    let m = inner(&r.results[1]);
    assert_eq!(m.attr("type"), Some("groupchat"));
    assert_eq!(
        m.attr("from"),
        Some(format!("{rjid}/{}", s.bob.id).as_str())
    );
    assert_eq!(r.count(), Some(3));
    let back = ask(
        &mut b,
        &query("rb", Some(&rjid), &[], "<max>1</max><before/>"),
    )
    .await;
    assert_eq!(back.bodies(), ["r2"]);
    s.srv.stop().await;
}

#[tokio::test]
async fn a_room_archive_is_item_not_found_to_who_may_not_read_it() {
    let s = story("mam_room_no").await;
    let (rjid, _) = room(&s).await;
    let mut c = login(&s.srv, &s.carol).await;
    let r = ask(&mut c, &query("rn", Some(&rjid), &[], "")).await;
    assert_eq!(r.error(), "item-not-found");
    assert!(r.results.is_empty());
    s.srv.stop().await;
}

#[tokio::test]
async fn with_on_a_room_archive_is_not_implemented() {
    let s = story("mam_room_with").await;
    let (rjid, _) = room(&s).await;
    let mut b = login(&s.srv, &s.bob).await;
    let alice = format!("{rjid}/{}", s.alice.id);
    let r = ask(&mut b, &query("rw", Some(&rjid), &[("with", &alice)], "")).await;
    assert_eq!(r.error(), "feature-not-implemented");
    s.srv.stop().await;
}

fn stanza_id<'a>(m: &'a Element, by: &str) -> Option<&'a str> {
    m.elements()
        .find(|e| e.is("stanza-id", SID) && e.attr("by") == Some(by))
        .and_then(|e| e.attr("id"))
}

fn stored_chat(to: &str, id: &str, body: &str, extra: &str) -> String {
    format!(
        "<message to='{to}' type='chat' id='{id}'><body>{body}</body>{extra}\
         <extraParams xmlns='jabber:client'><save_to_history>1</save_to_history></extraParams></message>"
    )
}

#[tokio::test]
async fn a_live_private_message_carries_the_id_the_archives_know_it_by() {
    let srv = TestServer::start().await;
    let alice = user(&srv, "sid_alice").await;
    let bob = user(&srv, "sid_bob").await;
    let mut a = login(&srv, &alice).await;
    let mut b = login(&srv, &bob).await;
    let bob_bare = format!("{}@localhost", bob.local);
    a.send_raw(&stored_chat(
        &bob_bare,
        "6b0809bbf5504c5e53000010",
        "hi",
        "",
    ))
    .await;
    let m = b.expect_named("message").await;
    let live = stanza_id(&m, &bob_bare)
        .expect("stanza-id by bob")
        .to_owned();
    assert_eq!(live, "6b0809bbf5504c5e53000010");
    assert_eq!(
        ask(&mut b, &query("s1", None, &[], "")).await.ids(),
        std::slice::from_ref(&live)
    );
    assert_eq!(ask(&mut a, &query("s2", None, &[], "")).await.ids(), [live]);
    srv.stop().await;
}

/// Alice sends Bob a `chat` and a type-less (`normal`) message as an ordinary XMPP client
/// does (no `extraParams`), and one ConnectyCube message without `save_to_history`; Bob gets
/// all three. What Alice's archive then holds.
async fn plain_client_archive(archive_plain_messages: bool) -> Vec<String> {
    let mut c = test_config();
    c.xmpp.archive_plain_messages = archive_plain_messages;
    let srv = TestServer::start_with(c).await;
    let alice = user(&srv, "plain_alice").await;
    let bob = user(&srv, "plain_bob").await;
    let mut a = login(&srv, &alice).await;
    let mut b = login(&srv, &bob).await;
    let bob_bare = format!("{}@localhost", bob.local);
    a.send_raw(&format!(
        "<message to='{bob_bare}' type='chat' id='p1'><body>plain chat</body></message>         <message to='{bob_bare}' id='p2'><body>plain normal</body></message>         <message to='{bob_bare}' type='chat' id='p3'><body>sdk unsaved</body>         <extraParams xmlns='jabber:client'><country>NL</country></extraParams></message>"
    ))
    .await;
    for body in ["plain chat", "plain normal", "sdk unsaved"] {
        b.expect(body, |e| {
            e.name == "message" && e.child("body", CLIENT).is_some_and(|x| x.text() == body)
        })
        .await;
    }
    let bodies = ask(&mut a, &query("pc", None, &[], "")).await.bodies();
    srv.stop().await;
    bodies
}

#[tokio::test]
async fn with_archive_plain_messages_an_ordinary_clients_chat_and_normal_messages_are_archived() {
    assert_eq!(
        plain_client_archive(true).await,
        ["plain chat", "plain normal"],
        "a ConnectyCube message still needs save_to_history"
    );
}

#[tokio::test]
async fn by_default_only_what_the_sender_asks_to_keep_is_archived() {
    assert!(plain_client_archive(false).await.is_empty());
}

#[tokio::test]
async fn a_live_room_message_carries_the_id_the_room_archive_knows_it_by() {
    let s = story("sid_room").await;
    let (rjid, _) = room(&s).await;
    let mut a = login(&s.srv, &s.alice).await;
    let mut b = login(&s.srv, &s.bob).await;
    a.send_raw(&format!(
        "<message to='{rjid}' type='groupchat' id='6b0809bbf5504c5e53000011'><body>live</body>\
         <extraParams xmlns='jabber:client'><save_to_history>1</save_to_history></extraParams></message>"
    ))
    .await;
    let m = b
        .expect("the room message", |e| {
            e.name == "message" && e.child("body", CLIENT).is_some_and(|b| b.text() == "live")
        })
        .await;
    let live = stanza_id(&m, &rjid)
        .expect("stanza-id by the room")
        .to_owned();
    let r = ask(
        &mut b,
        &query("sr", Some(&rjid), &[], "<max>1</max><before/>"),
    )
    .await;
    assert_eq!(r.ids(), [live]);
    s.srv.stop().await;
}

#[tokio::test]
async fn a_rest_message_reaches_the_recipient_with_its_archive_id() {
    let srv = TestServer::start().await;
    let alice = user(&srv, "sid_rest_alice").await;
    let bob = user(&srv, "sid_rest_bob").await;
    let mut b = login(&srv, &bob).await;
    let id = post(
        &srv,
        &alice,
        json!({"recipient_id": bob.id, "message": "from rest", "send_to_chat": 1}),
    )
    .await;
    let m = b.expect_named("message").await;
    let bob_bare = format!("{}@localhost", bob.local);
    assert_eq!(stanza_id(&m, &bob_bare), Some(id.as_str()));
    srv.stop().await;
}

#[tokio::test]
async fn a_client_stanza_id_claiming_this_server_is_removed() {
    let srv = TestServer::start().await;
    let alice = user(&srv, "sid_spoof_alice").await;
    let bob = user(&srv, "sid_spoof_bob").await;
    let mut a = login(&srv, &alice).await;
    let mut b = login(&srv, &bob).await;
    let bob_bare = format!("{}@localhost", bob.local);
    let spoof = format!(
        "<stanza-id xmlns='{SID}' id='forged' by='{bob_bare}'/>\
         <stanza-id xmlns='{SID}' id='theirs' by='juliet@capulet.lit'/>"
    );
    // Not stored: the forged id goes, a foreign archive's stays.
    a.send_raw(&format!(
        "<message to='{bob_bare}' type='chat' id='x'><body>plain</body>{spoof}</message>"
    ))
    .await;
    let m = b.expect_named("message").await;
    assert_eq!(stanza_id(&m, &bob_bare), None);
    assert_eq!(stanza_id(&m, "juliet@capulet.lit"), Some("theirs"));
    // Stored: only the real id.
    a.send_raw(&stored_chat(
        &bob_bare,
        "6b0809bbf5504c5e53000012",
        "kept",
        &spoof,
    ))
    .await;
    let m = b.expect_named("message").await;
    let ours: Vec<_> = m
        .elements()
        .filter(|e| e.is("stanza-id", SID) && e.attr("by") == Some(bob_bare.as_str()))
        .collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].attr("id"), Some("6b0809bbf5504c5e53000012"));
    srv.stop().await;
}

#[tokio::test]
async fn the_account_and_rooms_advertise_mam_and_preferences_say_always() {
    let s = story("mam_disco").await;
    let (rjid, _) = room(&s).await;
    let mut a = login(&s.srv, &s.alice).await;
    let features = |iq: &Element| -> Vec<String> {
        iq.child("query", "http://jabber.org/protocol/disco#info")
            .unwrap()
            .elements()
            .filter_map(|f| f.attr("var").map(str::to_owned))
            .collect()
    };
    let disco = "<query xmlns='http://jabber.org/protocol/disco#info'/>";
    let own = a
        .iq("d1", &format!("<iq type='get' id='d1'>{disco}</iq>"))
        .await;
    assert!(features(&own).iter().any(|f| f == MAM), "{own:?}");
    assert!(features(&own)
        .iter()
        .any(|f| f == "urn:xmpp:mam:2#extended"));
    let server = a
        .iq(
            "d2",
            &format!("<iq type='get' id='d2' to='localhost'>{disco}</iq>"),
        )
        .await;
    assert!(
        !features(&server).iter().any(|f| f == MAM),
        "the server keeps no archive"
    );
    let r = a
        .iq(
            "d3",
            &format!("<iq type='get' id='d3' to='{rjid}'>{disco}</iq>"),
        )
        .await;
    assert!(features(&r).iter().any(|f| f == MAM), "{r:?}");
    for (id, kind, payload) in [
        ("p1", "get", format!("<prefs xmlns='{MAM}'/>")),
        (
            "p2",
            "set",
            format!("<prefs xmlns='{MAM}' default='never'><always/><never/></prefs>"),
        ),
    ] {
        let p = a
            .iq(id, &format!("<iq type='{kind}' id='{id}'>{payload}</iq>"))
            .await;
        let prefs = p.child("prefs", MAM).expect("prefs");
        assert_eq!(prefs.attr("default"), Some("always"), "{p:?}");
    }
    s.srv.stop().await;
}

#[tokio::test]
async fn the_query_form_and_the_metadata_describe_the_archive() {
    let s = story("mam_form").await;
    let mut a = login(&s.srv, &s.alice).await;
    let f = a
        .iq(
            "f",
            &format!("<iq type='get' id='f'><query xmlns='{MAM}'/></iq>"),
        )
        .await;
    let vars: Vec<_> = f
        .child("query", MAM)
        .and_then(|q| q.child("x", "jabber:x:data"))
        .unwrap()
        .elements()
        .filter_map(|e| e.attr("var").map(str::to_owned))
        .collect();
    for v in [
        "FORM_TYPE",
        "with",
        "start",
        "end",
        "after-id",
        "before-id",
        "ids",
    ] {
        assert!(vars.iter().any(|x| x == v), "{v} in {vars:?}");
    }
    let md = a
        .iq(
            "md",
            &format!("<iq type='get' id='md'><metadata xmlns='{MAM}'/></iq>"),
        )
        .await;
    let md = md.child("metadata", MAM).expect("metadata");
    assert_eq!(
        md.child("start", MAM).and_then(|e| e.attr("id")),
        Some(s.ids[0].as_str())
    );
    assert_eq!(
        md.child("end", MAM).and_then(|e| e.attr("id")),
        Some(s.ids[4].as_str())
    );
    s.srv.stop().await;
}

/// Bulk history in the private dialog of `alice` and `bob` (`ours` more messages, alternating
/// senders) and `others` messages between two other users, then fresh planner statistics.
async fn bulk_history(srv: &TestServer, alice: &User, bob: &User, ours: i64, others: i64) {
    let c = srv.pool.get().await.unwrap();
    c.batch_execute(&format!(
        "INSERT INTO messages (id, application_id, dialog_id, seq, sender_id, recipient_id, body, date_sent, created_at, updated_at)
         SELECT lpad(to_hex(1000000 + i), 24, '0'), d.application_id, d.id, 1 + i,
                CASE WHEN i % 2 = 0 THEN {a} ELSE {b} END, CASE WHEN i % 2 = 0 THEN {b} ELSE {a} END,
                'x', 10 + i, now(), now()
         FROM dialogs d, generate_series(1, {ours}) i WHERE d.type = 3;
         INSERT INTO messages (id, application_id, dialog_id, seq, sender_id, recipient_id, body, date_sent, created_at, updated_at)
         SELECT lpad(to_hex(2000000 + i), 24, '0'), d.application_id, d.id, 30000 + i, 7, 8, 'y', 10 + i, now(), now()
         FROM dialogs d, generate_series(1, {others}) i WHERE d.type = 3;
         ANALYZE messages; ANALYZE dialog_members;",
        a = alice.id,
        b = bob.id
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn a_page_of_a_users_archive_reads_two_indexes_in_order_without_sorting_it() {
    let srv = TestServer::start().await;
    let alice = user(&srv, "plan_alice").await;
    let bob = user(&srv, "plan_bob").await;
    say(&srv, &alice, &bob, "seed", 1).await;
    // Enough history that a scan would cost something: 20,000 more messages in that dialog
    // and 20,000 between other users.
    bulk_history(&srv, &alice, &bob, 20_000, 20_000).await;
    let mut c = srv.pool.get().await.unwrap();
    let tx = c.transaction().await.unwrap();
    let plan = archive::explain_page(
        &tx,
        Scope::User(UserId(alice.id)),
        &Filter::default(),
        true,
        101,
    )
    .await
    .unwrap();
    assert!(plan.contains("Merge Append"), "{plan}");
    assert!(plan.contains("messages_archive_sender"), "{plan}");
    assert!(plan.contains("messages_archive_recipient"), "{plan}");
    assert!(!plan.contains("Seq Scan on messages"), "{plan}");
    assert!(
        !plan.contains("Sort  (cost"),
        "no sort of the archive: {plan}"
    );
    // And the archive still reads right through the query.
    let mut a = login(&srv, &alice).await;
    let r = ask(&mut a, &query("plan", None, &[], "<max>2</max><before/>")).await;
    assert_eq!(r.results.len(), 2);
    srv.stop().await;
}

#[tokio::test]
async fn counting_a_large_archive_walks_its_indexes_and_never_scans_the_table() {
    let srv = TestServer::start().await;
    let alice = user(&srv, "count_plan_alice").await;
    let bob = user(&srv, "count_plan_bob").await;
    say(&srv, &alice, &bob, "seed", 1).await;
    // Alice's 5,000 messages among 20,000 of other users: with a bare `LIMIT`, PostgreSQL
    // may count by scanning the table from the start.
    bulk_history(&srv, &alice, &bob, 5_000, 20_000).await;
    let mut c = srv.pool.get().await.unwrap();
    let tx = c.transaction().await.unwrap();
    let (bound, exact) =
        archive::explain_count(&tx, Scope::User(UserId(alice.id)), &Filter::default(), 1000)
            .await
            .unwrap();
    for plan in [&bound, &exact] {
        assert!(plan.contains("messages_archive_sender"), "{plan}");
        assert!(plan.contains("messages_archive_recipient"), "{plan}");
        assert!(!plan.contains("Seq Scan on messages"), "{plan}");
    }
    // The bound settles it: more than the cap, so no count, whatever the exact figure.
    let counted = archive::count(
        &tx,
        Scope::User(UserId(alice.id)),
        &Filter::default(),
        None,
        1000,
    )
    .await
    .unwrap();
    assert_eq!(counted, None);
    let counted = archive::count(
        &tx,
        Scope::User(UserId(alice.id)),
        &Filter::default(),
        None,
        10_000,
    )
    .await
    .unwrap();
    assert_eq!(counted, Some((5001, 0)));
    srv.stop().await;
}

const SLIXMPP_MAM: &str = r#"
import asyncio, ssl, sys, logging
import slixmpp

jid, password, host, port, peer = sys.argv[1:6]

class Bot(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(jid, password)
        self.bodies = []
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("failed_auth", lambda e: self.disconnect())

    async def start(self, event):
        try:
            async for msg in self.plugin["xep_0313"].iterate(with_jid=slixmpp.JID(peer), rsm={"max": 2}):
                self.bodies.append(msg["mam_result"]["forwarded"]["stanza"]["body"])
        finally:
            self.disconnect()

bot = Bot()
for p in ["xep_0030", "xep_0059", "xep_0297", "xep_0313"]:
    bot.register_plugin(p)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
bot.ssl_context = ctx
bot.connect((host, int(port)), force_starttls=True)
asyncio.get_event_loop().run_until_complete(asyncio.wait_for(bot.disconnected, 30))
print("BODIES " + "|".join(bot.bodies))
"#;

#[tokio::test]
async fn slixmpp_pages_through_an_archive_with_its_mam_plugin() {
    if !python::has("slixmpp", python::SLIXMPP) {
        return;
    }
    let s = story("mam_slix").await;
    let addr = s.srv.xmpp.tcp;
    let out = python::script(
        SLIXMPP_MAM,
        [
            format!("{}@localhost", s.alice.local),
            PASSWORD.to_string(),
            addr.ip().to_string(),
            addr.port().to_string(),
            format!("{}@localhost", s.bob.local),
        ],
    )
    .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
        .await
        .expect("slixmpp finished")
        .expect("slixmpp output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("BODIES m1|m2|m3|m4|m5"),
        "slixmpp read:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.srv.stop().await;
}
