//! XEP-0352 Client State Indication (`<active/>`, `<inactive/>` nonzas) and the Tigase
//! `mobile#v2` iq the official SDK sends for the same purpose. The state is kept in the hub for
//! push decisions; this layer does not delay or drop stanzas because of it.

use crate::xmpp::dispatch::{BoxFuture, Extension, Kind, Registration, Reply, Request, Spec};
use crate::xmpp::ns;
use crate::xmpp::stanza::StanzaError;

pub const EXTENSION: Extension = Extension::documented(HANDLERS, SPECS);

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[Spec {
    name: "XEP-0352 CSI + Tigase `mobile#v2`",
    status: "complete",
    notes: "state kept in the hub for push decisions",
    ejabberd: "mod_client_state",
    prosody: "mod_csi_simple",
}];

pub const HANDLERS: &[Registration] = &[
    Registration {
        kind: Kind::Nonza,
        ns: ns::CSI,
        handler: Some(csi),
        features: &[],
        for_users: false,
    },
    Registration {
        kind: Kind::IqSet,
        ns: ns::TIGASE_MOBILE,
        handler: Some(mobile),
        features: &[ns::TIGASE_MOBILE],
        for_users: false,
    },
];

fn csi(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        match req.payload.name.as_str() {
            "active" => req.services.hub.set_active(req.user, req.conn, true),
            "inactive" => req.services.hub.set_active(req.user, req.conn, false),
            _ => return Err(StanzaError::bad_request()),
        }
        Ok(None)
    })
}

/// `<mobile enable="true"/>` = the app went to the background (inactive).
fn mobile(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        let inactive = matches!(req.payload.attr("enable"), Some("true" | "1"));
        req.services.hub.set_active(req.user, req.conn, !inactive);
        Ok(None)
    })
}
