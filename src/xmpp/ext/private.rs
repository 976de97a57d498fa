//! XEP-0049 Private XML Storage: a user keeps elements of their own namespaces on the server
//! (legacy bookmarks `storage:bookmarks`, client settings), one per (name, namespace), at most
//! `xmpp.private_max_items`, each bounded by the stanza size. Only the account itself reads and
//! writes them. Storage is `identity::profile`'s; elements are stored as our writer serializes
//! them, never as the client's bytes.

use crate::xmpp::dispatch::{
    BoxFuture, Extension, Kind, Registration, Reply, Request, Spec, Target,
};
use crate::xmpp::ns;
use crate::xmpp::stanza::StanzaError;
use crate::xmpp::stream::{reader, Element};

pub const EXTENSION: Extension = Extension::documented(HANDLERS, SPECS);

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[Spec {
    name: "XEP-0049 Private XML Storage",
    status: "complete",
    notes: "one element per (name, namespace), at most `xmpp.private_max_items`; the account only",
    ejabberd: "mod_private",
    prosody: "mod_private",
}];

pub const HANDLERS: &[Registration] = &[
    Registration {
        kind: Kind::IqGet,
        ns: ns::PRIVATE,
        handler: Some(get),
        features: &[ns::PRIVATE],
        for_users: false,
    },
    Registration {
        kind: Kind::IqSet,
        ns: ns::PRIVATE,
        handler: Some(set),
        features: &[],
        for_users: false,
    },
];

/// XEP-0049 §3: exactly one child element, in a namespace of the client's own.
fn the_child(req: &Request<'_>) -> Result<Element, StanzaError> {
    if req.target != Target::Account {
        return Err(StanzaError::forbidden());
    }
    let mut children = req.payload.elements();
    let (Some(child), None) = (children.next(), children.next()) else {
        return Err(StanzaError::not_acceptable().with_text("exactly one child element"));
    };
    if child.ns.is_empty()
        || [ns::CLIENT, "jabber:server", ns::PRIVATE].contains(&child.ns.as_str())
    {
        return Err(
            StanzaError::not_acceptable().with_text("the element needs a namespace of its own")
        );
    }
    Ok(child.clone())
}

fn get(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        let asked = the_child(&req)?;
        let stored = req
            .services
            .identity
            .private_get(req.user.app, req.user.user, &asked.name, &asked.ns)
            .await
            .map_err(|e| StanzaError::from(&e))?;
        let limits = req.services.transport_config().limits;
        let scope = [(String::new(), ns::CLIENT.to_owned())];
        // Nothing stored: the empty element asked for (XEP-0049 §3.2).
        let el = stored
            .and_then(|xml| reader::parse_element(xml.as_bytes(), &scope, &limits).ok())
            .unwrap_or_else(|| Element::new(&asked.name, &asked.ns));
        Ok(Some(Element::new("query", ns::PRIVATE).with_child(el)))
    })
}

fn set(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        let el = the_child(&req)?;
        let max = req.services.config.xmpp.private_max_items;
        let stored = req
            .services
            .identity
            .private_set(
                req.user.app,
                req.user.user,
                (&el.name, &el.ns),
                &el.to_stream_xml(),
                max,
            )
            .await
            .map_err(|e| StanzaError::from(&e))?;
        if !stored {
            return Err(StanzaError::resource_constraint()
                .with_text(format!("at most {max} private elements")));
        }
        Ok(None)
    })
}
