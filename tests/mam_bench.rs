//! The XEP-0313 archive's figures for BENCHMARKS.md — not a test of correctness, and ignored
//! by `cargo test`. The target: a page from a 1,000,000-message archive in under 10 ms
//! at p99. Run it alone, optimised:
//!
//! `cargo test --release --test suite mam_bench -- --ignored --nocapture`
//!
//! (`PARLEY_MAM_BENCH_MESSAGES` / `PARLEY_MAM_BENCH_QUERIES` shrink it for a quick debug smoke.)
//! One user's archive is bulk-inserted with SQL (`generate_series`) across their private
//! dialogs with `PEERS` other users, then pages are asked for over a real XMPP stream, one
//! query shape at a time: the oldest page, the newest page (`<before/>`), a page by `before-id`
//! deep in the archive, a page `with` one peer, and a `start`/`end` window. It prints each
//! shape's p50/p99 (the whole round trip: query, 100 result messages, `<fin/>`) and the
//! PostgreSQL plan of each, and fails if a plan scans the messages table.

use std::time::{Duration, Instant};

use parley::db::archive::{self, Filter, Position, Scope};
use parley::model::{ObjectId, UserId};
use serde_json::json;

use crate::common::xmpp::{Client, Via};
use crate::common::{test_config, TestServer, PASSWORD};

const MAM: &str = "urn:xmpp:mam:2";
/// The private dialogs the archive spreads over.
const PEERS: usize = 10;
/// `date_sent` of the first bulk message; each next one a second later, dialogs interleaved.
const BASE_DATE: i64 = 1_600_000_000;
const PAGE: usize = 100;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The bulk message at global position `g` (0-based, in date order): its dialog's index and
/// its number in that dialog.
fn place(g: usize) -> (usize, usize) {
    (g % PEERS, g / PEERS)
}

/// The id the bulk insert gives the `i`th message of dialog `k`.
fn bulk_id(k: usize, i: usize) -> String {
    format!("{:024x}", k * 100_000_000 + i)
}

fn bulk_date(k: usize, i: usize) -> i64 {
    BASE_DATE + (i * PEERS + k) as i64
}

/// An archive query with form fields and an RSM set.
fn query(id: usize, fields: &[(&str, String)], rsm: &str) -> String {
    let fields: String = fields
        .iter()
        .map(|(var, v)| format!("<field var='{var}'><value>{v}</value></field>"))
        .collect();
    format!(
        "<iq type='set' id='b{id}'><query xmlns='{MAM}' queryid='q{id}'>\
         <x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>\
         <value>{MAM}</value></field>{fields}</x>\
         <set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set></query></iq>"
    )
}

/// Sends one query and reads its results up to the answer; the round trip and the count.
async fn timed(c: &mut Client, id: usize, xml: &str) -> (Duration, usize) {
    let started = Instant::now();
    c.send_raw(xml).await;
    let want = format!("b{id}");
    let mut results = 0;
    loop {
        let e = c.next().await.expect("stream open");
        if e.name == "iq" && e.attr("id") == Some(want.as_str()) {
            assert_eq!(e.attr("type"), Some("result"), "{e:?}");
            return (started.elapsed(), results);
        }
        if e.name == "message" && e.child("result", MAM).is_some() {
            results += 1;
        }
    }
}

