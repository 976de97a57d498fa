//! The live numbers of a running server, as `GET /stats` on the admin listener shows them (and
//! `parley stats` prints): connections per listener family, streams and users online, live
//! rooms, outbound queues. Read-only, and counts only: nothing names a user or an address, so
//! the unauthenticated admin port gives away nothing a chat user could abuse.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use crate::hub::Hub;
use crate::limits::ConnLimiter;

/// Where the live numbers come from; built by the server's wiring.
pub struct Live {
    pub hub: Arc<Hub>,
    /// Open REST connections (the REST connection cap's count).
    pub rest_conns: Arc<ConnLimiter>,
    /// Open XMPP connections, TCP + TLS + WebSocket (the XMPP connection cap's count).
    pub xmpp_conns: Arc<ConnLimiter>,
    pub started: Instant,
}

impl Live {
    /// The `GET /stats` document.
    pub fn snapshot(&self) -> Value {
        let hub = self.hub.stats();
        let (rooms, occupants) = self.hub.rooms.counts();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": self.started.elapsed().as_secs(),
            "connections": {
                "rest": self.rest_conns.counts().0,
                "xmpp": self.xmpp_conns.counts().0,
            },
            "xmpp": {
                "streams": hub.streams,
                "users_online": hub.users_online,
                "authenticating": hub.authenticating,
                "parked_sessions": hub.parked_sessions,
            },
            "rooms": { "live": rooms, "occupants": occupants },
            "queues": {
                "outbound_stanzas": hub.queued_stanzas,
                "largest_outbound": hub.largest_queue,
            },
        })
    }
}
