//! XEP-0199 XMPP Ping, client → server: answered with an empty result. (Server → client pings
//! of idle connections live in the session loop, which owns the timers.) Must not route a ping
//! to another user's connections.

use crate::xmpp::dispatch::{BoxFuture, Kind, Registration, Reply, Request};
use crate::xmpp::ns;

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
