//! Join history: the stored messages a room replays after a join, each as a `groupchat`
//! message with its ConnectyCube `extraParams` and an XEP-0203 `<delay/>`. Reads through the
//! chat service (`list_messages`, so the read rule applies); must not write anything.

use super::chat_err;
use crate::chat::messages::message_query;
use crate::chat::Actor;
use crate::model::filter::{RawFilter, SortDir};
use crate::model::message::MessageView;
use crate::xmpp::ns;
use crate::xmpp::stanza::{message_from_view, MessageType, StanzaError};
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

pub(super) async fn join_history(
    s: &Services,
    actor: &Actor,
    dialog: &str,
    limit: i64,
    since: Option<i64>,
) -> Result<Vec<MessageView>, StanzaError> {
    let filters = since
        .map(|t| {
            vec![RawFilter {
                field: "date_sent".into(),
                op: Some("gte".into()),
                values: vec![t.to_string()],
            }]
        })
        .unwrap_or_default();
    let q = message_query(
        filters,
        Some(("date_sent".into(), SortDir::Desc)),
        Some(limit),
        None,
    )
    .map_err(chat_err)?;
    let mut items = s
        .chat
        .list_messages(actor, Some(dialog.to_owned()), q, false)
        .await
        .map_err(chat_err)?;
    items.reverse();
    Ok(items)
}

/// A stored message as a room replays it on join, with its XEP-0203 delay: the same encoding
/// as live delivery (`stanza::message_from_view`), so a client reads both alike.
pub(super) fn history_message(rjid: &str, to: &str, v: &MessageView) -> Element {
    let m = &v.message;
    let mut el = message_from_view(
        v,
        MessageType::Groupchat,
        format!("{rjid}/{}", m.sender_id),
        to,
    );
    let stamp = time::OffsetDateTime::from_unix_timestamp(m.date_sent)
        .map(crate::model::time::iso)
        .unwrap_or_else(|_| crate::model::time::iso(m.created_at));
    // XEP-0359: the id the room's archive (ext::mam) knows it by, as when it was live.
    crate::xmpp::ext::stanza_id::stamp(&mut el, m.id.as_str(), rjid);
    el.push(
        Element::new("delay", ns::DELAY)
            .with_attr("from", rjid)
            .with_attr("stamp", stamp),
    );
    el
}
