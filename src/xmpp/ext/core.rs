//! RFC 3921 §3 legacy session establishment: `<session/>` is answered with an empty result and
//! does nothing else (a session exists once a resource is bound). Must not gate anything on it.

use crate::xmpp::dispatch::{BoxFuture, Extension, Kind, Registration, Reply, Request, Spec};
use crate::xmpp::ns;

pub const EXTENSION: Extension = Extension::documented(HANDLERS, SPECS);

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[Spec {
    name: "RFC 3921 legacy `<session/>`",
    status: "complete",
    notes: "answered, does nothing",
    ejabberd: "yes",
    prosody: "yes",
}];

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
