//! Standard XEP-0045 rooms next to dialog rooms, over real sockets: a room created by joining a
//! new `name@muc.{domain}` is a group dialog REST sees; nicks are free and unique in the room;
//! the subject; the owner's form mapped onto the dialog; affiliations and kicks through the chat
//! roles; private messages through the room; XEP-0410 self-ping; XEP-0425 moderation as the
//! roles' forced delete; and slixmpp's XEP-0045 plugin doing the same.

use parley::xmpp::stream::Element;
use serde_json::{json, Value};

use crate::common::muc::{codes, condition, item, online};
use crate::common::python;
use crate::common::xmpp::{Client, Via};
use crate::common::{test_config, TestServer, PASSWORD};

const MUC: &str = "http://jabber.org/protocol/muc";
const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
const CLIENT: &str = "jabber:client";

fn join_xml(room: &str, nick: &str, id: &str) -> String {
    format!(
        "<presence id='{id}' to='{room}/{nick}'><x xmlns='{MUC}'><history maxstanzas='20'/></x></presence>"
    )
}

/// Joins `room` as `nick`: the self-presence (or the error presence), after reading past what
/// comes before it.
async fn join(c: &mut Client, room: &str, nick: &str, id: &str) -> Element {
    c.send_raw(&join_xml(room, nick, id)).await;
    c.expect("self presence", |e| {
        e.name == "presence" && e.attr("id") == Some(id)
    })
    .await
}

/// Joins and reads up to the subject message that ends the join.
async fn joined(c: &mut Client, room: &str, nick: &str, id: &str) -> Element {
    let me = join(c, room, nick, id).await;
    assert_eq!(me.attr("type"), None, "join refused: {me:?}");
    subject(c).await;
    me
}

async fn subject(c: &mut Client) -> Element {
    c.expect("the subject", |e| {
        e.name == "message" && e.child("subject", CLIENT).is_some()
    })
    .await
}

