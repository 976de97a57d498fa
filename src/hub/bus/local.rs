//! The in-process bus: nodes attached to one [`LocalNet`] exchange payloads through bounded
//! channels. Used where several hubs live in one process (tests of the cluster's rules without
//! processes), and held to the same contract as NATS. `set_up(false)` simulates an outage.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{check_size, deliver_in, Attached, Bus, BusError, Limits, To};

#[derive(Default)]
struct Net {
    nodes: Mutex<HashMap<String, mpsc::Sender<Bytes>>>,
    down: AtomicBool,
}

/// A network of in-process nodes.
#[derive(Clone, Default)]
pub struct LocalNet(Arc<Net>);

impl LocalNet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches node `name` (a node attached again under the same name replaces the first).
    pub fn attach(&self, name: &str, limits: Limits) -> Attached {
        let (tx, inbox) = mpsc::channel(limits.receive_queue.max(1));
        self.nodes().insert(name.to_owned(), tx);
        Attached {
            bus: Arc::new(LocalBus {
                net: self.clone(),
                name: name.to_owned(),
                limits,
            }),
            inbox,
        }
    }

    /// Detaches node `name`: it is gone for the others, as a killed process is.
    pub fn detach(&self, name: &str) {
        self.nodes().remove(name);
    }

    /// Connects (true) or disconnects (false) every node, as a NATS outage would.
    pub fn set_up(&self, up: bool) {
        self.0.down.store(!up, Ordering::Release);
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Bytes>>> {
        self.0.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct LocalBus {
    net: LocalNet,
    name: String,
    limits: Limits,
}

impl Bus for LocalBus {
    fn send(&self, to: To<'_>, payload: Bytes) -> Result<(), BusError> {
        check_size(payload.len(), &self.limits)?;
        if !self.is_up() {
            return Err(BusError::Down);
        }
        let nodes = self.net.nodes();
        match to {
            To::Node(n) => {
                if let Some(tx) = nodes.get(n) {
                    deliver_in(tx, payload, &self.limits);
                }
            }
            To::All => {
                for (n, tx) in nodes.iter() {
                    if *n != self.name {
                        deliver_in(tx, payload.clone(), &self.limits);
                    }
                }
            }
        }
        Ok(())
    }

    fn is_up(&self) -> bool {
        !self.net.0.down.load(Ordering::Acquire)
    }
}
