//! Private messages through a room (XEP-0045 §7.5): `type='chat'` to `room/{nick}` reaches that
//! occupant's joined connections from `room/{sender's nick}`, with an empty `<x muc#user/>`;
//! never stored. Across nodes: the sender's node checks and addresses it, and every other node
//! holding the occupant in the room delivers it to their connections joined there (a user
//! joined both here and elsewhere gets it on both). Only an occupant may send one, only to an occupant. Decides nothing about the
//! dialog (the chat service does) and does not route 1:1 messages.

use super::{addr_jid, key, user_key, RoomAddr};
use crate::chat::Actor;
use crate::hub::rooms::RoomKey;
use crate::xmpp::ns;
use crate::xmpp::stanza::{StanzaError, UserKey};
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

pub(super) async fn on_message(
    s: &Services,
    actor: &Actor,
    mut el: Element,
    room: &RoomAddr,
) -> Result<(), StanzaError> {
    let k = key(actor, room);
    let app = actor.app.id;
    let uid = actor.user.0;
    let Some(mine) = s.hub.rooms.nick_of(&k, uid) else {
        return Err(StanzaError::not_acceptable()
            .with_text("only occupants send private messages through a room"));
    };
    let nick = room.nick.as_deref().unwrap_or_default();
    let target = s
        .hub
        .rooms
        .by_nick(&k, nick)
        .ok_or_else(|| StanzaError::item_not_found().with_text("no occupant has this nick"))?;
    let to = user_key(app, target.user);
    if crate::privacy::blocks_group_message(s, to, user_key(app, uid)).await {
        return Ok(());
    }
    el.set_attr("from", format!("{}/{mine}", addr_jid(s, app, room)));
    if el.child("x", ns::MUC_USER).is_none() {
        el.push(Element::new("x", ns::MUC_USER));
    }
    // Their joined connections here, and through every other node holding them in the room:
    // which of its connections joined is that node's to know (`deliver_joined_here`).
    deliver_joined_here(s, &k, to, &el);
    if s.hub.rooms.held_elsewhere(&k, target.user) {
        crate::xmpp::cluster::private_elsewhere(s, &k, to, &el);
    }
    Ok(())
}

/// Delivers a private message through room `k` to `to`'s connections joined to it on this node
/// (each addressed to its full JID); none when they have not joined here. Other nodes' private
/// messages arrive here too (`xmpp::cluster`), already checked by the sender's node.
pub(crate) fn deliver_joined_here(s: &Services, k: &RoomKey, to: UserKey, el: &Element) -> usize {
    let Some(target) = s
        .hub
        .rooms
        .local_occupants(k)
        .into_iter()
        .find(|o| o.user == to.user.0)
    else {
        return 0;
    };
    let bare = to.bare_jid(s.domain()).to_string();
    target
        .conns
        .iter()
        .filter(|(conn, resource)| {
            let mut m = el.clone();
            m.set_attr("to", format!("{bare}/{resource}"));
            s.hub.deliver_to_conn(to, *conn, m)
        })
        .count()
}
