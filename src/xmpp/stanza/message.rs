//! The ConnectyCube chat message as a value ([`CcMessage`]): read from a `<message>`, built from
//! a stored message or a REST `send_to_chat` event, written back as an element. Its
//! `<extraParams>` go through `super::extra_params`, the one codec. It decides nothing about
//! routing or storage.

use serde_json::{Map, Value};

use super::super::ns;
use super::super::stream::Element;
use super::extra_params::{is_custom, ExtraParams};
use super::kind::MessageType;
use super::StanzaError;
use crate::model::message::MessageView;
use crate::model::ObjectId;

/// A ConnectyCube chat message: the parts of `<message>` the chat service stores and the SDK
/// reads. Other payloads (markers, corrections, chat states) are not part of it.
#[derive(Clone, Debug, PartialEq)]
pub struct CcMessage {
    pub id: Option<String>,
    pub kind: MessageType,
    pub from: Option<String>,
    pub to: Option<String>,
    pub body: Option<String>,
    /// `None`: the message carries no `<extraParams>`.
    pub extra: Option<ExtraParams>,
    /// XEP-0333 `<markable/>`.
    pub markable: bool,
}

impl CcMessage {
    /// Reads the ConnectyCube parts of any message element. A `type` RFC 6121 does not define
    /// reads as `normal` (RFC 6121 §5.2.2).
    pub fn read(el: &Element) -> CcMessage {
        CcMessage {
            id: el.attr("id").map(str::to_owned),
            kind: MessageType::of(el).unwrap_or(MessageType::Normal),
            from: el.attr("from").map(str::to_owned),
            to: el.attr("to").map(str::to_owned),
            body: el.child("body", ns::CLIENT).map(Element::text),
            extra: ExtraParams::of(el).map(ExtraParams::decode),
            markable: el.child("markable", ns::CHAT_MARKERS).is_some(),
        }
    }

    /// The message a REST `send_to_chat` event carries (`chat::messages::to_event_json`: the
    /// message's fields plus its custom parameters at the top level) in `dialog`.
    pub fn from_event(v: &Value, dialog: &ObjectId) -> CcMessage {
        let id = v
            .get("_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let custom = v
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| is_custom(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        CcMessage {
            id: Some(id.clone()),
            kind: MessageType::Normal,
            from: None,
            to: None,
            body: v.get("message").and_then(Value::as_str).map(str::to_owned),
            extra: Some(ExtraParams {
                save_to_history: true,
                dialog_id: Some(dialog.to_string()),
                message_id: Some(id),
                date_sent: v.get("date_sent").and_then(Value::as_i64),
                attachments: objects(v.get("attachments")),
                custom,
            }),
            markable: v.get("markable").and_then(Value::as_bool) == Some(true),
        }
    }

    /// Sets type and addresses (builder).
    pub fn addressed(mut self, kind: MessageType, from: String, to: Option<String>) -> Self {
        self.kind = kind;
        self.from = Some(from);
        self.to = to;
        self
    }

    /// `<message type id from to>` with `<body>`, `<extraParams>` and `<markable/>`, in that
    /// order. `normal` is written as an explicit type.
    pub fn to_element(&self) -> Element {
        let mut m = Element::new("message", ns::CLIENT).with_attr("type", self.kind.as_str());
        if let Some(id) = &self.id {
            m.set_attr("id", id.clone());
        }
        if let Some(f) = &self.from {
            m.set_attr("from", f.clone());
        }
        if let Some(t) = &self.to {
            m.set_attr("to", t.clone());
        }
        if let Some(b) = &self.body {
            m.push(Element::new("body", ns::CLIENT).with_text(b.clone()));
        }
        if let Some(x) = &self.extra {
            m.push(x.to_element());
        }
        if self.markable {
            m.push(Element::new("markable", ns::CHAT_MARKERS));
        }
        m
    }
}

/// The attachment objects of a stored list (the chat rules admit objects only).
fn objects(list: Option<&Value>) -> Vec<Map<String, Value>> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_object().cloned())
        .collect()
}

