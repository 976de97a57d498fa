//! XEP-0030 Service Discovery: info and items for the server and for user accounts. Features
//! come from the dispatch table, so only what is registered is advertised; the server is also
//! the XEP-0363 upload service (its identity and size form, `ext::http_upload`); its items
//! list the MUC service (`ext::muc` answers disco on the service and its rooms); an account is
//! a PEP service (`ext::pep`): its identity and features, its nodes as items; the server's
//! info also names the outage status addresses (`ext::outage`). Must not invent
//! features or items.

use crate::xmpp::dispatch::{
    BoxFuture, Extension, Kind, Registration, Reply, Request, Spec, Target,
};
use crate::xmpp::ns;
use crate::xmpp::stream::Element;

pub const EXTENSION: Extension = Extension::documented(HANDLERS, SPECS);

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[Spec {
    name: "XEP-0030 Service Discovery",
    status: "complete",
    notes: "features listed from the dispatch table",
    ejabberd: "mod_disco",
    prosody: "mod_disco",
}];

pub const HANDLERS: &[Registration] = &[
    Registration {
        kind: Kind::IqGet,
        ns: ns::DISCO_INFO,
        handler: Some(info),
        features: &[ns::DISCO_INFO, ns::DISCO_ITEMS],
        for_users: true,
    },
    Registration {
        kind: Kind::IqGet,
        ns: ns::DISCO_ITEMS,
        handler: Some(items),
        features: &[],
        for_users: true,
    },
];

fn info(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        // A command's node on the server (XEP-0050) is described by the command.
        if let (Target::Server, Some(node)) = (req.target, req.payload.attr("node")) {
            if let Some(q) = crate::xmpp::ext::adhoc::node_info(node) {
                return Ok(Some(q));
            }
        }
        let mut q = Element::new("query", ns::DISCO_INFO);
        if let Some(node) = req.payload.attr("node") {
            q.set_attr("node", node);
        }
        match req.target {
            Target::Server => {
                q.push(
                    Element::new("identity", ns::DISCO_INFO)
                        .with_attr("category", "server")
                        .with_attr("type", "im")
                        .with_attr("name", "Parley"),
                );
                // The server JID is also the XEP-0363 upload service.
                q.push(crate::xmpp::ext::http_upload::identity());
                for f in req.services.dispatch.features() {
                    q.push(Element::new("feature", ns::DISCO_INFO).with_attr("var", *f));
                }
                q.push(crate::xmpp::ext::http_upload::disco_form(
                    req.services,
                    req.user.app,
                ));
                let outage = &req.services.config.xmpp.outage_status_urls;
                if let Some(form) = crate::xmpp::ext::outage::disco_form(outage) {
                    q.push(form);
                }
            }
            // An account (one's own or a contact's) is answered as the account (XEP-0030 §3.1),
            // not as the server.
            Target::Account | Target::User(_) => {
                q.push(
                    Element::new("identity", ns::DISCO_INFO)
                        .with_attr("category", "account")
                        .with_attr("type", "registered"),
                );
                // Every account is its own PEP service (XEP-0163 §4).
                q.push(crate::xmpp::ext::pep::identity());
                q.push(Element::new("feature", ns::DISCO_INFO).with_attr("var", ns::DISCO_INFO));
                for f in crate::xmpp::ext::pep::ACCOUNT_FEATURES {
                    q.push(Element::new("feature", ns::DISCO_INFO).with_attr("var", *f));
                }
                // One's own account keeps a message archive (XEP-0313 §7).
                if req.target == Target::Account {
                    for f in crate::xmpp::ext::mam::ACCOUNT_FEATURES {
                        q.push(Element::new("feature", ns::DISCO_INFO).with_attr("var", *f));
                    }
                }
            }
        }
        Ok(Some(q))
    })
}

fn items(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        // The server's ad-hoc commands (XEP-0050 §2.2).
        if req.target == Target::Server && req.payload.attr("node") == Some(ns::COMMANDS) {
            return Ok(Some(crate::xmpp::ext::adhoc::items(req.services.domain())));
        }
        let mut q = Element::new("query", ns::DISCO_ITEMS);
        if req.payload.attr("node").is_some() {
            return Ok(Some(q));
        }
        let s = req.services;
        let owner = match req.target {
            Target::Server => {
                q.push(
                    Element::new("item", ns::DISCO_ITEMS)
                        .with_attr("jid", crate::xmpp::ext::muc::service(s.domain()))
                        .with_attr("name", "Group dialogs"),
                );
                return Ok(Some(q));
            }
            Target::Account => req.user,
            Target::User(u) => u,
        };
        // An account's items are its PEP nodes the asker may read (XEP-0060 §5.2).
        let nodes = crate::pubsub::nodes(&s.pool, s.domain(), owner, req.user)
            .await
            .map_err(|_| crate::xmpp::stanza::StanzaError::internal_server_error())?;
        let jid = owner.bare_jid(s.domain()).to_string();
        for node in nodes {
            q.push(
                Element::new("item", ns::DISCO_ITEMS)
                    .with_attr("jid", jid.clone())
                    .with_attr("node", node),
            );
        }
        Ok(Some(q))
    })
}
