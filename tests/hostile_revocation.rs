//! Revocation reaches XMPP at once: logout, `DELETE /session`, a password change and
//! `DELETE /users/{id}` close the streams (and parked stream-management sessions) that rest on
//! what was revoked, before the REST answer is read; a deleted account's stream cannot store
//! anything, and the deletion removes the user's rows in one go. Each test ends by checking
//! that the server still serves.

use std::time::Duration;

use serde_json::json;

use crate::common::xmpp::{Client, Via};
use crate::common::{TestServer, PASSWORD};

const STREAMING: &str = "https://connectycube.com/protocol/status_streaming";

async fn ping_ok(c: &mut Client) {
    let r = c
        .iq(
            "alive",
            "<iq type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
}

async fn count(srv: &TestServer, sql: &str, id: i64) -> i64 {
    let c = srv.pool.get().await.unwrap();
    c.query_one(sql, &[&id]).await.unwrap().get(0)
}

/// A second user session of `login` (another device).
async fn second_session(srv: &TestServer, login: &str) -> String {
    let r = srv
        .http
        .post_json(
            "/session",
            None,
            json!({"application_id": srv.app.id.0, "auth_key": srv.app.auth_key,
                   "user": {"login": login, "password": PASSWORD}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["session"]["token"].as_str().unwrap().to_string()
}

/// `watcher` subscribes to the status of `local` (pushes when they come and go).
async fn watch_status(watcher: &mut Client, local: &str) {
    let r = watcher
        .iq(
            "w1",
            &format!(
                "<iq type='set' id='w1'><subscribe xmlns='{STREAMING}' user_jid='{local}@localhost' enable='true'/></iq>"
            ),
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
}

/// A resumable stream whose socket is then dropped: the session waits, parked, for `<resume/>`.
async fn parked(srv: &TestServer, local: &str, secret: &str) {
    let mut c = Client::login(srv.xmpp, Via::Tcp, local, secret).await;
    c.send_raw("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    c.expect_named("enabled").await;
    c.drop_socket();
    // Let the server notice the loss and park the session.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// The status push telling `watcher` that `local` has gone offline.
async fn expect_gone(watcher: &mut Client, local: &str) {
    let from = format!("{local}@localhost");
    watcher.patience = Duration::from_secs(5);
    // (The push of their coming online may come first.)
    watcher
        .expect("the offline push", |e| {
            e.name == "iq"
                && e.attr("from") == Some(from.as_str())
                && e.child("query", "jabber:iq:last")
                    .is_some_and(|q| q.text() == "offline")
        })
        .await;
}

#[tokio::test]
async fn logout_closes_the_streams_that_logged_in_with_that_token_only() {
    let srv = TestServer::start().await;
    let (alice, token) = srv.chat_user("alice_logout").await;
    let mut by_token = Client::login(srv.xmpp, Via::Tcp, &alice, &token).await;
    let mut by_password = Client::login(srv.xmpp, Via::Ws, &alice, PASSWORD).await;
    let r = srv.http.delete("/login", Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(by_token.stream_error().await, "not-authorized");
    ping_ok(&mut by_password).await;
    // The token no longer opens a stream.
    let mut c = Client::connect(srv.xmpp, Via::Tcp).await;
    c.open().await;
    assert_eq!(c.auth(&alice, &token).await, "not-authorized");
    srv.assert_serving().await;
    srv.stop().await;
}

#[tokio::test]
async fn ending_a_session_closes_its_streams_at_once() {
    let srv = TestServer::start().await;
    let (alice, token) = srv.chat_user("alice_end").await;
    let other = second_session(&srv, "alice_end").await;
    let mut a = Client::login(srv.xmpp, Via::DirectTls, &alice, &token).await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &alice, &other).await;
    let r = srv.http.delete("/session", Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(a.stream_error().await, "not-authorized");
    ping_ok(&mut b).await;
    srv.assert_serving().await;
    srv.stop().await;
}

#[tokio::test]
async fn logout_closes_a_parked_session_of_that_token() {
    let srv = TestServer::start().await;
    let (alice, token) = srv.chat_user("alice_park_out").await;
    let (bob, _) = srv.chat_user("bob_park_out").await;
    let mut watcher = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    watch_status(&mut watcher, &alice).await;
    parked(&srv, &alice, &token).await;
    let r = srv.http.delete("/login", Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Without revocation the parked session would wait for `xmpp.sm_resume_secs` (300 s).
    expect_gone(&mut watcher, &alice).await;
    srv.assert_serving().await;
    srv.stop().await;
}

#[tokio::test]
async fn a_password_change_resets_password_streams_and_ends_the_other_sessions() {
    let srv = TestServer::start().await;
    let (changer, id) = srv.user_token("alice_pw").await;
    let alice = srv.local(id);
    let other = second_session(&srv, "alice_pw").await;
    let mut by_password = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let mut by_other = Client::login(srv.xmpp, Via::Tcp, &alice, &other).await;
    let mut by_changer = Client::login(srv.xmpp, Via::Tcp, &alice, &changer).await;
    let r = srv
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
    ping_ok(&mut by_changer).await;
    // The other session is over for REST too; the changer's goes on.
    assert_eq!(srv.http.get("/session", Some(&other)).await.status, 401);
    assert_eq!(srv.http.get("/session", Some(&changer)).await.status, 200);
    srv.assert_serving().await;
    srv.stop().await;
}

#[tokio::test]
async fn deleting_a_user_closes_every_stream_and_parked_session() {
    let srv = TestServer::start().await;
    let (token, id) = srv.user_token("alice_del").await;
    let alice = srv.local(id);
    let (bob, _) = srv.chat_user("bob_del").await;
    let mut watcher = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    watch_status(&mut watcher, &alice).await;
    parked(&srv, &alice, PASSWORD).await;
    let mut open = Client::login(srv.xmpp, Via::Ws, &alice, &token).await;
    let r = srv.http.delete(&format!("/users/{id}"), Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(open.stream_error().await, "not-authorized");
    expect_gone(&mut watcher, &alice).await;
    srv.assert_serving().await;
    srv.stop().await;
}

#[tokio::test]
async fn a_deleted_users_open_stream_cannot_store_or_send_messages() {
    let srv = TestServer::start().await;
    let (token, id) = srv.user_token("alice_ghost").await;
    let alice = srv.local(id);
    let (bob, _) = srv.chat_user("bob_ghost").await;
    let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    let r = srv.http.delete(&format!("/users/{id}"), Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Sent right after the deletion was answered, on the still-open socket.
    a.send_raw(&format!(
        "<message to='{bob}@localhost' type='chat' id='ghost'><body>from beyond</body>\
         <extraParams xmlns='jabber:client'><save_to_history>1</save_to_history></extraParams>\
         </message>"
    ))
    .await;
    assert_eq!(a.stream_error().await, "not-authorized");
    b.patience = Duration::from_millis(500);
    while let Some(e) = b.try_next().await {
        assert_ne!(
            e.attr("id"),
            Some("ghost"),
            "a deleted user's message arrived"
        );
    }
    let stored = count(
        &srv,
        "SELECT count(*) FROM messages WHERE sender_id = $1",
        id,
    )
    .await;
    assert_eq!(stored, 0);
    srv.assert_serving().await;
    srv.stop().await;
}

#[tokio::test]
async fn deleting_a_user_removes_their_rows_in_one_go_and_keeps_others_history() {
    let srv = TestServer::start().await;
    let (token, id) = srv.user_token("alice_rows").await;
    let alice = srv.local(id);
    let (bob_token, bob_id) = srv.user_token("bob_rows").await;
    let bob = srv.local(bob_id);
    // History with Bob (inbox rows for both).
    let r = srv
        .http
        .post_json(
            "/chat/Message",
            Some(&token),
            json!({"recipient_id": bob_id, "message": "kept for bob"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Rosters both ways, a privacy list, a block, last activity.
    {
        let mut a = Client::login(srv.xmpp, Via::Tcp, &alice, PASSWORD).await;
        let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
        a.send_raw(&format!(
            "<presence to='{bob}@localhost' type='subscribe'/>"
        ))
        .await;
        b.expect_named("presence").await;
        b.send_raw(&format!(
            "<presence to='{alice}@localhost' type='subscribed'/>"
        ))
        .await;
        a.iq(
            "p1",
            "<iq type='set' id='p1'><query xmlns='jabber:iq:privacy'><list name='l'>\
             <item type='jid' value='9-9@localhost' action='deny' order='1'/></list></query></iq>",
        )
        .await;
        a.iq(
            "b1",
            "<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='8-9@localhost'/></block></iq>",
        )
        .await;
        ping_ok(&mut b).await;
        a.close().await;
    }
    // An offline message waiting for Alice (once her last stream has gone).
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    let tables = [
        "SELECT count(*) FROM xmpp_last_activity WHERE user_id = $1",
        "SELECT count(*) FROM xmpp_roster WHERE user_id = $1",
        "SELECT count(*) FROM xmpp_privacy_lists WHERE user_id = $1",
        "SELECT count(*) FROM xmpp_privacy_items WHERE user_id = $1",
        "SELECT count(*) FROM xmpp_blocklist WHERE user_id = $1",
        "SELECT count(*) FROM dialog_members WHERE user_id = $1",
        "SELECT count(*) FROM sessions WHERE user_id = $1",
    ];
    for _ in 0..100 {
        if count(&srv, tables[0], id).await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.send_raw(&format!(
        "<message to='{alice}@localhost' type='chat' id='off1'><body>later</body></message>"
    ))
    .await;
    ping_ok(&mut b).await;
    let offline = "SELECT count(*) FROM xmpp_offline WHERE user_id = $1";
    let bobs_roster = "SELECT count(*) FROM xmpp_roster WHERE user_id = $1";
    for sql in tables.iter().chain([&offline]) {
        assert!(count(&srv, sql, id).await > 0, "fixture: {sql}");
    }
    assert_eq!(count(&srv, bobs_roster, bob_id).await, 1, "fixture");
    let r = srv.http.delete(&format!("/users/{id}"), Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for sql in tables.iter().chain([&offline]) {
        assert_eq!(count(&srv, sql, id).await, 0, "left behind: {sql}");
    }
    assert_eq!(
        count(&srv, bobs_roster, bob_id).await,
        0,
        "Alice is gone from Bob's roster"
    );
    // Bob's history keeps what Alice wrote (his record), sender id and all.
    let kept = count(
        &srv,
        "SELECT count(*) FROM messages WHERE sender_id = $1",
        id,
    )
    .await;
    assert_eq!(kept, 1);
    let list = srv.http.get("/chat/Dialog", Some(&bob_token)).await;
    assert_eq!(list.json()["items"][0]["last_message"], "kept for bob");
    srv.assert_serving().await;
    srv.stop().await;
}
