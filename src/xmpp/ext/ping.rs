//! XEP-0199 XMPP Ping, client → server: answered with an empty result. (Server → client pings
//! of idle connections live in the session loop, which owns the timers.) Must not route a ping
//! to another user's connections.

use crate::xmpp::dispatch::{BoxFuture, Extension, Kind, Registration, Reply, Request, Spec};
use crate::xmpp::ns;

pub const EXTENSION: Extension = Extension::documented(HANDLERS, SPECS);

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[Spec {
    name: "XEP-0199 Ping",
    status: "complete",
    notes: "both ways; idle clients are pinged and closed when silent",
    ejabberd: "mod_ping",
    prosody: "mod_ping",
}];

pub const HANDLERS: &[Registration] = &[Registration {
    kind: Kind::IqGet,
    ns: ns::PING,
    handler: Some(pong),
    features: &[ns::PING],
    for_users: true,
}];

fn pong(_req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async { Ok(None) })
}
