//! XEP-0163 Personal Eventing Protocol on a persistent XEP-0060 subset: every account is a
//! PubSub service of its own nodes. Publish (auto-creating the node with its publish-options:
//! `pubsub#access_model`, `pubsub#max_items`, `pubsub#persist_items`; options that disagree with
//! an existing node are `<conflict/><precondition-not-met/>`, §7.1.5), retract, items (all, by
//! id, `max_items`), delete node, node configuration (get and submit). Enough for avatars
//! (XEP-0084), bookmarks (XEP-0402), OMEMO device lists and bundles, user nickname (XEP-0172).
//!
//! Notifications (`<message type='headline'><event>`) go to the owner's available resources and
//! to the contacts the node's access model admits whose capabilities (`caps.rs`, XEP-0115)
//! advertise `NODE+notify`. The rules (options, bounds, access models) are `crate::pubsub`'s;
//! payloads are stored as XML this server's writer produced from the parsed element and parsed
//! back on the way out, never a client's bytes. Not done: explicit subscriptions,
//! affiliations, node creation without a publish, a domain PubSub service.

pub mod caps;

use std::sync::Arc;

use crate::pubsub::{self, AccessModel, Error, Item, NodeConfig, Options};
use crate::xmpp::dispatch::{
    BoxFuture, Extension, Kind, Registration, Reply, Request, Spec, Target,
};
use crate::xmpp::ns;
use crate::xmpp::stanza::{random_hex, Condition, ErrorType, StanzaError, UserKey};
use crate::xmpp::stream::{reader, Element};
use crate::xmpp::Services;

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[
    Spec {
        name: "XEP-0060 Publish-Subscribe",
        status: "partial (PEP subset)",
        notes: "publish with publish-options, retract, items (all/by id/max_items), delete node, node configuration get/submit; access presence/open/whitelist; no explicit subscriptions or affiliations",
        ejabberd: "mod_pubsub",
        prosody: "mod_pep (PEP), mod_pubsub (component)",
    },
    Spec {
        name: "XEP-0163 Personal Eventing Protocol",
        status: "complete",
        notes: "auto-create, filtered notifications (+notify via verified caps), last item on coming online and on an approved subscription",
        ejabberd: "mod_pubsub",
        prosody: "mod_pep",
    },
    Spec {
        name: "XEP-0115 Entity Capabilities",
        status: "complete (server side, sha-1)",
        notes: "learned from presence, verified (§5) before use, bounded cache",
        ejabberd: "mod_caps",
        prosody: "yes",
    },
    Spec {
        name: "XEP-0084 User Avatar",
        status: "complete (over PEP)",
        notes: "tested with slixmpp xep_0084",
        ejabberd: "mod_pubsub (PEP)",
        prosody: "mod_pep",
    },
    Spec {
        name: "XEP-0172 User Nickname",
        status: "complete (over PEP)",
        notes: "tested with slixmpp xep_0172",
        ejabberd: "mod_pubsub (PEP)",
        prosody: "mod_pep",
    },
    Spec {
        name: "XEP-0402 PEP Native Bookmarks",
        status: "complete (over PEP)",
        notes: "whitelist, max_items=max",
        ejabberd: "mod_pubsub (PEP)",
        prosody: "mod_pep",
    },
    Spec {
        name: "XEP-0384 OMEMO (key distribution)",
        status: "complete (over PEP)",
        notes: "device list and bundles with open access, readable by any user of the application",
        ejabberd: "mod_pubsub (PEP)",
        prosody: "mod_pep",
    },
];

