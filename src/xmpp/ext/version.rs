//! XEP-0092 Software Version of the server: name and version of this build. The operating
//! system is deliberately not told (XEP-0092 §4 lets a server omit it; it helps attackers more
//! than users). Must not answer for another user's client (that query goes to a full JID and is
//! routed to it).

use crate::xmpp::dispatch::{BoxFuture, Extension, Kind, Registration, Reply, Request, Spec};
use crate::xmpp::ns;
use crate::xmpp::stream::Element;

pub const EXTENSION: Extension = Extension::documented(HANDLERS, SPECS);

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[Spec {
    name: "XEP-0092 Software Version",
    status: "complete",
    notes: "the server's name and version; the OS is not told",
    ejabberd: "mod_version",
    prosody: "mod_version",
}];

pub const HANDLERS: &[Registration] = &[Registration {
    kind: Kind::IqGet,
    ns: ns::VERSION,
    handler: Some(version),
    features: &[ns::VERSION],
    for_users: false,
}];

fn version(_req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async {
        let mut q = Element::new("query", ns::VERSION);
        q.push(Element::new("name", ns::VERSION).with_text("Parley"));
        q.push(Element::new("version", ns::VERSION).with_text(env!("CARGO_PKG_VERSION")));
        Ok(Some(q))
    })
}
