//! The NATS bus: core publish/subscribe (no JetStream: PostgreSQL is the record, the bus only
//! carries live traffic). Each node subscribes to `parley.<cluster>.node.<name>` and
//! `parley.<cluster>.all`; the connection is opened with `no_echo`, so a node never hears its
//! own broadcasts. The client reconnects by itself (100 ms doubling to 2 s, forever) and
//! resubscribes; while it is disconnected [`Bus::is_up`] is false and the hub treats other
//! nodes' users as unreachable (their messages go to offline storage).
//!
//! Sending never waits: payloads go through a bounded queue (`cluster.send_queue`) to one
//! publishing task. Received payloads are size-checked and put in the node's bounded inbox
//! (`cluster.receive_queue`); beyond either bound they are dropped and counted.

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{check_size, deliver_in, Attached, Bus, BusError, Limits, To};

/// The subjects of one cluster.
#[derive(Clone, Debug)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    /// `cluster` must be a subject token (`config::is_subject_token`).
    pub fn new(cluster: &str) -> Self {
        Self {
            prefix: format!("parley.{cluster}"),
        }
    }

    pub fn node(&self, name: &str) -> String {
        format!("{}.node.{name}", self.prefix)
    }

    pub fn all(&self) -> String {
        format!("{}.all", self.prefix)
    }
}

struct NatsBus {
    client: async_nats::Client,
    out: mpsc::Sender<(String, Bytes)>,
    subjects: Subjects,
    limits: Limits,
}

impl Bus for NatsBus {
    fn send(&self, to: To<'_>, payload: Bytes) -> Result<(), BusError> {
        check_size(payload.len(), &self.limits)?;
        if !self.is_up() {
            return Err(BusError::Down);
        }
        let subject = match to {
            To::Node(n) => self.subjects.node(n),
            To::All => self.subjects.all(),
        };
        self.out.try_send((subject, payload)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                metrics::counter!(crate::ops::telemetry::QUEUE_DROPS, "queue" => "cluster_send")
                    .increment(1);
                BusError::Full
            }
            mpsc::error::TrySendError::Closed(_) => BusError::Down,
        })
    }

    fn is_up(&self) -> bool {
        self.client.connection_state() == State::Connected
    }
}

/// Connects node `name` to the NATS server(s) at `url` (comma-separated). Waits for the first
/// connection at most `wait`; a server that is not up yet is retried in the background, the
/// node starts disconnected (degraded) and joins when NATS comes. Errors only on a URL that
/// does not parse or a subscription NATS refuses.
pub async fn connect(
    url: &str,
    subjects: Subjects,
    name: &str,
    limits: Limits,
    wait: Duration,
) -> Result<Attached, String> {
    let servers: Vec<async_nats::ServerAddr> = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|e| format!("cluster.nats_url {s:?}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let client = async_nats::ConnectOptions::new()
        .name(format!("parley {name}"))
        .no_echo()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempts| {
            let exp = u32::try_from(attempts.min(5)).unwrap_or(5);
            Duration::from_millis(100 * 2u64.pow(exp)).min(Duration::from_secs(2))
        })
        .event_callback(|e| async move {
            match e {
                async_nats::Event::Disconnected => tracing::warn!("cluster bus: NATS disconnected"),
                async_nats::Event::Connected => tracing::info!("cluster bus: NATS connected"),
                other => tracing::debug!(event = %other, "cluster bus"),
            }
        })
        .connect(servers)
        .await
        .map_err(|e| format!("cluster.nats_url: {e}"))?;
    let mine = client
        .subscribe(subjects.node(name))
        .await
        .map_err(|e| format!("subscribing to NATS: {e}"))?;
    let all = client
        .subscribe(subjects.all())
        .await
        .map_err(|e| format!("subscribing to NATS: {e}"))?;
    // A PING round trip: the server has the subscriptions before anyone is told we exist.
    if client.connection_state() == State::Connected {
        let _ = tokio::time::timeout(wait, client.flush()).await;
    }
    let (in_tx, inbox) = mpsc::channel(limits.receive_queue.max(1));
    let mut incoming = futures_util::stream::select(mine, all);
    tokio::spawn(async move {
        while let Some(m) = incoming.next().await {
            deliver_in(&in_tx, m.payload, &limits);
        }
    });
    let (out, mut queued) = mpsc::channel::<(String, Bytes)>(limits.send_queue.max(1));
    let publisher = client.clone();
    tokio::spawn(async move {
        while let Some((subject, payload)) = queued.recv().await {
            if let Err(e) = publisher.publish(subject, payload).await {
                tracing::debug!(error = %e, "cluster bus: publish failed");
            }
        }
    });
    let deadline = tokio::time::Instant::now() + wait;
    while client.connection_state() != State::Connected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Attached {
        bus: Arc::new(NatsBus {
            client,
            out,
            subjects,
            limits,
        }),
        inbox,
    })
}
