//! Mediated invitations (XEP-0045 §7.8.2): an occupant sends the room a `message` with
//! `<x muc#user><invite to='…'><reason/></invite></x>`; the room passes it on to the invitee
//! as `<invite from='{inviter's full JID}'>` from the room's JID (the room is non-anonymous),
//! unless the invitee's privacy rules exclude the inviter's group messages. One invitee per
//! message, a user of the same application; nothing is stored and membership is unchanged
//! (a members-only room still decides at join time).

use super::{addr_jid, key, user_key, RoomAddr};
use crate::chat::Actor;
use crate::xmpp::ns;
use crate::xmpp::stanza::{Jid, StanzaError};
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

/// The `<invite/>` elements of a message to a room, if it is an invitation.
pub(super) fn invites(el: &Element) -> Vec<&Element> {
    el.child("x", ns::MUC_USER)
        .map(|x| {
            x.elements()
                .filter(|e| e.is("invite", ns::MUC_USER))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) async fn on_message(
    s: &Services,
    actor: &Actor,
    el: &Element,
    room: &RoomAddr,
) -> Result<(), StanzaError> {
    let app = actor.app.id;
    let uid = actor.user.0;
    if s.hub.rooms.nick_of(&key(actor, room), uid).is_none() {
        return Err(StanzaError::not_acceptable().with_text("only occupants invite to a room"));
    }
    let [invite] = invites(el)[..] else {
        return Err(StanzaError::bad_request().with_text("one invitee per invitation"));
    };
    let me = user_key(app, uid);
    let to = invite
        .attr("to")
        .and_then(|j| Jid::parse(j).and_then(|j| j.peer_of(s.domain(), &me)))
        .ok_or_else(|| {
            StanzaError::item_not_found().with_text("the invitee is not a user of this application")
        })?;
    if crate::privacy::blocks_group_message(s, to, me).await {
        return Ok(());
    }
    let from = el
        .attr("from")
        .map(str::to_owned)
        .unwrap_or_else(|| me.bare_jid(s.domain()).to_string());
    let mut passed = Element::new("invite", ns::MUC_USER).with_attr("from", from);
    if let Some(r) = invite.child("reason", ns::MUC_USER) {
        passed.push(Element::new("reason", ns::MUC_USER).with_text(r.text()));
    }
    let bare = to.bare_jid(s.domain()).to_string();
    let msg = Element::new("message", ns::CLIENT)
        .with_attr("from", addr_jid(s, app, room))
        .with_attr("to", bare.clone())
        .with_child(Element::new("x", ns::MUC_USER).with_child(passed));
    s.hub.deliver_addressed(to, &bare, &msg);
    Ok(())
}
