//! XEP-0410 MUC Self-Ping: a ping to one's own occupant JID is answered by the room — a result
//! while this connection is joined under that nick, `<not-acceptable/>` when it is not (the
//! client then joins again). Iqs to other occupants are not relayed (`service-unavailable`).

use super::{key, Iq, RoomAddr};
use crate::chat::Actor;
use crate::xmpp::dispatch::Reply;
use crate::xmpp::ns;
use crate::xmpp::stanza::StanzaError;
use crate::xmpp::Services;

pub(super) fn on_iq(s: &Services, actor: &Actor, iq: Iq<'_>, room: &RoomAddr) -> Reply {
    if iq.get && iq.payload.is("ping", ns::PING) {
        let k = key(actor, room);
        let rooms = &s.hub.rooms;
        let joined = rooms.has_joined(&k, iq.conn)
            && rooms.nick_of(&k, actor.user.0).as_deref() == room.nick.as_deref();
        return if joined {
            Ok(None)
        } else {
            Err(StanzaError::not_acceptable().with_text("not joined under this nick"))
        };
    }
    Err(StanzaError::service_unavailable())
}
