//! XEP-0202 Entity Time of the server: UTC from the server's clock (the one every timestamp of
//! Parley comes from, so tests can move it), offset always `Z`/`+00:00` since the server keeps
//! UTC. Must not answer for another user's client.

use crate::xmpp::dispatch::{BoxFuture, Extension, Kind, Registration, Reply, Request, Spec};
use crate::xmpp::ns;
use crate::xmpp::stream::Element;

pub const EXTENSION: Extension = Extension::documented(HANDLERS, SPECS);

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[Spec {
    name: "XEP-0202 Entity Time",
    status: "complete",
    notes: "the server's clock, UTC",
    ejabberd: "mod_time",
    prosody: "mod_time",
}];

pub const HANDLERS: &[Registration] = &[Registration {
    kind: Kind::IqGet,
    ns: ns::TIME,
    handler: Some(now),
    features: &[ns::TIME],
    for_users: false,
}];

fn now(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        // Whole seconds in UTC (XEP-0082), the format of every other timestamp Parley writes.
        let utc = crate::model::time::iso(req.services.clock.now());
        let mut q = Element::new("time", ns::TIME);
        q.push(Element::new("tzo", ns::TIME).with_text("+00:00"));
        q.push(Element::new("utc", ns::TIME).with_text(utc));
        Ok(Some(q))
    })
}
