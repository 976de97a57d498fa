//! Private messages through a room (XEP-0045 §7.5): `type='chat'` to `room/{nick}` reaches that
//! occupant's joined connections from `room/{sender's nick}`, with an empty `<x muc#user/>`;
//! never stored. Only an occupant may send one, only to an occupant. Decides nothing about the
//! dialog (the chat service does) and does not route 1:1 messages.

use super::{addr_jid, key, user_key, RoomAddr};
use crate::chat::Actor;
use crate::xmpp::ns;
use crate::xmpp::stanza::StanzaError;
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
    let bare = to.bare_jid(s.domain()).to_string();
    if target.conns.is_empty() {
        // Joined through another node only: their connections there (which node holds which
        // joined connection is that node's to know).
        s.hub.deliver_addressed_elsewhere(to, &bare, &el);
    }
    for (conn, resource) in &target.conns {
        let mut m = el.clone();
        m.set_attr("to", format!("{bare}/{resource}"));
        s.hub.deliver_to_conn(to, *conn, m);
    }
    Ok(())
}
