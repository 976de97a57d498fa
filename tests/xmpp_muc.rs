//! Group dialogs as XEP-0045 rooms, over real sockets: group messages reach every online member
//! (joined or not) and come back to the sender; who may send is the chat roles' answer; join and
//! leave presence with the SDK's status-110 shim; history on join; disco; REST occupant changes
//! take effect at once; group edits, deletes and typing.

use parley::xmpp::stream::Element;
use serde_json::{json, Value};

use crate::common::muc::{codes as status_codes, online};
use crate::common::xmpp::{Client, Via};
use crate::common::{TestServer, PASSWORD};

const MUC_USER: &str = "http://jabber.org/protocol/muc#user";

fn id(d: &Value) -> String {
    d["_id"].as_str().unwrap().to_string()
}

fn room(srv: &TestServer, dialog: &str) -> String {
    format!("{}_{dialog}@muc.localhost", srv.app.id.0)
}

fn groupchat(room: &str, id: &str, body: &str, save: bool) -> String {
    let extra = if save {
        "<extraParams xmlns='jabber:client'><save_to_history>1</save_to_history></extraParams>"
    } else {
        ""
    };
    format!("<message to='{room}' type='groupchat' id='{id}'><body>{body}</body>{extra}</message>")
}

fn join(room: &str, uid: i64, id: &str, history: &str) -> String {
    format!(
        "<presence id='{id}' to='{room}/{uid}'><x xmlns='http://jabber.org/protocol/muc'>{history}</x></presence>"
    )
}

fn extra(m: &Element, name: &str) -> Option<String> {
    m.child("extraParams", "jabber:client")?
        .child(name, "jabber:client")
        .map(|e| e.text())
}

fn has_shim(p: &Element, code: &str) -> bool {
    p.child("x", MUC_USER)
        .and_then(|x| x.child("xmlns", MUC_USER))
        .is_some_and(|s| s.elements().any(|c| c.name == "code" && c.text() == code))
}

/// Users (token, id) and a group dialog u0 owns with every other user in it.
async fn group(srv: &TestServer, prefix: &str, n: usize) -> (Vec<(String, i64)>, String) {
    let u = srv.users(prefix, n).await;
    let others: Vec<i64> = u[1..].iter().map(|x| x.1).collect();
    let d = srv
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": others}),
        )
        .await;
    (u, id(&d))
}

/// The subject message that ends every join (XEP-0045 §7.2.15), read past.
async fn subject(c: &mut Client) -> Element {
    c.expect("the subject", |e| {
        e.name == "message" && e.child("subject", "jabber:client").is_some()
    })
    .await
}

/// Proves `c` got nothing else meanwhile: a 1:1 marker from `from` must be the next message.
async fn nothing_but_sentinel(srv: &TestServer, from: &mut Client, c: &mut Client, to_uid: i64) {
    from.send_raw(&format!(
        "<message to='{}@localhost' type='chat' id='sentinel'><body>s</body></message>",
        srv.local(to_uid)
    ))
    .await;
    let m = c.expect_named("message").await;
    assert_eq!(m.attr("id"), Some("sentinel"), "unexpected {m:?}");
}

