//! REST → XMPP fan-out and XMPP → history for 1:1 markers, edits and deletes: two- and
//! three-actor stories over real sockets. Each change is delivered exactly once.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::xmpp::{Client, Via};
use crate::common::{TestServer, PASSWORD};

const MARKERS: &str = "urn:xmpp:chat-markers:0";

fn extra(m: &parley::xmpp::stream::Element, name: &str) -> Option<String> {
    m.child("extraParams", "jabber:client")?
        .child(name, "jabber:client")
        .map(|e| e.text())
}

/// Nothing more arrives within a short while (so a relayed change came exactly once).
async fn quiet(c: &mut Client) {
    c.patience = Duration::from_millis(300);
    let got = c.try_next().await;
    assert!(got.is_none(), "unexpected stanza: {got:?}");
    c.patience = Duration::from_secs(10);
}

struct Two {
    srv: TestServer,
    a_token: String,
    b_token: String,
    a_id: i64,
    b_id: i64,
    a: Client,
    b: Client,
    dialog: String,
}

/// Alice and Bob online over XMPP with a private dialog between them.
async fn two(prefix: &str) -> Two {
    let srv = TestServer::start().await;
    let (a_token, a_id) = srv.user_token(&format!("{prefix}_alice")).await;
    let (b_token, b_id) = srv.user_token(&format!("{prefix}_bob")).await;
    let a = Client::login(srv.xmpp, Via::Tcp, &srv.local(a_id), PASSWORD).await;
    let b = Client::login(srv.xmpp, Via::Ws, &srv.local(b_id), PASSWORD).await;
    let d = srv
        .dialog(&a_token, json!({"type": 3, "occupants_ids": [b_id]}))
        .await;
    let dialog = d["_id"].as_str().unwrap().to_string();
    Two {
        srv,
        a_token,
        b_token,
        a_id,
        b_id,
        a,
        b,
        dialog,
    }
}

async fn rest_message(t: &Two, token: &str, body: Value) -> Value {
    let r = t
        .srv
        .http
        .post_json("/chat/Message", Some(token), body)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

#[tokio::test]
async fn rest_send_to_chat_reaches_the_connected_recipient() {
    let mut t = two("stc").await;
    let m = rest_message(
        &t,
        &t.a_token.clone(),
        json!({"chat_dialog_id": t.dialog, "message": "via rest", "send_to_chat": 1, "mood": "ok"}),
    )
    .await;
    let got = t.b.expect_named("message").await;
    assert_eq!(got.attr("type"), Some("chat"));
    assert_eq!(
        got.attr("from"),
        Some(format!("{}@localhost", t.srv.local(t.a_id)).as_str())
    );
    assert_eq!(got.attr("id"), m["_id"].as_str());
    assert_eq!(
        got.child("body", "jabber:client").unwrap().text(),
        "via rest"
    );
    assert_eq!(extra(&got, "dialog_id").as_deref(), Some(t.dialog.as_str()));
    assert_eq!(extra(&got, "mood").as_deref(), Some("ok"));
    quiet(&mut t.b).await;
}

#[tokio::test]
async fn rest_message_without_send_to_chat_stays_in_history_only() {
    let mut t = two("nostc").await;
    rest_message(
        &t,
        &t.a_token.clone(),
        json!({"chat_dialog_id": t.dialog, "message": "quiet"}),
    )
    .await;
    quiet(&mut t.b).await;
}

#[tokio::test]
async fn rest_group_message_reaches_every_online_occupant_and_is_reflected() {
    let srv = TestServer::start().await;
    let u = srv.users("grp", 3).await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &srv.local(u[0].1), PASSWORD).await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &srv.local(u[1].1), PASSWORD).await;
    let d = srv
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": [u[1].1, u[2].1]}),
        )
        .await;
    let dialog = d["_id"].as_str().unwrap();
    let r = srv
        .http
        .post_json(
            "/chat/Message",
            Some(&u[0].0),
            json!({"chat_dialog_id": dialog, "message": "hello all", "send_to_chat": 1}),
        )
        .await;
    assert_eq!(r.status, 201);
    let room_from = format!("{}_{dialog}@muc.localhost/{}", srv.app.id.0, u[0].1);
    for c in [&mut b, &mut a] {
        let m = c.expect_named("message").await;
        assert_eq!(m.attr("type"), Some("groupchat"));
        assert_eq!(m.attr("from"), Some(room_from.as_str()));
        assert_eq!(
            m.child("body", "jabber:client").unwrap().text(),
            "hello all"
        );
    }
}

