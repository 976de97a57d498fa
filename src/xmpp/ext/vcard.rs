//! XEP-0054 vcard-temp, kept in step with the REST user: a vCard's `FN` is the user's
//! `full_name`, its `PHOTO/EXTVAL` the user's `avatar`; the rest of the vCard (and a `PHOTO` given
//! as `BINVAL`, which XEP-0153 clients hash into their presence) is stored as the client set it.
//! Anyone of the application may read a user's vCard, as `GET /users/{id}` allows; only the user
//! may set it. The rules and storage are `identity::profile`'s; this file only maps elements.

use crate::identity::profile::VcardFields;
use crate::model::User;
use crate::xmpp::dispatch::{
    BoxFuture, Extension, Kind, Registration, Reply, Request, Spec, Target,
};
use crate::xmpp::ns;
use crate::xmpp::stanza::StanzaError;
use crate::xmpp::stream::{reader, Element};

pub const EXTENSION: Extension = Extension::documented(HANDLERS, SPECS);

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[
    Spec {
        name: "XEP-0054 vcard-temp",
        status: "complete",
        notes: "in step with the REST user: `FN` = `full_name`, `PHOTO/EXTVAL` = `avatar` (both ways, REST's validation); the rest of the vCard, and a `BINVAL` photo (XEP-0153 clients hash it into presence), kept as set; any user of the application reads it, only the owner sets it; a vCard without `EXTVAL` leaves the REST avatar alone",
        ejabberd: "mod_vcard",
        prosody: "mod_vcard_legacy",
    },
];

pub const HANDLERS: &[Registration] = &[
    Registration {
        kind: Kind::IqGet,
        ns: ns::VCARD,
        handler: Some(get),
        features: &[ns::VCARD],
        for_users: true,
    },
    Registration {
        kind: Kind::IqSet,
        ns: ns::VCARD,
        handler: Some(set),
        features: &[],
        for_users: true,
    },
];

fn get(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        let whose = match req.target {
            Target::Account => req.user,
            Target::User(u) => u,
            // The server has no vCard.
            Target::Server => return Err(StanzaError::item_not_found()),
        };
        let (user, stored) = req
            .services
            .identity
            .vcard(whose.app, whose.user)
            .await
            .map_err(|e| StanzaError::from(&e))?;
        let stored = stored.and_then(|xml| parse_stored(&req, &xml));
        Ok(Some(render(&user, stored)))
    })
}

fn set(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        if req.target != Target::Account {
            return Err(StanzaError::forbidden().with_text("only your own vCard can be set"));
        }
        let v = req.payload;
        let full_name = v
            .child("FN", ns::VCARD)
            .map(|f| Some(f.text().trim().to_owned()).filter(|t| !t.is_empty()));
        let avatar = v
            .child("PHOTO", ns::VCARD)
            .and_then(|p| p.child("EXTVAL", ns::VCARD))
            .map(|e| e.text().trim().to_owned())
            .filter(|t| !t.is_empty());
        req.services
            .identity
            .set_vcard(
                req.user.app,
                req.user.user,
                VcardFields { full_name, avatar },
                &v.to_stream_xml(),
            )
            .await
            .map_err(|e| StanzaError::from(&e))?;
        Ok(None)
    })
}

/// A stored vCard read back; one that no longer parses (never expected: we wrote it) is
/// treated as none rather than failing the query.
fn parse_stored(req: &Request<'_>, xml: &str) -> Option<Element> {
    let limits = req.services.transport_config().limits;
    let scope = [(String::new(), ns::CLIENT.to_owned())];
    match reader::parse_element(xml.as_bytes(), &scope, &limits) {
        Ok(el) if el.is("vCard", ns::VCARD) => Some(el),
        _ => {
            tracing::warn!("a stored vCard did not parse; answering from the profile only");
            None
        }
    }
}

/// The vCard of `user`: the stored one with `FN` and an `EXTVAL` photo taken from the profile.
fn render(user: &User, stored: Option<Element>) -> Element {
    let mut v = stored.unwrap_or_else(|| Element::new("vCard", ns::VCARD));
    let binval = v
        .child("PHOTO", ns::VCARD)
        .is_some_and(|p| p.child("BINVAL", ns::VCARD).is_some());
    v.children.retain(|n| match n {
        crate::xml::Node::Element(e) => {
            !(e.is("FN", ns::VCARD) || (e.is("PHOTO", ns::VCARD) && !binval))
        }
        _ => true,
    });
    if let Some(name) = &user.full_name {
        v.push(Element::new("FN", ns::VCARD).with_text(name.clone()));
    }
    if let (Some(url), false) = (&user.avatar, binval) {
        v.push(
            Element::new("PHOTO", ns::VCARD)
                .with_child(Element::new("EXTVAL", ns::VCARD).with_text(url.clone())),
        );
    }
    v
}