impl TryFrom<&Element> for CcMessage {
    type Error = StanzaError;

    fn try_from(el: &Element) -> Result<Self, Self::Error> {
        if !el.is("message", ns::CLIENT) {
            return Err(StanzaError::bad_request());
        }
        Ok(Self::read(el))
    }
}

impl From<&CcMessage> for Element {
    fn from(m: &CcMessage) -> Element {
        m.to_element()
    }
}

impl From<CcMessage> for Element {
    fn from(m: CcMessage) -> Element {
        m.to_element()
    }
}

impl From<&MessageView> for CcMessage {
    /// A stored message as the SDK reads it: id, body, markable, and `<extraParams>` with
    /// `save_to_history`, `dialog_id`, `message_id`, `date_sent`, attachments and custom
    /// parameters. Type and addresses are the caller's ([`CcMessage::addressed`]).
    fn from(v: &MessageView) -> CcMessage {
        let m = &v.message;
        CcMessage {
            id: Some(m.id.to_string()),
            kind: MessageType::Normal,
            from: None,
            to: None,
            body: m.body.clone(),
            extra: Some(ExtraParams {
                save_to_history: true,
                dialog_id: Some(m.dialog_id.to_string()),
                message_id: Some(m.id.to_string()),
                date_sent: Some(m.date_sent),
                attachments: objects(Some(&m.attachments)),
                custom: m.custom.clone(),
            }),
            markable: m.markable,
        }
    }
}

/// A stored message as a stanza of `kind` from `from` to `to`: what room join history sends
/// (before its XEP-0203 `<delay/>`), written by the same encoder as live fan-out.
pub fn message_from_view(v: &MessageView, kind: MessageType, from: String, to: &str) -> Element {
    CcMessage::from(v)
        .addressed(kind, from, Some(to.to_owned()))
        .to_element()
}

#[cfg(test)]
mod tests {
    use super::super::extra_params::tests::{obj, view};
    use super::*;
    use serde_json::json;

    #[test]
    fn a_cc_message_round_trips_through_its_element() {
        let m = CcMessage::from(&view()).addressed(
            MessageType::Groupchat,
            "42_d@muc.localhost/1001".into(),
            Some("1002-42@localhost".into()),
        );
        let mut expected = m.clone();
        // The decoder reads leaves as strings, as the SDK does.
        if let Some(x) = expected.extra.as_mut() {
            x.attachments = vec![obj(json!({"type": "image", "size": "12"}))];
        }
        assert_eq!(CcMessage::try_from(&m.to_element()), Ok(expected));
    }

    #[test]
    fn a_stored_message_and_its_rest_event_encode_the_same() {
        let v = view();
        let event = json!({
            "_id": v.message.id, "chat_dialog_id": v.message.dialog_id, "sender_id": 1001,
            "recipient_id": 0, "message": "hi", "attachments": v.message.attachments,
            "date_sent": v.message.date_sent, "markable": true,
            "nested": {"a": "1"}, "k": "v",
        });
        assert_eq!(
            CcMessage::from_event(&event, &v.message.dialog_id).to_element(),
            CcMessage::from(&v).to_element()
        );
    }

    #[test]
    fn join_history_is_the_stored_message_addressed() {
        let el = message_from_view(&view(), MessageType::Groupchat, "r/1001".into(), "u");
        assert_eq!(el.attr("type"), Some("groupchat"));
        assert_eq!(el.attr("from"), Some("r/1001"));
        assert_eq!(el.attr("to"), Some("u"));
        let x = ExtraParams::of(&el).unwrap();
        assert!(x
            .child("nested", ns::CLIENT)
            .unwrap()
            .child("a", ns::CLIENT)
            .is_some());
    }

    #[test]
    fn only_a_message_element_reads_as_a_cc_message() {
        assert!(CcMessage::try_from(&Element::new("body", ns::CLIENT)).is_err());
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_cc_message_stays_small() {
        assert_eq!(std::mem::size_of::<CcMessage>(), 224);
    }
}
