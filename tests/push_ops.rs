//! Running the push outbox: an application without provider credentials costs its messages no
//! device look-up (and gets alerts within `push.credentials_cache_secs` of `parley app
//! set-push`), the outbox depth is on /metrics without a count per scrape, and HTTP/1.1
//! connections to a provider or webhook are kept alive and reused.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::push;
use crate::common::spawn::{free_port, Parley};
use crate::common::{conn_string, connect, fresh_database, Http, TestServer};
use crate::push_alerts::{cli, fakes, outbox_len, send, subscribe};

/// Outbox rows of `kind` (`alert`, `webhook`, `event`).
async fn rows_of(s: &TestServer, kind: &str) -> i64 {
    let c = s.pool.get().await.unwrap();
    c.query_one("SELECT count(*) FROM push_outbox WHERE kind = $1", &[&kind])
        .await
        .unwrap()
        .get(0)
}

/// A browser subscription whose endpoint nobody serves (the workers are off in these tests).
fn web(udid: &str) -> Value {
    json!({"notification_channel": "web",
           "push_token": {"environment": "production", "web_endpoint": "http://127.0.0.1:9/push/x",
                          "web_auth": "AAAAAAAAAAAAAAAAAAAAAA",
                          "web_p256dh": "BLn9b-VR0ca83knDNZ32dCHGyjJp-1riX9ZTN40MqV8K_LpQmLqxC_DoHvqvFXO_nGdAB4W9dogZb_sM-uV4JbY"},
           "device": {"platform": "web", "udid": udid}})
}

#[tokio::test]
async fn an_application_without_push_credentials_enqueues_no_alerts_but_delivers_and_calls_its_webhook(
) {
    let (_f, mut c) = fakes().await;
    c.push.workers_enabled = false;
    let s = TestServer::start_with(c).await;
    parley::push::update_settings(&s.pool, s.app.id, |st| {
        st.webhook_url = Some("http://127.0.0.1:9/hook".into());
        st.webhook_secret = Some("a-webhook-secret-123".into());
        st.webhook_events = vec!["message.created".into()];
        Ok(())
    })
    .await
    .unwrap();
    let (alice, _) = s.user_token("alice_nocred").await;
    let (bob, bob_id) = s.user_token("bob_nocred").await;
    subscribe(&s, &bob, web("browser-nocred")).await;
    let m = send(&s, &alice, bob_id, "no push for this", json!({})).await;
    assert_eq!(rows_of(&s, "alert").await, 0);
    assert_eq!(rows_of(&s, "webhook").await, 1);
    let r = s
        .http
        .get(
            &format!(
                "/chat/Message.json?chat_dialog_id={}",
                m["chat_dialog_id"].as_str().unwrap()
            ),
            Some(&bob),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["items"][0]["message"], "no push for this");
    s.stop().await;
}

#[tokio::test]
async fn alerts_start_within_the_credentials_cache_time_after_set_push() {
    let (_f, mut c) = fakes().await;
    c.push.workers_enabled = false;
    c.push.credentials_cache_secs = 30;
    let s = TestServer::start_with(c).await;
    let (alice, _) = s.user_token("alice_setpush").await;
    let (bob, bob_id) = s.user_token("bob_setpush").await;
    subscribe(&s, &bob, web("browser-setpush")).await;
    send(&s, &alice, bob_id, "before", json!({})).await;
    assert_eq!(rows_of(&s, "alert").await, 0);
    let app = s.app.id.0.to_string();
    cli(&s, &["app", "set-push", "--id", &app, "--vapid-generate"]).await;
    // The server still trusts what it read before the command...
    send(&s, &alice, bob_id, "cached", json!({})).await;
    assert_eq!(rows_of(&s, "alert").await, 0);
    // ...until the cache time has passed.
    s.clock.advance(Duration::from_secs(31));
    send(&s, &alice, bob_id, "after", json!({})).await;
    assert_eq!(rows_of(&s, "alert").await, 1);
    s.stop().await;
}

/// The value of the unlabelled gauge `name` in a Prometheus text exposition.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn the_outbox_and_dead_letter_depths_are_sampled_onto_metrics() {
    // A process of its own: the metrics recorder is process-wide, and every test server in this
    // one samples its own (empty) outbox.
    let pg = fresh_database().await;
    let admin_addr = format!("127.0.0.1:{}", free_port());
    let _parley = Parley::start(
        "push-depth",
        &[
            ("PARLEY_DATABASE_URL", &conn_string(&pg)),
            ("PARLEY_ADMIN_ADDR", &admin_addr),
            ("PARLEY_PUSH_WORKERS_ENABLED", "false"),
            ("PARLEY_PUSH_DEPTH_SAMPLE_SECS", "1"),
        ],
    )
    .await;
    let db = connect(&pg).await;
    db.batch_execute(
        "INSERT INTO push_outbox (application_id, kind, payload, next_at, created_at)
         SELECT 1, 'webhook', '{}', now(), now() FROM generate_series(1, 3);
         INSERT INTO push_dead_letters (id, application_id, kind, payload, attempts, created_at,
                                        failed_at)
         SELECT i, 1, 'alert', '{}', 8, now(), now() FROM generate_series(1001, 1002) AS i;",
    )
    .await
    .unwrap();
    let admin = Http::new(admin_addr.parse().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = admin.get("/metrics", None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let seen = (
            gauge(&r.body, "parley_push_outbox_depth"),
            gauge(&r.body, "parley_push_dead_letters"),
        );
        if seen == (Some(3.0), Some(2.0)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "depth gauges {seen:?}; last scrape:\n{}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `n` messages one after the other, each once the webhook call of the one before has
/// arrived, and returns how many TCP connections the receiver accepted.
async fn webhook_connections(max_idle_per_host: usize, n: usize) -> usize {
    let (_f, mut c) = fakes().await;
    c.push.max_idle_per_host = max_idle_per_host;
    let s = TestServer::start_with(c).await;
    let receiver = push::webhook_receiver("keep-alive-secret-1").await;
    let url = format!("{}/hooks/parley", receiver.url("http"));
    parley::push::update_settings(&s.pool, s.app.id, |st| {
        st.webhook_url = Some(url);
        st.webhook_secret = Some("keep-alive-secret-1".into());
        st.webhook_events = vec!["message.created".into()];
        Ok(())
    })
    .await
    .unwrap();
    let (alice, _) = s.user_token("alice_keepalive").await;
    let (_, bob_id) = s.user_token("bob_keepalive").await;
    for i in 1..=n {
        send(&s, &alice, bob_id, &format!("m{i}"), json!({})).await;
        receiver.wait_for(i).await;
        // The row is deleted after the answer was read and its connection put back.
        for _ in 0..500 {
            if outbox_len(&s).await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(receiver.refusals().is_empty(), "{:?}", receiver.refusals());
    s.stop().await;
    receiver
        .connections
        .load(std::sync::atomic::Ordering::SeqCst)
}

#[tokio::test]
async fn consecutive_webhook_calls_reuse_one_kept_alive_connection() {
    assert_eq!(webhook_connections(8, 4).await, 1);
}

#[tokio::test]
async fn max_idle_per_host_zero_opens_a_connection_per_call() {
    assert_eq!(webhook_connections(0, 3).await, 3);
}
