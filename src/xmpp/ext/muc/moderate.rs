//! XEP-0425 Message Moderation: a moderator retracts a room message for everyone by its stanza
//! id (the message `_id`, XEP-0359), as `urn:xmpp:message-moderate:1` (`<moderate>` with a
//! `<retract/>`) or `:0` (inside an XEP-0422 `<apply-to/>`). It is the chat service's forced
//! delete (`delete_messages`), so the roles table decides who may; the room then tells its
//! occupants in both versions' shapes, plus the ConnectyCube `<remove/>` the SDK reads.

use super::{addr_jid, chat_err, fan_out, key, membership, nick_of, Iq, RoomAddr};
use crate::chat::Actor;
use crate::model::ObjectId;
use crate::xmpp::dispatch::Reply;
use crate::xmpp::ns;
use crate::xmpp::stanza::{random_hex, StanzaError};
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

/// A moderation request of either version.
pub(super) fn is_request(p: &Element) -> bool {
    p.is("moderate", ns::MODERATE_1)
        || (p.is("apply-to", ns::FASTEN) && p.child("moderate", ns::MODERATE_0).is_some())
}

/// `(message id, reason)` of a request, if it asks for a retraction.
fn parse(p: &Element) -> Option<(String, Option<String>)> {
    let (id, moderate, retract) = if p.is("moderate", ns::MODERATE_1) {
        (p.attr("id")?, p, p.child("retract", ns::RETRACT_1))
    } else {
        let m = p.child("moderate", ns::MODERATE_0)?;
        (p.attr("id")?, m, m.child("retract", ns::RETRACT_0))
    };
    retract?;
    let reason = moderate
        .elements()
        .find(|e| e.name == "reason")
        .map(Element::text);
    Some((id.to_owned(), reason))
}

pub(super) async fn on_iq(s: &Services, actor: &Actor, iq: Iq<'_>, room: &RoomAddr) -> Reply {
    if iq.get {
        return Err(StanzaError::bad_request());
    }
    let (id, reason) = parse(iq.payload).ok_or_else(|| {
        StanzaError::bad_request().with_text("a moderation names a message and a <retract/>")
    })?;
    if !ObjectId::is_valid(&id) {
        return Err(StanzaError::item_not_found().with_text("no such message in this room"));
    }
    let id = id.to_ascii_lowercase();
    let report = s
        .chat
        .delete_messages(actor, std::slice::from_ref(&id), true, Some(&room.dialog))
        .await
        .map_err(chat_err)?;
    if !report.not_found.is_empty() {
        return Err(StanzaError::item_not_found().with_text("no such message in this room"));
    }
    if !report.wrong_permissions.is_empty() {
        return Err(StanzaError::forbidden()
            .with_text("Forbidden: only moderators retract other occupants' messages"));
    }
    let rjid = addr_jid(s, actor.app.id, room);
    let by = format!("{rjid}/{}", nick_of(s, &key(actor, room), actor.user.0));
    let reason_el = |namespace: &str| {
        reason
            .as_ref()
            .map(|r| Element::new("reason", namespace).with_text(r.clone()))
    };
    let mut v1 = Element::new("retract", ns::RETRACT_1)
        .with_attr("id", id.clone())
        .with_child(Element::new("moderated", ns::MODERATE_1).with_attr("by", by.clone()));
    let mut moderated0 = Element::new("moderated", ns::MODERATE_0)
        .with_attr("by", by)
        .with_child(Element::new("retract", ns::RETRACT_0));
    if let Some(r) = reason_el(ns::RETRACT_1) {
        v1.push(r);
    }
    if let Some(r) = reason_el(ns::MODERATE_0) {
        moderated0.push(r);
    }
    let notice = Element::new("message", ns::CLIENT)
        .with_attr("type", "groupchat")
        .with_attr("from", rjid)
        .with_attr("id", random_hex(12))
        .with_child(v1)
        .with_child(
            Element::new("apply-to", ns::FASTEN)
                .with_attr("id", id.clone())
                .with_child(moderated0),
        )
        .with_child(Element::new("remove", ns::MESSAGE_DELETE).with_attr("id", id));
    // Who hears of it: a standard room's occupants; a dialog room's members too.
    let members = match (&room.name, membership(s, actor, room).await) {
        (None, Ok(m)) => m.members.to_vec(),
        _ => Vec::new(),
    };
    fan_out(
        s,
        actor.app.id,
        &room.dialog,
        &members,
        actor.user.0,
        &notice,
    )
    .await;
    Ok(None)
}
