//! RFC 6121 roster, minimal: a roster get is answered with an empty roster so ordinary clients
//! finish logging in. Roster storage, sets, pushes and subscription state are not implemented
//! (a set is answered `service-unavailable` by the dispatcher); must not pretend to store.

use crate::xmpp::dispatch::{BoxFuture, Kind, Registration, Reply, Request};
use crate::xmpp::ns;
use crate::xmpp::stream::Element;

pub const HANDLERS: &[Registration] = &[Registration {
    kind: Kind::IqGet,
    ns: ns::ROSTER,
    handler: Some(get),
    features: &[],
    for_users: false,
}];

fn get(_req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async { Ok(Some(Element::new("query", ns::ROSTER))) })
}
