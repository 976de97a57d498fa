//! Occupant changes made elsewhere (REST): a user removed from a dialog leaves its room with
//! status 321, a deleted dialog's occupants get `<destroy/>`; the membership cache is dropped on
//! every such event. Must not decide membership (the chat service does).

use std::sync::Arc;

use tokio::sync::watch;

use super::join::{to_occupants, unavailable, with_status};
use super::{room_jid, user_key};
use crate::chat::{ChatEvent, Subscription};
use crate::hub::rooms::RoomKey;
use crate::ops::telemetry::QUEUE_DROPS;
use crate::xmpp::ns;
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

/// A user is no longer in the dialog: out of the room, told so on every connection (status
/// 321, or `<destroy/>` when the dialog is gone), and the remaining occupants see them leave.
fn remove_user(s: &Services, k: &RoomKey, uid: i64, destroyed: bool) {
    let rjid = room_jid(s, k.0, &k.1);
    let gone = s.hub.rooms.remove_user(k, uid);
    let base = gone
        .as_ref()
        .map(|o| unavailable(&o.presence))
        .unwrap_or_else(|| {
            unavailable(&Element::new("presence", ns::CLIENT))
                .with_attr("from", format!("{rjid}/{uid}"))
        });
    let mut mine = with_status(base.clone(), if destroyed { &[] } else { &["321"] }, true);
    if destroyed {
        for n in mine.children.iter_mut() {
            if let crate::xmpp::stream::Node::Element(x) = n {
                if x.is("x", ns::MUC_USER) {
                    x.push(Element::new("destroy", ns::MUC_USER).with_child(
                        Element::new("reason", ns::MUC_USER).with_text("the dialog was deleted"),
                    ));
                }
            }
        }
    }
    let user = user_key(k.0, uid);
    s.hub
        .deliver_addressed(user, &user.bare_jid(s.domain()).to_string(), &mine);
    if gone.is_some() && !destroyed {
        let others = with_status(base, &["321"], false);
        to_occupants(s, k.0, &s.hub.rooms.occupants(k), &others);
    }
}

/// Another node removed `uid` from the dialog (its chat event crossed as a notice): they leave
/// the room here too, and this node's occupants see them go (status 321). The user was told on
/// every node by the node that made the change.
pub fn removed_elsewhere(s: &Services, k: &RoomKey, uid: i64) {
    if let Some(gone) = s.hub.rooms.remove_user(k, uid) {
        let others = with_status(unavailable(&gone.presence), &["321"], false);
        to_occupants(s, k.0, &s.hub.rooms.occupants(k), &others);
    }
}

/// Applies one chat event to the rooms.
pub fn on_event(s: &Services, e: &ChatEvent) {
    match e {
        ChatEvent::OccupantsChanged {
            app,
            dialog,
            removed,
            ..
        } => {
            let k = (*app, dialog.to_string());
            s.hub.rooms.invalidate(&k);
            for uid in removed {
                remove_user(s, &k, *uid, false);
            }
        }
        ChatEvent::DialogDeleted { app, dialog, .. } => {
            // Only joined occupants hear of it: the event does not say whether the dialog was
            // a room at all (a private dialog is not), and members who never joined simply
            // stop receiving.
            let k = (*app, dialog.to_string());
            s.hub.rooms.invalidate(&k);
            for o in s.hub.rooms.occupants(&k) {
                remove_user(s, &k, o.user, true);
            }
        }
        _ => {}
    }
}

/// Follows the chat events for the life of the server (subscribe before serving, so nothing
/// committed after start is missed).
pub async fn watch_events(s: Arc<Services>, events: Subscription, shutdown: watch::Receiver<bool>) {
    events
        .follow(
            shutdown,
            |e| on_event(&s, &e),
            |n| {
                metrics::counter!(QUEUE_DROPS, "queue" => "room_events").increment(n);
                tracing::warn!(missed = n, "room events lagged: membership cache cleared");
                s.hub.rooms.invalidate_all();
            },
        )
        .await;
}
