//! XEP-0045 join and leave: presence to `room/{nick}` checked by the chat service's
//! `enter_room` (or creating a standard room, `create_room`), the other occupants' presence,
//! the self-presence with 110 / 100 (/ 201 for a new room) and the SDK shim, the join history
//! (`join_history.rs`), then the subject; nick changes (303); leaving by presence or at the
//! end of the stream. Must not decide who may enter (the chat service does).

use super::join_history::{history_message, join_history};
use super::{
    addr_jid, chat_err, key, lookup, nick_of, no_room, user_key, RoomAddr, DEFAULT_HISTORY,
    MAX_HISTORY,
};
use crate::chat::rooms::RoomEntry;
use crate::chat::rules::{self, Action, Role};
use crate::chat::Actor;
use crate::hub::rooms::{Occupant, RoomKey};
use crate::hub::ConnId;
use crate::model::room::RoomSettings;
use crate::model::{AppId, Dialog, UserId};
use crate::xmpp::ns;
use crate::xmpp::stanza::{Condition, ErrorType, PresenceType, StanzaError, UserKey};
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

/// Affiliation and role of `uid` as XEP-0045 shows them, from the chat roles.
pub(super) fn item(d: &Dialog, members: &[i64], uid: i64) -> Element {
    let role = rules::role_of(d, UserId(uid), members.contains(&uid));
    let affiliation = match role {
        Role::SuperAdmin => "owner",
        Role::Admin => "admin",
        Role::Regular => "member",
        Role::Outsider => "none",
    };
    let muc_role = match role {
        Role::SuperAdmin | Role::Admin => "moderator",
        r if rules::check(r, d.kind, Action::SendMessage).is_ok() => "participant",
        _ => "visitor",
    };
    Element::new("item", ns::MUC_USER)
        .with_attr("affiliation", affiliation)
        .with_attr("role", muc_role)
}

/// `<status code/>` plus the SDK 6.1.2 shim `<xmlns><code/></xmlns>` it reads instead.
fn status_with_shim(x: &mut Element, code: &str) {
    x.push(Element::new("status", ns::MUC_USER).with_attr("code", code));
    x.push(
        Element::new("xmlns", ns::MUC_USER)
            .with_child(Element::new("code", ns::MUC_USER).with_text(code)),
    );
}

pub(super) fn occupant_presence(
    room_jid: &str,
    nick: &str,
    template: &Element,
    item: Element,
) -> Element {
    let mut p =
        Element::new("presence", ns::CLIENT).with_attr("from", format!("{room_jid}/{nick}"));
    // The template is the joining presence, so available today (no `type`); an unknown type
    // never reaches here (see `on_presence`).
    if let Some(t) = PresenceType::of(template).ok().and_then(PresenceType::attr) {
        p.set_attr("type", t);
    }
    for c in template.elements() {
        if c.ns != ns::MUC && c.ns != ns::MUC_USER {
            p.push(c.clone());
        }
    }
    p.push(Element::new("x", ns::MUC_USER).with_child(item));
    p
}

/// Sends `presence` (from the room) to every joined connection of the occupants listed.
pub(super) fn to_occupants(s: &Services, app: AppId, occupants: &[Occupant], presence: &Element) {
    for o in occupants {
        let bare = user_key(app, o.user).bare_jid(s.domain()).to_string();
        for (conn, resource) in &o.conns {
            let mut p = presence.clone();
            p.set_attr("to", format!("{bare}/{resource}"));
            s.hub.deliver_to_conn(user_key(app, o.user), *conn, p);
        }
    }
}

/// Tells the other nodes (if any) what this node now holds of `uid` in the room, and the
/// presences (from the room, no `to`) their occupants are to be shown, in order: they keep the
/// room's occupants as this node does, and show them what this node's were shown.
pub(super) fn publish(s: &Services, k: &RoomKey, uid: i64, show: &[Element]) {
    if let Some(c) = s.hub.cluster() {
        let state = s.hub.rooms.local_state(k, uid);
        c.room_occupant(k, uid, state.as_ref().map(|(n, p)| (n.as_str(), p)), show);
    }
}

