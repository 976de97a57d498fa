//! Affiliations and roles (`muc#admin`, XEP-0045 §9): each item is a change made through the
//! chat service, so REST sees it and the roles table decides who may. Affiliations map onto
//! the dialog (owner = its owner, admin = its admins, member = its occupants, outcast = banned,
//! `chat::rooms::set_affiliation`); role `none` is a kick (status 307, nothing stored),
//! `moderator` makes an admin and `participant` takes it back. The lists (`get`) read the
//! dialog. Occupants whose role changed are shown with their new item.

use super::join::{item, publish, to_occupants, unavailable, with_status};
use super::{chat_err, key, user_key, Iq, RoomAddr};
use crate::chat::rooms::Affiliation;
use crate::chat::Actor;
use crate::hub::rooms::RoomKey;
use crate::model::{Dialog, UserId};
use crate::xmpp::dispatch::Reply;
use crate::xmpp::ns;
use crate::xmpp::stanza::{Jid, StanzaError};
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

fn affiliation(name: &str) -> Option<Affiliation> {
    Some(match name {
        "owner" => Affiliation::Owner,
        "admin" => Affiliation::Admin,
        "member" => Affiliation::Member,
        "none" => Affiliation::None,
        "outcast" => Affiliation::Outcast,
        _ => return None,
    })
}

/// The user an item names, by `jid` (a user of the caller's application) or by `nick` (a
/// joined occupant, or a user id: the reserved nick of a dialog room).
fn target(s: &Services, actor: &Actor, k: &RoomKey, it: &Element) -> Result<i64, StanzaError> {
    let nf = || StanzaError::item_not_found().with_text("no such user in this room");
    if let Some(j) = it.attr("jid") {
        let me = user_key(actor.app.id, actor.user.0);
        return Jid::parse(j)
            .and_then(|j| j.peer_of(s.domain(), &me))
            .map(|u| u.user.0)
            .ok_or_else(nf);
    }
    let nick = it
        .attr("nick")
        .ok_or_else(|| StanzaError::bad_request().with_text("an item names a jid or a nick"))?;
    match s.hub.rooms.by_nick(k, nick) {
        Some(o) => Ok(o.user),
        None => nick.parse::<i64>().map_err(|_| nf()),
    }
}

/// Takes `uid` out of the live room with `code` (307 kicked, 301 banned): they and the others
/// see them leave, with the moderator's `<reason/>` if one was given (XEP-0045 §8.2, §9.1).
fn kick_live(s: &Services, k: &RoomKey, uid: i64, code: &str, reason: Option<&str>) {
    let Some(gone) = s.hub.rooms.remove_user(k, uid) else {
        return;
    };
    let mut p = unavailable(&gone.presence);
    for n in p.children.iter_mut() {
        if let crate::xmpp::stream::Node::Element(x) = n {
            for i in x.children.iter_mut() {
                if let crate::xmpp::stream::Node::Element(it) = i {
                    if it.is("item", ns::MUC_USER) {
                        if code == "301" {
                            it.set_attr("affiliation", "outcast");
                        }
                        if let Some(r) = reason {
                            it.push(Element::new("reason", ns::MUC_USER).with_text(r));
                        }
                    }
                }
            }
        }
    }
    to_occupants(
        s,
        k.0,
        std::slice::from_ref(&gone),
        &with_status(p.clone(), &[code], true),
    );
    let others = with_status(p, &[code], false);
    to_occupants(s, k.0, &s.hub.rooms.occupants(k), &others);
    publish(s, k, uid, std::slice::from_ref(&others));
    crate::xmpp::cluster::kicked(s, k, uid, code);
}

/// Another node kicked or banned `uid` (and showed it to every node's occupants): if their
/// joined connections are here, they leave the room and are told, with `code`.
pub fn kicked_elsewhere(s: &Services, k: &RoomKey, uid: i64, code: &str) {
    let Some(gone) = s.hub.rooms.remove_user(k, uid) else {
        return;
    };
    if gone.conns.is_empty() {
        return;
    }
    let p = unavailable(&gone.presence);
    to_occupants(
        s,
        k.0,
        std::slice::from_ref(&gone),
        &with_status(p, &[code], true),
    );
    // The others no longer count this node's connections of them.
    publish(s, k, uid, &[]);
}

/// Shows a joined occupant's new affiliation and role to everyone in the room.
fn refresh(s: &Services, k: &RoomKey, d: &Dialog, uid: i64) {
    let Some(o) = s.hub.rooms.occupants(k).into_iter().find(|o| o.user == uid) else {
        return;
    };
    let mut p = o.presence.clone();
    // The occupant's full JID (non-anonymous room) stays on the new item.
    let jid = p
        .child("x", ns::MUC_USER)
        .and_then(|x| x.child("item", ns::MUC_USER))
        .and_then(|i| i.attr("jid"))
        .map(str::to_owned);
    p.children
        .retain(|n| !matches!(n, crate::xmpp::stream::Node::Element(x) if x.is("x", ns::MUC_USER)));
    let mut it = item(d, &[uid], uid);
    if let Some(j) = jid {
        it.set_attr("jid", j);
    }
    p.push(Element::new("x", ns::MUC_USER).with_child(it));
    s.hub.rooms.set_presence(k, uid, p.clone());
    to_occupants(s, k.0, &s.hub.rooms.occupants(k), &p);
    publish(s, k, uid, std::slice::from_ref(&p));
}

