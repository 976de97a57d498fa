//! The files service's figures for BENCHMARKS.md — not a test of correctness, and ignored by
//! `cargo test`. Run it alone, optimised:
//!
//! `cargo test --release --test suite files_bench -- --ignored --nocapture`
//!
//! It prints, for the disk store: upload MiB/s through Parley (`POST /blobs`, the SDK's
//! multipart form to `/storage/upload`, `PUT /blobs/{id}/complete`) and download MiB/s (the
//! `/blobs/{uid}/download` redirect, then the signed `/storage/{uid}` stream), `FILES` files of
//! `MIB` MiB with `IN_FLIGHT` at once; then the cost of a pre-signed URL: µs per `POST /blobs`
//! (record and upload form), µs per `GET /blobs/{uid}/download` redirect, and µs to sign one
//! URL in-process (disk and S3 SigV4). `FILES_BENCH_FILES` / `FILES_BENCH_MIB` /
//! `FILES_BENCH_URLS` override the sizes (a quick smoke: 4 / 1 / 50).

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::common::{test_config, TestServer};
use crate::rest_blobs::{post_form, split_url};

const IN_FLIGHT: usize = 4;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `GET` of an absolute URL, the body read and counted, never kept.
async fn read_all(url: &str) -> usize {
    let (addr, path) = split_url(url);
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut buf = vec![0u8; 256 * 1024];
    let mut head: Vec<u8> = Vec::new();
    let mut body = None;
    loop {
        let n = s.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        match body {
            Some(ref mut b) => *b += n,
            None => {
                head.extend_from_slice(&buf[..n]);
                if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    assert!(
                        head.starts_with(b"HTTP/1.1 200"),
                        "{}",
                        String::from_utf8_lossy(&head[..i])
                    );
                    body = Some(head.len() - i - 4);
                }
            }
        }
    }
    body.expect("a whole response")
}

async fn create(s: &TestServer, token: &str, i: usize) -> Value {
    let r = s
        .http
        .post_json(
            "/blobs",
            Some(token),
            json!({"blob": {"name": format!("bench{i}.bin"), "content_type": "application/octet-stream", "public": true}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["blob"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --release --ignored --nocapture"]
async fn files_bench() {
    let files = env_or("FILES_BENCH_FILES", 64);
    let mib = env_or("FILES_BENCH_MIB", 8);
    let urls = env_or("FILES_BENCH_URLS", 2000);
    let mut c = test_config();
    c.http.requests_per_sec_per_token = 0;
    c.http.requests_per_sec_per_ip = 0;
    c.storage.max_unfinished_per_user = 0;
    c.storage.max_blob_bytes = (mib as u64 + 1) << 20;
    let s = Arc::new(TestServer::start_with(c).await);
    let (token, _) = s.user_token("files_bench").await;
    let payload: Arc<Vec<u8>> = Arc::new((0..mib << 20).map(|i| (i % 251) as u8).collect());

    // Uploads: create, the multipart form, complete — IN_FLIGHT at once.
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..files {
        let (s, token, payload, gate) = (s.clone(), token.clone(), payload.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = gate.acquire_owned().await.unwrap();
            let blob = create(&s, &token, i).await;
            let params = blob["blob_object_access"]["params"].as_str().unwrap();
            let r = post_form(params, &payload, "application/octet-stream").await;
            assert_eq!(r.status, 201, "{}", r.body);
            let r = s
                .http
                .put_json(
                    &format!("/blobs/{}/complete", blob["id"]),
                    Some(&token),
                    json!({}),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            blob["uid"].as_str().unwrap().to_owned()
        }));
    }
    let mut uids = Vec::new();
    for t in tasks {
        uids.push(t.await.unwrap());
    }
    let up = (files * mib) as f64 / started.elapsed().as_secs_f64();

    // Downloads: the redirect, then the bytes — IN_FLIGHT at once.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for uid in uids.clone() {
        let (s, gate) = (s.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = gate.acquire_owned().await.unwrap();
            let r = s.http.get(&format!("/blobs/{uid}/download"), None).await;
            assert_eq!(r.status, 301, "{}", r.body);
            read_all(r.header("location").unwrap()).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), mib << 20);
    }
    let down = (files * mib) as f64 / started.elapsed().as_secs_f64();
    println!(
        "disk store, {files} files of {mib} MiB, {IN_FLIGHT} in flight: upload {up:.0} MiB/s, \
         download {down:.0} MiB/s"
    );

    // The cost of a pre-signed URL over HTTP, one caller (latency, not throughput).
    let started = Instant::now();
    for i in 0..urls {
        create(&s, &token, i).await;
    }
    let per_create = started.elapsed().as_secs_f64() * 1e6 / urls as f64;
    let uid = &uids[0];
    let started = Instant::now();
    for _ in 0..urls {
        let r = s.http.get(&format!("/blobs/{uid}/download"), None).await;
        assert_eq!(r.status, 301);
    }
    let per_redirect = started.elapsed().as_secs_f64() * 1e6 / urls as f64;

    // Signing alone, in-process: the disk store's HMAC and S3's SigV4 (POST policy and GET).
    let now = s.files().now();
    let n = 100_000;
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(s.files().store().download_url(uid, "image/png", now, 3600));
    }
    let disk_sign = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    let mut s3 = test_config().storage;
    s3.backend = "s3".into();
    s3.s3_endpoint = "http://127.0.0.1:9".into();
    s3.s3_bucket = "bench".into();
    s3.s3_access_key = "k".into();
    s3.s3_secret_key = "s".into();
    let store = parley::storage::S3Store::open(&s3).unwrap();
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(store.upload_url(uid, "image/png", 1 << 20, now, 3600));
    }
    let s3_form = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(store.download_url(uid, "image/png", now, 3600));
    }
    let s3_get = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "pre-signed URLs: POST /blobs {per_create:.0} µs, GET /blobs/{{uid}}/download redirect \
         {per_redirect:.0} µs (one caller, new connection each); signing alone: disk {disk_sign:.2} µs, \
         S3 POST form {s3_form:.2} µs, S3 GET {s3_get:.2} µs"
    );
}
