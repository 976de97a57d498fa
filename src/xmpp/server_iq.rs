//! Iqs the server itself sends to a client connection (a disco#info about its capabilities),
//! awaiting their answers. The session hands every result or error addressed to the server or
//! to the account to [`ServerIqs::answer`] first; whoever asked waits on a channel with a
//! deadline. Bounded: at most `max` questions in flight for all connections together.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::hub::ConnId;
use crate::xml::Element;

pub struct ServerIqs {
    waiting: Mutex<HashMap<(ConnId, String), oneshot::Sender<Element>>>,
    max: usize,
}

impl ServerIqs {
    pub fn new(max: usize) -> Self {
        ServerIqs {
            waiting: Mutex::new(HashMap::new()),
            max,
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(ConnId, String), oneshot::Sender<Element>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a question with `id` to `conn`; `None` when `max` are in flight already.
    pub fn ask(&self, conn: ConnId, id: &str) -> Option<oneshot::Receiver<Element>> {
        let mut w = self.lock();
        // Questions whose asker gave up (timed out) no longer count.
        w.retain(|_, tx| !tx.is_closed());
        if w.len() >= self.max {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        w.insert((conn, id.to_owned()), tx);
        Some(rx)
    }

    /// An iq result or error from `conn`: taken (`None`) when the server asked it, else handed
    /// back.
    pub fn answer(&self, conn: ConnId, iq: Element) -> Option<Element> {
        let Some(id) = iq.attr("id") else {
            return Some(iq);
        };
        let waiter = self.lock().remove(&(conn, id.to_owned()));
        match waiter {
            Some(tx) => {
                let _ = tx.send(iq);
                None
            }
            None => Some(iq),
        }
    }

    /// Forgets a question (its asker stopped waiting).
    pub fn forget(&self, conn: ConnId, id: &str) {
        self.lock().remove(&(conn, id.to_owned()));
    }
}