/// The dialog behind a standard room, as its owner lists it over REST.
async fn dialog_named(srv: &TestServer, token: &str, name: &str) -> Value {
    let r = srv.http.get("/chat/Dialog?limit=100", Some(token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no dialog named {name}: {}", r.body))
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

const LOBBY: &str = "lobby@muc.localhost";

#[tokio::test]
async fn joining_a_new_room_name_creates_an_instant_room_owned_by_the_joiner_that_rest_sees() {
    let srv = TestServer::start().await;
    let u = srv.users("inst", 1).await;
    let mut a = online(&srv, u[0].1).await;
    let me = join(&mut a, LOBBY, "alice", "j1").await;
    assert_eq!(me.attr("from"), Some("lobby@muc.localhost/alice"));
    let c = codes(&me);
    for code in ["110", "201"] {
        assert!(c.contains(&code.to_owned()), "{c:?}");
    }
    let it = item(&me);
    assert_eq!(it.attr("affiliation"), Some("owner"));
    assert_eq!(it.attr("role"), Some("moderator"));
    // The join ends with the (empty) subject, from the room.
    let s = subject(&mut a).await;
    assert_eq!(s.attr("from"), Some(LOBBY));
    assert_eq!(s.child("subject", CLIENT).unwrap().text(), "");
    let d = dialog_named(&srv, &u[0].0, "lobby").await;
    assert_eq!(d["type"], 2);
    assert_eq!(d["user_id"], u[0].1);
    assert_eq!(d["occupants_ids"], json!([u[0].1]));
}

#[tokio::test]
async fn joining_a_room_that_exists_enters_it_without_creating_another() {
    let srv = TestServer::start().await;
    let u = srv.users("again", 2).await;
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    joined(&mut a, LOBBY, "alice", "j1").await;
    let me = joined(&mut b, "Lobby@muc.localhost", "bob", "j2").await;
    assert!(!codes(&me).contains(&"201".to_owned()));
    assert_eq!(item(&me).attr("affiliation"), Some("member"));
    assert_eq!(item(&me).attr("role"), Some("participant"));
    // The open room made bob a member of the dialog.
    let d = dialog_named(&srv, &u[1].0, "lobby").await;
    assert_eq!(d["occupants_ids"], json!([u[0].1, u[1].1]));
}

#[tokio::test]
async fn with_room_creation_off_an_unknown_room_is_not_found() {
    let mut cfg = test_config();
    cfg.xmpp.room_creation = false;
    let srv = TestServer::start_with(cfg).await;
    let u = srv.users("nocreate", 1).await;
    let mut a = online(&srv, u[0].1).await;
    let e = join(&mut a, LOBBY, "alice", "j1").await;
    assert_eq!(e.attr("type"), Some("error"));
    assert_eq!(condition(&e), "item-not-found");
}

#[tokio::test]
async fn any_nick_is_free_but_one_another_occupant_holds_is_a_conflict() {
    let srv = TestServer::start().await;
    let u = srv.users("nick", 3).await;
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    let mut c = online(&srv, u[2].1).await;
    joined(&mut a, LOBBY, "Zoë the owner", "j1").await;
    let e = join(&mut b, LOBBY, "Zoë the owner", "j2").await;
    assert_eq!(e.attr("type"), Some("error"));
    assert_eq!(condition(&e), "conflict");
    joined(&mut b, LOBBY, "bob", "j3").await;
    // The others are shown by nick.
    c.send_raw(&join_xml(LOBBY, "carol", "j4")).await;
    let seen = c
        .expect("bob's presence", |e| {
            e.name == "presence" && e.attr("from") == Some("lobby@muc.localhost/bob")
        })
        .await;
    assert_eq!(item(&seen).attr("affiliation"), Some("member"));
}

#[tokio::test]
async fn a_number_is_the_reserved_nick_of_that_user_alone() {
    let srv = TestServer::start().await;
    let u = srv.users("resv", 2).await;
    let mut b = online(&srv, u[1].1).await;
    let e = join(&mut b, LOBBY, &u[0].1.to_string(), "j1").await;
    assert_eq!(condition(&e), "conflict");
    joined(&mut b, LOBBY, &u[1].1.to_string(), "j2").await;
}

#[tokio::test]
async fn a_dialog_room_advertises_the_user_id_as_the_reserved_nick_and_a_standard_room_none() {
    let srv = TestServer::start().await;
    let u = srv.users("disco", 2).await;
    let d = srv
        .dialog(
            &u[0].0,
            json!({"type": 2, "name": "G", "occupants_ids": [u[1].1]}),
        )
        .await;
    let room = format!(
        "{}_{}@muc.localhost",
        srv.app.id.0,
        d["_id"].as_str().unwrap()
    );
    let mut b = online(&srv, u[1].1).await;
    let q = format!(
        "<iq type='get' id='r1' to='{room}'><query xmlns='http://jabber.org/protocol/disco#info' node='x-roomuser-item'/></iq>"
    );
    let r = b.iq("r1", &q).await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let id = r
        .child("query", "http://jabber.org/protocol/disco#info")
        .and_then(|q| q.child("identity", "http://jabber.org/protocol/disco#info"))
        .and_then(|i| i.attr("name").map(str::to_owned));
    assert_eq!(id, Some(u[1].1.to_string()));
    // A standard room reserves nothing.
    joined(&mut b, LOBBY, "bob", "j").await;
    let r = b
        .iq(
            "r2",
            &format!("<iq type='get' id='r2' to='{LOBBY}'><query xmlns='http://jabber.org/protocol/disco#info' node='x-roomuser-item'/></iq>"),
        )
        .await;
    let q = r
        .child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    assert!(q
        .child("identity", "http://jabber.org/protocol/disco#info")
        .is_none());
}

#[tokio::test]
async fn a_nick_change_is_unavailable_with_303_then_the_new_nick() {
    let srv = TestServer::start().await;
    let u = srv.users("chg", 2).await;
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    joined(&mut a, LOBBY, "alice", "j1").await;
    joined(&mut b, LOBBY, "bob", "j2").await;
    a.expect_named("presence").await; // bob's join
    b.send_raw(&format!("<presence id='n' to='{LOBBY}/robert'/>"))
        .await;
    let gone = a.expect_named("presence").await;
    assert_eq!(gone.attr("type"), Some("unavailable"));
    assert_eq!(gone.attr("from"), Some("lobby@muc.localhost/bob"));
    assert!(codes(&gone).contains(&"303".to_owned()));
    assert_eq!(item(&gone).attr("nick"), Some("robert"));
    let back = a.expect_named("presence").await;
    assert_eq!(back.attr("type"), None);
    assert_eq!(back.attr("from"), Some("lobby@muc.localhost/robert"));
    // The changer hears both, with 110.
    let mine = b
        .expect("own 303", |e| {
            e.name == "presence" && e.attr("type") == Some("unavailable")
        })
        .await;
    assert!(codes(&mine).contains(&"110".to_owned()));
    assert!(codes(&mine).contains(&"303".to_owned()));
}

#[tokio::test]
async fn a_standard_rooms_message_comes_from_the_senders_nick_to_joined_occupants_only() {
    let srv = TestServer::start().await;
    let u = srv.users("msg", 3).await;
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    let mut c = online(&srv, u[2].1).await;
    joined(&mut a, LOBBY, "alice", "j1").await;
    joined(&mut b, LOBBY, "bob", "j2").await;
    // c is not joined: may not post and hears nothing.
    c.send_raw(&format!(
        "<message to='{LOBBY}' type='groupchat' id='x'><body>hi</body></message>"
    ))
    .await;
    let e = c.expect_named("message").await;
    assert_eq!(e.attr("type"), Some("error"));
    assert_eq!(condition(&e), "not-acceptable");
    b.send_raw(&format!(
        "<message to='{LOBBY}' type='groupchat' id='m1'><body>hello room</body></message>"
    ))
    .await;
    for who in [&mut a, &mut b] {
        let m = who
            .expect("the message", |e| {
                e.name == "message" && e.attr("id") == Some("m1")
            })
            .await;
        assert_eq!(m.attr("from"), Some("lobby@muc.localhost/bob"));
        assert_eq!(m.child("body", CLIENT).unwrap().text(), "hello room");
    }
    // Stored in the dialog's history, as every standard room's message (REST sees it).
    let d = dialog_named(&srv, &u[0].0, "lobby").await;
    let h = history(&srv, &u[0].0, d["_id"].as_str().unwrap()).await;
    assert!(h.iter().any(|m| m["message"] == "hello room"), "{h:?}");
}

#[tokio::test]
async fn the_subject_set_by_a_moderator_reaches_occupants_and_joiners_get_it_last() {
    let srv = TestServer::start().await;
    let u = srv.users("subj", 3).await;
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    joined(&mut a, LOBBY, "alice", "j1").await;
    joined(&mut b, LOBBY, "bob", "j2").await;
    a.send_raw(&format!(
        "<message to='{LOBBY}' type='groupchat' id='s1'><subject>Release day</subject></message>"
    ))
    .await;
    for who in [&mut a, &mut b] {
        let s = subject(who).await;
        assert_eq!(s.attr("from"), Some("lobby@muc.localhost/alice"));
        assert_eq!(s.child("subject", CLIENT).unwrap().text(), "Release day");
    }
    let mut c = online(&srv, u[2].1).await;
    join(&mut c, LOBBY, "carol", "j3").await;
    let s = subject(&mut c).await;
    assert_eq!(s.child("subject", CLIENT).unwrap().text(), "Release day");
    assert_eq!(s.attr("from"), Some("lobby@muc.localhost/alice"));
}

/// Submits the owner's form with `fields` (var, value).
async fn configure(c: &mut Client, id: &str, fields: &[(&str, &str)]) -> Element {
    let mut f = String::new();
    for (var, value) in fields {
        f.push_str(&format!(
            "<field var='{var}'><value>{value}</value></field>"
        ));
    }
    c.iq(
        id,
        &format!(
            "<iq type='set' id='{id}' to='{LOBBY}'><query xmlns='{MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'>{f}</x></query></iq>"
        ),
    )
    .await
}

#[tokio::test]
async fn a_participant_changes_the_subject_only_while_the_configuration_lets_them() {
    let srv = TestServer::start().await;
    let u = srv.users("subjcfg", 2).await;
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    joined(&mut a, LOBBY, "alice", "j1").await;
    joined(&mut b, LOBBY, "bob", "j2").await;
    let r = configure(&mut a, "c1", &[("muc#roomconfig_changesubject", "0")]).await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    b.send_raw(&format!(
        "<message to='{LOBBY}' type='groupchat' id='s2'><subject>mine now</subject></message>"
    ))
    .await;
    let e = b
        .expect("refusal", |e| {
            e.name == "message" && e.attr("type") == Some("error")
        })
        .await;
    assert_eq!(condition(&e), "forbidden");
    configure(&mut a, "c2", &[("muc#roomconfig_changesubject", "1")]).await;
    b.send_raw(&format!(
        "<message to='{LOBBY}' type='groupchat' id='s3'><subject>mine now</subject></message>"
    ))
    .await;
    let s = subject(&mut a).await;
    assert_eq!(s.attr("from"), Some("lobby@muc.localhost/bob"));
}

#[tokio::test]
async fn the_owners_form_is_the_dialogs_name_description_and_members_only() {
    let srv = TestServer::start().await;
    let u = srv.users("form", 3).await;
    let mut a = online(&srv, u[0].1).await;
    joined(&mut a, LOBBY, "alice", "j1").await;
    let form = a
        .iq(
            "g",
            &format!("<iq type='get' id='g' to='{LOBBY}'><query xmlns='{MUC_OWNER}'/></iq>"),
        )
        .await;
    let x = form
        .child("query", MUC_OWNER)
        .and_then(|q| q.child("x", "jabber:x:data"))
        .expect("a form");
    let vars: Vec<&str> = x.elements().filter_map(|f| f.attr("var")).collect();
    for v in [
        "muc#roomconfig_roomname",
        "muc#roomconfig_roomdesc",
        "muc#roomconfig_membersonly",
        "muc#roomconfig_persistentroom",
        "muc#roomconfig_changesubject",
    ] {
        assert!(vars.contains(&v), "{vars:?}");
    }
    let r = configure(
        &mut a,
        "s",
        &[
            ("FORM_TYPE", "http://jabber.org/protocol/muc#roomconfig"),
            ("muc#roomconfig_roomname", "The Lobby"),
            ("muc#roomconfig_roomdesc", "where we meet"),
            ("muc#roomconfig_membersonly", "1"),
        ],
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let d = dialog_named(&srv, &u[0].0, "The Lobby").await;
    assert_eq!(d["description"], "where we meet");
    // Members-only: an outsider cannot enter (nor see that the room exists).
    let mut c = online(&srv, u[2].1).await;
    let e = join(&mut c, LOBBY, "carol", "j3").await;
    assert_eq!(e.attr("type"), Some("error"));
    assert_eq!(condition(&e), "item-not-found");
    // Someone who is not the owner gets no form.
    let id = d["_id"].as_str().unwrap();
    let put = srv
        .http
        .put_json(
            &format!("/chat/Dialog/{id}"),
            Some(&u[0].0),
            json!({"push_all": {"occupants_ids": [u[1].1]}}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let mut b = online(&srv, u[1].1).await;
    let r = b
        .iq(
            "g2",
            &format!("<iq type='get' id='g2' to='{LOBBY}'><query xmlns='{MUC_OWNER}'/></iq>"),
        )
        .await;
    assert_eq!(condition(&r), "forbidden");
}

async fn admin_set(c: &mut Client, id: &str, item: &str) -> Element {
    c.iq(
        id,
        &format!(
            "<iq type='set' id='{id}' to='{LOBBY}'><query xmlns='{MUC_ADMIN}'>{item}</query></iq>"
        ),
    )
    .await
}

#[tokio::test]
async fn affiliation_admin_makes_a_dialog_admin_and_only_the_owner_may() {
    let srv = TestServer::start().await;
    let u = srv.users("aff", 3).await;
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    let mut c = online(&srv, u[2].1).await;
    joined(&mut a, LOBBY, "alice", "j1").await;
    joined(&mut b, LOBBY, "bob", "j2").await;
    joined(&mut c, LOBBY, "carol", "j3").await;
    // A member may not make admins (the roles table: ManageAdmins is the owner's).
    let r = admin_set(&mut c, "x", "<item nick='bob' affiliation='admin'/>").await;
    assert_eq!(condition(&r), "forbidden");
    let r = admin_set(&mut a, "y", "<item nick='bob' affiliation='admin'/>").await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let d = dialog_named(&srv, &u[0].0, "lobby").await;
    assert_eq!(d["admins_ids"], json!([u[1].1]));
    // The room shows bob's new role.
    let p = c
        .expect("bob's new role", |e| {
            e.name == "presence"
                && e.attr("from") == Some("lobby@muc.localhost/bob")
                && e.child("x", MUC_USER)
                    .and_then(|x| x.child("item", MUC_USER))
                    .is_some_and(|i| i.attr("affiliation") == Some("admin"))
        })
        .await;
    assert_eq!(item(&p).attr("role"), Some("moderator"));
    // The admin list reads the dialog.
    let l = a
        .iq(
            "l",
            &format!("<iq type='get' id='l' to='{LOBBY}'><query xmlns='{MUC_ADMIN}'><item affiliation='admin'/></query></iq>"),
        )
        .await;
    let jids: Vec<String> = l
        .child("query", MUC_ADMIN)
        .unwrap()
        .elements()
        .filter_map(|i| i.attr("jid").map(str::to_owned))
        .collect();
    assert_eq!(jids, vec![format!("{}@localhost", srv.local(u[1].1))]);
}

#[tokio::test]
async fn affiliation_none_removes_from_the_dialog_and_outcast_bans_from_the_room() {
    let srv = TestServer::start().await;
    let u = srv.users("ban", 3).await;
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    let mut c = online(&srv, u[2].1).await;
    joined(&mut a, LOBBY, "alice", "j1").await;
    joined(&mut b, LOBBY, "bob", "j2").await;
    joined(&mut c, LOBBY, "carol", "j3").await;
    let r = admin_set(&mut a, "n", "<item nick='bob' affiliation='none'/>").await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let gone = b
        .expect("removed", |e| {
            e.name == "presence" && e.attr("type") == Some("unavailable")
        })
        .await;
    assert!(codes(&gone).contains(&"321".to_owned()), "{gone:?}");
    let d = dialog_named(&srv, &u[0].0, "lobby").await;
    assert_eq!(d["occupants_ids"], json!([u[0].1, u[2].1]));
    // Outcast: out, and no way back into the open room.
    let jid = format!("{}@localhost", srv.local(u[2].1));
    let r = admin_set(
        &mut a,
        "o",
        &format!("<item jid='{jid}' affiliation='outcast'/>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    c.expect("banned", |e| {
        e.name == "presence" && e.attr("type") == Some("unavailable")
    })
    .await;
    let e = join(&mut c, LOBBY, "carol", "j4").await;
    assert_eq!(condition(&e), "forbidden");
    // bob, only removed, may come back in.
    joined(&mut b, LOBBY, "bob", "j5").await;
}

#[tokio::test]
async fn role_none_kicks_with_307_and_only_a_moderator_may() {
    let srv = TestServer::start().await;
    let u = srv.users("kick", 3).await;
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    let mut c = online(&srv, u[2].1).await;
    joined(&mut a, LOBBY, "alice", "j1").await;
    joined(&mut b, LOBBY, "bob", "j2").await;
    joined(&mut c, LOBBY, "carol", "j3").await;
    let r = admin_set(&mut b, "k0", "<item nick='carol' role='none'/>").await;
    assert_eq!(condition(&r), "forbidden");
    let r = admin_set(&mut b, "k1", "<item nick='alice' role='none'/>").await;
    assert_eq!(condition(&r), "forbidden");
    let r = admin_set(
        &mut a,
        "k2",
        "<item nick='carol' role='none'><reason>calm down</reason></item>",
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let mine = c
        .expect("kicked", |e| {
            e.name == "presence" && e.attr("type") == Some("unavailable")
        })
        .await;
    let cs = codes(&mine);
    assert!(
        cs.contains(&"307".to_owned()) && cs.contains(&"110".to_owned()),
        "{cs:?}"
    );
    let seen = b
        .expect("carol leaves", |e| {
            e.name == "presence"
                && e.attr("from") == Some("lobby@muc.localhost/carol")
                && e.attr("type") == Some("unavailable")
        })
        .await;
    assert!(codes(&seen).contains(&"307".to_owned()));
    // A kick is not a removal: carol stays a member of the dialog and may come back.
    let d = dialog_named(&srv, &u[0].0, "lobby").await;
    assert!(d["occupants_ids"]
        .as_array()
        .unwrap()
        .contains(&json!(u[2].1)));
    joined(&mut c, LOBBY, "carol", "j4").await;
}

#[tokio::test]
async fn a_private_message_through_the_room_reaches_the_occupant_from_the_senders_nick() {
    let srv = TestServer::start().await;
    let u = srv.users("pm", 3).await;
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    let mut c = online(&srv, u[2].1).await;
    joined(&mut a, LOBBY, "alice", "j1").await;
    joined(&mut b, LOBBY, "bob", "j2").await;
    a.send_raw(&format!(
        "<message to='{LOBBY}/bob' type='chat' id='pm1'><body>psst</body></message>"
    ))
    .await;
    let m = b
        .expect("the private message", |e| {
            e.name == "message" && e.attr("id") == Some("pm1")
        })
        .await;
    assert_eq!(m.attr("type"), Some("chat"));
    assert_eq!(m.attr("from"), Some("lobby@muc.localhost/alice"));
    assert_eq!(m.attr("to"), Some(b.jid.as_str()));
    assert!(m.child("x", MUC_USER).is_some());
    // To a nick nobody holds: item-not-found; from outside the room: not-acceptable.
    a.send_raw(&format!(
        "<message to='{LOBBY}/nobody' type='chat' id='pm2'><body>?</body></message>"
    ))
    .await;
    let e = a
        .expect("refusal", |e| {
            e.name == "message" && e.attr("id") == Some("pm2")
        })
        .await;
    assert_eq!(condition(&e), "item-not-found");
    c.send_raw(&format!(
        "<message to='{LOBBY}/bob' type='chat' id='pm3'><body>?</body></message>"
    ))
    .await;
    let e = c
        .expect("refusal", |e| {
            e.name == "message" && e.attr("id") == Some("pm3")
        })
        .await;
    assert_eq!(condition(&e), "not-acceptable");
}

#[tokio::test]
async fn a_self_ping_is_answered_while_joined_and_not_acceptable_when_not() {
    let srv = TestServer::start().await;
    let u = srv.users("ping", 2).await;
    let mut a = online(&srv, u[0].1).await;
    joined(&mut a, LOBBY, "alice", "j1").await;
    let ping = |id: &str, nick: &str| {
        format!("<iq type='get' id='{id}' to='{LOBBY}/{nick}'><ping xmlns='urn:xmpp:ping'/></iq>")
    };
    let r = a.iq("p1", &ping("p1", "alice")).await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    // Another connection of the same user has not joined.
    let mut a2 = Client::login_as(
        srv.xmpp,
        Via::Tcp,
        &srv.local(u[0].1),
        PASSWORD,
        Some("two"),
    )
    .await;
    let r = a2.iq("p2", &ping("p2", "alice")).await;
    assert_eq!(condition(&r), "not-acceptable");
    // Gone from the room: not acceptable any more.
    a.send_raw(&format!(
        "<presence type='unavailable' to='{LOBBY}/alice'/>"
    ))
    .await;
    a.expect("left", |e| {
        e.name == "presence" && e.attr("type") == Some("unavailable")
    })
    .await;
    let mut b = online(&srv, u[1].1).await;
    joined(&mut b, LOBBY, "bob", "j2").await; // keeps the room alive
    let r = a.iq("p3", &ping("p3", "alice")).await;
    assert_eq!(condition(&r), "not-acceptable");
}

fn moderate_v1(id: &str, msg: &str) -> String {
    format!(
        "<iq type='set' id='{id}' to='{LOBBY}'><moderate id='{msg}' xmlns='urn:xmpp:message-moderate:1'><retract xmlns='urn:xmpp:message-retract:1'/><reason>spam</reason></moderate></iq>"
    )
}

/// b posts a stored message in the lobby; its stanza id (= the REST `_id`).
async fn post(a: &mut Client, b: &mut Client, id: &str) -> String {
    b.send_raw(&format!(
        "<message to='{LOBBY}' type='groupchat' id='{id}'><body>buy now</body></message>"
    ))
    .await;
    let m = a
        .expect("the post", |e| {
            e.name == "message" && e.attr("id") == Some(id)
        })
        .await;
    b.expect("reflected", |e| {
        e.name == "message" && e.attr("id") == Some(id)
    })
    .await;
    m.child("stanza-id", "urn:xmpp:sid:0")
        .and_then(|s| s.attr("id"))
        .expect("a stanza id")
        .to_owned()
}

#[tokio::test]
async fn a_moderator_retracts_a_message_for_everyone_as_the_forced_delete() {
    let srv = TestServer::start().await;
    let u = srv.users("mod", 3).await;
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    let mut c = online(&srv, u[2].1).await;
    joined(&mut a, LOBBY, "alice", "j1").await;
    joined(&mut b, LOBBY, "bob", "j2").await;
    joined(&mut c, LOBBY, "carol", "j3").await;
    let sid = post(&mut a, &mut b, "spam1").await;
    // A participant may not moderate someone else's message.
    let r = c.iq("m0", &moderate_v1("m0", &sid)).await;
    assert_eq!(condition(&r), "forbidden");
    let r = a.iq("m1", &moderate_v1("m1", &sid)).await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let n = c
        .expect("the retraction", |e| {
            e.name == "message" && e.child("retract", "urn:xmpp:message-retract:1").is_some()
        })
        .await;
    let retract = n.child("retract", "urn:xmpp:message-retract:1").unwrap();
    assert_eq!(retract.attr("id"), Some(sid.as_str()));
    let by = retract
        .child("moderated", "urn:xmpp:message-moderate:1")
        .and_then(|m| m.attr("by"));
    assert_eq!(by, Some("lobby@muc.localhost/alice"));
    assert_eq!(n.attr("from"), Some(LOBBY));
    // Gone from the history REST serves.
    let d = dialog_named(&srv, &u[0].0, "lobby").await;
    let h = history(&srv, &u[0].0, d["_id"].as_str().unwrap()).await;
    assert!(h.iter().all(|m| m["_id"] != sid.as_str()), "{h:?}");
    // An unknown id: item-not-found.
    let r = a.iq("m2", &moderate_v1("m2", &sid)).await;
    assert_eq!(condition(&r), "item-not-found");
}

#[tokio::test]
async fn moderation_version_0_inside_apply_to_is_served_too() {
    let srv = TestServer::start().await;
    let u = srv.users("mod0", 2).await;
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    joined(&mut a, LOBBY, "alice", "j1").await;
    joined(&mut b, LOBBY, "bob", "j2").await;
    let sid = post(&mut a, &mut b, "spam0").await;
    let r = a
        .iq(
            "v0",
            &format!(
                "<iq type='set' id='v0' to='{LOBBY}'><apply-to id='{sid}' xmlns='urn:xmpp:fasten:0'><moderate xmlns='urn:xmpp:message-moderate:0'><retract xmlns='urn:xmpp:message-retract:0'/></moderate></apply-to></iq>"
            ),
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let n = b
        .expect("the retraction", |e| {
            e.name == "message" && e.child("apply-to", "urn:xmpp:fasten:0").is_some()
        })
        .await;
    let moderated = n
        .child("apply-to", "urn:xmpp:fasten:0")
        .and_then(|a| a.child("moderated", "urn:xmpp:message-moderate:0"))
        .expect("moderated");
    assert!(moderated
        .child("retract", "urn:xmpp:message-retract:0")
        .is_some());
}

#[tokio::test]
async fn a_temporary_room_goes_with_its_last_occupant() {
    let srv = TestServer::start().await;
    let u = srv.users("temp", 1).await;
    let mut a = online(&srv, u[0].1).await;
    joined(&mut a, LOBBY, "alice", "j1").await;
    let r = configure(&mut a, "t", &[("muc#roomconfig_persistentroom", "0")]).await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let id = dialog_named(&srv, &u[0].0, "lobby").await["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    a.send_raw(&format!(
        "<presence type='unavailable' to='{LOBBY}/alice'/>"
    ))
    .await;
    a.expect("left", |e| {
        e.name == "presence" && e.attr("type") == Some("unavailable")
    })
    .await;
    let mut gone = false;
    for _ in 0..50 {
        let r = srv
            .http
            .get(&format!("/chat/Dialog?_id={id}"), Some(&u[0].0))
            .await;
        if r.json()["items"].as_array().is_some_and(|i| i.is_empty()) {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone, "the temporary room's dialog is still there");
    // The name is free again: joining creates a new room.
    let me = join(&mut a, LOBBY, "alice", "j2").await;
    assert!(codes(&me).contains(&"201".to_owned()));
}

const SLIXMPP: &str = r#"
import asyncio, ssl, sys
import slixmpp
from slixmpp.exceptions import IqError

owner_jid, guest_jid, password, host, port, room = sys.argv[1:7]

def make(jid):
    c = slixmpp.ClientXMPP(jid, password)
    c.register_plugin("xep_0030")
    c.register_plugin("xep_0045")
    c.register_plugin("xep_0004")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c.ssl_context = ctx
    return c

async def main():
    owner, guest = make(owner_jid), make(guest_jid)
    for c in (owner, guest):
        started = asyncio.get_event_loop().create_future()
        c.add_event_handler("session_start", lambda e, f=started: f.done() or f.set_result(True))
        c.connect((host, int(port)), force_starttls=True)
        await asyncio.wait_for(started, 10)
        c.send_presence()
    muc, gmuc = owner.plugin["xep_0045"], guest.plugin["xep_0045"]
    # Create the room by joining it (an instant room: status 201).
    pres, subject, _, _ = await muc.join_muc_wait(room, "owner", timeout=10)
    assert 201 in pres["muc"]["status_codes"], pres
    assert pres["muc"]["affiliation"] == "owner", pres
    # Set the subject, as a moderator.
    got = asyncio.get_event_loop().create_future()
    owner.add_event_handler("groupchat_subject", lambda m: got.done() or got.set_result(m))
    muc.set_subject(room, "slixmpp was here")
    m = await asyncio.wait_for(got, 10)
    assert m["subject"] == "slixmpp was here", m
    # Configure: read the form, rename the room, submit it back.
    form = await muc.get_room_config(room, timeout=10)
    fields = form.get_fields()
    assert "muc#roomconfig_roomname" in fields, fields
    form.set_values({"muc#roomconfig_roomname": "Configured by slixmpp"})
    await muc.set_room_config(room, form, timeout=10)
    # A guest joins, sees the subject, and is kicked.
    _, gsubject, _, _ = await gmuc.join_muc_wait(room, "guest", timeout=10)
    assert gsubject["subject"] == "slixmpp was here", gsubject
    kicked = asyncio.get_event_loop().create_future()
    guest.add_event_handler("muc::%s::presence" % room,
        lambda p: kicked.done() or (p["type"] == "unavailable" and 307 in p["muc"]["status_codes"] and kicked.set_result(p)))
    await muc.set_role(room, "guest", "none", reason="bye", timeout=10)
    await asyncio.wait_for(kicked, 10)
    for c in (owner, guest):
        c.disconnect()
    print("OK")

asyncio.get_event_loop().run_until_complete(asyncio.wait_for(main(), 60))
"#;

#[tokio::test]
async fn slixmpp_creates_a_room_by_joining_sets_the_subject_configures_it_and_kicks() {
    if !python::has("slixmpp", python::SLIXMPP) {
        return;
    }
    let srv = TestServer::start().await;
    let (owner, token) = srv.chat_user("sx_muc_owner").await;
    let (guest, _) = srv.chat_user("sx_muc_guest").await;
    let stdout = python::run_ok(
        SLIXMPP,
        [
            format!("{owner}@localhost"),
            format!("{guest}@localhost"),
            PASSWORD.to_owned(),
            srv.xmpp.tcp.ip().to_string(),
            srv.xmpp.tcp.port().to_string(),
            "sxroom@muc.localhost".to_owned(),
        ],
        90,
    )
    .await;
    assert!(stdout.contains("OK"), "slixmpp:\n{stdout}");
    // REST sees the room slixmpp made and configured.
    let d = dialog_named(&srv, &token, "Configured by slixmpp").await;
    assert_eq!(d["type"], 2);
}
