//! XEP-0045 rules aioxmpp's upstream end-to-end suite (`tools/upstream-suites.sh`) found
//! missing, each pinned here over real sockets: a non-anonymous room shows occupants' full
//! JIDs (a moderator bans by JID); a kick or ban carries the moderator's reason and a ban is
//! status 301, not an affiliation change; an occupant's presence error removes it with 333;
//! `xmpp.room_default_persistent = false` makes rooms created by joining temporary; mediated
//! invitations are passed on.

use parley::xmpp::stream::Element;

use crate::common::muc::{codes, item, online};
use crate::common::xmpp::Client;
use crate::common::{test_config, TestServer};

const MUC: &str = "http://jabber.org/protocol/muc";
const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
const CLIENT: &str = "jabber:client";
const ROOM: &str = "coven@muc.localhost";

/// Joins and reads up to the subject message that ends the join; the self-presence.
async fn joined(c: &mut Client, nick: &str, id: &str) -> Element {
    c.send_raw(&format!(
        "<presence id='{id}' to='{ROOM}/{nick}'><x xmlns='{MUC}'/></presence>"
    ))
    .await;
    let me = c
        .expect("self presence", |e| {
            e.name == "presence" && e.attr("id") == Some(id)
        })
        .await;
    assert_eq!(me.attr("type"), None, "join refused: {me:?}");
    c.expect("the subject", |e| {
        e.name == "message" && e.child("subject", CLIENT).is_some()
    })
    .await;
    me
}

fn reason(p: &Element) -> Option<String> {
    item(p).child("reason", MUC_USER).map(|r| r.text())
}

async fn admin_set(c: &mut Client, id: &str, item: &str) -> Element {
    c.iq(
        id,
        &format!(
            "<iq type='set' id='{id}' to='{ROOM}'><query xmlns='{MUC_ADMIN}'>{item}</query></iq>"
        ),
    )
    .await
}

fn unavailable_from(nick: &str) -> impl Fn(&Element) -> bool + '_ {
    move |e: &Element| {
        e.name == "presence"
            && e.attr("type") == Some("unavailable")
            && e.attr("from") == Some(&format!("{ROOM}/{nick}"))
    }
}

#[tokio::test]
async fn in_a_non_anonymous_room_every_occupant_sees_the_others_full_jid() {
    let srv = TestServer::start().await;
    let u = srv.users("nonanon", 2).await;
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    let me = joined(&mut a, "first", "j1").await;
    let a_jid = item(&me).attr("jid").map(str::to_owned);
    assert!(
        a_jid
            .as_deref()
            .is_some_and(|j| j.starts_with(&format!("{}@localhost/", srv.local(u[0].1)))),
        "{me:?}"
    );
    b.send_raw(&format!(
        "<presence id='j2' to='{ROOM}/second'><x xmlns='{MUC}'/></presence>"
    ))
    .await;
    // The newcomer sees the occupant already there with its full JID, and is seen with its own.
    let first = b
        .expect("first's presence", |e| {
            e.name == "presence" && e.attr("from") == Some(&format!("{ROOM}/first"))
        })
        .await;
    assert_eq!(item(&first).attr("jid").map(str::to_owned), a_jid);
    let second = a
        .expect("second joins", |e| {
            e.name == "presence" && e.attr("from") == Some(&format!("{ROOM}/second"))
        })
        .await;
    let b_jid = item(&second).attr("jid").unwrap_or_default().to_owned();
    assert!(
        b_jid.starts_with(&format!("{}@localhost/", srv.local(u[1].1))),
        "{second:?}"
    );
}