/// Another node's occupant `uid` changed: this node's occupants (but `uid`) are shown what
/// that node's were. A nick change there is one here too when `uid` has joined here as well.
pub fn show_remote(s: &Services, k: &RoomKey, uid: i64, presences: &[Element]) {
    follow_nick(s, k, uid, presences);
    let others: Vec<Occupant> = s
        .hub
        .rooms
        .local_occupants(k)
        .into_iter()
        .filter(|o| o.user != uid)
        .collect();
    if others.is_empty() {
        return;
    }
    for p in presences {
        to_occupants(s, k.0, &others, p);
    }
}

/// The new nick of a nick change (XEP-0045 §7.6: the unavailable presence with 303 and the
/// `<item nick/>`) among another node's presences.
fn changed_nick(presences: &[Element]) -> Option<&str> {
    presences.iter().find_map(|p| {
        let x = p.child("x", ns::MUC_USER)?;
        x.elements()
            .any(|c| c.is("status", ns::MUC_USER) && c.attr("code") == Some("303"))
            .then(|| x.child("item", ns::MUC_USER)?.attr("nick"))
            .flatten()
    })
}

/// One nick per user across nodes: `uid` changed their nick through another node (joined there
/// under another nick) while also joined here, so their connections here take the new nick and
/// are told (303, 110), and the other nodes learn what this node now holds.
fn follow_nick(s: &Services, k: &RoomKey, uid: i64, presences: &[Element]) {
    // The nick the other node now holds for them (checked on arrival), not just any in a
    // presence.
    let Some(nick) = changed_nick(presences)
        .filter(|n| s.hub.rooms.by_nick(k, n).is_some_and(|o| o.user == uid))
    else {
        return;
    };
    let Some(occ) = s
        .hub
        .rooms
        .local_occupants(k)
        .into_iter()
        .find(|o| o.user == uid && o.nick != nick)
    else {
        return;
    };
    let Some((rjid, _)) = occ.presence.attr("from").and_then(|f| f.rsplit_once('/')) else {
        return;
    };
    let mut me = occ.presence.clone();
    me.set_attr("from", format!("{rjid}/{nick}"));
    for (conn, resource) in &occ.conns {
        // Refused only when another user took the nick meanwhile: this node keeps the old one.
        if s.hub
            .rooms
            .join(k, uid, *conn, resource, nick, me.clone())
            .is_err()
        {
            return;
        }
    }
    let mut gone = unavailable(&occ.presence);
    set_item_nick(&mut gone, nick);
    let mine = std::slice::from_ref(&occ);
    to_occupants(s, k.0, mine, &with_status(gone, &["303"], true));
    to_occupants(s, k.0, mine, &with_status(me, &[], true));
    publish(s, k, uid, &[]);
}

/// Occupants whose node died or left are gone from their rooms: this node's occupants see them
/// leave.
///
/// A temporary standard room is not dropped here: this node knows a room's name only while it
/// holds occupants of it (so the room is not empty), and no node can tell a temporary room
/// whose last occupants were all on the dead node. Such a room stays in the database, empty,
/// until someone joins and leaves it again (the last leave drops it as usual).
pub fn lost_remote(s: &Services, gone: Vec<(RoomKey, Occupant)>) {
    for (k, o) in gone {
        let p = unavailable(&o.presence);
        to_occupants(s, k.0, &s.hub.rooms.local_occupants(&k), &p);
    }
}

pub(super) fn unavailable(presence: &Element) -> Element {
    let mut p = Element::new("presence", ns::CLIENT).with_attr("type", "unavailable");
    if let Some(f) = presence.attr("from") {
        p.set_attr("from", f);
    }
    let item = presence
        .child("x", ns::MUC_USER)
        .and_then(|x| x.child("item", ns::MUC_USER))
        .cloned()
        .map(|mut i| {
            i.set_attr("role", "none");
            i
        });
    let mut x = Element::new("x", ns::MUC_USER);
    if let Some(i) = item {
        x.push(i);
    }
    p.push(x);
    p
}

/// Adds status codes. A self-presence gets 110 first and the SDK shim after each code (the
/// SDK reads the first shim); others get plain codes, since a shim there hides the occupant
/// change from the SDK's join/leave listeners.
pub(super) fn with_status(mut p: Element, codes: &[&str], self_presence: bool) -> Element {
    for n in p.children.iter_mut() {
        if let crate::xmpp::stream::Node::Element(x) = n {
            if x.is("x", ns::MUC_USER) {
                if self_presence {
                    status_with_shim(x, "110");
                }
                for c in codes {
                    if self_presence {
                        status_with_shim(x, c);
                    } else {
                        x.push(Element::new("status", ns::MUC_USER).with_attr("code", *c));
                    }
                }
            }
        }
    }
    p
}

