//! RFC 3921 §3 legacy session establishment: `<session/>` is answered with an empty result and
//! does nothing else (a session exists once a resource is bound). Must not gate anything on it.

use crate::xmpp::dispatch::{BoxFuture, Kind, Registration, Reply, Request};
use crate::xmpp::ns;

pub const HANDLERS: &[Registration] = &[Registration {
    kind: Kind::IqSet,
    ns: ns::SESSION,
    handler: Some(session),
    features: &[],
    for_users: false,
}];

fn session(_req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async { Ok(None) })
}