/// A query shape: the form fields and RSM set of its `q`th query.
type Shape<'a> = Box<dyn Fn(usize) -> (Vec<(&'static str, String)>, String) + 'a>;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --release --ignored --nocapture"]
async fn mam_bench() {
    let messages = env_or("PARLEY_MAM_BENCH_MESSAGES", 1_000_000).max(PEERS * PAGE * 4);
    let queries = env_or("PARLEY_MAM_BENCH_QUERIES", 200).max(1);
    let per_dialog = messages / PEERS;
    let total = per_dialog * PEERS;
    let mut c = test_config();
    c.chat.messages_per_sec_per_user = 0;
    c.http.requests_per_sec_per_token = 0;
    c.http.requests_per_sec_per_ip = 0;
    let srv = TestServer::start_with(c).await;
    let (alice_token, alice) = srv.user_token("mam_bench_alice").await;
    // One REST message per peer creates the private dialogs (and their inbox rows); it is
    // seq 1 of its dialog, the bulk messages follow from seq 2.
    let mut peers = Vec::new();
    for k in 0..PEERS {
        let (_, peer) = srv.user_token(&format!("mam_bench_peer{k}")).await;
        let r = srv
            .http
            .post_json(
                "/chat/Message.json",
                Some(&alice_token),
                json!({"recipient_id": peer, "message": "hello", "date_sent": BASE_DATE - 1}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let dialog = r.json()["chat_dialog_id"].as_str().unwrap().to_owned();
        peers.push((peer, dialog));
    }
    let loading = Instant::now();
    let db = srv.pool.get().await.unwrap();
    for (k, (peer, dialog)) in peers.iter().enumerate() {
        db.execute(
            "INSERT INTO messages (id, application_id, dialog_id, seq, sender_id, recipient_id,
                                   body, date_sent, created_at, updated_at)
             SELECT lpad(to_hex($1::bigint + i), 24, '0'), d.application_id, d.id, 2 + i,
                    CASE WHEN i % 2 = 0 THEN $2::bigint ELSE $3::bigint END,
                    CASE WHEN i % 2 = 0 THEN $3::bigint ELSE $2::bigint END,
                    'bench message ' || i, $4::bigint + i * $5::bigint + $6::bigint, now(), now()
             FROM dialogs d, generate_series(0, $7::bigint - 1) i WHERE d.id = $8",
            &[
                &((k * 100_000_000) as i64),
                &alice,
                peer,
                &BASE_DATE,
                &(PEERS as i64),
                &(k as i64),
                &(per_dialog as i64),
                dialog,
            ],
        )
        .await
        .unwrap();
        db.execute(
            "UPDATE dialogs SET message_seq = $1::bigint + 1, message_count = $1::bigint + 1 WHERE id = $2",
            &[&(per_dialog as i64), dialog],
        )
        .await
        .unwrap();
    }
    // VACUUM as autovacuum would after a load this size (PostgreSQL vacuums insert-only tables
    // too): it sets the visibility map that lets the count's bound read the index alone.
    db.execute("VACUUM (ANALYZE) messages", &[]).await.unwrap();
    // And flush the load's dirty pages now: otherwise the checkpointer writes ~1 GB while the
    // queries run, and the figures measure the disk, not a steady archive.
    db.execute("CHECKPOINT", &[]).await.unwrap();
    db.batch_execute("ANALYZE dialog_members; ANALYZE dialogs;")
        .await
        .unwrap();
    println!(
        "archive: {total} messages of user {alice} over {PEERS} private dialogs, loaded in {:.1} s",
        loading.elapsed().as_secs_f64()
    );

    // The plans, for the record, and the index-driven check.
    let deep = place(total * 6 / 10);
    let deep_pos = Position {
        date_sent: bulk_date(deep.0, deep.1),
        dialog_id: peers[deep.0].1.clone(),
        seq: 2 + deep.1 as i64,
    };
    let window = Filter {
        start: Some(BASE_DATE + (total / 2) as i64),
        end: Some(BASE_DATE + (total / 2) as i64 + 3600),
        ..Filter::default()
    };
    let dialog0: ObjectId = peers[0].1.parse().expect("a dialog id");
    let user = Scope::User(UserId(alice));
    let with = Scope::Dialog {
        id: &dialog0,
        user: UserId(alice),
        cleared_seq: 0,
    };
    let before_deep = Filter {
        before: vec![deep_pos.clone()],
        ..Filter::default()
    };
    let plans = [
        ("oldest page", user, Filter::default(), false),
        ("newest page", user, Filter::default(), true),
        ("before-id deep", user, before_deep.clone(), true),
        ("with one peer", with, Filter::default(), true),
        ("start/end window", user, window, false),
    ];
    let mut conn = srv.pool.get().await.unwrap();
    let tx = conn.transaction().await.unwrap();
    for (name, scope, filter, backward) in &plans {
        let plan = archive::explain_page(&tx, *scope, filter, *backward, PAGE as i64 + 1)
            .await
            .unwrap();
        println!("EXPLAIN {name}:\n{plan}\n");
        assert!(!plan.contains("Seq Scan on messages"), "{name}: {plan}");
    }
    let (bound, exact) = archive::explain_count(&tx, user, &Filter::default(), 1000)
        .await
        .unwrap();
    println!("EXPLAIN count bound:\n{bound}\n\nEXPLAIN count exact:\n{exact}\n");
    for plan in [&bound, &exact] {
        assert!(!plan.contains("Seq Scan on messages"), "{plan}");
    }
    drop(tx);

    let mut a = Client::login(srv.xmpp, Via::Tcp, &srv.local(alice), PASSWORD).await;
    let peer0 = format!("{}@localhost", srv.local(peers[0].0));
    let mut n = 0;
    let shapes: [(&str, Shape); 5] = [
        (
            "oldest page",
            Box::new(|_| (vec![], format!("<max>{PAGE}</max>"))),
        ),
        (
            "newest page (<before/>)",
            Box::new(|_| (vec![], format!("<max>{PAGE}</max><before/>"))),
        ),
        (
            "before-id deep in the archive",
            Box::new(|q| {
                // A different cursor each time, between 10 % and 90 % of the archive.
                let g = total / 10 + (q * 7919) % (total * 8 / 10);
                let (k, i) = place(g);
                (
                    vec![("before-id", bulk_id(k, i))],
                    format!("<max>{PAGE}</max>"),
                )
            }),
        ),
        (
            "with one peer, before-id",
            Box::new(|q| {
                let i = per_dialog / 10 + (q * 7919) % (per_dialog * 8 / 10);
                (
                    vec![("with", peer0.clone()), ("before-id", bulk_id(0, i))],
                    format!("<max>{PAGE}</max>"),
                )
            }),
        ),
        (
            "start/end window (1 hour)",
            Box::new(|q| {
                let from = BASE_DATE + ((total / 10 + (q * 7919) % (total * 7 / 10)) as i64);
                let stamp = |s: i64| {
                    time::OffsetDateTime::from_unix_timestamp(s)
                        .unwrap()
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap()
                };
                (
                    vec![("start", stamp(from)), ("end", stamp(from + 3600))],
                    format!("<max>{PAGE}</max>"),
                )
            }),
        ),
    ];
    let mut verdicts = Vec::new();
    for (name, shape) in &shapes {
        // Warm-up: statements prepared, the pages' index pages cached as in steady use.
        for q in 0..queries.min(10) {
            let (fields, rsm) = shape(q + queries);
            n += 1;
            timed(&mut a, n, &query(n, &fields, &rsm)).await;
        }
        let mut times = Vec::with_capacity(queries);
        for q in 0..queries {
            let (fields, rsm) = shape(q);
            n += 1;
            let (took, results) = timed(&mut a, n, &query(n, &fields, &rsm)).await;
            assert_eq!(results, PAGE, "{name}: a full page");
            times.push(took);
        }
        times.sort();
        let (p50, p99) = (percentile(&times, 0.50), percentile(&times, 0.99));
        println!(
            "MAM {name}: {queries} pages of {PAGE}: p50 {:.2} ms, p99 {:.2} ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
        verdicts.push((name, p99));
    }
    for (name, p99) in verdicts {
        let met = if p99 < Duration::from_millis(10) {
            "met"
        } else {
            "NOT met"
        };
        println!("target p99 < 10 ms, {name}: {met}");
    }
    srv.stop().await;
}
