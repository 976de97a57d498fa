//! Tenants never cross: every path from a user of application A towards a user, dialog or room
//! of application B, over real sockets (XMPP and REST), is refused as if B's users did not
//! exist, and nothing of A's reaches B or is stored for B. Each test ends by checking that the
//! server still serves.

use std::time::Duration;

use parley::model::Application;
use parley::xmpp::stream::Element;
use serde_json::{json, Value};

use crate::common::xmpp::{Client, Via};
use crate::common::{TestServer, PASSWORD};

/// Application 1 (the test server's) with Alice and Bob; application 2 with Carol.
struct Two {
    srv: TestServer,
    app2: Application,
    alice: (String, i64),
    bob: (String, i64),
    carol: (String, i64),
}

async fn two(tag: &str) -> Two {
    let srv = TestServer::start().await;
    let app2 = srv.other_app("second").await;
    let alice = srv.user_token(&format!("alice_{tag}")).await;
    let bob = srv.user_token(&format!("bob_{tag}")).await;
    let carol = srv.user_token_in(&app2, &format!("carol_{tag}")).await;
    Two {
        srv,
        app2,
        alice,
        bob,
        carol,
    }
}

impl Two {
    fn local1(&self, id: i64) -> String {
        self.srv.local(id)
    }
    fn local2(&self, id: i64) -> String {
        format!("{id}-{}", self.app2.id.0)
    }
    /// Carol's JID (application 2).
    fn carol_jid(&self) -> String {
        format!("{}@localhost", self.local2(self.carol.1))
    }
    async fn alice(&self) -> Client {
        Client::login(
            self.srv.xmpp,
            Via::Tcp,
            &self.local1(self.alice.1),
            PASSWORD,
        )
        .await
    }
    async fn carol(&self) -> Client {
        let mut c = Client::login_as(
            self.srv.xmpp,
            Via::Tcp,
            &self.local2(self.carol.1),
            PASSWORD,
            Some("r"),
        )
        .await;
        c.available().await;
        c
    }
    async fn sql_count(&self, sql: &str, id: i64) -> i64 {
        let c = self.srv.pool.get().await.unwrap();
        c.query_one(sql, &[&id]).await.unwrap().get(0)
    }
    async fn done(self) {
        self.srv.assert_serving().await;
        self.srv.stop().await;
    }
}

/// The stanza error condition of an error answer.
fn condition(e: &Element) -> Option<String> {
    assert_eq!(e.attr("type"), Some("error"), "{e:?}");
    e.elements()
        .find(|c| c.name == "error")?
        .elements()
        .find(|c| c.ns == "urn:ietf:params:xml:ns:xmpp-stanzas")
        .map(|c| c.name.clone())
}