pub const EXTENSION: Extension = Extension {
    handlers: &[
        Registration {
            kind: Kind::IqSet,
            ns: ns::PUBSUB,
            handler: Some(set),
            features: &[],
            for_users: true,
        },
        Registration {
            kind: Kind::IqGet,
            ns: ns::PUBSUB,
            handler: Some(get),
            features: &[],
            for_users: true,
        },
        Registration {
            kind: Kind::IqSet,
            ns: ns::PUBSUB_OWNER,
            handler: Some(owner_set),
            features: &[],
            for_users: false,
        },
        Registration {
            kind: Kind::IqGet,
            ns: ns::PUBSUB_OWNER,
            handler: Some(owner_get),
            features: &[],
            for_users: false,
        },
    ],
    hooks: caps::HOOKS,
    specs: SPECS,
};

/// What an account advertises (disco#info on the bare JID, XEP-0163 §4): PEP is the account's
/// own PubSub service, so these are not server features.
pub const ACCOUNT_FEATURES: &[&str] = &[
    "http://jabber.org/protocol/pubsub",
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#auto-create",
    "http://jabber.org/protocol/pubsub#auto-subscribe",
    "http://jabber.org/protocol/pubsub#config-node",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#filtered-notifications",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#presence-notifications",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-items",
];

/// The identity an account shows next to `account/registered`.
pub fn identity() -> Element {
    Element::new("identity", ns::DISCO_INFO)
        .with_attr("category", "pubsub")
        .with_attr("type", "pep")
}

fn limits(s: &Services) -> pubsub::Limits {
    pubsub::Limits::of(&s.config)
}

fn app_error(e: StanzaError, name: &'static str) -> StanzaError {
    e.with_app(name, ns::PUBSUB_ERRORS)
}

/// The XEP-0060 error for each refusal.
fn stanza_error(e: Error) -> StanzaError {
    match e {
        Error::NoSuchNode => StanzaError::item_not_found().with_text("no such node"),
        Error::NoSuchItem => StanzaError::item_not_found().with_text("no such item"),
        Error::NotOwner => StanzaError::forbidden(),
        Error::Forbidden(AccessModel::Presence) => app_error(
            StanzaError::not_authorized(),
            "presence-subscription-required",
        ),
        Error::Forbidden(AccessModel::Whitelist) => {
            app_error(StanzaError::not_allowed(), "closed-node")
        }
        Error::Forbidden(AccessModel::Open) => StanzaError::forbidden(),
        Error::Precondition(field) => app_error(StanzaError::conflict(), "precondition-not-met")
            .with_text(format!("{field} differs from the node's configuration")),
        Error::BadOption(field) => {
            StanzaError::not_acceptable().with_text(format!("unsupported value of {field}"))
        }
        Error::BadId(n) => StanzaError::bad_request()
            .with_text(format!("node names and item ids are 1 to {n} bytes")),
        Error::PayloadTooBig(n) => app_error(StanzaError::not_acceptable(), "payload-too-big")
            .with_text(format!("an item payload is at most {n} bytes")),
        Error::TooManyNodes(n) => {
            StanzaError::not_allowed().with_text(format!("at most {n} nodes per user"))
        }
        Error::TooManyBytes(n) => StanzaError::resource_constraint()
            .with_text(format!("at most {n} bytes of items per user")),
        Error::Db => StanzaError::internal_server_error(),
    }
}

fn not_implemented(what: &str) -> StanzaError {
    app_error(
        StanzaError::new(ErrorType::Cancel, Condition::FeatureNotImplemented),
        "unsupported",
    )
    .with_text(format!("{what} is not supported"))
}

/// Whose nodes a request is about: the account's own, or a contact's (reads only).
fn owner_of(req: &Request<'_>) -> Result<UserKey, StanzaError> {
    match req.target {
        Target::Account => Ok(req.user),
        Target::User(u) => Ok(u),
        // There is no PubSub service at the domain: PEP lives on accounts.
        Target::Server => Err(StanzaError::service_unavailable()),
    }
}

fn own(req: &Request<'_>) -> Result<UserKey, StanzaError> {
    match req.target {
        Target::Account => Ok(req.user),
        Target::User(_) => Err(StanzaError::forbidden()),
        Target::Server => Err(StanzaError::service_unavailable()),
    }
}

