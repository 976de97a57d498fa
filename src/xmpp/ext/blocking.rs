//! XEP-0191 Blocking Command (`urn:xmpp:blocking`), for ordinary XMPP clients (the ConnectyCube
//! SDK uses XEP-0016 lists instead): get the block list, block JIDs, unblock some or all, with a
//! push of each change to the user's connections that asked for the block list.
//!
//! The block list is stored apart from the privacy lists (`xmpp_blocklist`) and enforced with
//! them, in `crate::privacy::decision`: a blocked JID can neither send to the user (it gets
//! `service-unavailable`, as if the user were not there) nor be sent to (the user gets
//! `not-acceptable` with `<blocked xmlns='urn:xmpp:blocking:errors'/>`). Must not enforce
//! anything itself, nor reveal the block list to anyone but its owner.
//! A newly blocked contact subscribed to the user's presence sees the user go unavailable.
//! Not done: current presence sent again to an unblocked contact.

use crate::db;
use crate::xmpp::dispatch::{BoxFuture, Extension, Kind, Registration, Reply, Request, Spec};
use crate::xmpp::ext::privacy::internal;
use crate::xmpp::ext::roster;
use crate::xmpp::ns;
use crate::xmpp::stanza::{random_hex, Jid, StanzaError, UserKey};
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

pub const EXTENSION: Extension = Extension::documented(HANDLERS, SPECS);

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[
    Spec {
        name: "XEP-0191 Blocking Command",
        status: "complete",
        notes: "block list get, block, unblock (some or all), pushes to connections that read the list; enforced with the privacy lists; a newly blocked subscriber sees the user go unavailable (presence is not re-sent on unblock)",
        ejabberd: "mod_blocking",
        prosody: "mod_blocklist",
    },
];

pub const HANDLERS: &[Registration] = &[
    Registration {
        kind: Kind::IqGet,
        ns: ns::BLOCKING,
        handler: Some(get),
        features: &[ns::BLOCKING],
        for_users: false,
    },
    Registration {
        kind: Kind::IqSet,
        ns: ns::BLOCKING,
        handler: Some(set),
        features: &[],
        for_users: false,
    },
];

fn items(name: &str, jids: &[String]) -> Element {
    let mut e = Element::new(name, ns::BLOCKING);
    for j in jids {
        e.push(Element::new("item", ns::BLOCKING).with_attr("jid", j.clone()));
    }
    e
}

/// The JIDs of `<item jid/>` children, normalised; `None` if one is missing or malformed.
fn parse_jids(op: &Element) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for i in op.elements() {
        if !i.is("item", ns::BLOCKING) {
            return None;
        }
        let j = Jid::parse(i.attr("jid")?.trim())?.to_string();
        if !out.contains(&j) {
            out.push(j);
        }
    }
    Some(out)
}

fn get(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        if req.payload.name != "blocklist" {
            return Err(StanzaError::bad_request());
        }
        let s = req.services;
        let rules = s.privacy.rules(&s.pool, req.user).await.map_err(internal)?;
        s.privacy.read_blocklist(&s.hub, req.user, req.conn);
        let jids: Vec<String> = rules.blocked.iter().cloned().collect();
        Ok(Some(items("blocklist", &jids)))
    })
}

fn set(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        let s = req.services;
        let user = req.user;
        let op = req.payload;
        let jids = parse_jids(op)
            .ok_or_else(|| StanzaError::bad_request().with_text("malformed block item"))?;
        match op.name.as_str() {
            "block" => {
                if jids.is_empty() {
                    return Err(StanzaError::bad_request().with_text("nothing to block"));
                }
                let rules = s.privacy.rules(&s.pool, user).await.map_err(internal)?;
                if rules.blocked.len() + jids.len() > s.config.xmpp.blocklist_max {
                    return Err(StanzaError::not_allowed().with_text("too many blocked JIDs"));
                }
                let added = db::privacy::block(&s.pool, user.app, user.user, &jids)
                    .await
                    .map_err(internal)?;
                crate::xmpp::cluster::forget_privacy(s, user);
                if !added.is_empty() {
                    push(s, user, items("block", &added));
                    appear_offline(s, user, &added).await;
                }
                Ok(None)
            }
            "unblock" => {
                let all = jids.is_empty();
                let which = (!all).then_some(jids.as_slice());
                let removed = db::privacy::unblock(&s.pool, user.app, user.user, which)
                    .await
                    .map_err(internal)?;
                crate::xmpp::cluster::forget_privacy(s, user);
                if all {
                    push(s, user, Element::new("unblock", ns::BLOCKING));
                } else if !removed.is_empty() {
                    push(s, user, items("unblock", &removed));
                }
                Ok(None)
            }
            _ => Err(StanzaError::bad_request()),
        }
    })
}

/// XEP-0191 §3.3: newly blocked contacts that receive the user's presence (subscribers) see
/// every available resource of the user go unavailable.
async fn appear_offline(services: &Services, user: UserKey, blocked: &[String]) {
    let domain = services.domain();
    let subscribers = roster::presence_subscribers(services, user).await;
    let bare = user.bare_jid(domain).to_string();
    for contact in blocked
        .iter()
        .filter_map(|j| Jid::parse(j)?.user(domain))
        .filter(|k| subscribers.contains(k))
    {
        for c in services
            .hub
            .connections(user)
            .iter()
            .filter(|c| c.available)
        {
            let p = Element::new("presence", ns::CLIENT)
                .with_attr("type", "unavailable")
                .with_attr("from", format!("{bare}/{}", c.resource))
                .with_attr("to", contact.bare_jid(domain).to_string());
            services.hub.deliver_to_user(contact, &p);
        }
    }
}

/// XEP-0191 push to the user's connections that asked for the block list.
fn push(services: &Services, user: UserKey, payload: Element) {
    let bare = user.bare_jid(services.domain()).to_string();
    for (conn, resource) in services.privacy.blocklist_readers(&services.hub, user) {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", format!("push-{}", random_hex(6)))
            .with_attr("to", format!("{bare}/{resource}"))
            .with_child(payload.clone());
        services.hub.deliver_to_conn(user, conn, iq);
    }
}