/// Nothing reaches `c` (after `sender` has had a ping answered, so what it sent is handled).
async fn nothing_arrives(sender: &mut Client, c: &mut Client) {
    sender
        .iq(
            "sync",
            "<iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
    c.patience = Duration::from_millis(400);
    if let Some(e) = c.try_next().await {
        panic!("another application's user received {e:?}");
    }
}

#[tokio::test]
async fn a_session_token_does_not_log_in_as_the_same_user_id_in_another_application() {
    let t = two("tok").await;
    let mut c = Client::connect(t.srv.xmpp, Via::Tcp).await;
    c.open().await;
    let foreign = t.local2(t.alice.1);
    assert_eq!(c.auth(&foreign, &t.alice.0).await, "not-authorized");
    // The same token still opens Alice's own JID.
    assert_eq!(c.auth(&t.local1(t.alice.1), &t.alice.0).await, "success");
    t.done().await;
}

#[tokio::test]
async fn a_password_does_not_log_in_as_the_same_user_id_in_another_application() {
    let t = two("pw").await;
    let mut c = Client::connect(t.srv.xmpp, Via::Tcp).await;
    c.open().await;
    assert_eq!(
        c.auth(&t.local2(t.alice.1), PASSWORD).await,
        "not-authorized"
    );
    assert_eq!(
        c.auth(&t.local1(t.carol.1), PASSWORD).await,
        "not-authorized"
    );
    t.done().await;
}

#[tokio::test]
async fn a_chat_message_to_another_applications_user_is_bounced_and_not_delivered() {
    let t = two("msg").await;
    let mut carol = t.carol().await;
    let mut a = t.alice().await;
    let to = t.carol_jid();
    a.send_raw(&format!(
        "<message to='{to}' type='chat' id='x1'><body>hello</body></message>"
    ))
    .await;
    let e = a
        .expect("the bounce", |e| {
            e.name == "message" && e.attr("id") == Some("x1")
        })
        .await;
    assert_eq!(condition(&e).as_deref(), Some("service-unavailable"));
    nothing_arrives(&mut a, &mut carol).await;
    t.done().await;
}

#[tokio::test]
async fn a_chat_message_to_another_applications_offline_user_is_not_stored() {
    let t = two("off").await;
    let mut a = t.alice().await;
    let to = t.carol_jid();
    let to_full = format!("{to}/r");
    for (id, jid) in [("o1", &to), ("o2", &to_full)] {
        a.send_raw(&format!(
            "<message to='{jid}' type='chat' id='{id}'><body>kept?</body>\
             <extraParams xmlns='jabber:client'><save_to_history>1</save_to_history></extraParams>\
             </message>"
        ))
        .await;
        let e = a
            .expect("the bounce", |e| {
                e.name == "message" && e.attr("id") == Some(id)
            })
            .await;
        assert_eq!(condition(&e).as_deref(), Some("service-unavailable"));
    }
    let stored = t
        .sql_count(
            "SELECT count(*) FROM xmpp_offline WHERE user_id = $1",
            t.carol.1,
        )
        .await;
    assert_eq!(stored, 0, "nothing kept for another application's user");
    let dialogs = t
        .sql_count(
            "SELECT count(*) FROM dialog_members WHERE user_id = $1",
            t.carol.1,
        )
        .await;
    assert_eq!(
        dialogs, 0,
        "no dialog created with another application's user"
    );
    t.done().await;
}

#[tokio::test]
async fn directed_presence_to_another_applications_user_is_not_delivered() {
    let t = two("pres").await;
    let mut carol = t.carol().await;
    let mut a = t.alice().await;
    a.available().await;
    let to = t.carol_jid();
    a.send_raw(&format!("<presence to='{to}' id='p1'/>")).await;
    a.send_raw(&format!("<presence to='{to}/r' id='p2'/>"))
        .await;
    for id in ["p1", "p2"] {
        let e = a
            .expect("the refusal", |e| {
                e.name == "presence" && e.attr("id") == Some(id)
            })
            .await;
        assert_eq!(condition(&e).as_deref(), Some("service-unavailable"));
    }
    nothing_arrives(&mut a, &mut carol).await;
    t.done().await;
}

#[tokio::test]
async fn a_subscription_request_to_another_applications_user_touches_no_roster_and_is_not_delivered(
) {
    let t = two("sub").await;
    let mut carol = t.carol().await;
    let mut a = t.alice().await;
    let to = t.carol_jid();
    for kind in ["subscribe", "subscribed"] {
        a.send_raw(&format!("<presence to='{to}' type='{kind}' id='{kind}'/>"))
            .await;
        let e = a
            .expect("the refusal", |e| {
                e.name == "presence" && e.attr("id") == Some(kind)
            })
            .await;
        assert_eq!(condition(&e).as_deref(), Some("service-unavailable"));
    }
    nothing_arrives(&mut a, &mut carol).await;
    let rows = t
        .sql_count(
            "SELECT count(*) FROM xmpp_roster WHERE user_id = $1",
            t.alice.1,
        )
        .await
        + t.sql_count(
            "SELECT count(*) FROM xmpp_roster WHERE user_id = $1",
            t.carol.1,
        )
        .await;
    assert_eq!(rows, 0);
    t.done().await;
}

#[tokio::test]
async fn an_iq_to_another_applications_user_is_answered_service_unavailable() {
    let t = two("iq").await;
    let mut carol = t.carol().await;
    let mut a = t.alice().await;
    let to = t.carol_jid();
    for (id, jid) in [("i1", to.clone()), ("i2", format!("{to}/r"))] {
        let r = a
            .iq(
                id,
                &format!(
                    "<iq type='get' id='{id}' to='{jid}'><query xmlns='jabber:iq:version'/></iq>"
                ),
            )
            .await;
        assert_eq!(condition(&r).as_deref(), Some("service-unavailable"));
    }
    // A forged result to Carol's full JID is dropped too.
    a.send_raw(&format!(
        "<iq type='result' id='forged' to='{to}/r'><query xmlns='jabber:iq:roster'/></iq>"
    ))
    .await;
    nothing_arrives(&mut a, &mut carol).await;
    t.done().await;
}

#[tokio::test]
async fn joining_a_room_of_another_application_is_item_not_found() {
    let t = two("room").await;
    let d = t
        .srv
        .dialog(&t.carol.0, json!({"type": 4, "name": "app two room"}))
        .await;
    let dialog = d["_id"].as_str().unwrap();
    let mut a = t.alice().await;
    let room = format!("{}_{dialog}@muc.localhost", t.app2.id.0);
    a.send_raw(&format!(
        "<presence to='{room}/{}' id='j1'><x xmlns='http://jabber.org/protocol/muc'/></presence>",
        t.alice.1
    ))
    .await;
    let e = a
        .expect("the refusal", |e| {
            e.name == "presence" && e.attr("id") == Some("j1")
        })
        .await;
    assert_eq!(condition(&e).as_deref(), Some("item-not-found"));
    // Nor may Alice post into it.
    a.send_raw(&format!(
        "<message to='{room}' type='groupchat' id='g1'><body>in?</body></message>"
    ))
    .await;
    let e = a
        .expect("the refusal", |e| {
            e.name == "message" && e.attr("id") == Some("g1")
        })
        .await;
    assert_eq!(condition(&e).as_deref(), Some("item-not-found"));
    t.done().await;
}

#[tokio::test]
async fn last_activity_of_another_applications_user_is_not_revealed() {
    let t = two("last").await;
    let _carol = t.carol().await;
    let mut a = t.alice().await;
    let r = a
        .iq(
            "l1",
            &format!(
                "<iq type='get' id='l1' to='{}'><query xmlns='jabber:iq:last'/></iq>",
                t.carol_jid()
            ),
        )
        .await;
    assert_eq!(condition(&r).as_deref(), Some("service-unavailable"));
    let seconds = r
        .child("query", "jabber:iq:last")
        .and_then(|q| q.attr("seconds"));
    assert_eq!(
        seconds, None,
        "no activity figure for another application's user"
    );
    t.done().await;
}

#[tokio::test]
async fn status_streaming_of_another_applications_user_is_refused_and_pushes_nothing() {
    let t = two("stream").await;
    let mut a = t.alice().await;
    let r = a
        .iq(
            "s1",
            &format!(
                "<iq type='set' id='s1'><subscribe xmlns='https://connectycube.com/protocol/status_streaming' \
                 user_jid='{}' enable='true'/></iq>",
                t.carol_jid()
            ),
        )
        .await;
    assert_eq!(condition(&r).as_deref(), Some("bad-request"));
    // Carol comes online: Alice hears nothing of it.
    let mut carol = t.carol().await;
    nothing_arrives(&mut carol, &mut a).await;
    t.done().await;
}

#[tokio::test]
async fn a_roster_item_naming_another_applications_user_is_refused() {
    let t = two("roster").await;
    let mut a = t.alice().await;
    let r = a
        .iq(
            "r1",
            &format!(
                "<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='{}'/></query></iq>",
                t.carol_jid()
            ),
        )
        .await;
    assert_eq!(condition(&r).as_deref(), Some("item-not-found"));
    let rows = t
        .sql_count(
            "SELECT count(*) FROM xmpp_roster WHERE user_id = $1",
            t.alice.1,
        )
        .await;
    assert_eq!(rows, 0);
    t.done().await;
}

#[tokio::test]
async fn privacy_and_block_items_naming_another_applications_users_are_harmless() {
    let t = two("block").await;
    let mut a = t.alice().await;
    a.available().await;
    let foreign = t.carol_jid();
    let r = a
        .iq(
            "b1",
            &format!(
                "<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='{foreign}'/></block></iq>"
            ),
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let r = a
        .iq(
            "p1",
            &format!(
                "<iq type='set' id='p1'><query xmlns='jabber:iq:privacy'><list name='l'>\
                 <item type='jid' value='{foreign}' action='deny' order='1'/></list></query></iq>"
            ),
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    // Bob, of Alice's own application, still reaches her.
    let mut b = Client::login(t.srv.xmpp, Via::Tcp, &t.local1(t.bob.1), PASSWORD).await;
    let alice = format!("{}@localhost", t.local1(t.alice.1));
    b.send_raw(&format!(
        "<message to='{alice}' type='chat' id='h1'><body>hi</body></message>"
    ))
    .await;
    let m = a.expect_named("message").await;
    assert_eq!(m.attr("id"), Some("h1"));
    t.done().await;
}

// ---- REST: a token of application 1 with ids of application 2 ----

#[tokio::test]
async fn rest_get_user_of_another_application_is_not_found() {
    let t = two("ruser").await;
    let r = t
        .srv
        .http
        .get(&format!("/users/{}", t.carol.1), Some(&t.alice.0))
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    t.done().await;
}

#[tokio::test]
async fn rest_a_dialog_of_another_application_is_not_found_to_read_list_or_update() {
    let t = two("rdlg").await;
    let d = t
        .srv
        .dialog(&t.carol.0, json!({"type": 4, "name": "private to app two"}))
        .await;
    let id = d["_id"].as_str().unwrap();
    let path = format!("/chat/Dialog/{id}");
    for read in [
        format!("/chat/Dialog/{id}/occupants"),
        format!("/chat/Message?chat_dialog_id={id}"),
    ] {
        let r = t.srv.http.get(&read, Some(&t.alice.0)).await;
        assert_eq!(r.status, 404, "{read}: {}", r.body);
    }
    let r = t
        .srv
        .http
        .get(&format!("/chat/Dialog?_id={id}"), Some(&t.alice.0))
        .await;
    assert_eq!(
        r.json()["items"].as_array().map(Vec::len),
        Some(0),
        "{}",
        r.body
    );
    let r = t
        .srv
        .http
        .put_json(
            &path,
            Some(&t.alice.0),
            json!({"name": "taken over", "push_all": {"occupants_ids": [t.alice.1]}}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let theirs = t
        .srv
        .http
        .get(&format!("/chat/Dialog?_id={id}"), Some(&t.carol.0))
        .await;
    assert_eq!(theirs.json()["items"][0]["name"], "private to app two");
    t.done().await;
}

#[tokio::test]
async fn rest_a_message_to_a_recipient_of_another_application_is_refused() {
    let t = two("rmsg").await;
    let r = t
        .srv
        .http
        .post_json(
            "/chat/Message",
            Some(&t.alice.0),
            json!({"recipient_id": t.carol.1, "message": "hello app two", "send_to_chat": 1}),
        )
        .await;
    assert!(
        r.status == 404 || r.status == 422,
        "{} {}",
        r.status,
        r.body
    );
    let r = t
        .srv
        .http
        .post_json(
            "/chat/Message/system",
            Some(&t.alice.0),
            json!({"recipientId": t.carol.1, "message": "sys"}),
        )
        .await;
    assert!(
        r.status == 404 || r.status == 422,
        "{} {}",
        r.status,
        r.body
    );
    let stored = t
        .sql_count(
            "SELECT count(*) FROM dialog_members WHERE user_id = $1",
            t.carol.1,
        )
        .await;
    assert_eq!(stored, 0);
    t.done().await;
}

#[tokio::test]
async fn rest_occupants_of_another_application_are_refused_on_create_and_update() {
    let t = two("rocc").await;
    let r = t
        .srv
        .http
        .post_json(
            "/chat/Dialog",
            Some(&t.alice.0),
            json!({"type": 2, "name": "mixed", "occupants_ids": [t.bob.1, t.carol.1]}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = t
        .srv
        .http
        .post_json(
            "/chat/Dialog",
            Some(&t.alice.0),
            json!({"type": 3, "occupants_ids": [t.carol.1]}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let d: Value = t
        .srv
        .dialog(
            &t.alice.0,
            json!({"type": 2, "name": "ours", "occupants_ids": [t.bob.1]}),
        )
        .await;
    let r = t
        .srv
        .http
        .put_json(
            &format!("/chat/Dialog/{}", d["_id"].as_str().unwrap()),
            Some(&t.alice.0),
            json!({"push_all": {"occupants_ids": [t.carol.1]}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let rows = t
        .sql_count(
            "SELECT count(*) FROM dialog_members WHERE user_id = $1",
            t.carol.1,
        )
        .await;
    assert_eq!(rows, 0);
    t.done().await;
}