/// The one action element of a `<pubsub>` request (options ride along with a publish).
fn action(payload: &Element) -> Result<&Element, StanzaError> {
    payload
        .elements()
        .find(|e| e.name != "publish-options")
        .ok_or_else(StanzaError::bad_request)
}

fn node_attr(e: &Element) -> Result<&str, StanzaError> {
    e.attr("node")
        .ok_or_else(|| app_error(StanzaError::bad_request(), "nodeid-required"))
}

fn set(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        let owner = own(&req)?;
        let a = action(req.payload)?;
        match a.name.as_str() {
            "publish" => publish(&req, owner, a).await,
            "retract" => retract(&req, owner, a).await,
            other => Err(not_implemented(other)),
        }
    })
}

fn get(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        let owner = owner_of(&req)?;
        let a = action(req.payload)?;
        match a.name.as_str() {
            "items" => items(&req, owner, a).await,
            other => Err(not_implemented(other)),
        }
    })
}

fn owner_set(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        let owner = own(&req)?;
        let a = action(req.payload)?;
        match a.name.as_str() {
            "delete" => delete(&req, owner, a).await,
            "configure" => configure(&req, owner, a).await,
            other => Err(not_implemented(other)),
        }
    })
}

fn owner_get(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        let owner = own(&req)?;
        let a = action(req.payload)?;
        if a.name != "configure" {
            return Err(not_implemented(&a.name));
        }
        let node = node_attr(a)?;
        let s = req.services;
        let config = pubsub::config(&s.pool, owner, req.user, node)
            .await
            .map_err(stanza_error)?;
        let configure = Element::new("configure", ns::PUBSUB_OWNER)
            .with_attr("node", node)
            .with_child(config_form(&config));
        Ok(Some(
            Element::new("pubsub", ns::PUBSUB_OWNER).with_child(configure),
        ))
    })
}

/// Options from a data form of `form_type` (`publish-options` or a configuration submit).
fn options(x: Option<&Element>, form_type: &str) -> Result<Options, StanzaError> {
    let mut o = Options::default();
    let Some(x) = x else {
        return Ok(o);
    };
    for f in x.elements().filter(|f| f.is("field", ns::DATA_FORMS)) {
        let var = f.attr("var").unwrap_or_default();
        let value = f
            .child("value", ns::DATA_FORMS)
            .map(Element::text)
            .unwrap_or_default();
        if var == "FORM_TYPE" {
            if value != form_type {
                return Err(
                    StanzaError::bad_request().with_text(format!("FORM_TYPE must be {form_type}"))
                );
            }
            continue;
        }
        o.set(var, &value).map_err(stanza_error)?;
    }
    Ok(o)
}

async fn publish(req: &Request<'_>, owner: UserKey, p: &Element) -> Reply {
    let s = req.services;
    let node = node_attr(p)?;
    let mut items = p.elements().filter(|e| e.is("item", ns::PUBSUB));
    let (Some(item), None) = (items.next(), items.next()) else {
        return Err(app_error(StanzaError::bad_request(), "item-required")
            .with_text("publish exactly one item"));
    };
    let mut payloads = item.elements();
    let payload = match (payloads.next(), payloads.next()) {
        (Some(p), None) => p,
        (None, _) => return Err(app_error(StanzaError::bad_request(), "payload-required")),
        (Some(_), Some(_)) => return Err(app_error(StanzaError::bad_request(), "invalid-payload")),
    };
    let id = item
        .attr("id")
        .map_or_else(|| random_hex(12), str::to_owned);
    let form = req
        .payload
        .child("publish-options", ns::PUBSUB)
        .and_then(|po| po.child("x", ns::DATA_FORMS));
    let opts = options(form, ns::PUBSUB_PUBLISH_OPTIONS)?;
    let stored = Item {
        id: id.clone(),
        // Our writer's rendering of the parsed element: what is stored and served.
        payload: payload.to_stream_xml(),
    };
    let config = pubsub::publish(
        &s.pool,
        &limits(s),
        owner,
        node,
        &opts,
        &stored,
        s.clock.now(),
    )
    .await
    .map_err(stanza_error)?;
    notify(
        s,
        owner,
        node,
        &config,
        items_event(node, &id, Some(payload.clone())),
    )
    .await;
    let published = Element::new("publish", ns::PUBSUB)
        .with_attr("node", node)
        .with_child(Element::new("item", ns::PUBSUB).with_attr("id", id));
    Ok(Some(
        Element::new("pubsub", ns::PUBSUB).with_child(published),
    ))
}

