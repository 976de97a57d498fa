//! `relay`: a deliberately minimal XMPP relay for calibrating the generator. It accepts any SASL
//! PLAIN login, binds `user@domain/rN`, ignores presence, and forwards each `<message>` as raw
//! bytes to the connection bound to the bare JID in its `to` (one resource per user). There is
//! no parsing beyond the framer's byte scanning, no storage, no MUC, no TLS. Running it on
//! one core with the generator on the other shows how fast the generator is and how close a
//! real server comes to the machine's limit. It is not a server: never expose it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::xml::{self, Frame, Framer};

#[derive(clap::Args, Clone, Debug)]
pub struct RelayArgs {
    /// Listen address (loopback only).
    #[arg(long, default_value = "127.0.0.1:5299")]
    pub addr: SocketAddr,
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// Exit after this many seconds.
    #[arg(long, value_parser = crate::common::parse_secs, default_value_t = 600.0)]
    pub duration: f64,
}

type Route = mpsc::UnboundedSender<Vec<u8>>;

/// Bare JID → the connection bound to it.
#[derive(Default)]
pub struct Routes {
    map: Mutex<HashMap<Vec<u8>, Route>>,
    pub relayed: AtomicU64,
}

/// Serve on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, domain: String, routes: Arc<Routes>) {
    let mut n = 0u64;
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        n += 1;
        let _ = sock.set_nodelay(true);
        tokio::spawn(connection(sock, n, domain.clone(), routes.clone()));
    }
}

fn bare(jid: &[u8]) -> &[u8] {
    match jid.iter().position(|&c| c == b'/') {
        Some(i) => &jid[..i],
        None => jid,
    }
}

async fn connection(sock: TcpStream, n: u64, domain: String, routes: Arc<Routes>) {
    let (mut rd, mut wr) = sock.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        let mut out = Vec::with_capacity(16 * 1024);
        while let Some(first) = rx.recv().await {
            out.clear();
            out.extend_from_slice(&first);
            while out.len() < 64 * 1024 {
                match rx.try_recv() {
                    Ok(more) => out.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if wr.write_all(&out).await.is_err() {
                break;
            }
        }
    });
    let mut framer = Framer::new(1 << 20);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut user: Option<Vec<u8>> = None;
    let mut bound: Option<Vec<u8>> = None;
    let mut cache: HashMap<Vec<u8>, Route> = HashMap::new();
    'read: loop {
        let got = match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(k) => k,
        };
        framer.extend(&chunk[..got]);
        loop {
            let frame = match framer.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => break 'read,
            };
            let reply = match frame {
                Frame::StreamOpen(_) => {
                    let features = if user.is_some() {
                        "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                    } else {
                        "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
                         <mechanism>PLAIN</mechanism></mechanisms>"
                    };
                    format!(
                        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
                         xmlns:stream='http://etherx.jabber.org/streams' from='{}' id='r{n}' \
                         version='1.0'><stream:features>{features}</stream:features>",
                        xml::escape(&domain)
                    )
                    .into_bytes()
                }
                Frame::StreamEnd => break 'read,
                Frame::Element(e) => match xml::local_name(&e) {
                    b"message" => {
                        let Some(to) = xml::attr(&e, "to").map(|t| bare(t).to_vec()) else {
                            continue;
                        };
                        if !cache.contains_key(&to) {
                            let found = routes.map.lock().ok().and_then(|m| m.get(&to).cloned());
                            match found {
                                Some(r) => {
                                    cache.insert(to.clone(), r);
                                }
                                None => continue,
                            }
                        }
                        if let Some(r) = cache.get(&to) {
                            if r.send(e).is_err() {
                                cache.remove(&to);
                            } else {
                                routes.relayed.fetch_add(1, Relaxed);
                            }
                        }
                        continue;
                    }
                    b"auth" => {
                        let text = e
                            .iter()
                            .position(|&c| c == b'>')
                            .map(|i| &e[i + 1..])
                            .and_then(|t| t.iter().position(|&c| c == b'<').map(|j| &t[..j]))
                            .unwrap_or_default();
                        let creds = base64::engine::general_purpose::STANDARD
                            .decode(text)
                            .unwrap_or_default();
                        let authcid = creds.split(|&c| c == 0).nth(1).unwrap_or_default();
                        if authcid.is_empty() {
                            b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>".to_vec()
                        } else {
                            user = Some(authcid.to_vec());
                            framer.reset();
                            b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>".to_vec()
                        }
                    }
                    b"iq" if xml::contains(&e, "urn:ietf:params:xml:ns:xmpp-bind") => {
                        let Some(u) = &user else { break 'read };
                        let mut jid = u.clone();
                        jid.push(b'@');
                        jid.extend_from_slice(domain.as_bytes());
                        if let Ok(mut m) = routes.map.lock() {
                            m.insert(jid.clone(), tx.clone());
                        }
                        bound = Some(jid.clone());
                        let id = String::from_utf8_lossy(xml::attr(&e, "id").unwrap_or_default())
                            .into_owned();
                        format!(
                            "<iq type='result' id='{id}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                             <jid>{}/r{n}</jid></bind></iq>",
                            String::from_utf8_lossy(&jid)
                        )
                        .into_bytes()
                    }
                    b"iq" => {
                        let id = String::from_utf8_lossy(xml::attr(&e, "id").unwrap_or_default())
                            .into_owned();
                        format!("<iq type='result' id='{id}'/>").into_bytes()
                    }
                    _ => continue,
                },
            };
            if tx.send(reply).is_err() {
                break 'read;
            }
        }
    }
    if let Some(jid) = bound {
        if let Ok(mut m) = routes.map.lock() {
            if m.get(&jid).is_some_and(|r| r.same_channel(&tx)) {
                m.remove(&jid);
            }
        }
    }
    let _ = tx.send(b"</stream:stream>".to_vec());
    drop(tx);
    let _ = writer.await;
}

