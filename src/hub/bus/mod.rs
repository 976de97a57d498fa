//! The bus between nodes: how one Parley node hands bytes to another, or to all the others.
//! Two implementations behind one trait, held to one contract (`tests/cluster.rs` runs the same
//! test functions against both):
//! - `local`: an in-process network of nodes (tests, and several hubs in one process);
//! - `nats`: NATS core publish/subscribe, one subject per node and one for all
//!   (`parley.<cluster>.node.<name>`, `parley.<cluster>.all`).
//!
//! A single node (no `cluster.nats_url`) has no bus at all: the hub's delivery paths check one
//! `OnceLock` and go on exactly as before, so the single-node hot path pays no lock and no
//! allocation for clustering.
//!
//! The bus moves opaque, bounded payloads; what they mean (and their validation, since the bus
//! is a socket like any other) is `hub::cluster`'s. Sending never waits: a message beyond a
//! bound is dropped and counted (`parley_queue_drops_total{queue="cluster_send|cluster_receive"}`)
//! — live delivery is best effort, PostgreSQL is the record.

pub mod local;
pub mod nats;

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

/// Where a payload goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum To<'a> {
    /// One node, by name.
    Node(&'a str),
    /// Every other node (never the sender itself).
    All,
}

/// Why a payload was not sent.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("message of {len} bytes exceeds cluster.max_message_bytes ({max})")]
    TooLarge { len: usize, max: usize },
    #[error("cluster send queue full")]
    Full,
    #[error("cluster bus disconnected")]
    Down,
}

/// The bounds every implementation keeps (from `cluster.*`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub send_queue: usize,
    pub receive_queue: usize,
}

/// One node's end of the bus.
pub trait Bus: Send + Sync {
    /// Hands `payload` to the bus for `to` without waiting. `Ok` is no promise of delivery: a
    /// node that is gone, or whose inbox is full, never sees it.
    /// Payloads from one sender to one kind of destination (`Node(n)`, or `All`) arrive in the
    /// order sent; between the two kinds there is no order.
    fn send(&self, to: To<'_>, payload: Bytes) -> Result<(), BusError>;
    /// Whether the bus is connected now (false: the others cannot be reached, nor reach us).
    fn is_up(&self) -> bool;
}

/// A node attached to a bus: its sending end and its inbox (payloads sent to it by name or to
/// all), at most `receive_queue` of them waiting.
pub struct Attached {
    pub bus: Arc<dyn Bus>,
    pub inbox: mpsc::Receiver<Bytes>,
}

/// Checks a payload against the size bound, on either side.
pub fn check_size(len: usize, limits: &Limits) -> Result<(), BusError> {
    if len > limits.max_message_bytes {
        return Err(BusError::TooLarge {
            len,
            max: limits.max_message_bytes,
        });
    }
    Ok(())
}

/// Puts a received payload in the inbox, or drops and counts it when the inbox is full (the
/// bus must not stall every node behind one slow reader).
pub(crate) fn deliver_in(inbox: &mpsc::Sender<Bytes>, payload: Bytes, limits: &Limits) -> bool {
    if check_size(payload.len(), limits).is_err() {
        metrics::counter!(crate::ops::telemetry::QUEUE_DROPS, "queue" => "cluster_oversize")
            .increment(1);
        return false;
    }
    match inbox.try_send(payload) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            metrics::counter!(crate::ops::telemetry::QUEUE_DROPS, "queue" => "cluster_receive")
                .increment(1);
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}