async fn retract(req: &Request<'_>, owner: UserKey, r: &Element) -> Reply {
    let s = req.services;
    let node = node_attr(r)?;
    let mut items = r.elements().filter(|e| e.is("item", ns::PUBSUB));
    let (Some(item), None) = (items.next(), items.next()) else {
        return Err(app_error(StanzaError::bad_request(), "item-required")
            .with_text("retract exactly one item"));
    };
    let id = item
        .attr("id")
        .ok_or_else(|| app_error(StanzaError::bad_request(), "item-required"))?;
    let config = pubsub::retract(&s.pool, owner, node, id)
        .await
        .map_err(stanza_error)?;
    if matches!(r.attr("notify"), Some("1" | "true")) {
        let event = Element::new("items", ns::PUBSUB_EVENT)
            .with_attr("node", node)
            .with_child(Element::new("retract", ns::PUBSUB_EVENT).with_attr("id", id));
        notify(s, owner, node, &config, event).await;
    }
    Ok(None)
}

async fn items(req: &Request<'_>, owner: UserKey, i: &Element) -> Reply {
    let s = req.services;
    let node = node_attr(i)?;
    let max = match i.attr("max_items") {
        None => None,
        Some(m) => Some(
            m.parse::<u32>()
                .map_err(|_| StanzaError::bad_request().with_text("max_items is a number"))?,
        ),
    };
    let ids: Vec<String> = i
        .elements()
        .filter(|e| e.is("item", ns::PUBSUB))
        .filter_map(|e| e.attr("id").map(str::to_owned))
        .collect();
    let ids = (!ids.is_empty()).then_some(ids);
    let found = pubsub::items(
        &s.pool,
        s.domain(),
        owner,
        req.user,
        node,
        ids.as_deref(),
        max.map(i64::from),
    )
    .await
    .map_err(stanza_error)?;
    let mut out = Element::new("items", ns::PUBSUB).with_attr("node", node);
    for item in found {
        let mut e = Element::new("item", ns::PUBSUB).with_attr("id", item.id);
        if let Some(p) = payload_element(s, &item.payload) {
            e.push(p);
        }
        out.push(e);
    }
    Ok(Some(Element::new("pubsub", ns::PUBSUB).with_child(out)))
}

async fn delete(req: &Request<'_>, owner: UserKey, d: &Element) -> Reply {
    let s = req.services;
    let node = node_attr(d)?;
    let config = pubsub::delete_node(&s.pool, owner, node)
        .await
        .map_err(stanza_error)?;
    let event = Element::new("delete", ns::PUBSUB_EVENT).with_attr("node", node);
    notify(s, owner, node, &config, event).await;
    Ok(None)
}

async fn configure(req: &Request<'_>, owner: UserKey, c: &Element) -> Reply {
    let s = req.services;
    let node = node_attr(c)?;
    let form = c.child("x", ns::DATA_FORMS);
    // A cancelled form changes nothing.
    if form.is_some_and(|x| x.attr("type") == Some("cancel")) {
        return Ok(None);
    }
    let opts = options(form, ns::PUBSUB_NODE_CONFIG)?;
    pubsub::configure(&s.pool, &limits(s), owner, node, &opts)
        .await
        .map_err(stanza_error)?;
    Ok(None)
}

