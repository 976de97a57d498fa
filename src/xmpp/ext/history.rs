//! ConnectyCube chat history over XMPP: a message whose `extraParams` carry
//! `save_to_history=1` is stored through the same chat service as REST `POST /chat/Message`,
//! then stamped with `dialog_id`, `date_sent` and `message_id` before delivery. It decides
//! nothing about who may send (the chat rules do) and routes nothing.

use serde_json::Value;

use crate::chat::messages::{NewMessage, Stored};
use crate::chat::Actor;
use crate::model::ObjectId;
use crate::xmpp::ns;
use crate::xmpp::stanza::extra_params::ExtraParams;
use crate::xmpp::stanza::CcMessage;
use crate::xmpp::stanza::StanzaError;
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

/// Does the sender ask for this message to be stored?
pub fn wanted(el: &Element) -> bool {
    ExtraParams::wants_history(el)
}

/// An ordinary XMPP client's message, as `xmpp.archive_plain_messages` keeps it: a body with
/// text and no ConnectyCube `<extraParams>` (whose `save_to_history` alone decides).
pub fn is_plain(el: &Element) -> bool {
    el.child("extraParams", ns::CLIENT).is_none()
        && el
            .child("body", ns::CLIENT)
            .is_some_and(|b| !b.text().trim().is_empty())
}

/// The chat-domain message a stanza describes (to a dialog, or to a user's private dialog).
pub fn new_message(el: &Element, dialog_id: Option<String>, recipient: Option<i64>) -> NewMessage {
    let m = CcMessage::read(el);
    let x = m.extra.unwrap_or_default();
    NewMessage {
        dialog_id,
        recipient_id: recipient,
        id: m.id.filter(|i| ObjectId::is_valid(i)),
        body: m.body,
        attachments: x.attachments.into_iter().map(Value::Object).collect(),
        custom: x.custom,
        markable: m.markable,
        send_to_chat: false,
        date_sent: x.date_sent,
    }
}

/// Writes `dialog_id`, `date_sent` and `message_id` into the stanza's `extraParams`, replacing
/// what the sender wrote, so every recipient sees the stored values.
pub fn stamp(el: &mut Element, stored: &Stored) {
    ExtraParams::stamp(el, &stored.view.message);
}

/// Stores a 1:1 message in the private dialog of sender and recipient (created on first
/// message) through the group-commit writer, and stamps the stanza. Returns once durable.
pub async fn store_private(
    services: &Services,
    actor: &Actor,
    recipient: i64,
    el: &mut Element,
) -> Result<Stored, StanzaError> {
    let new = new_message(el, None, Some(recipient));
    let stored = services
        .chat
        .store_message(actor, new)
        .await
        .map_err(|e| StanzaError::from(&e))?;
    stamp(el, &stored);
    Ok(stored)
}

// Registration in the dispatch table: the Apply hook for 1:1 messages. (Room messages are
// stored by `ext::muc`.)
use crate::xmpp::dispatch::{BoxFuture, Extension, Flow, Hook, On, Phase, Routed, Spec, To};
use crate::xmpp::stanza::MessageType;

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[
    Spec {
        name: "ConnectyCube `save_to_history`",
        status: "complete",
        notes: "a message with `extraParams` `save_to_history=1` is stored as REST `POST /chat/Message` stores it, then stamped with `dialog_id`, `date_sent` and `message_id` before delivery; with `xmpp.archive_plain_messages` also an ordinary client's 1:1 message (a body, no `extraParams`)",
        ejabberd: "no",
        prosody: "no",
    },
];

pub const EXTENSION: Extension = Extension {
    handlers: &[],
    hooks: &[Hook {
        on: On::Message,
        phase: Phase::Apply,
        run: save,
    }],
    specs: SPECS,
};

/// Apply hook: a 1:1 `chat` message with `save_to_history=1` is stored, durably, and stamped
/// before it is relayed; a refusal is answered and the message not relayed. An edit or a
/// deletion (`replace`, `remove`) is never stored as a new message.
fn save(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        let plain = m.services.config.xmpp.archive_plain_messages && is_plain(&m.stanza);
        let target = match (&m.to, m.message_type()) {
            (To::User(u, _), Ok(MessageType::Chat)) => *u,
            (To::User(u, _), Ok(MessageType::Normal)) if plain => *u,
            _ => return Flow::Next,
        };
        let edits = m.stanza.child("replace", ns::CORRECTION).is_some()
            || m.stanza.child("remove", ns::MESSAGE_DELETE).is_some();
        if edits || !(wanted(&m.stanza) || plain) {
            return Flow::Next;
        }
        let actor = match m.actor().await {
            Ok(a) => a,
            Err(e) => return Flow::Refuse(e),
        };
        match store_private(&m.services, &actor, target.user.0, &mut m.stanza).await {
            Ok(stored) => {
                // XEP-0359: the id the recipient's archive (ext::mam) knows it by.
                let by = target.bare_jid(m.services.domain()).to_string();
                super::stanza_id::stamp(&mut m.stanza, stored.view.message.id.as_str(), &by);
                Flow::Next
            }
            Err(e) => Flow::Refuse(e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::ns;

    fn stanza() -> Element {
        Element::new("message", ns::CLIENT)
            .with_attr("id", "5c094c0ce588ce6856f87422")
            .with_child(Element::new("body", ns::CLIENT).with_text("hi"))
            .with_child(
                Element::new("extraParams", ns::CLIENT)
                    .with_child(Element::new("save_to_history", ns::CLIENT).with_text("1"))
                    .with_child(Element::new("date_sent", ns::CLIENT).with_text("1643634366"))
                    .with_child(Element::new("country", ns::CLIENT).with_text("USA"))
                    .with_child(
                        Element::new("attachment", ns::CLIENT)
                            .with_attr("type", "image")
                            .with_attr("id", "9"),
                    ),
            )
            .with_child(Element::new("markable", ns::CHAT_MARKERS))
    }

    #[test]
    fn extra_params_become_the_stored_message() {
        let el = stanza();
        assert!(wanted(&el));
        let m = new_message(&el, None, Some(7));
        assert_eq!(m.id.as_deref(), Some("5c094c0ce588ce6856f87422"));
        assert_eq!(m.body.as_deref(), Some("hi"));
        assert_eq!(m.date_sent, Some(1_643_634_366));
        assert!(m.markable);
        assert_eq!(m.custom.get("country"), Some(&Value::String("USA".into())));
        assert!(!m.custom.contains_key("save_to_history"));
        assert_eq!(m.attachments.len(), 1);
    }

    #[test]
    fn messages_without_the_flag_are_not_stored() {
        let el = Element::new("message", ns::CLIENT)
            .with_child(Element::new("body", ns::CLIENT).with_text("x"));
        assert!(!wanted(&el));
    }
}