pub async fn run(args: &RelayArgs) -> Result<(), String> {
    if !args.addr.ip().is_loopback() {
        return Err(format!("relay listens on loopback only, not {}", args.addr));
    }
    let listener = TcpListener::bind(args.addr)
        .await
        .map_err(|e| format!("bind {}: {e}", args.addr))?;
    eprintln!(
        "relay listening on {} for {} s (domain {})",
        args.addr, args.duration, args.domain
    );
    let routes = Arc::new(Routes::default());
    let server = tokio::spawn(serve(listener, args.domain.clone(), routes.clone()));
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    server.abort();
    eprintln!("relay: relayed {} messages", routes.relayed.load(Relaxed));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        pairs: crate::pairs::PairsArgs,
    }

    async fn relay() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(serve(l, "localhost".into(), Arc::new(Routes::default())));
        port
    }

    /// The whole client path (connect, SASL, bind, presence, send, frame, measure, drain)
    /// against the in-process relay, closed and open loop.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pairs_through_the_relay_lose_nothing() {
        let port = relay().await.to_string();
        for mode in [["--window", "4"], ["--rate", "400"]] {
            let cli = Cli::parse_from([
                "t",
                "--port",
                &port,
                "--pairs",
                "3",
                "--duration",
                "0.5",
                "--drain",
                "2",
                "--quiet",
                mode[0],
                mode[1],
            ]);
            let rep = crate::pairs::run(&cli.pairs, false).await.unwrap();
            assert!(rep.ok, "{:?}", rep);
            assert_eq!(rep.lost, 0);
            let delivered = rep
                .metrics
                .0
                .iter()
                .find(|(k, _)| k == "delivered")
                .and_then(|(_, v)| v.as_u64())
                .unwrap();
            assert!(delivered > 0);
            assert_eq!(rep.latency.unwrap().count, delivered);
        }
    }

    #[tokio::test]
    async fn a_refused_target_is_an_error_not_a_run() {
        let cli = Cli::parse_from(["t", "--host", "10.1.2.3", "--duration", "0.1"]);
        let err = crate::pairs::run(&cli.pairs, false).await.unwrap_err();
        assert!(err.contains("refusing"), "{err}");
    }
}
