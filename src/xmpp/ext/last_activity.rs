//! XEP-0012 Last Activity: for another user's bare JID, the seconds since that user was last
//! connected (0 while online); for the server, 0. The answer comes `from` the user's bare JID
//! (the official SDK reads the user id from it). Must not reveal users of another application.

use crate::db;
use crate::xmpp::dispatch::{
    BoxFuture, Extension, Kind, Registration, Reply, Request, Spec, Target,
};
use crate::xmpp::ns;
use crate::xmpp::stanza::{StanzaError, UserKey};
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

pub const EXTENSION: Extension = Extension::documented(HANDLERS, SPECS);

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[Spec {
    name: "XEP-0012 Last Activity",
    status: "complete",
    notes: "0 while online, seconds since the last connection closed",
    ejabberd: "mod_last",
    prosody: "mod_lastactivity",
}];

pub const HANDLERS: &[Registration] = &[Registration {
    kind: Kind::IqGet,
    ns: ns::LAST,
    handler: Some(last),
    features: &[ns::LAST],
    for_users: true,
}];

fn last(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        let seconds = match req.target {
            // The server's uptime is not told; one's own account is online, asking.
            Target::Server | Target::Account => 0,
            // Routing already refused other applications; kept as a second guard.
            Target::User(u) if !req.user.same_app(&u) => {
                return Err(StanzaError::service_unavailable())
            }
            Target::User(u) => seconds_since_seen(req.services, u)
                .await?
                .ok_or_else(|| StanzaError::item_not_found().with_text("never seen"))?,
        };
        Ok(Some(query(seconds)))
    })
}

pub fn query(seconds: i64) -> Element {
    Element::new("query", ns::LAST).with_attr("seconds", seconds.to_string())
}

/// 0 when online, else seconds since the last connection closed; `None` if never seen.
pub async fn seconds_since_seen(
    services: &Services,
    user: UserKey,
) -> Result<Option<i64>, StanzaError> {
    if services.hub.is_online(user) {
        return Ok(Some(0));
    }
    let seen = db::xmpp::last_seen(&services.pool, user.app, user.user)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "reading last activity");
            StanzaError::internal_server_error()
        })?;
    let now = services.clock.now();
    Ok(seen.map(|t| (now - t).whole_seconds().max(0)))
}