#[tokio::test]
async fn a_forced_rest_delete_reaches_the_connected_occupant() {
    let mut t = two("del").await;
    let m = rest_message(
        &t,
        &t.a_token.clone(),
        json!({"chat_dialog_id": t.dialog, "message": "oops"}),
    )
    .await;
    let id = m["_id"].as_str().unwrap();
    t.srv
        .http
        .delete(&format!("/chat/Message/{id}?force=1"), Some(&t.a_token))
        .await;
    let got = t.b.expect_named("message").await;
    assert_eq!(
        got.child("remove", "urn:xmpp:message-delete:0")
            .and_then(|r| r.attr("id")),
        Some(id)
    );
    assert_eq!(extra(&got, "dialog_id").as_deref(), Some(t.dialog.as_str()));
}

#[tokio::test]
async fn a_rest_reaction_reaches_the_dialogs_occupants() {
    let mut t = two("rx").await;
    let m = rest_message(
        &t,
        &t.a_token.clone(),
        json!({"chat_dialog_id": t.dialog, "message": "react"}),
    )
    .await;
    let id = m["_id"].as_str().unwrap();
    t.srv
        .http
        .put_json(
            &format!("/chat/Message/{id}/reactions"),
            Some(&t.b_token),
            json!({"add": "👍"}),
        )
        .await;
    let got = t.a.expect_named("message").await;
    let r = got
        .child("reactions", "jabber:client")
        .expect("reactions element");
    assert_eq!(r.attr("message_id"), Some(id));
    assert_eq!(r.attr("user_id"), Some(t.b_id.to_string().as_str()));
    assert_eq!(r.elements().next().and_then(|x| x.attr("type")), Some("👍"));
}

#[tokio::test]
async fn a_rest_system_message_arrives_as_a_headline() {
    let mut t = two("sys").await;
    t.srv
        .http
        .post_json(
            "/chat/Message/system",
            Some(&t.a_token),
            json!({"recipientId": t.b_id, "k": "v", "obj": {"x": 1}}),
        )
        .await;
    let got = t.b.expect_named("message").await;
    assert_eq!(got.attr("type"), Some("headline"));
    assert_eq!(
        extra(&got, "moduleIdentifier").as_deref(),
        Some("SystemNotifications")
    );
    assert_eq!(extra(&got, "k").as_deref(), Some("v"));
    let obj = got
        .child("extraParams", "jabber:client")
        .unwrap()
        .child("obj", "jabber:client")
        .unwrap();
    assert_eq!(obj.child("x", "jabber:client").unwrap().text(), "1");
}

#[tokio::test]
async fn reading_over_rest_sends_a_displayed_marker_to_the_sender() {
    let mut t = two("rd").await;
    let m = rest_message(
        &t,
        &t.a_token.clone(),
        json!({"chat_dialog_id": t.dialog, "message": "read me"}),
    )
    .await;
    let id = m["_id"].as_str().unwrap();
    t.srv
        .http
        .put_json(
            &format!("/chat/Message/{id}"),
            Some(&t.b_token),
            json!({"read": 1, "chat_dialog_id": t.dialog}),
        )
        .await;
    let got = t.a.expect_named("message").await;
    assert_eq!(
        got.child("displayed", MARKERS).and_then(|d| d.attr("id")),
        Some(id)
    );
    assert_eq!(
        got.attr("from"),
        Some(format!("{}@localhost", t.srv.local(t.b_id)).as_str())
    );
}

fn stored(to: &str, id: &str, body: &str) -> String {
    format!(
        "<message to='{to}@localhost' type='chat' id='{id}'><body>{body}</body>\
         <extraParams xmlns='jabber:client'><save_to_history>1</save_to_history></extraParams>\
         <markable xmlns='urn:xmpp:chat-markers:0'/></message>"
    )
}