/// The nick `uid` asks for: any nick, but a number is a user id (the SDK's nick, what its
/// clients read as the sender), so only that user may take it.
fn check_nick(nick: &str, uid: i64) -> Result<(), StanzaError> {
    match nick.parse::<i64>() {
        Ok(n) if n != uid => {
            Err(StanzaError::conflict().with_text(format!("the nick {n} is reserved for user {n}")))
        }
        _ => Ok(()),
    }
}

/// The room's subject as a joiner gets it, last (XEP-0045 §7.2.15): from the nick that set
/// it, or the room; an empty `<subject/>` when there is none.
pub(super) fn subject_message(rjid: &str, to: &str, settings: &RoomSettings) -> Element {
    let from = match &settings.subject_by {
        Some(nick) if !settings.subject.is_empty() => format!("{rjid}/{nick}"),
        _ => rjid.to_owned(),
    };
    Element::new("message", ns::CLIENT)
        .with_attr("type", "groupchat")
        .with_attr("from", from)
        .with_attr("to", to)
        .with_attr("id", crate::xmpp::stanza::random_hex(8))
        .with_child(Element::new("subject", ns::CLIENT).with_text(settings.subject.clone()))
}

/// Enters the room behind `room`, creating a standard room when its name is unknown (and
/// `xmpp.room_creation` allows it).
async fn enter(
    s: &Services,
    actor: &Actor,
    room: RoomAddr,
) -> Result<(RoomAddr, RoomEntry), StanzaError> {
    for _ in 0..2 {
        if let Some(found) = lookup(s, actor, room.clone()).await? {
            let entry = s
                .chat
                .enter_room(actor, &found.dialog)
                .await
                .map_err(chat_err)?;
            return Ok((found, entry));
        }
        let Some(name) = room.name.as_deref() else {
            break;
        };
        if !s.config.xmpp.room_creation {
            break;
        }
        if let Some(entry) = s
            .chat
            .create_room(actor, name, s.config.xmpp.room_default_persistent)
            .await
            .map_err(chat_err)?
        {
            let mut created = room.clone();
            created.dialog = entry.dialog.id.to_string();
            return Ok((created, entry));
        }
        // Another join created the room meanwhile: enter it.
    }
    Err(no_room())
}

/// Leaves the room; a temporary standard room whose last occupant this was goes with it.
fn left(s: &Services, k: &RoomKey, named: bool) {
    if named && s.hub.rooms.occupants(k).is_empty() {
        let chat = s.chat.clone();
        let (app, dialog) = k.clone();
        tokio::spawn(async move {
            if let Err(e) = chat.drop_if_temporary(app, &dialog).await {
                tracing::warn!(error = %e, "a temporary room was not removed");
            }
        });
    }
}

