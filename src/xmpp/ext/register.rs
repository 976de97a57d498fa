//! XEP-0077 In-Band Registration, behind `xmpp.register_enabled` (off by default). Before
//! authentication a client may create an account in the application
//! `xmpp.register_application_id`: a login and a password, checked and stored by the identity
//! service exactly as REST sign-up does (`Identity::signup`), at most
//! `xmpp.registrations_per_hour_per_ip` attempts per address, and only where a password may be
//! sent at all (TLS, or `xmpp.plain_auth`). Negotiation calls [`before_auth`]; once logged in,
//! the table's handler tells the account its XMPP username. Password changes and account
//! removal stay REST's (`PUT`/`DELETE /users/{id}`): answered `not-allowed`.
//!
//! The XMPP username of the new account is `{user_id}-{application_id}` (the JID every Parley
//! account has), not the login: the result carries it in `<username/>`, the client logs in with
//! it. Must not create users any other way than through identity.

use std::net::IpAddr;
use std::sync::Arc;

use crate::identity::IdentityError;
use crate::limits::conns::ip_key;
use crate::model::account::UserFields;
use crate::model::{AppId, UserKey};
use crate::xmpp::dispatch::{BoxFuture, Extension, Kind, Registration, Reply, Request, Spec};
use crate::xmpp::ns;
use crate::xmpp::stanza::{iq_result, IqType, StanzaError};
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

pub const EXTENSION: Extension = Extension::documented(HANDLERS, SPECS);

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[
    Spec {
        name: "XEP-0077 In-Band Registration",
        status: "partial",
        notes: "off by default (`xmpp.register_enabled`); registration before login only, rate-limited per address; password change and removal are REST's (`not-allowed`); log in as the returned `{user_id}-{app_id}`",
        ejabberd: "mod_register",
        prosody: "mod_register",
    },
];

pub const HANDLERS: &[Registration] = &[
    Registration {
        kind: Kind::IqGet,
        ns: ns::REGISTER,
        handler: Some(registered),
        // Not in disco: whether registration is on is the operator's choice at run time.
        features: &[],
        for_users: false,
    },
    Registration {
        kind: Kind::IqSet,
        ns: ns::REGISTER,
        handler: Some(change),
        features: &[],
        for_users: false,
    },
];

/// Registration is switched on and names an application.
pub fn enabled(s: &Services) -> bool {
    s.config.xmpp.register_enabled && s.config.xmpp.register_application_id > 0
}

/// The stream feature, for the features of a stream that may register now.
pub fn feature() -> Element {
    Element::new("register", ns::REGISTER_FEATURE)
}

/// An iq carries a registration query.
pub fn is_registration(iq: &Element) -> bool {
    iq.child("query", ns::REGISTER).is_some()
}

fn query() -> Element {
    Element::new("query", ns::REGISTER)
}

/// Answers a registration iq sent before authentication. `may_send_password`: this connection
/// may carry a password (TLS, or `xmpp.plain_auth` allows it); otherwise, as when the switch is
/// off, `service-unavailable`.
pub async fn before_auth(
    s: &Arc<Services>,
    iq: &Element,
    peer: IpAddr,
    may_send_password: bool,
) -> Element {
    let domain = s.domain();
    let reply = if !enabled(s) || !may_send_password {
        Err(StanzaError::service_unavailable())
    } else {
        match (IqType::of(iq), iq.child("query", ns::REGISTER)) {
            (Ok(IqType::Get), Some(_)) => Ok(form()),
            (Ok(IqType::Set), Some(q)) => register(s, q, peer).await,
            _ => Err(StanzaError::bad_request()),
        }
    };
    let mut out = match reply {
        Ok(payload) => iq_result(iq, domain, Some(payload)),
        Err(e) => e.reply_to(iq, domain),
    };
    // Before binding the client has no address of its own to be answered at.
    out.remove_attr("to");
    out
}

/// XEP-0077 §3.1: the fields to fill in.
fn form() -> Element {
    query()
        .with_child(Element::new("instructions", ns::REGISTER).with_text(
            "Choose a login and a password. You then log in as the username the result gives \
             ({user_id}-{application_id}).",
        ))
        .with_child(Element::new("username", ns::REGISTER))
        .with_child(Element::new("password", ns::REGISTER))
}

async fn register(s: &Arc<Services>, q: &Element, peer: IpAddr) -> Result<Element, StanzaError> {
    if q.child("remove", ns::REGISTER).is_some() {
        return Err(StanzaError::not_allowed());
    }
    // Every attempt counts, so that the rate also bounds guessing which logins exist.
    if s.registrations.check(&ip_key(peer)).is_err() {
        return Err(StanzaError::policy_violation_wait()
            .with_text("too many registrations from this address; try again later"));
    }
    let field = |name: &str| {
        q.child(name, ns::REGISTER)
            .map(|e| e.text())
            .filter(|t| !t.is_empty())
    };
    let (Some(login), Some(password)) = (field("username"), field("password")) else {
        return Err(StanzaError::not_acceptable().with_text("username and password are required"));
    };
    let app = AppId(s.config.xmpp.register_application_id);
    let fields = UserFields {
        login: Some(Some(login)),
        ..UserFields::default()
    };
    match s.identity.signup(app, fields, Some(password)).await {
        Ok(user) => {
            let key = UserKey { app, user: user.id };
            tracing::info!(user = %user.id, %peer, "registered in-band");
            Ok(query().with_child(Element::new("username", ns::REGISTER).with_text(key.local())))
        }
        Err(IdentityError::Invalid { field, message })
            if field == "login" && message.contains("taken") =>
        {
            Err(StanzaError::conflict())
        }
        Err(IdentityError::Invalid { field, message }) => {
            let field = if field == "login" {
                "username".into()
            } else {
                field
            };
            Err(StanzaError::not_acceptable().with_text(format!("{field} {message}")))
        }
        Err(IdentityError::Busy(_)) => Err(StanzaError::resource_constraint()),
        Err(e) => {
            tracing::warn!(error = %e, "in-band registration");
            Err(StanzaError::internal_server_error())
        }
    }
}

/// Once logged in: the account is registered; its username is its JID's local part.
fn registered(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        if !enabled(req.services) {
            return Err(StanzaError::service_unavailable());
        }
        Ok(Some(
            query()
                .with_child(Element::new("registered", ns::REGISTER))
                .with_child(Element::new("username", ns::REGISTER).with_text(req.user.local())),
        ))
    })
}

/// Once logged in, password changes and cancellation are REST's.
fn change(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        if !enabled(req.services) {
            return Err(StanzaError::service_unavailable());
        }
        Err(StanzaError::not_allowed().with_text(
            "change the password or remove the account over REST (PUT/DELETE /users/{id})",
        ))
    })
}