#[tokio::test]
async fn xmpp_markers_update_unread_counts_and_status_and_arrive_once() {
    let mut t = two("mk").await;
    let (a_local, b_local) = (t.srv.local(t.a_id), t.srv.local(t.b_id));
    t.a.send_raw(&stored(&b_local, "6b0809bbf5504c5e5300aa01", "mark me"))
        .await;
    let m = t.b.expect_named("message").await;
    let dialog = extra(&m, "dialog_id").unwrap();
    assert_eq!(
        t.srv
            .http
            .get("/chat/Message/unread", Some(&t.b_token))
            .await
            .json()["total"],
        1
    );
    t.b.send_raw(&format!(
        "<message to='{a_local}@localhost' type='chat' id='mk1'><received xmlns='{MARKERS}' id='6b0809bbf5504c5e5300aa01'/>\
         <extraParams xmlns='jabber:client'><dialog_id>{dialog}</dialog_id></extraParams></message>"
    ))
    .await;
    t.a.expect("received marker", |e| {
        e.child("received", MARKERS).is_some()
    })
    .await;
    let list = t
        .srv
        .http
        .get("/chat/Dialog", Some(&t.a_token))
        .await
        .json();
    assert_eq!(list["items"][0]["last_message_status"], "delivered");
    t.b.send_raw(&format!(
        "<message to='{a_local}@localhost' type='chat' id='mk2'><displayed xmlns='{MARKERS}' id='6b0809bbf5504c5e5300aa01'/>\
         <extraParams xmlns='jabber:client'><dialog_id>{dialog}</dialog_id></extraParams></message>"
    ))
    .await;
    t.a.expect("displayed marker", |e| {
        e.child("displayed", MARKERS).is_some()
    })
    .await;
    quiet(&mut t.a).await;
    assert_eq!(
        t.srv
            .http
            .get("/chat/Message/unread", Some(&t.b_token))
            .await
            .json()["total"],
        0
    );
    let list = t
        .srv
        .http
        .get("/chat/Dialog", Some(&t.a_token))
        .await
        .json();
    assert_eq!(list["items"][0]["last_message_status"], "read");
}

#[tokio::test]
async fn xmpp_replace_edits_the_stored_body_for_the_sender_only() {
    let mut t = two("rp").await;
    let (a_local, b_local) = (t.srv.local(t.a_id), t.srv.local(t.b_id));
    t.a.send_raw(&stored(&b_local, "6b0809bbf5504c5e5300bb01", "typo"))
        .await;
    let m = t.b.expect_named("message").await;
    let dialog = extra(&m, "dialog_id").unwrap();
    t.a.send_raw(&format!(
        "<message to='{b_local}@localhost' type='chat' id='e1'><body>fixed</body>\
         <replace id='6b0809bbf5504c5e5300bb01' last='true' xmlns='urn:xmpp:message-correct:0'/></message>"
    ))
    .await;
    let edit = t.b.expect_named("message").await;
    assert_eq!(edit.child("body", "jabber:client").unwrap().text(), "fixed");
    quiet(&mut t.b).await;
    let items = t
        .srv
        .http
        .get(
            &format!("/chat/Message?chat_dialog_id={dialog}&mark_as_read=0"),
            Some(&t.b_token),
        )
        .await
        .json();
    assert_eq!(items["items"][0]["message"], "fixed");
    // Bob may not edit Alice's message: refused with an error, not relayed.
    t.b.send_raw(&format!(
        "<message to='{a_local}@localhost' type='chat' id='e2'><body>hacked</body>\
         <replace id='6b0809bbf5504c5e5300bb01' xmlns='urn:xmpp:message-correct:0'/></message>"
    ))
    .await;
    let err = t.b.expect_named("message").await;
    assert_eq!(err.attr("type"), Some("error"));
    quiet(&mut t.a).await;
}