/// A `presence` addressed to a room: join (available), nick change or presence update, or
/// leave (unavailable). Returns what the sender's own connection gets, in order; an error is
/// the join error to send back.
pub async fn on_presence(
    s: &Services,
    actor: &Actor,
    conn: ConnId,
    full: &str,
    el: Element,
    room: RoomAddr,
) -> Result<Vec<Element>, StanzaError> {
    let uid = actor.user.0;
    let app = actor.app.id;
    let id = el.attr("id").map(str::to_owned);
    let resource = full.split_once('/').map(|(_, r)| r).unwrap_or_default();
    let self_addr = |mut p: Element| {
        p.set_attr("to", full);
        if let Some(i) = &id {
            p.set_attr("id", i.clone());
        }
        p
    };
    match PresenceType::of(&el) {
        Ok(PresenceType::Available) => {}
        Ok(t @ (PresenceType::Unavailable | PresenceType::Error)) => {
            // A presence error from an occupant's client (XEP-0045 §7.2.19 / status 333): the
            // connection leaves the room as if kicked because of an error; no answer to an
            // error from a non-occupant.
            let error = t == PresenceType::Error;
            let codes: &[&str] = if error { &["307", "333"] } else { &[] };
            let Some(room) = lookup(s, actor, room).await? else {
                return Ok(Vec::new());
            };
            let k = key(actor, &room);
            let rjid = addr_jid(s, app, &room);
            let named = s.hub.rooms.name_of(&k).is_some();
            let mut mine = unavailable(&Element::new("presence", ns::CLIENT))
                .with_attr("from", format!("{rjid}/{}", nick_of(s, &k, uid)));
            match s.hub.rooms.leave(&k, uid, conn) {
                Some(Some(gone)) => {
                    let mut p = unavailable(&gone.presence);
                    // The leaving presence's `<status/>` is shown to the room (XEP-0045
                    // §7.14); the stanza is already bounded by the stanza size limit.
                    for st in el.elements().filter(|c| c.is("status", ns::CLIENT)).take(1) {
                        p.push(st.clone());
                    }
                    mine = p.clone();
                    let shown = with_status(p, codes, false);
                    to_occupants(s, app, &s.hub.rooms.occupants(&k), &shown);
                    publish(s, &k, uid, std::slice::from_ref(&shown));
                    left(s, &k, named);
                }
                Some(None) => publish(s, &k, uid, &[]),
                None if error => return Ok(Vec::new()),
                None => {}
            }
            return Ok(vec![self_addr(with_status(mine, codes, true))]);
        }
        // Subscriptions and probes mean nothing to a room; an unknown type is ignored too.
        _ => return Ok(Vec::new()),
    }
    let nick = room.nick.clone().filter(|n| !n.is_empty()).ok_or_else(|| {
        StanzaError::new(ErrorType::Modify, Condition::JidMalformed)
            .with_text("a join names the nick: room/{nick}")
    })?;
    check_nick(&nick, uid)?;
    // The room keeps this presence for as long as the connection stays and copies it to every
    // occupant: its payload is bounded (checked before a room may be created for it).
    let max_bytes = s.config.xmpp.room_presence_max_bytes;
    let payload: usize = el
        .elements()
        .filter(|c| c.ns != ns::MUC && c.ns != ns::MUC_USER)
        .map(|c| c.to_standalone_xml().len())
        .sum();
    if payload > max_bytes {
        return Err(StanzaError::not_acceptable().with_text(format!(
            "the presence is too large to keep in a room (at most {max_bytes} bytes)"
        )));
    }
    let max = s.config.xmpp.rooms_joined_max;
    if let Some(found) = lookup(s, actor, room.clone()).await? {
        if !s.hub.rooms.may_join(&key(actor, &found), conn, max) {
            return Err(too_many_rooms(max));
        }
    } else if s.hub.rooms.rooms_of(conn).len() >= max {
        return Err(too_many_rooms(max));
    }
    let (room, entry) = enter(s, actor, room).await?;
    let k = key(actor, &room);
    let dialog = &entry.dialog;
    let rjid = addr_jid(s, app, &room);
    // The room is non-anonymous (disco `muc_nonanonymous`, status 100): XEP-0045 §7.2.3 has
    // every occupant see each other's full JID, which moderators need to ban by JID.
    let me = occupant_presence(
        &rjid,
        &nick,
        &el,
        item(dialog, &entry.members, uid).with_attr("jid", full),
    );
    let joined = s
        .hub
        .rooms
        .join(&k, uid, conn, resource, &nick, me.clone())
        .map_err(|_| {
            StanzaError::conflict().with_text("another occupant of the room has this nick")
        })?;
    if let Some(name) = &room.name {
        // A temporary room is deleted once its last occupant leaves. A join that entered it
        // just before (its reads saw the dialog) may reach the live room only after the
        // deletion's event emptied it, and would be left in, and name, a room that no longer
        // exists. Asked after joining: either this read sees the deletion, or the deletion
        // commits later and its event finds this occupant and removes them.
        let still = s.chat.room_named(actor, name).await.map_err(chat_err)?;
        if still.as_deref() != Some(k.1.as_str()) {
            s.hub.rooms.leave(&k, uid, conn);
            return Err(no_room().with_text("the room closed as you joined; join again"));
        }
        s.hub.rooms.name_room(&k, name);
    }
    if let Some(old) = joined.old_nick {
        // XEP-0045 §7.6: unavailable from the old nick with 303 and the new nick, then the
        // new nick's presence, to everyone (the occupant included, with 110).
        let mut gone = unavailable(&me);
        gone.set_attr("from", format!("{rjid}/{old}"));
        set_item_nick(&mut gone, &nick);
        let shown = [with_status(gone.clone(), &["303"], false), me.clone()];
        for p in &shown {
            to_occupants(s, app, &joined.others, p);
        }
        publish(s, &k, uid, &shown);
        return Ok(vec![
            self_addr(with_status(gone, &["303"], true)),
            self_addr(with_status(me, &[], true)),
        ]);
    }
    if joined.again {
        // A presence update from an occupant: shown to the others, confirmed to itself.
        to_occupants(s, app, &joined.others, &me);
        publish(s, &k, uid, std::slice::from_ref(&me));
        return Ok(vec![self_addr(with_status(me, &[], true))]);
    }
    let mut out = Vec::new();
    for o in &joined.others {
        let mut p = o.presence.clone();
        p.set_attr("to", full);
        out.push(p);
    }
    if joined.first {
        to_occupants(s, app, &joined.others, &me);
        publish(s, &k, uid, std::slice::from_ref(&me));
    } else {
        publish(s, &k, uid, &[]);
    }
    let codes: &[&str] = if entry.created {
        &["100", "201"]
    } else {
        &["100"]
    };
    out.push(self_addr(with_status(me, codes, true)));
    let (limit, since) = history_request(s, el.child("x", ns::MUC));
    if limit > 0 && !entry.created {
        for v in join_history(s, actor, &room.dialog, limit, since).await? {
            out.push(history_message(&rjid, full, &v));
        }
    }
    out.push(subject_message(&rjid, full, &entry.settings));
    Ok(out)
}

