//! ConnectyCube status streaming: `<subscribe user_jid=… enable=…/>` registers the connection
//! for pushes of that user's last activity (a `jabber:iq:last` result `from` the user: 0 when
//! they connect, their offline seconds when they leave); the session calls [`push_status`]
//! when a user's first connection binds and when the last one closes.
//! Must not subscribe across applications. A connection holds at most
//! `xmpp.status_subscriptions_max` subscriptions; they end with the connection.

use crate::xmpp::dispatch::{BoxFuture, Extension, Kind, Registration, Reply, Request, Spec};
use crate::xmpp::ns;
use crate::xmpp::stanza::{Jid, StanzaError, UserKey};
use crate::xmpp::stream::{Element, Node};
use crate::xmpp::Services;

pub const EXTENSION: Extension = Extension::documented(HANDLERS, SPECS);

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[Spec {
    name: "ConnectyCube status streaming",
    status: "complete",
    notes: "pushes a `jabber:iq:last` result when the user comes online or leaves",
    ejabberd: "no",
    prosody: "no",
}];

pub const HANDLERS: &[Registration] = &[Registration {
    kind: Kind::IqSet,
    ns: ns::CC_STATUS_STREAMING,
    handler: Some(subscribe),
    features: &[ns::CC_STATUS_STREAMING],
    for_users: false,
}];

fn subscribe(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        let target = req
            .payload
            .attr("user_jid")
            .and_then(Jid::parse)
            .and_then(|j| j.peer_of(req.services.domain(), &req.user))
            .ok_or_else(StanzaError::bad_request)?;
        let on = !matches!(req.payload.attr("enable"), Some("false" | "0"));
        let max = req.services.config.xmpp.status_subscriptions_max;
        if !req
            .services
            .hub
            .subscribe_status(target, req.user, req.conn, on, max)
        {
            return Err(StanzaError::not_allowed().with_text(format!(
                "too many status subscriptions (at most {max} per connection)"
            )));
        }
        Ok(None)
    })
}

/// The push sent to a subscriber: `<iq type=result from=user><query seconds=…/></iq>`.
pub fn push(from_bare: &str, to_full: &str, seconds: i64) -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "result")
        .with_attr("id", crate::xmpp::stanza::random_hex(8))
        .with_attr("from", from_bare)
        .with_attr("to", to_full)
        .with_child(super::last_activity::query(seconds))
}

/// Tells the connections subscribed to `user` (bare JID `bare`) that the user came online (0)
/// or left (`offline`: the seconds, and the text `offline`), on every node: the session calls
/// it for the user's first connection and last disconnection in the cluster.
pub fn push_status(services: &Services, user: UserKey, bare: &str, seconds: i64, offline: bool) {
    push_status_here(services, user, bare, seconds, offline);
    crate::xmpp::cluster::status_elsewhere(services, user, !offline);
}

/// [`push_status`] to this node's subscribers only (what another node's notice asks for).
pub fn push_status_here(
    services: &Services,
    user: UserKey,
    bare: &str,
    seconds: i64,
    offline: bool,
) {
    let hub = &services.hub;
    for (sub, conn) in hub.status_subscribers(user) {
        for c in hub.connections(sub) {
            if c.id == conn {
                let to = format!("{}/{}", sub.bare_jid(services.domain()), c.resource);
                let mut push = push(bare, &to, seconds);
                if offline {
                    if let Some(Node::Element(q)) = push.children.first_mut() {
                        q.children.push(Node::Text("offline".into()));
                    }
                }
                hub.deliver_to_conn(sub, conn, push);
            }
        }
    }
}