async fn history(srv: &TestServer, token: &str, dialog: &str) -> Vec<Value> {
    let r = srv
        .http
        .get(
            &format!("/chat/Message?chat_dialog_id={dialog}&mark_as_read=0"),
            Some(token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_group_message_reaches_every_online_occupant_joined_or_not_and_is_reflected() {
    let srv = TestServer::start().await;
    let (u, d) = group(&srv, "fan", 3).await;
    let r = room(&srv, &d);
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    let mut c = online(&srv, u[2].1).await;
    c.send_raw(&join(&r, u[2].1, "j", "<history maxstanzas='0'/>"))
        .await;
    c.expect("self presence", |e| e.attr("id") == Some("j"))
        .await;
    subject(&mut c).await;
    a.send_raw(&groupchat(&r, "g1", "hello group", false)).await;
    let from = format!("{r}/{}", u[0].1);
    for who in [&mut b, &mut c, &mut a] {
        let m = who.expect_named("message").await;
        assert_eq!(m.attr("type"), Some("groupchat"));
        assert_eq!(m.attr("from"), Some(from.as_str()));
        assert_eq!(m.attr("id"), Some("g1"));
        assert_eq!(m.attr("to"), Some(who.jid.as_str()));
        assert_eq!(
            m.child("body", "jabber:client").unwrap().text(),
            "hello group"
        );
    }
    // Not stored: no history.
    assert!(history(&srv, &u[1].0, &d).await.is_empty());
}

#[tokio::test]
async fn a_stored_group_message_is_stamped_in_history_and_counted_unread() {
    let srv = TestServer::start().await;
    let (u, d) = group(&srv, "gst", 2).await;
    let r = room(&srv, &d);
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    a.send_raw(&groupchat(&r, "6b0809bbf5504c5e5300a001", "kept", true))
        .await;
    let m = b.expect_named("message").await;
    assert_eq!(extra(&m, "dialog_id").as_deref(), Some(d.as_str()));
    assert_eq!(
        extra(&m, "message_id").as_deref(),
        Some("6b0809bbf5504c5e5300a001")
    );
    let mine = a.expect_named("message").await;
    assert_eq!(extra(&mine, "dialog_id").as_deref(), Some(d.as_str()));
    let items = history(&srv, &u[1].0, &d).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["_id"], "6b0809bbf5504c5e5300a001");
    assert_eq!(items[0]["message"], "kept");
    let unread = srv
        .http
        .get("/chat/Message/unread", Some(&u[1].0))
        .await
        .json();
    assert_eq!(unread["total"], 1);
}

#[tokio::test]
async fn a_non_occupant_is_refused_and_nothing_is_delivered() {
    let srv = TestServer::start().await;
    let (u, d) = group(&srv, "out", 2).await;
    let (_, stranger) = srv.user_token("out_stranger").await;
    let r = room(&srv, &d);
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    let mut s = online(&srv, stranger).await;
    s.send_raw(&groupchat(&r, "x1", "let me in", true)).await;
    let e = s.expect_named("message").await;
    assert_eq!(e.attr("type"), Some("error"));
    assert_eq!(e.attr("id"), Some("x1"));
    let err = e.child("error", "jabber:client").unwrap();
    assert!(err
        .child("item-not-found", "urn:ietf:params:xml:ns:xmpp-stanzas")
        .is_some());
    nothing_but_sentinel(&srv, &mut a, &mut b, u[1].1).await;
    assert!(history(&srv, &u[0].0, &d).await.is_empty());
}

#[tokio::test]
async fn a_regular_user_may_not_post_in_a_broadcast_dialog() {
    let srv = TestServer::start().await;
    let u = srv.users("bc", 2).await;
    let d = id(&srv
        .dialog(&u[0].0, json!({"type": 1, "name": "News"}))
        .await);
    let r = room(&srv, &d);
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    b.send_raw(&groupchat(&r, "x2", "me too", false)).await;
    let e = b.expect_named("message").await;
    assert_eq!(e.attr("type"), Some("error"));
    let err = e.child("error", "jabber:client").unwrap();
    assert!(err
        .child("forbidden", "urn:ietf:params:xml:ns:xmpp-stanzas")
        .is_some());
    assert_eq!(err.attr("code"), Some("403"));
    nothing_but_sentinel(&srv, &mut b, &mut a, u[0].1).await;
    // Every user of the application is in a broadcast dialog: the owner's post reaches b, who
    // has never listed their dialogs.
    a.send_raw(&groupchat(&r, "news1", "news", false)).await;
    let m = b.expect_named("message").await;
    assert_eq!(m.attr("id"), Some("news1"));
    assert_eq!(a.expect_named("message").await.attr("id"), Some("news1"));
}

#[tokio::test]
async fn a_room_of_another_application_does_not_exist() {
    let srv = TestServer::start().await;
    let (u, d) = group(&srv, "oapp", 2).await;
    let mut a = online(&srv, u[0].1).await;
    let other = format!("{}_{d}@muc.localhost", srv.app.id.0 + 1);
    a.send_raw(&groupchat(&other, "x3", "hi", false)).await;
    let e = a.expect_named("message").await;
    assert_eq!(e.attr("type"), Some("error"));
    assert!(e
        .child("error", "jabber:client")
        .unwrap()
        .child("item-not-found", "urn:ietf:params:xml:ns:xmpp-stanzas")
        .is_some());
}

#[tokio::test]
async fn join_self_presence_carries_110_and_the_sdk_shim_and_occupants_see_join_and_leave() {
    let srv = TestServer::start().await;
    let (u, d) = group(&srv, "jn", 2).await;
    let r = room(&srv, &d);
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    a.send_raw(&join(&r, u[0].1, "a1:join", "<history maxstanzas='0'/>"))
        .await;
    let me = a.expect_named("presence").await;
    assert_eq!(me.attr("id"), Some("a1:join"));
    assert_eq!(me.attr("from"), Some(format!("{r}/{}", u[0].1).as_str()));
    assert!(status_codes(&me).contains(&"110".to_string()));
    assert!(has_shim(&me, "110"));
    let item = me
        .child("x", MUC_USER)
        .unwrap()
        .child("item", MUC_USER)
        .unwrap();
    assert_eq!(item.attr("affiliation"), Some("owner"));
    assert_eq!(item.attr("role"), Some("moderator"));

    b.send_raw(&join(&r, u[1].1, "b1:join", "<history maxstanzas='0'/>"))
        .await;
    let first = b.expect_named("presence").await;
    assert_eq!(first.attr("from"), Some(format!("{r}/{}", u[0].1).as_str()));
    assert!(first.attr("id").is_none());
    let mine = b.expect_named("presence").await;
    assert_eq!(mine.attr("id"), Some("b1:join"));
    assert!(has_shim(&mine, "110"));
    let seen = a.expect_named("presence").await;
    assert_eq!(seen.attr("from"), Some(format!("{r}/{}", u[1].1).as_str()));
    let item = seen
        .child("x", MUC_USER)
        .unwrap()
        .child("item", MUC_USER)
        .unwrap();
    assert_eq!(item.attr("affiliation"), Some("member"));
    assert_eq!(item.attr("role"), Some("participant"));
    assert!(!status_codes(&seen).contains(&"110".to_string()));

    b.send_raw(&format!(
        "<presence id='b2:leave' type='unavailable' to='{r}/{}'/>",
        u[1].1
    ))
    .await;
    let left = b.expect_named("presence").await;
    assert_eq!(left.attr("type"), Some("unavailable"));
    assert_eq!(left.attr("id"), Some("b2:leave"));
    assert!(has_shim(&left, "110"));
    let gone = a.expect_named("presence").await;
    assert_eq!(gone.attr("type"), Some("unavailable"));
    assert_eq!(gone.attr("from"), Some(format!("{r}/{}", u[1].1).as_str()));

    // A dropped stream leaves too.
    b.send_raw(&join(&r, u[1].1, "b3:join", "<history maxstanzas='0'/>"))
        .await;
    a.expect("b back", |e| {
        e.name == "presence" && e.attr("type").is_none()
    })
    .await;
    b.close().await;
    let gone = a.expect_named("presence").await;
    assert_eq!(gone.attr("type"), Some("unavailable"));
}

#[tokio::test]
async fn a_join_refused_by_the_roles_is_an_error_with_the_same_id_and_the_muc_element() {
    let srv = TestServer::start().await;
    let (_, d) = group(&srv, "jr", 2).await;
    let (_, stranger) = srv.user_token("jr_stranger").await;
    let mut s = online(&srv, stranger).await;
    s.send_raw(&join(&room(&srv, &d), stranger, "s:join", ""))
        .await;
    let e = s.expect_named("presence").await;
    assert_eq!(e.attr("type"), Some("error"));
    assert_eq!(e.attr("id"), Some("s:join"));
    assert!(e.child("x", "http://jabber.org/protocol/muc").is_some());
    let err = e.child("error", "jabber:client").unwrap();
    assert_eq!(err.attr("code"), Some("404"));
}

#[tokio::test]
async fn history_on_join_honours_maxstanzas_with_delay_stamps() {
    let srv = TestServer::start().await;
    let (u, d) = group(&srv, "hj", 2).await;
    let r = room(&srv, &d);
    let mut a = online(&srv, u[0].1).await;
    for n in 1..=3 {
        a.send_raw(&groupchat(
            &r,
            &format!("6b0809bbf5504c5e5300b00{n}"),
            &format!("m{n}"),
            true,
        ))
        .await;
        a.expect_named("message").await;
    }
    let mut b = online(&srv, u[1].1).await;
    // Messages sent while b was offline are not this test's business; join asks for two.
    b.send_raw(&join(&r, u[1].1, "h:join", "<history maxstanzas='2'/>"))
        .await;
    let me = b
        .expect("self presence", |e| e.attr("id") == Some("h:join"))
        .await;
    assert!(has_shim(&me, "110"));
    let m2 = b.expect_named("message").await;
    let m3 = b.expect_named("message").await;
    for (m, body) in [(&m2, "m2"), (&m3, "m3")] {
        assert_eq!(m.child("body", "jabber:client").unwrap().text(), body);
        assert_eq!(m.attr("type"), Some("groupchat"));
        assert_eq!(m.attr("from"), Some(format!("{r}/{}", u[0].1).as_str()));
        assert!(m.child("delay", "urn:xmpp:delay").is_some());
        assert_eq!(extra(m, "dialog_id").as_deref(), Some(d.as_str()));
    }
    subject(&mut b).await;
    // maxstanzas='0': nothing.
    let mut b2 = Client::login_as(
        srv.xmpp,
        Via::Tcp,
        &srv.local(u[1].1),
        PASSWORD,
        Some("second"),
    )
    .await;
    b2.send_raw(&join(&r, u[1].1, "h2:join", "<history maxstanzas='0'/>"))
        .await;
    b2.expect("self presence", |e| e.attr("id") == Some("h2:join"))
        .await;
    subject(&mut b2).await;
    nothing_but_sentinel(&srv, &mut a, &mut b2, u[1].1).await;
}

#[tokio::test]
async fn disco_lists_the_service_and_a_rooms_joined_occupants() {
    let srv = TestServer::start().await;
    let (u, d) = group(&srv, "dq", 3).await;
    let r = room(&srv, &d);
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    let items = a
        .iq(
            "i1",
            "<iq type='get' id='i1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
        )
        .await;
    let q = items.elements().next().unwrap();
    assert!(q.elements().any(|i| i.attr("jid") == Some("muc.localhost")));
    let info = a
        .iq(
            "i2",
            "<iq type='get' id='i2' to='muc.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        )
        .await;
    assert_eq!(info.attr("type"), Some("result"));
    let q = info.elements().next().unwrap();
    let ident = q.elements().find(|e| e.name == "identity").unwrap();
    assert_eq!(ident.attr("category"), Some("conference"));
    assert!(q
        .elements()
        .any(|f| f.attr("var") == Some("http://jabber.org/protocol/muc")));
    for (c, uid, jid) in [(&mut a, u[0].1, "a"), (&mut b, u[1].1, "b")] {
        c.send_raw(&join(&r, uid, jid, "<history maxstanzas='0'/>"))
            .await;
        c.expect("self", |e| e.attr("id") == Some(jid)).await;
    }
    let items = a
        .iq(
            "i3",
            &format!("<iq type='get' id='i3' to='{r}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"),
        )
        .await;
    let q = items.elements().next().unwrap();
    let mut jids: Vec<String> = q
        .elements()
        .filter_map(|i| i.attr("jid").map(str::to_owned))
        .collect();
    jids.sort();
    let mut want = vec![format!("{r}/{}", u[0].1), format!("{r}/{}", u[1].1)];
    want.sort();
    assert_eq!(jids, want, "u2 is an occupant but has not joined");
    // Anything else to a room gets one error answer.
    let other = a
        .iq(
            "i4",
            &format!("<iq type='set' id='i4' to='{r}'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>"),
        )
        .await;
    assert_eq!(other.attr("type"), Some("error"));
}

#[tokio::test]
async fn a_removed_occupant_stops_receiving_and_gets_unavailable_presence_and_an_added_one_starts()
{
    let srv = TestServer::start().await;
    let (u, d) = group(&srv, "rm", 3).await;
    let (_, late) = srv.user_token("rm_late").await;
    let r = room(&srv, &d);
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    let mut c = online(&srv, u[2].1).await;
    let mut l = online(&srv, late).await;
    for (cl, uid, jid) in [(&mut a, u[0].1, "a"), (&mut b, u[1].1, "b")] {
        cl.send_raw(&join(&r, uid, jid, "<history maxstanzas='0'/>"))
            .await;
        cl.expect("self", |e| e.attr("id") == Some(jid)).await;
        subject(cl).await;
    }
    a.send_raw(&groupchat(&r, "before", "one", false)).await;
    for cl in [&mut b, &mut c] {
        assert_eq!(cl.expect_named("message").await.attr("id"), Some("before"));
    }
    let resp = srv
        .http
        .put_json(
            &format!("/chat/Dialog/{d}"),
            Some(&u[0].0),
            json!({"pull_all": {"occupants_ids": [u[1].1]}, "push_all": {"occupants_ids": [late]}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let kicked = b.expect_named("presence").await;
    assert_eq!(kicked.attr("type"), Some("unavailable"));
    assert_eq!(
        kicked.attr("from"),
        Some(format!("{r}/{}", u[1].1).as_str())
    );
    assert!(status_codes(&kicked).contains(&"321".to_string()));
    assert!(has_shim(&kicked, "110"));
    let seen = a
        .expect("b leaves", |e| {
            e.name == "presence" && e.attr("type") == Some("unavailable")
        })
        .await;
    assert_eq!(seen.attr("from"), Some(format!("{r}/{}", u[1].1).as_str()));
    a.send_raw(&groupchat(&r, "after", "two", false)).await;
    assert_eq!(c.expect_named("message").await.attr("id"), Some("after"));
    assert_eq!(l.expect_named("message").await.attr("id"), Some("after"));
    nothing_but_sentinel(&srv, &mut a, &mut b, u[1].1).await;
    // The removed user cannot send either.
    b.send_raw(&groupchat(&r, "nope", "x", false)).await;
    let e = b.expect_named("message").await;
    assert_eq!(e.attr("type"), Some("error"));
}

#[tokio::test]
async fn a_deleted_dialog_destroys_its_room() {
    let srv = TestServer::start().await;
    let (u, d) = group(&srv, "del", 2).await;
    let r = room(&srv, &d);
    let mut b = online(&srv, u[1].1).await;
    b.send_raw(&join(&r, u[1].1, "b", "<history maxstanzas='0'/>"))
        .await;
    b.expect("self", |e| e.attr("id") == Some("b")).await;
    let resp = srv
        .http
        .delete(&format!("/chat/Dialog/{d}?force=1"), Some(&u[0].0))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let p = b.expect_named("presence").await;
    assert_eq!(p.attr("type"), Some("unavailable"));
    assert!(p
        .child("x", MUC_USER)
        .unwrap()
        .child("destroy", MUC_USER)
        .is_some());
}

#[tokio::test]
async fn a_regular_users_group_remove_of_someone_elses_message_is_refused_and_their_own_succeeds() {
    let srv = TestServer::start().await;
    let (u, d) = group(&srv, "gdel", 2).await;
    let r = room(&srv, &d);
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    a.send_raw(&groupchat(&r, "6b0809bbf5504c5e5300c001", "owner's", true))
        .await;
    b.expect_named("message").await;
    a.expect_named("message").await;
    b.send_raw(&groupchat(&r, "6b0809bbf5504c5e5300c002", "mine", true))
        .await;
    b.expect_named("message").await;
    a.expect_named("message").await;
    let remove = |id: &str, of: &str| {
        format!(
            "<message to='{r}' type='groupchat' id='{id}'><remove xmlns='urn:xmpp:message-delete:0' id='{of}'/>\
             <extraParams xmlns='jabber:client'><dialog_id>{d}</dialog_id></extraParams></message>"
        )
    };
    b.send_raw(&remove(
        "6b0809bbf5504c5e5300c003",
        "6b0809bbf5504c5e5300c001",
    ))
    .await;
    let e = b.expect_named("message").await;
    assert_eq!(e.attr("type"), Some("error"));
    assert!(e
        .child("error", "jabber:client")
        .unwrap()
        .child("forbidden", "urn:ietf:params:xml:ns:xmpp-stanzas")
        .is_some());
    b.send_raw(&remove(
        "6b0809bbf5504c5e5300c004",
        "6b0809bbf5504c5e5300c002",
    ))
    .await;
    let relayed = a.expect_named("message").await;
    assert_eq!(relayed.attr("id"), Some("6b0809bbf5504c5e5300c004"));
    assert!(relayed
        .child("remove", "urn:xmpp:message-delete:0")
        .is_some());
    let ids: Vec<Value> = history(&srv, &u[0].0, &d)
        .await
        .iter()
        .map(|m| m["_id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("6b0809bbf5504c5e5300c001")]);
}

#[tokio::test]
async fn a_group_edit_by_the_sender_is_stored_and_relayed() {
    let srv = TestServer::start().await;
    let (u, d) = group(&srv, "ged", 2).await;
    let r = room(&srv, &d);
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    a.send_raw(&groupchat(&r, "6b0809bbf5504c5e5300d001", "tpyo", true))
        .await;
    b.expect_named("message").await;
    a.send_raw(&format!(
        "<message to='{r}' type='groupchat' id='6b0809bbf5504c5e5300d002'><body>typo</body>\
         <replace xmlns='urn:xmpp:message-correct:0' id='6b0809bbf5504c5e5300d001' last='true'/></message>"
    ))
    .await;
    let m = b.expect_named("message").await;
    assert!(m.child("replace", "urn:xmpp:message-correct:0").is_some());
    assert_eq!(history(&srv, &u[1].0, &d).await[0]["message"], "typo");
}

#[tokio::test]
async fn group_typing_is_relayed_and_never_stored() {
    let srv = TestServer::start().await;
    let (u, d) = group(&srv, "typ", 2).await;
    let r = room(&srv, &d);
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    a.send_raw(&format!(
        "<message to='{r}' type='groupchat'><composing xmlns='http://jabber.org/protocol/chatstates'/>\
         <extraParams xmlns='jabber:client'><save_to_history>1</save_to_history></extraParams></message>"
    ))
    .await;
    let m = b.expect_named("message").await;
    assert_eq!(m.attr("from"), Some(format!("{r}/{}", u[0].1).as_str()));
    assert!(m
        .child("composing", "http://jabber.org/protocol/chatstates")
        .is_some());
    assert!(history(&srv, &u[1].0, &d).await.is_empty());
}

#[tokio::test]
async fn a_presence_from_a_joined_occupant_is_an_update_not_a_new_join() {
    let srv = TestServer::start().await;
    let (u, d) = group(&srv, "upd", 2).await;
    let r = room(&srv, &d);
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    a.send_raw(&groupchat(&r, "6b0809bbf5504c5e5300e001", "old", true))
        .await;
    a.expect_named("message").await;
    b.expect_named("message").await;
    b.send_raw(&join(&r, u[1].1, "b", "<history maxstanzas='0'/>"))
        .await;
    b.expect("self", |e| e.attr("id") == Some("b")).await;
    // No <history/>: the default brings the stored message.
    a.send_raw(&join(&r, u[0].1, "a", "")).await;
    a.expect("self", |e| e.attr("id") == Some("a")).await;
    let h = a.expect_named("message").await;
    assert_eq!(h.attr("id"), Some("6b0809bbf5504c5e5300e001"));
    assert!(h.child("delay", "urn:xmpp:delay").is_some());
    b.expect("a joined", |e| e.name == "presence").await;
    a.send_raw(&format!(
        "<presence id='a2' to='{r}/{}'><show>away</show></presence>",
        u[0].1
    ))
    .await;
    let me = a.expect("self", |e| e.attr("id") == Some("a2")).await;
    assert!(has_shim(&me, "110"));
    let seen = b.expect_named("presence").await;
    assert_eq!(seen.child("show", "jabber:client").unwrap().text(), "away");
    nothing_but_sentinel(&srv, &mut b, &mut a, u[0].1).await;
}

#[tokio::test]
async fn leaving_a_group_or_unsubscribing_from_a_public_dialog_over_rest_ends_room_membership() {
    let srv = TestServer::start().await;
    let (u, d) = group(&srv, "lv", 3).await;
    let r = room(&srv, &d);
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    let resp = srv
        .http
        .delete(&format!("/chat/Dialog/{d}"), Some(&u[1].0))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let p = b.expect_named("presence").await;
    assert_eq!(p.attr("type"), Some("unavailable"));
    assert!(status_codes(&p).contains(&"321".to_string()));
    a.send_raw(&groupchat(&r, "after-leave", "x", false)).await;
    assert_eq!(
        a.expect_named("message").await.attr("id"),
        Some("after-leave")
    );
    nothing_but_sentinel(&srv, &mut a, &mut b, u[1].1).await;

    // Public: a subscriber receives; after unsubscribing, no longer.
    let p = id(&srv
        .dialog(&u[0].0, json!({"type": 4, "name": "Open"}))
        .await);
    let pr = room(&srv, &p);
    let sub = srv
        .http
        .post_json(
            &format!("/chat/Dialog/{p}/subscribe"),
            Some(&u[2].0),
            json!({}),
        )
        .await;
    assert!(sub.status == 200 || sub.status == 201, "{}", sub.body);
    let mut c = online(&srv, u[2].1).await;
    a.send_raw(&groupchat(&pr, "pub1", "to subscribers", false))
        .await;
    assert_eq!(c.expect_named("message").await.attr("id"), Some("pub1"));
    let un = srv
        .http
        .delete(&format!("/chat/Dialog/{p}/subscribe"), Some(&u[2].0))
        .await;
    assert_eq!(un.status, 200, "{}", un.body);
    let gone = c.expect_named("presence").await;
    assert_eq!(gone.attr("type"), Some("unavailable"));
    a.send_raw(&groupchat(&pr, "pub2", "x", false)).await;
    nothing_but_sentinel(&srv, &mut a, &mut c, u[2].1).await;
}

/// A custom parameter of a received message's `<extraParams>` as the SDK reads it: an element
/// with children is an object of them, a leaf is its text (docs/protocol §5.1).
fn custom_param(m: &Element, name: &str) -> Value {
    fn read(e: &Element) -> Value {
        if e.elements().next().is_none() {
            return Value::String(e.text());
        }
        Value::Object(e.elements().map(|c| (c.name.clone(), read(c))).collect())
    }
    m.child("extraParams", "jabber:client")
        .and_then(|x| x.child(name, "jabber:client"))
        .map(read)
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_nested_custom_parameter_reads_the_same_live_on_room_join_and_over_rest() {
    let srv = TestServer::start().await;
    let (u, d) = group(&srv, "nest", 2).await;
    let r = room(&srv, &d);
    let nested = json!({"a": "1", "b": "two"});
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    // Sent over XMPP as the SDK writes it: nested elements.
    a.send_raw(&format!(
        "<message to='{r}' type='groupchat' id='6b0809bbf5504c5e5300c001'><body>x</body>\
         <extraParams xmlns='jabber:client'><save_to_history>1</save_to_history>\
         <nested><a>1</a><b>two</b></nested></extraParams></message>"
    ))
    .await;
    a.expect_named("message").await;
    let live = b.expect_named("message").await;
    assert_eq!(custom_param(&live, "nested"), nested, "live, from XMPP");
    // Sent over REST with send_to_chat.
    let created = srv
        .http
        .post_json(
            "/chat/Message",
            Some(&u[0].0),
            json!({"chat_dialog_id": d, "message": "y", "send_to_chat": 1, "nested": nested}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let live = b.expect_named("message").await;
    assert_eq!(custom_param(&live, "nested"), nested, "live, from REST");
    // REST reads both back as the same object.
    let items = history(&srv, &u[1].0, &d).await;
    assert_eq!(items.len(), 2);
    for item in &items {
        assert_eq!(item["nested"], nested, "over REST: {item}");
    }
    // Room join history writes both as nested elements too.
    b.send_raw(&join(&r, u[1].1, "n:join", "<history maxstanzas='2'/>"))
        .await;
    b.expect("self presence", |e| e.attr("id") == Some("n:join"))
        .await;
    for _ in 0..2 {
        let old = b.expect_named("message").await;
        assert!(old.child("delay", "urn:xmpp:delay").is_some());
        assert_eq!(custom_param(&old, "nested"), nested, "on room join");
    }
}

/// Not a timed test: `cargo test --release --test suite fan_out_measured -- --ignored --nocapture`
/// prints group fan-out throughput for one sender and a 100-occupant room (all online, none
/// joined), messages not stored (the membership cache path).
#[tokio::test]
#[ignore]
async fn fan_out_measured() {
    const N: usize = 100;
    const MESSAGES: usize = 200;
    let srv = TestServer::start().await;
    let (u, d) = group(&srv, "perf", N).await;
    let r = room(&srv, &d);
    let mut sender = online(&srv, u[0].1).await;
    let mut readers = Vec::new();
    for x in &u[1..] {
        let mut c = online(&srv, x.1).await;
        readers.push(tokio::spawn(async move {
            for _ in 0..MESSAGES {
                c.expect_named("message").await;
            }
        }));
    }
    let start = std::time::Instant::now();
    for i in 0..MESSAGES {
        sender
            .send_raw(&groupchat(&r, &format!("p{i}"), "x", false))
            .await;
    }
    for rd in readers {
        rd.await.unwrap();
    }
    let took = start.elapsed();
    let deliveries = MESSAGES * (N - 1);
    println!(
        "fan-out: {MESSAGES} messages to {} online occupants, {deliveries} deliveries in {took:?} = {:.0} deliveries/s",
        N - 1,
        deliveries as f64 / took.as_secs_f64()
    );
}

/// The room of a public dialog follows REST, the authority on who reads a dialog's history:
/// a user who has not subscribed sees the dialog (it is findable, its occupants are listed) but
/// reads its messages only with `allow_preview`; the room's join (which shows that history)
/// is allowed exactly then, refused with `item-not-found` otherwise, and allowed for both once
/// subscribed.
#[tokio::test]
async fn a_non_subscriber_may_join_a_public_dialogs_room_exactly_when_rest_lets_them_read_it() {
    let srv = TestServer::start().await;
    let u = srv.users("pj", 2).await;
    let (owner, reader) = (&u[0], &u[1]);
    let closed = id(&srv
        .dialog(&owner.0, json!({"type": 4, "name": "Closed"}))
        .await);
    let open = id(&srv
        .dialog(
            &owner.0,
            json!({"type": 4, "name": "Preview", "permissions": {"allow_preview": true}}),
        )
        .await);
    let mut o = online(&srv, owner.1).await;
    let mut r = online(&srv, reader.1).await;
    let no_history = "<history maxstanzas='0'/>";
    for d in [&closed, &open] {
        o.send_raw(&join(&room(&srv, d), owner.1, "o:join", no_history))
            .await;
        let own = o
            .expect("the owner's self-presence", |e| e.name == "presence")
            .await;
        assert!(status_codes(&own).contains(&"110".to_string()), "{own:?}");
    }

    let mut attempt = 0;
    for subscribed in [false, true] {
        if subscribed {
            for d in [&closed, &open] {
                let s = srv
                    .http
                    .post_json(
                        &format!("/chat/Dialog/{d}/subscribe"),
                        Some(&reader.0),
                        json!({}),
                    )
                    .await;
                assert!(s.status == 200 || s.status == 201, "{}", s.body);
            }
        }
        for d in [&closed, &open] {
            // The dialog itself is visible to the reader either way.
            let occupants = srv
                .http
                .get(&format!("/chat/Dialog/{d}/occupants"), Some(&reader.0))
                .await;
            assert_eq!(occupants.status, 200, "{}", occupants.body);
            let rest = srv
                .http
                .get(
                    &format!("/chat/Message?chat_dialog_id={d}&mark_as_read=0"),
                    Some(&reader.0),
                )
                .await
                .status;
            let expected = match (subscribed, d == &open) {
                (false, false) => 404,
                _ => 200,
            };
            assert_eq!(rest, expected, "REST history, subscribed={subscribed}, {d}");

            attempt += 1;
            let jid = format!("r:join{attempt}");
            r.send_raw(&join(&room(&srv, d), reader.1, &jid, no_history))
                .await;
            let answer = r
                .expect("the join's answer", |e| {
                    e.name == "presence"
                        && (e.attr("type") == Some("error")
                            || status_codes(e).contains(&"110".to_string()))
                })
                .await;
            if rest == 200 {
                assert_eq!(answer.attr("type"), None, "joined {d}: {answer:?}");
                let leave = format!(
                    "<presence to='{}/{}' type='unavailable'/>",
                    room(&srv, d),
                    reader.1
                );
                r.send_raw(&leave).await;
                let left = r.expect("the leave", |e| e.name == "presence").await;
                assert_eq!(left.attr("type"), Some("unavailable"));
            } else {
                assert_eq!(answer.attr("type"), Some("error"), "{answer:?}");
                assert_eq!(answer.attr("id"), Some(jid.as_str()));
                let err = answer.child("error", "jabber:client").unwrap();
                assert!(err
                    .child("item-not-found", "urn:ietf:params:xml:ns:xmpp-stanzas")
                    .is_some());
            }
        }
    }
}

/// Reads `c` up to the element `until` matches, failing on any room presence showing `nick`
/// leave on the way; the matching element.
async fn with_no_leave_of(
    c: &mut Client,
    room: &str,
    nick: i64,
    until: impl Fn(&Element) -> bool,
) -> Element {
    let from = format!("{room}/{nick}");
    loop {
        let e = c.next().await.expect("the stream stays open");
        assert!(
            !(e.name == "presence"
                && e.attr("type") == Some("unavailable")
                && e.attr("from") == Some(from.as_str())),
            "{from} was shown leaving: {e:?}"
        );
        if until(&e) {
            return e;
        }
    }
}

/// A ban is checked whole (the roles table's ban rule: a kick, a removal of occupants, never
/// the owner) before the live room shows anyone banned: nobody removes occupants of a public
/// dialog, so even its owner's ban of a joined subscriber is refused, and the subscriber stays
/// in the room, shown to nobody as banned (no 301) and still listed.
#[tokio::test]
async fn a_refused_ban_of_a_live_occupant_leaves_them_in_the_room_with_no_301_shown() {
    let srv = TestServer::start().await;
    let u = srv.users("banpub", 3).await;
    let p = id(&srv
        .dialog(&u[0].0, json!({"type": 4, "name": "Open"}))
        .await);
    let r = room(&srv, &p);
    for sub in &u[1..] {
        let s = srv
            .http
            .post_json(
                &format!("/chat/Dialog/{p}/subscribe"),
                Some(&sub.0),
                json!({}),
            )
            .await;
        assert!(s.status == 200 || s.status == 201, "{}", s.body);
    }
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    let mut c = online(&srv, u[2].1).await;
    for (cl, uid, jid) in [
        (&mut a, u[0].1, "ja"),
        (&mut b, u[1].1, "jb"),
        (&mut c, u[2].1, "jc"),
    ] {
        cl.send_raw(&join(&r, uid, jid, "<history maxstanzas='0'/>"))
            .await;
        let me = cl.expect("self", |e| e.attr("id") == Some(jid)).await;
        assert_eq!(me.attr("type"), None, "join refused: {me:?}");
    }
    a.send_raw(&format!(
        "<iq type='set' id='ban' to='{r}'><query xmlns='http://jabber.org/protocol/muc#admin'>\
         <item nick='{}' affiliation='outcast'/></query></iq>",
        u[1].1
    ))
    .await;
    let answer = with_no_leave_of(&mut a, &r, u[1].1, |e| {
        e.name == "iq" && e.attr("id") == Some("ban")
    })
    .await;
    assert_eq!(
        crate::common::muc::condition(&answer),
        "forbidden",
        "{answer:?}"
    );
    // The banned-to-be and the others see no 301 before the next message of the room.
    a.send_raw(&groupchat(&r, "after", "still here?", false))
        .await;
    for cl in [&mut a, &mut b, &mut c] {
        with_no_leave_of(cl, &r, u[1].1, |e| {
            e.name == "message" && e.attr("id") == Some("after")
        })
        .await;
    }
    // And the room still lists them.
    let items = a
        .iq(
            "occupants",
            &format!("<iq type='get' id='occupants' to='{r}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"),
        )
        .await;
    let q = items.elements().next().unwrap();
    let target = format!("{r}/{}", u[1].1);
    assert!(
        q.elements().any(|i| i.attr("jid") == Some(target.as_str())),
        "{items:?}"
    );
}