fn too_many_rooms(max: usize) -> StanzaError {
    StanzaError::not_allowed().with_text(format!(
        "too many rooms joined (at most {max} per connection)"
    ))
}

/// Sets `nick` on the `<item/>` of a presence's `<x xmlns=muc#user>`.
fn set_item_nick(p: &mut Element, nick: &str) {
    for n in p.children.iter_mut() {
        if let crate::xmpp::stream::Node::Element(x) = n {
            if x.is("x", ns::MUC_USER) {
                for c in x.children.iter_mut() {
                    if let crate::xmpp::stream::Node::Element(i) = c {
                        if i.is("item", ns::MUC_USER) {
                            i.set_attr("nick", nick);
                        }
                    }
                }
            }
        }
    }
}

/// `(maxstanzas, since unix seconds)` of a join's `<history/>`.
fn history_request(s: &Services, x: Option<&Element>) -> (i64, Option<i64>) {
    let h = x.and_then(|x| x.child("history", ns::MUC));
    let Some(h) = h else {
        return (DEFAULT_HISTORY, None);
    };
    let limit = h
        .attr("maxstanzas")
        .and_then(|n| n.trim().parse::<i64>().ok())
        .unwrap_or(DEFAULT_HISTORY)
        .clamp(0, MAX_HISTORY);
    let since = h
        .attr("since")
        .and_then(crate::model::time::parse_date)
        .map(|t| t.unix_timestamp())
        .or_else(|| {
            h.attr("seconds")
                .and_then(|n| n.trim().parse::<i64>().ok())
                .map(|secs| s.clock.unix_seconds() - secs.max(0))
        });
    (limit, since)
}

/// The connection's stream ended or went unavailable: it leaves every room it had joined.
pub fn leave_all(s: &Services, user: UserKey, conn: ConnId) {
    let named: Vec<RoomKey> = s
        .hub
        .rooms
        .rooms_of(conn)
        .into_iter()
        .filter(|k| s.hub.rooms.name_of(k).is_some())
        .collect();
    for (k, gone) in s.hub.rooms.leave_conn(user.user.0, conn) {
        let Some(gone) = gone else {
            publish(s, &k, user.user.0, &[]);
            continue;
        };
        let p = unavailable(&gone.presence);
        to_occupants(s, k.0, &s.hub.rooms.occupants(&k), &p);
        publish(s, &k, user.user.0, std::slice::from_ref(&p));
        left(s, &k, named.contains(&k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_presence_carries_status_110_and_the_sdk_shim() {
        let p = occupant_presence(
            "1_x@muc.localhost",
            "7",
            &Element::new("presence", ns::CLIENT),
            Element::new("item", ns::MUC_USER),
        );
        let p = with_status(p, &[], true);
        let x = p.child("x", ns::MUC_USER).unwrap();
        assert_eq!(
            x.child("status", ns::MUC_USER).unwrap().attr("code"),
            Some("110")
        );
        let shim = x.child("xmlns", ns::MUC_USER).unwrap();
        assert_eq!(shim.child("code", ns::MUC_USER).unwrap().text(), "110");
    }
}