pub(super) async fn on_iq(s: &Services, actor: &Actor, iq: Iq<'_>, room: &RoomAddr) -> Reply {
    let k = key(actor, room);
    let items: Vec<&Element> = iq
        .payload
        .elements()
        .filter(|e| e.is("item", ns::MUC_ADMIN))
        .collect();
    if iq.get {
        return list(s, actor, room, &k, items.first().copied()).await;
    }
    // Each item is a transaction: as many as a dialog may hold occupants, no more.
    let max = s.config.chat.max_occupants_per_dialog;
    if items.is_empty() || items.len() > max {
        return Err(StanzaError::bad_request()
            .with_text(format!("between 1 and {max} items in one request")));
    }
    for it in items {
        let uid = target(s, actor, &k, it)?;
        // The item's reason (bounded by the stanza size limit), shown to whoever is removed.
        let reason = it
            .child("reason", ns::MUC_ADMIN)
            .map(|r| r.text())
            .filter(|r| !r.is_empty());
        if let Some(a) = it.attr("affiliation") {
            let a = affiliation(a)
                .ok_or_else(|| StanzaError::bad_request().with_text("unknown affiliation"))?;
            let live = s.hub.rooms.occupants(&k).iter().any(|o| o.user == uid);
            if a == Affiliation::Outcast && live {
                // The whole ban is checked first (a refused one shows nothing); then the
                // occupant leaves with 301 before the stored change, whose occupant event
                // would otherwise show it as a mere affiliation change (321).
                s.chat
                    .check_ban(actor, &room.dialog, UserId(uid))
                    .await
                    .map_err(chat_err)?;
                kick_live(s, &k, uid, "301", reason.as_deref());
            }
            s.chat
                .set_affiliation(actor, &room.dialog, UserId(uid), a)
                .await
                .map_err(chat_err)?;
            if a == Affiliation::Outcast {
                continue;
            }
        } else {
            match it.attr("role") {
                Some("none") => {
                    s.chat
                        .check_kick(actor, &room.dialog, UserId(uid))
                        .await
                        .map_err(chat_err)?;
                    kick_live(s, &k, uid, "307", reason.as_deref());
                    continue;
                }
                Some("moderator") => s
                    .chat
                    .set_affiliation(actor, &room.dialog, UserId(uid), Affiliation::Admin)
                    .await
                    .map_err(chat_err)?,
                Some("participant") => {
                    let (d, _, _) = s
                        .chat
                        .room_info(actor, &room.dialog)
                        .await
                        .map_err(chat_err)?;
                    if d.admins.contains(&uid) {
                        s.chat
                            .set_affiliation(actor, &room.dialog, UserId(uid), Affiliation::Member)
                            .await
                            .map_err(chat_err)?;
                    }
                }
                Some("visitor") => {
                    return Err(StanzaError::not_allowed()
                        .with_text("who may post is the dialog's rule: change the affiliation"))
                }
                _ => {
                    return Err(StanzaError::bad_request()
                        .with_text("an item sets an affiliation or a role"))
                }
            }
        }
        if let Ok((d, _, _)) = s.chat.room_info(actor, &room.dialog).await {
            refresh(s, &k, &d, uid);
        }
    }
    Ok(None)
}

/// `get`: the users holding one affiliation, or the joined occupants holding one role.
async fn list(
    s: &Services,
    actor: &Actor,
    room: &RoomAddr,
    k: &RoomKey,
    want: Option<&Element>,
) -> Reply {
    let (d, _, settings) = s
        .chat
        .room_info(actor, &room.dialog)
        .await
        .map_err(chat_err)?;
    let want =
        want.ok_or_else(|| StanzaError::bad_request().with_text("name an affiliation or a role"))?;
    let mut q = Element::new("query", ns::MUC_ADMIN);
    let domain = s.domain().to_owned();
    let jid = |uid: i64| user_key(actor.app.id, uid).bare_jid(&domain).to_string();
    if let Some(role) = want.attr("role") {
        for o in s.hub.rooms.occupants(k) {
            let it = item(&d, &[o.user], o.user);
            if it.attr("role") == Some(role) {
                q.push(
                    it.with_attr("nick", o.nick.clone())
                        .with_attr("jid", jid(o.user))
                        .with_attr("role", role),
                );
            }
        }
        return Ok(Some(q));
    }
    let a = want
        .attr("affiliation")
        .and_then(affiliation)
        .ok_or_else(|| StanzaError::bad_request().with_text("name an affiliation or a role"))?;
    let users: Vec<i64> = match a {
        Affiliation::Owner => vec![d.owner.0],
        Affiliation::Admin => d.admins.clone(),
        Affiliation::Member => d
            .occupants
            .iter()
            .copied()
            .filter(|u| *u != d.owner.0 && !d.admins.contains(u))
            .collect(),
        Affiliation::Outcast => settings.outcasts.clone(),
        Affiliation::None => Vec::new(),
    };
    let name = want.attr("affiliation").unwrap_or_default().to_owned();
    for uid in users {
        let mut it = Element::new("item", ns::MUC_ADMIN)
            .with_attr("affiliation", name.clone())
            .with_attr("jid", jid(uid));
        if let Some(nick) = s.hub.rooms.nick_of(k, uid) {
            it.set_attr("nick", nick);
        }
        q.push(it);
    }
    Ok(Some(q))
}