#[tokio::test]
async fn xmpp_remove_deletes_the_stored_message_for_everyone() {
    let mut t = two("rm").await;
    let b_local = t.srv.local(t.b_id);
    t.a.send_raw(&stored(&b_local, "6b0809bbf5504c5e5300cc01", "regret"))
        .await;
    let m = t.b.expect_named("message").await;
    let dialog = extra(&m, "dialog_id").unwrap();
    t.a.send_raw(&format!(
        "<message to='{b_local}@localhost' type='chat' id='r1'><remove id='6b0809bbf5504c5e5300cc01' xmlns='urn:xmpp:message-delete:0'/>\
         <extraParams xmlns='jabber:client'><dialog_id>{dialog}</dialog_id></extraParams></message>"
    ))
    .await;
    let got = t.b.expect_named("message").await;
    assert!(got.child("remove", "urn:xmpp:message-delete:0").is_some());
    quiet(&mut t.b).await;
    let items = t
        .srv
        .http
        .get(
            &format!("/chat/Message?chat_dialog_id={dialog}"),
            Some(&t.b_token),
        )
        .await
        .json();
    assert!(items["items"].as_array().unwrap().is_empty());
    assert_eq!(
        t.srv
            .http
            .get("/chat/Message/unread", Some(&t.b_token))
            .await
            .json()["total"],
        0
    );
}

#[tokio::test]
async fn a_blocked_users_rest_message_does_not_reach_the_blocker() {
    let mut t = two("blk").await;
    let b_local = t.srv.local(t.b_id);
    let r = t
        .a
        .iq("blk1", &format!("<iq type='set' id='blk1'><block xmlns='urn:xmpp:blocking'><item jid='{b_local}@localhost'/></block></iq>"))
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    rest_message(
        &t,
        &t.b_token.clone(),
        json!({"chat_dialog_id": t.dialog, "message": "let me in", "send_to_chat": 1}),
    )
    .await;
    quiet(&mut t.a).await;
}

#[tokio::test]
async fn a_blocked_users_group_message_does_not_reach_the_blocker() {
    let srv = TestServer::start().await;
    let u = srv.users("gblk", 3).await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &srv.local(u[0].1), PASSWORD).await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &srv.local(u[1].1), PASSWORD).await;
    let mut c = Client::login(srv.xmpp, Via::Tcp, &srv.local(u[2].1), PASSWORD).await;
    let d = srv
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": [u[1].1, u[2].1]}),
        )
        .await;
    let room = format!(
        "{}_{}@muc.localhost",
        srv.app.id.0,
        d["_id"].as_str().unwrap()
    );
    let block = format!(
        "<iq type='set' id='gb1'><block xmlns='urn:xmpp:blocking'><item jid='{}@localhost'/></block></iq>",
        srv.local(u[1].1)
    );
    assert_eq!(a.iq("gb1", &block).await.attr("type"), Some("result"));
    b.send_raw(&format!(
        "<message to='{room}' type='groupchat' id='g1'><body>from bob</body></message>"
    ))
    .await;
    let got = c.expect_named("message").await;
    assert_eq!(
        got.child("body", "jabber:client").unwrap().text(),
        "from bob",
        "others still receive it"
    );
    b.expect_named("message").await; // bob's own reflection
    quiet(&mut a).await;
}

#[tokio::test]
async fn a_room_remove_cannot_delete_a_message_of_another_dialog() {
    let srv = TestServer::start().await;
    let u = srv.users("scope", 2).await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &srv.local(u[0].1), PASSWORD).await;
    let x = srv
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "X", "occupants_ids": [u[1].1]}),
        )
        .await;
    let y = srv
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "Y", "occupants_ids": [u[1].1]}),
        )
        .await;
    let (x, y) = (
        x["_id"].as_str().unwrap().to_string(),
        y["_id"].as_str().unwrap().to_string(),
    );
    let r = srv
        .http
        .post_json(
            "/chat/Message",
            Some(&u[0].0),
            json!({"chat_dialog_id": y, "message": "keep me"}),
        )
        .await;
    let id = r.json()["_id"].as_str().unwrap().to_string();
    let room_x = format!("{}_{x}@muc.localhost", srv.app.id.0);
    a.send_raw(&format!(
        "<message to='{room_x}' type='groupchat' id='rx1'><remove id='{id}' xmlns='urn:xmpp:message-delete:0'/></message>"
    ))
    .await;
    // The stream handled it once its own ping is answered.
    a.iq(
        "scope-ping",
        "<iq type='get' id='scope-ping'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;
    let items = srv
        .http
        .get(
            &format!("/chat/Message?chat_dialog_id={y}&mark_as_read=0"),
            Some(&u[0].0),
        )
        .await
        .json();
    assert_eq!(
        items["items"][0]["_id"],
        id.as_str(),
        "the message in dialog Y survives"
    );
}