#[tokio::test]
async fn a_ban_by_jid_is_status_301_with_the_reason_for_the_banned_and_the_others() {
    let srv = TestServer::start().await;
    let u = srv.users("ban301", 3).await;
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    let mut c = online(&srv, u[2].1).await;
    joined(&mut a, "first", "j1").await;
    joined(&mut b, "second", "j2").await;
    joined(&mut c, "third", "j3").await;
    let jid = format!("{}@localhost", srv.local(u[1].1));
    let r = admin_set(
        &mut a,
        "b",
        &format!("<item jid='{jid}' affiliation='outcast'><reason>Treason!</reason></item>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let mine = b.expect("banned", unavailable_from("second")).await;
    let cs = codes(&mine);
    assert!(cs.contains(&"301".to_owned()), "{mine:?}");
    assert!(!cs.contains(&"321".to_owned()), "{mine:?}");
    assert_eq!(reason(&mine).as_deref(), Some("Treason!"));
    assert_eq!(item(&mine).attr("affiliation"), Some("outcast"));
    let seen = c.expect("second leaves", unavailable_from("second")).await;
    assert!(codes(&seen).contains(&"301".to_owned()), "{seen:?}");
    assert_eq!(reason(&seen).as_deref(), Some("Treason!"));
}

#[tokio::test]
async fn a_kick_carries_the_moderators_reason() {
    let srv = TestServer::start().await;
    let u = srv.users("kickwhy", 2).await;
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    joined(&mut a, "first", "j1").await;
    joined(&mut b, "second", "j2").await;
    let r = admin_set(
        &mut a,
        "k",
        "<item nick='second' role='none'><reason>Thou art no real witch</reason></item>",
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let mine = b.expect("kicked", unavailable_from("second")).await;
    assert!(codes(&mine).contains(&"307".to_owned()), "{mine:?}");
    assert_eq!(reason(&mine).as_deref(), Some("Thou art no real witch"));
    let seen = a.expect("second leaves", unavailable_from("second")).await;
    assert_eq!(reason(&seen).as_deref(), Some("Thou art no real witch"));
}

#[tokio::test]
async fn a_presence_error_from_an_occupant_removes_it_with_status_333() {
    let srv = TestServer::start().await;
    let u = srv.users("err333", 2).await;
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    joined(&mut a, "first", "j1").await;
    joined(&mut b, "second", "j2").await;
    b.send_raw(&format!(
        "<presence type='error' to='{ROOM}/second'><status>Client exited</status></presence>"
    ))
    .await;
    let mine = b.expect("removed", unavailable_from("second")).await;
    assert!(codes(&mine).contains(&"333".to_owned()), "{mine:?}");
    let seen = a.expect("second leaves", unavailable_from("second")).await;
    assert!(codes(&seen).contains(&"333".to_owned()), "{seen:?}");
}

#[tokio::test]
async fn with_room_default_persistent_off_a_room_created_by_joining_goes_with_its_last_occupant() {
    let mut cfg = test_config();
    cfg.xmpp.room_default_persistent = false;
    let srv = TestServer::start_with(cfg).await;
    let u = srv.users("tempdef", 2).await;
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    let me = joined(&mut a, "first", "j1").await;
    assert!(codes(&me).contains(&"201".to_owned()), "{me:?}");
    // A ban in the temporary room ends with the room.
    joined(&mut b, "second", "j2").await;
    let jid = format!("{}@localhost", srv.local(u[1].1));
    let r = admin_set(
        &mut a,
        "b",
        &format!("<item jid='{jid}' affiliation='outcast'/>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    b.expect("banned", unavailable_from("second")).await;
    a.send_raw(&format!("<presence type='unavailable' to='{ROOM}/first'/>"))
        .await;
    a.expect("left", unavailable_from("first")).await;
    // The room is deleted in the background: the banned user's join soon creates a new one
    // (within 10 s: the whole suite runs in parallel on two cores in CI).
    for i in 0..200 {
        let id = format!("r{i}");
        b.send_raw(&format!(
            "<presence id='{id}' to='{ROOM}/second'><x xmlns='{MUC}'/></presence>"
        ))
        .await;
        let p = b
            .expect("join answer", |e| {
                e.name == "presence" && e.attr("id") == Some(id.as_str())
            })
            .await;
        if p.attr("type").is_none() {
            assert!(codes(&p).contains(&"201".to_owned()), "{p:?}");
            assert_eq!(item(&p).attr("affiliation"), Some("owner"));
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the temporary room outlived its last occupant");
}

#[tokio::test]
async fn a_mediated_invitation_reaches_the_invitee_from_the_room_with_the_inviter_and_reason() {
    let srv = TestServer::start().await;
    let u = srv.users("invite", 3).await;
    let mut a = online(&srv, u[0].1).await;
    let mut c = online(&srv, u[2].1).await;
    joined(&mut a, "first", "j1").await;
    let invitee = format!("{}@localhost", srv.local(u[2].1));
    a.send_raw(&format!(
        "<message to='{ROOM}'><x xmlns='{MUC_USER}'><invite to='{invitee}'>\
         <reason>some invitation text</reason></invite></x></message>"
    ))
    .await;
    let m = c
        .expect("the invitation", |e| {
            e.name == "message" && e.child("x", MUC_USER).is_some()
        })
        .await;
    assert_eq!(m.attr("from"), Some(ROOM));
    let inv = m
        .child("x", MUC_USER)
        .and_then(|x| x.child("invite", MUC_USER))
        .cloned()
        .unwrap_or_else(|| panic!("no invite in {m:?}"));
    assert!(inv
        .attr("from")
        .is_some_and(|f| f.starts_with(&format!("{}@localhost", srv.local(u[0].1)))));
    assert_eq!(
        inv.child("reason", MUC_USER).map(|r| r.text()).as_deref(),
        Some("some invitation text")
    );
}

#[tokio::test]
async fn only_an_occupant_may_invite_to_a_room() {
    let srv = TestServer::start().await;
    let u = srv.users("noinvite", 2).await;
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    joined(&mut a, "first", "j1").await;
    let invitee = format!("{}@localhost", srv.local(u[0].1));
    b.send_raw(&format!(
        "<message id='i1' to='{ROOM}'><x xmlns='{MUC_USER}'><invite to='{invitee}'/></x></message>"
    ))
    .await;
    let e = b
        .expect("refused", |e| {
            e.name == "message" && e.attr("id") == Some("i1")
        })
        .await;
    assert_eq!(e.attr("type"), Some("error"), "{e:?}");
}

#[tokio::test]
async fn the_status_of_a_leaving_presence_is_shown_to_the_room() {
    let srv = TestServer::start().await;
    let u = srv.users("leavewhy", 2).await;
    let mut a = online(&srv, u[0].1).await;
    let mut b = online(&srv, u[1].1).await;
    joined(&mut a, "first", "j1").await;
    joined(&mut b, "second", "j2").await;
    b.send_raw(&format!(
        "<presence type='unavailable' to='{ROOM}/second'><status>boooring</status></presence>"
    ))
    .await;
    let seen = a.expect("second leaves", unavailable_from("second")).await;
    assert_eq!(
        seen.child("status", CLIENT).map(|s| s.text()).as_deref(),
        Some("boooring")
    );
}
