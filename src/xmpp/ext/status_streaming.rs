//! ConnectyCube status streaming: `<subscribe user_jid=… enable=…/>` registers the connection
//! for pushes of that user's last activity (a `jabber:iq:last` result `from` the user: 0 when
//! they connect, their offline seconds when they leave). The session loop emits the pushes.
//! Must not subscribe across applications. A connection holds at most
//! `xmpp.status_subscriptions_max` subscriptions; they end with the connection.

use crate::xmpp::dispatch::{BoxFuture, Kind, Registration, Reply, Request};
use crate::xmpp::ns;
use crate::xmpp::stanza::{Jid, StanzaError};
use crate::xmpp::stream::Element;

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
