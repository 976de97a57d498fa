//! The room subject (XEP-0045 §8.1): a `groupchat` message with `<subject/>` and no body sets
//! it, as the chat service's `set_subject` allows (moderators, or participants when the room's
//! configuration lets them), and every joined occupant gets it from `room/{nick}`. Joiners get
//! it last (`join.rs`). Decides nothing itself.

use super::{addr_jid, chat_err, fan_out, key, nick_of, RoomAddr};
use crate::chat::Actor;
use crate::xmpp::ns;
use crate::xmpp::stanza::StanzaError;
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

/// A subject change: `<subject/>` without a body (with a body it is an ordinary message).
pub(super) fn is_subject_change(el: &Element) -> bool {
    el.child("subject", ns::CLIENT).is_some() && el.child("body", ns::CLIENT).is_none()
}

pub(super) async fn on_message(
    s: &Services,
    actor: &Actor,
    el: &Element,
    room: &RoomAddr,
) -> Result<(), StanzaError> {
    let uid = actor.user.0;
    let k = key(actor, room);
    let nick = nick_of(s, &k, uid);
    let text = el
        .child("subject", ns::CLIENT)
        .map(Element::text)
        .unwrap_or_default();
    s.chat
        .set_subject(actor, &room.dialog, &text, &nick)
        .await
        .map_err(chat_err)?;
    let mut m = Element::new("message", ns::CLIENT)
        .with_attr("type", "groupchat")
        .with_attr(
            "from",
            format!("{}/{nick}", addr_jid(s, actor.app.id, room)),
        )
        .with_child(Element::new("subject", ns::CLIENT).with_text(text));
    if let Some(id) = el.attr("id") {
        m.set_attr("id", id);
    }
    // The joined occupants (the sender reflected if joined).
    fan_out(s, actor.app.id, &room.dialog, &[], uid, &m).await;
    Ok(())
}
