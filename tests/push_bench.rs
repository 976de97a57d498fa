//! The push outbox's figures for BENCHMARKS.md — not a test of correctness, and ignored by
//! `cargo test`. Run it alone, optimised:
//!
//! `cargo test --release --test suite push_bench -- --ignored --nocapture`
//!
//! It prints: `POST /chat/Message` creates/s to a recipient without devices and to one with a
//! device (the alert is enqueued in the message's transaction), then the outbox's delivery rate
//! to the local FCM fake after a restart with a full outbox.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::TestServer;
use crate::push_alerts::{credentials, fakes, gcm, outbox_len, subscribe};

const MESSAGES: usize = 2000;
const SENDERS: usize = 8;

/// `MESSAGES` REST creates from `SENDERS` concurrent callers to `to`; creates per second.
async fn creates(s: &TestServer, tokens: &[String], to: i64) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in tokens {
        let (http, token) = (s.http.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..MESSAGES / SENDERS {
                let r = http
                    .post_json(
                        "/chat/Message.json",
                        Some(&token),
                        json!({"recipient_id": to, "message": format!("bench {i}"), "send_to_chat": 1}),
                    )
                    .await;
                assert_eq!(r.status, 201, "{}", r.body);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    MESSAGES as f64 / started.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --release --ignored --nocapture"]
async fn push_bench() {
    let (f, mut c) = fakes().await;
    c.push.workers_enabled = false;
    c.chat.messages_per_sec_per_user = 0;
    c.http.requests_per_sec_per_token = 0;
    c.http.requests_per_sec_per_ip = 0;
    let first = TestServer::start_with(c.clone()).await;
    credentials(&first, &f).await;
    let mut tokens = Vec::new();
    for i in 0..SENDERS {
        tokens.push(first.user_token(&format!("bench_sender{i}")).await.0);
    }
    let (_, plain) = first.user_token("bench_no_device").await;
    let (phone, with_device) = first.user_token("bench_device").await;
    subscribe(&first, &phone, gcm("phone", "fcm-bench")).await;
    // Warm-up: statements prepared, dialogs created.
    creates(&first, &tokens, plain).await;
    creates(&first, &tokens, with_device).await;
    let queued_before = outbox_len(&first).await;
    let without = creates(&first, &tokens, plain).await;
    let with = creates(&first, &tokens, with_device).await;
    let queued = outbox_len(&first).await;
    println!(
        "POST /chat/Message, {SENDERS} callers: {without:.0}/s to a user without devices, \
         {with:.0}/s to a user with one device (alert enqueued: {} rows)",
        queued - queued_before
    );
    let (pool, clock) = (first.pool.clone(), first.clock.clone());
    first.stop().await;
    c.push.workers_enabled = true;
    let started = Instant::now();
    let second = parley::server::Server::start(Arc::new(c), pool.clone(), clock)
        .await
        .unwrap();
    let total = usize::try_from(queued).unwrap();
    loop {
        if f.fcm.deliveries().len() >= total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "outbox did not drain"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "outbox: {total} pushes delivered to the FCM fake in {secs:.2} s: {:.0} pushes/s",
        total as f64 / secs
    );
    second.shutdown().await;
}
