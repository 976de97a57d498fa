//! Join history: the stored messages a room replays after a join, each as a `groupchat`
//! message with its ConnectyCube `extraParams` and an XEP-0203 `<delay/>`. Reads through the
//! chat service (`list_messages`, so the read rule applies); must not write anything.

use super::chat_err;
use crate::chat::messages::message_query;
use crate::chat::Actor;
use crate::model::filter::{RawFilter, SortDir};
use crate::model::message::MessageView;
use crate::xmpp::ns;
use crate::xmpp::stanza::StanzaError;
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

fn text_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A stored message as a room replays it on join, with its XEP-0203 delay.
pub(super) fn history_message(rjid: &str, to: &str, v: &MessageView) -> Element {
    let m = &v.message;
    let mut el = Element::new("message", ns::CLIENT)
        .with_attr("type", "groupchat")
        .with_attr("id", m.id.to_string())
        .with_attr("from", format!("{rjid}/{}", m.sender_id))
        .with_attr("to", to);
    if let Some(b) = &m.body {
        el.push(Element::new("body", ns::CLIENT).with_text(b.clone()));
    }
    let mut x = Element::new("extraParams", ns::CLIENT);
    x.push(Element::new("save_to_history", ns::CLIENT).with_text("1"));
    x.push(Element::new("dialog_id", ns::CLIENT).with_text(m.dialog_id.to_string()));
    x.push(Element::new("message_id", ns::CLIENT).with_text(m.id.to_string()));
    x.push(Element::new("date_sent", ns::CLIENT).with_text(m.date_sent.to_string()));
    for (k, val) in &m.custom {
        x.push(Element::new(k, ns::CLIENT).with_text(text_of(val)));
    }
    if let serde_json::Value::Array(list) = &m.attachments {
        for a in list {
            if let serde_json::Value::Object(o) = a {
                let mut att = Element::new("attachment", ns::CLIENT);
                for (k, val) in o {
                    att.set_attr(k, text_of(val));
                }
                x.push(att);
            }
        }
    }
    el.push(x);
    if m.markable {
        el.push(Element::new("markable", ns::CHAT_MARKERS));
    }
    let stamp = time::OffsetDateTime::from_unix_timestamp(m.date_sent)
        .map(crate::model::time::iso)
        .unwrap_or_else(|_| crate::model::time::iso(m.created_at));
    el.push(
        Element::new("delay", ns::DELAY)
            .with_attr("from", rjid)
            .with_attr("stamp", stamp),
    );
    el
}
