//! Chat alerts and their delivery, against local fakes of FCM, APNs (HTTP/2 over TLS) and a
//! Web Push service that check what the real ones check: one push per device for an offline or
//! inactive recipient, none for an active, muted, `silent=1` or blocking one; a dead token
//! removes the subscription; an outage delays; a restart loses nothing and repeats nothing.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parley::config::Config;
use parley::model::AppId;
use serde_json::{json, Value};

use crate::common::push::{self, Fake};
use crate::common::xmpp::{Client, Via};
use crate::common::{conn_string, test_config, test_data_dir, TestServer, PASSWORD};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub(crate) struct Fakes {
    pub(crate) fcm: Arc<Fake>,
    apns: Arc<Fake>,
    apns_key: push::ApnsKey,
}

/// The fakes, and a configuration pointing Parley at them (fast polls and retries).
pub(crate) async fn fakes() -> (Fakes, Config) {
    let dir = test_data_dir().join(format!(
        "push-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let fcm = push::fcm().await;
    let apns_key = push::apns_key();
    let (tls, ca) = push::tls_for_localhost(&dir);
    let apns = push::apns(&apns_key, tls).await;
    let mut c = test_config();
    c.push.fcm_url = format!(
        "{}/v1/projects/{{project_id}}/messages:send",
        fcm.url("http")
    );
    c.push.fcm_token_url = format!("{}/token", fcm.url("http"));
    c.push.apns_url = apns.url("https");
    c.push.ca_file = ca;
    c.push.poll_interval_ms = 50;
    c.push.retry_base_secs = 1;
    c.push.retry_max_secs = 1;
    (
        Fakes {
            fcm,
            apns,
            apns_key,
        },
        c,
    )
}

/// The application's provider credentials, as `parley app set-push` stores them.
pub(crate) async fn credentials(s: &TestServer, f: &Fakes) {
    let account = push::service_account(&format!("{}/token", f.fcm.url("http")));
    let key = f.apns_key.pem.clone();
    let (private, public) = parley::push::webpush::generate_vapid().unwrap();
    parley::push::update_settings(&s.pool, s.app.id, |st| {
        st.fcm_service_account = Some(account);
        st.apns_key = Some(key);
        st.apns_key_id = Some(push::APNS_KEY_ID.into());
        st.apns_team_id = Some(push::APNS_TEAM.into());
        st.apns_topic = Some(push::APNS_TOPIC.into());
        st.vapid_private_key = Some(private);
        st.vapid_public_key = Some(public);
        Ok(())
    })
    .await
    .unwrap();
}

async fn start() -> (TestServer, Fakes) {
    let (f, c) = fakes().await;
    let s = TestServer::start_with(c).await;
    credentials(&s, &f).await;
    (s, f)
}

pub(crate) async fn subscribe(s: &TestServer, token: &str, body: Value) -> Value {
    let r = s
        .http
        .post_json("/subscriptions.json", Some(token), body)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

pub(crate) fn gcm(udid: &str, device_token: &str) -> Value {
    json!({"notification_channel": "gcm",
           "push_token": {"environment": "development", "client_identification_sequence": device_token},
           "device": {"platform": "android", "udid": udid}})
}

fn apns(udid: &str, device_token: &str) -> Value {
    json!({"notification_channel": "apns",
           "push_token": {"environment": "development", "client_identification_sequence": device_token},
           "device": {"platform": "ios", "udid": udid}})
}

/// Sends a 1:1 message over REST and returns it.
pub(crate) async fn send(s: &TestServer, token: &str, to: i64, text: &str, extra: Value) -> Value {
    let mut body = json!({"recipient_id": to, "message": text, "send_to_chat": 1});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let r = s
        .http
        .post_json("/chat/Message.json", Some(token), body)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

pub(crate) async fn outbox_len(s: &TestServer) -> i64 {
    let c = s.pool.get().await.unwrap();
    c.query_one("SELECT count(*) FROM push_outbox", &[])
        .await
        .unwrap()
        .get(0)
}

/// Waits until the workers have handled everything enqueued (at most 10 s).
async fn drained(s: &TestServer) {
    for _ in 0..200 {
        if outbox_len(s).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the push outbox never drained");
}

#[tokio::test]
async fn an_offline_recipient_gets_one_push_per_device() {
    let (s, f) = start().await;
    let (alice, _) = s.user_token("alice_off").await;
    let (bob, bob_id) = s.user_token("bob_off").await;
    subscribe(&s, &bob, gcm("phone", "fcm-token-1")).await;
    subscribe(&s, &bob, apns("tablet", "0a1b2c3d")).await;
    let m = send(&s, &alice, bob_id, "hello bob", json!({})).await;

    let fcm = f.fcm.wait_for(1).await;
    let data = &fcm[0].body["message"]["data"];
    assert_eq!(fcm[0].body["message"]["token"], "fcm-token-1");
    assert_eq!(data["message"], "alice_off: hello bob");
    assert_eq!(data["dialog_id"], m["chat_dialog_id"]);
    assert_eq!(data["message_id"], m["_id"]);
    let ios = f.apns.wait_for(1).await;
    assert_eq!(ios[0].path, "/3/device/0a1b2c3d");
    assert_eq!(ios[0].body["aps"]["alert"]["body"], "alice_off: hello bob");
    assert_eq!(
        ios[0].body["aps"]["badge"], 1,
        "the badge is the total unread count"
    );
    assert_eq!(ios[0].headers["apns-push-type"], "alert");
    assert_eq!(ios[0].body["dialog_id"], m["chat_dialog_id"]);
    drained(&s).await;
    assert_eq!(
        (f.fcm.deliveries().len(), f.apns.deliveries().len()),
        (1, 1)
    );
    assert!(f.fcm.refusals().is_empty() && f.apns.refusals().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn an_attachment_without_text_is_announced_as_attachment() {
    let (s, f) = start().await;
    let (alice, _) = s.user_token("alice_att").await;
    let (bob, bob_id) = s.user_token("bob_att").await;
    subscribe(&s, &bob, gcm("phone", "fcm-att")).await;
    let r = s
        .http
        .post_json(
            "/chat/Message.json",
            Some(&alice),
            json!({"recipient_id": bob_id, "attachments": [{"type": "image", "id": "b1"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let d = f.fcm.wait_for(1).await;
    assert_eq!(
        d[0].body["message"]["data"]["message"],
        "alice_att: attachment"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_connected_but_inactive_recipient_gets_a_push() {
    let (s, f) = start().await;
    let (alice, _) = s.user_token("alice_ina").await;
    let (bob, bob_id) = s.user_token("bob_ina").await;
    subscribe(&s, &bob, gcm("phone", "fcm-ina")).await;
    let mut b = Client::login(s.xmpp, Via::Ws, &s.local(bob_id), PASSWORD).await;
    let r = b
        .iq("m1", "<iq type='set' id='m1'><mobile xmlns='http://tigase.org/protocol/mobile#v2' enable='true'/></iq>")
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    send(&s, &alice, bob_id, "are you there?", json!({})).await;
    let d = f.fcm.wait_for(1).await;
    assert_eq!(
        d[0].body["message"]["data"]["message"],
        "alice_ina: are you there?"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_active_recipient_gets_no_push() {
    let (s, f) = start().await;
    let (alice, _) = s.user_token("alice_act").await;
    let (bob, bob_id) = s.user_token("bob_act").await;
    subscribe(&s, &bob, gcm("phone", "fcm-act")).await;
    let mut b = Client::login(s.xmpp, Via::Tcp, &s.local(bob_id), PASSWORD).await;
    b.available().await;
    send(&s, &alice, bob_id, "live", json!({})).await;
    b.expect_named("message").await;
    drained(&s).await;
    assert!(f.fcm.deliveries().is_empty(), "{:?}", f.fcm.deliveries());
    s.stop().await;
}

#[tokio::test]
async fn a_muted_dialog_gives_no_push() {
    let (s, f) = start().await;
    let (alice, _) = s.user_token("alice_mute").await;
    let (bob, bob_id) = s.user_token("bob_mute").await;
    subscribe(&s, &bob, gcm("phone", "fcm-mute")).await;
    let d = s
        .dialog(&alice, json!({"type": 3, "occupants_ids": [bob_id]}))
        .await;
    let id = d["_id"].as_str().unwrap();
    let r = s
        .http
        .put_json(
            &format!("/chat/Dialog/{id}/notifications.json"),
            Some(&bob),
            json!({"enabled": 0}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s
        .http
        .post_json(
            "/chat/Message.json",
            Some(&alice),
            json!({"chat_dialog_id": id, "message": "shh"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        outbox_len(&s).await,
        0,
        "nothing is enqueued for a muted dialog"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(f.fcm.deliveries().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn a_silent_message_gives_no_push() {
    let (s, f) = start().await;
    let (alice, _) = s.user_token("alice_sil").await;
    let (bob, bob_id) = s.user_token("bob_sil").await;
    subscribe(&s, &bob, gcm("phone", "fcm-sil")).await;
    send(&s, &alice, bob_id, "quiet", json!({"silent": 1})).await;
    assert_eq!(outbox_len(&s).await, 0);
    send(&s, &alice, bob_id, "loud", json!({})).await;
    let d = f.fcm.wait_for(1).await;
    drained(&s).await;
    assert_eq!(f.fcm.deliveries().len(), 1);
    assert_eq!(d[0].body["message"]["data"]["message"], "alice_sil: loud");
    s.stop().await;
}

#[tokio::test]
async fn a_group_message_alerts_each_offline_member_and_not_the_sender() {
    let (s, f) = start().await;
    let (alice, _) = s.user_token("alice_grp").await;
    let (bob, bob_id) = s.user_token("bob_grp").await;
    let (carol, carol_id) = s.user_token("carol_grp").await;
    subscribe(&s, &alice, gcm("a", "fcm-grp-alice")).await;
    subscribe(&s, &bob, gcm("b", "fcm-grp-bob")).await;
    subscribe(&s, &carol, gcm("c", "fcm-grp-carol")).await;
    let d = s
        .dialog(
            &alice,
            json!({"type": 2, "name": "Team", "occupants_ids": [bob_id, carol_id]}),
        )
        .await;
    let r = s
        .http
        .post_json(
            "/chat/Message.json",
            Some(&alice),
            json!({"chat_dialog_id": d["_id"], "message": "standup"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    f.fcm.wait_for(2).await;
    drained(&s).await;
    let mut tokens: Vec<String> = f
        .fcm
        .deliveries()
        .iter()
        .map(|d| d.body["message"]["token"].as_str().unwrap().to_owned())
        .collect();
    tokens.sort();
    assert_eq!(tokens, ["fcm-grp-bob", "fcm-grp-carol"]);
    s.stop().await;
}

#[tokio::test]
async fn a_token_the_provider_says_is_gone_removes_the_subscription() {
    let (s, f) = start().await;
    let (alice, _) = s.user_token("alice_410").await;
    let (bob, bob_id) = s.user_token("bob_410").await;
    subscribe(&s, &bob, apns("old-phone", "deadbeef")).await;
    subscribe(&s, &bob, gcm("android", "dead-fcm")).await;
    subscribe(&s, &bob, apns("new-phone", "0badcafe")).await;
    send(&s, &alice, bob_id, "ping", json!({})).await;
    f.apns.wait_for(1).await;
    drained(&s).await;
    let r = s.http.get("/subscriptions.json", Some(&bob)).await;
    let left: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            x["subscription"]["device"]["udid"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        left,
        ["new-phone"],
        "APNs 410 and FCM UNREGISTERED removed theirs"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_provider_outage_delays_the_push_and_never_drops_it() {
    let (s, f) = start().await;
    let (alice, _) = s.user_token("alice_down").await;
    let (bob, bob_id) = s.user_token("bob_down").await;
    subscribe(&s, &bob, gcm("phone", "fcm-down")).await;
    f.fcm.set_down(true);
    send(&s, &alice, bob_id, "eventually", json!({})).await;
    for _ in 0..100 {
        if f.fcm.requests.load(Ordering::SeqCst) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        f.fcm.requests.load(Ordering::SeqCst) >= 2,
        "the failed push was retried"
    );
    assert!(f.fcm.deliveries().is_empty());
    assert_eq!(outbox_len(&s).await, 1, "still waiting in the outbox");
    f.fcm.set_down(false);
    let d = f.fcm.wait_for(1).await;
    assert_eq!(
        d[0].body["message"]["data"]["message"],
        "alice_down: eventually"
    );
    s.stop().await;
}

#[tokio::test]
async fn after_max_attempts_a_push_goes_to_the_dead_letters() {
    let (f, mut c) = fakes().await;
    c.push.max_attempts = 2;
    let s = TestServer::start_with(c).await;
    credentials(&s, &f).await;
    let (alice, _) = s.user_token("alice_dl").await;
    let (bob, bob_id) = s.user_token("bob_dl").await;
    subscribe(&s, &bob, gcm("phone", "fcm-dl")).await;
    f.fcm.set_down(true);
    send(&s, &alice, bob_id, "lost?", json!({})).await;
    drained(&s).await;
    let db = s.pool.get().await.unwrap();
    let row = db
        .query_one(
            "SELECT kind, attempts, last_error FROM push_dead_letters",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "alert");
    assert_eq!(row.get::<_, i32>(1), 2);
    assert!(row.get::<_, String>(2).contains("503"));
    s.stop().await;
}

#[tokio::test]
async fn a_restart_with_a_full_outbox_delivers_each_push_once() {
    let (f, mut c) = fakes().await;
    c.push.workers_enabled = false;
    let first = TestServer::start_with(c.clone()).await;
    credentials(&first, &f).await;
    let (alice, _) = first.user_token("alice_rs").await;
    let (bob, bob_id) = first.user_token("bob_rs").await;
    subscribe(&first, &bob, gcm("phone", "fcm-rs")).await;
    for i in 0..5 {
        send(&first, &alice, bob_id, &format!("m{i}"), json!({})).await;
    }
    assert_eq!(outbox_len(&first).await, 5);
    let (pool, clock) = (first.pool.clone(), first.clock.clone());
    first.stop().await;
    c.push.workers_enabled = true;
    let second = parley::server::Server::start(Arc::new(c), pool.clone(), clock)
        .await
        .unwrap();
    let d = f.fcm.wait_for(5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut texts: Vec<String> = f
        .fcm
        .deliveries()
        .iter()
        .map(|d| {
            d.body["message"]["data"]["message"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        (0..5)
            .map(|i| format!("alice_rs: m{i}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(d.len(), 5);
    second.shutdown().await;
}

#[tokio::test]
async fn a_web_push_is_encrypted_for_the_browser_and_signed_with_vapid() {
    let (s, _f) = start().await;
    let browser = push::browser();
    let service = push::web_push(browser.clone()).await;
    let (alice, _) = s.user_token("alice_web").await;
    let (bob, bob_id) = s.user_token("bob_web").await;
    subscribe(
        &s,
        &bob,
        json!({"notification_channel": "web",
               "push_token": {"environment": "production", "web_endpoint": format!("{}/push/abc", service.url("http")),
                              "web_auth": browser.auth, "web_p256dh": browser.p256dh},
               "device": {"platform": "web", "udid": "browser-1"}}),
    )
    .await;
    send(&s, &alice, bob_id, "über web", json!({})).await;
    let d = service.wait_for(1).await;
    assert_eq!(d[0].body["message"], "alice_web: über web");
    assert_eq!(d[0].body["badge"], 1);
    assert!(service.refusals().is_empty(), "{:?}", service.refusals());
    s.stop().await;
}

#[tokio::test]
async fn the_alert_template_shapes_the_text() {
    let (s, f) = start().await;
    parley::push::update_settings(&s.pool, AppId(s.app.id.0), |st| {
        st.alert_template = Some("New from {sender_name} in {dialog_name}: {text}".into());
        Ok(())
    })
    .await
    .unwrap();
    let (alice, _) = s.user_token("alice_tpl").await;
    let (bob, bob_id) = s.user_token("bob_tpl").await;
    subscribe(&s, &bob, gcm("phone", "fcm-tpl")).await;
    let d = s
        .dialog(
            &alice,
            json!({"type": 2, "name": "Ops", "occupants_ids": [bob_id]}),
        )
        .await;
    let r = s
        .http
        .post_json(
            "/chat/Message.json",
            Some(&alice),
            json!({"chat_dialog_id": d["_id"], "message": "deploy"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let got = f.fcm.wait_for(1).await;
    assert_eq!(
        got[0].body["message"]["data"]["message"],
        "New from alice_tpl in Ops: deploy"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_webhook_receives_message_created_signed() {
    let (s, _f) = start().await;
    let receiver = push::webhook_receiver("a-webhook-secret-123").await;
    let url = format!("{}/hooks/parley", receiver.url("http"));
    parley::push::update_settings(&s.pool, s.app.id, |st| {
        st.webhook_url = Some(url);
        st.webhook_secret = Some("a-webhook-secret-123".into());
        st.webhook_events = vec!["message.created".into()];
        Ok(())
    })
    .await
    .unwrap();
    let (alice, _) = s.user_token("alice_hook").await;
    let (_, bob_id) = s.user_token("bob_hook").await;
    let m = send(&s, &alice, bob_id, "for the bot", json!({})).await;
    let d = receiver.wait_for(1).await;
    assert_eq!(d[0].headers["x-parley-event"], "message.created");
    assert_eq!(d[0].body["event"], "message.created");
    assert_eq!(d[0].body["data"]["_id"], m["_id"]);
    assert_eq!(d[0].body["data"]["message"], "for the bot");
    assert!(receiver.refusals().is_empty(), "{:?}", receiver.refusals());
    s.stop().await;
}

#[tokio::test]
async fn a_blocked_sender_gives_no_push() {
    let (s, f) = start().await;
    let (alice, alice_id) = s.user_token("alice_blk").await;
    let (bob, bob_id) = s.user_token("bob_blk").await;
    subscribe(&s, &bob, gcm("phone", "fcm-blk")).await;
    // Bob blocks Alice (XEP-0191), then goes offline: the block list is stored, not per stream.
    let mut b = Client::login(s.xmpp, Via::Tcp, &s.local(bob_id), PASSWORD).await;
    let r = b
        .iq(
            "b1",
            &format!(
                "<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='{}@localhost'/></block></iq>",
                s.local(alice_id)
            ),
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    b.send_raw("</stream:stream>").await;
    let _ = b.try_next().await;
    let r = s
        .http
        .post_json(
            "/chat/Message.json",
            Some(&alice),
            json!({"recipient_id": bob_id, "message": "let me in", "send_to_chat": 1}),
        )
        .await;
    // The message is stored (REST does not say who blocks whom); its alert is dropped.
    assert_eq!(r.status, 201, "{}", r.body);
    drained(&s).await;
    assert!(f.fcm.deliveries().is_empty(), "{:?}", f.fcm.deliveries());
    s.stop().await;
}

#[tokio::test]
async fn an_xmpp_message_saved_to_history_alerts_an_offline_recipient_once() {
    let (s, f) = start().await;
    let (_, alice_id) = s.user_token("alice_xh").await;
    let (bob, bob_id) = s.user_token("bob_xh").await;
    subscribe(&s, &bob, gcm("phone", "fcm-xh")).await;
    let mut a = Client::login(s.xmpp, Via::Tcp, &s.local(alice_id), PASSWORD).await;
    a.send_raw(&format!(
        "<message to='{}@localhost' type='chat' id='x1'><body>from xmpp</body>\
         <extraParams xmlns='jabber:client'><save_to_history>1</save_to_history></extraParams></message>",
        s.local(bob_id)
    ))
    .await;
    let d = f.fcm.wait_for(1).await;
    assert_eq!(
        d[0].body["message"]["data"]["message"],
        "alice_xh: from xmpp"
    );
    assert_eq!(d[0].body["message"]["token"], "fcm-xh");
    drained(&s).await;
    assert_eq!(f.fcm.deliveries().len(), 1, "{:?}", f.fcm.deliveries());
    s.stop().await;
}

/// `parley ARGS` as the operator runs it on the host: the real binary, the server's database.
pub(crate) async fn cli(s: &TestServer, args: &[&str]) -> Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(args)
        .env("PARLEY_DATABASE_URL", conn_string(&s.pg))
        .env("PARLEY_LOG", "warn")
        .output()
        .await
        .expect("run parley");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "parley {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[tokio::test]
async fn set_push_vapid_generate_prints_the_key_web_pushes_are_then_signed_with() {
    let (_f, c) = fakes().await;
    let s = TestServer::start_with(c).await;
    let app = s.app.id.0.to_string();
    let out = cli(&s, &["app", "set-push", "--id", &app, "--vapid-generate"]).await;
    let key = out["vapid_public_key"]
        .as_str()
        .expect("a public key")
        .to_owned();
    let browser = push::browser();
    let service = push::web_push(browser.clone()).await;
    let (alice, _) = s.user_token("alice_vapid").await;
    let (bob, bob_id) = s.user_token("bob_vapid").await;
    subscribe(
        &s,
        &bob,
        json!({"notification_channel": "web",
               "push_token": {"environment": "production", "web_endpoint": format!("{}/push/cli", service.url("http")),
                              "web_auth": browser.auth, "web_p256dh": browser.p256dh},
               "device": {"platform": "web", "udid": "browser-cli"}}),
    )
    .await;
    send(&s, &alice, bob_id, "signed by the cli key", json!({})).await;
    let d = service.wait_for(1).await;
    assert!(service.refusals().is_empty(), "{:?}", service.refusals());
    let auth = d[0].headers["authorization"].to_str().unwrap();
    assert!(auth.ends_with(&format!(", k={key}")), "{auth}");
    s.stop().await;
}

#[tokio::test]
async fn set_webhook_from_the_cli_makes_the_server_call_it() {
    let (_f, c) = fakes().await;
    let s = TestServer::start_with(c).await;
    let receiver = push::webhook_receiver("cli-webhook-secret-1").await;
    let url = format!("{}/hooks/cli", receiver.url("http"));
    let app = s.app.id.0.to_string();
    let out = cli(
        &s,
        &[
            "app",
            "set-webhook",
            "--id",
            &app,
            "--url",
            &url,
            "--secret",
            "cli-webhook-secret-1",
            "--events",
            "message.created,dialog.created",
        ],
    )
    .await;
    assert_eq!(out["webhook_url"], url.as_str());
    assert_eq!(
        out["webhook_events"],
        json!(["message.created", "dialog.created"])
    );
    let (alice, _) = s.user_token("alice_clihook").await;
    let (_, bob_id) = s.user_token("bob_clihook").await;
    let m = send(&s, &alice, bob_id, "hello backend", json!({})).await;
    let d = receiver.wait_for(1).await;
    assert!(receiver.refusals().is_empty(), "{:?}", receiver.refusals());
    let created = d
        .iter()
        .find(|d| d.body["event"] == "message.created")
        .expect("a message.created call");
    assert_eq!(created.body["data"]["_id"], m["_id"]);
    s.stop().await;
}
