//! XEP-0030 Service Discovery: info and items for the server and for user accounts. Features
//! come from the dispatch table, so only what is registered is advertised. Must not invent
//! features or items (no MUC service is listed here: group chat is not served by this layer).

use crate::xmpp::dispatch::{BoxFuture, Kind, Registration, Reply, Request, Target};
use crate::xmpp::ns;
use crate::xmpp::stream::Element;

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
                for f in req.services.dispatch.features() {
                    q.push(Element::new("feature", ns::DISCO_INFO).with_attr("var", *f));
                }
            }
            Target::User(_) => {
                q.push(
                    Element::new("identity", ns::DISCO_INFO)
                        .with_attr("category", "account")
                        .with_attr("type", "registered"),
                );
                q.push(Element::new("feature", ns::DISCO_INFO).with_attr("var", ns::DISCO_INFO));
            }
        }
        Ok(Some(q))
    })
}

fn items(_req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async { Ok(Some(Element::new("query", ns::DISCO_ITEMS))) })
}