fn config_form(config: &NodeConfig) -> Element {
    let field = |var: &str, kind: &str, value: String| {
        Element::new("field", ns::DATA_FORMS)
            .with_attr("var", var)
            .with_attr("type", kind)
            .with_child(Element::new("value", ns::DATA_FORMS).with_text(value))
    };
    let mut access = field(
        pubsub::ACCESS_MODEL,
        "list-single",
        config.access_model.as_str().to_owned(),
    );
    for m in [
        AccessModel::Presence,
        AccessModel::Open,
        AccessModel::Whitelist,
    ] {
        access.push(
            Element::new("option", ns::DATA_FORMS)
                .with_child(Element::new("value", ns::DATA_FORMS).with_text(m.as_str())),
        );
    }
    Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "form")
        .with_child(field(
            "FORM_TYPE",
            "hidden",
            ns::PUBSUB_NODE_CONFIG.to_owned(),
        ))
        .with_child(access)
        .with_child(field(
            pubsub::MAX_ITEMS,
            "text-single",
            config.max_items.to_string(),
        ))
        .with_child(field(
            pubsub::PERSIST_ITEMS,
            "boolean",
            if config.persist_items { "1" } else { "0" }.to_owned(),
        ))
}

/// A stored payload as an element again (the XML our writer produced when it was published).
pub(crate) fn payload_element(s: &Services, xml: &str) -> Option<Element> {
    let limits = reader::Limits {
        // Stored payloads were checked against the payload bound when published.
        max_stanza_bytes: xml.len(),
        ..s.transport_config().limits
    };
    let scope = [(String::new(), ns::CLIENT.to_owned())];
    reader::parse_element(xml.as_bytes(), &scope, &limits).ok()
}

/// `<items node><item id>payload</item></items>` of an event.
pub(crate) fn items_event(node: &str, id: &str, payload: Option<Element>) -> Element {
    let mut item = Element::new("item", ns::PUBSUB_EVENT).with_attr("id", id);
    if let Some(p) = payload {
        item.push(p);
    }
    Element::new("items", ns::PUBSUB_EVENT)
        .with_attr("node", node)
        .with_child(item)
}

/// The headline message carrying one event from `from` (the owner's bare JID) to `to`.
pub(crate) fn event_message(from: &str, to: &str, event: Element) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("from", from)
        .with_attr("to", to)
        .with_attr("type", "headline")
        .with_attr("id", format!("pep-{}", random_hex(6)))
        .with_child(Element::new("event", ns::PUBSUB_EVENT).with_child(event))
}

/// Tells of a change to `owner`'s `node`: the owner's available resources, and the available
/// connections of the contacts the access model admits that want the node (`+notify`).
async fn notify(
    s: &Arc<Services>,
    owner: UserKey,
    node: &str,
    config: &NodeConfig,
    event: Element,
) {
    let bare = owner.bare_jid(s.domain()).to_string();
    for c in s.hub.connections(owner).into_iter().filter(|c| c.available) {
        let to = format!("{bare}/{}", c.resource);
        s.hub
            .deliver_to_conn(owner, c.id, event_message(&bare, &to, event.clone()));
    }
    let audience = pubsub::audience(&s.pool, s.domain(), owner, config.access_model)
        .await
        .unwrap_or_default();
    // Whoever the owner's privacy rules keep their presence from hears nothing of this either.
    let audience = crate::privacy::presence_allowed(&**s, owner, audience, true).await;
    for contact in audience {
        let contact_bare = contact.bare_jid(s.domain()).to_string();
        for c in s.hub.connections(contact) {
            if c.available && s.caps.wants(c.caps.as_ref(), node) {
                let to = format!("{contact_bare}/{}", c.resource);
                s.hub
                    .deliver_to_conn(contact, c.id, event_message(&bare, &to, event.clone()));
            }
        }
    }
}
