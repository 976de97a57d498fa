//! The ConnectyCube `<extraParams xmlns='jabber:client'>` payload, written once: the names the
//! protocol owns, one decoder (element → [`ExtraParams`]), one encoder ([`ExtraParams`] →
//! element), and stamping. The ConnectyCube chat message built on it is `super::message`. Live
//! fan-out of REST messages, room join history and history stamping all write through here, so
//! a stored message looks the same to a client whichever way it arrives.
//!
//! The wire rules (docs/protocol/connectycube-js-sdk.md §5.1): scalars are element text,
//! attachments are `<attachment/>` elements with attributes only, **nested custom parameters
//! are nested elements** (never JSON text), `null` is an empty element. The SDK reads every leaf
//! back as a string, so does the decoder: a custom parameter stored from XMPP is an object of
//! strings, which REST shows as that object.
//!
//! It must not decide anything (who may send, what is stored) or touch I/O; both walks are
//! iterative, so a deep tree from a socket or the database cannot exhaust the stack.

use serde_json::{Map, Value};

use super::super::ns;
use super::super::stream::{Element, Node};
use super::StanzaError;
use crate::model::message::Message;
use crate::model::ObjectId;

pub use crate::model::message::{RESERVED, REST_NOT_CUSTOM};

/// A custom parameter name as the chat layer stores it: not protocol, not a message field.
pub(super) fn is_custom(name: &str) -> bool {
    !RESERVED.contains(&name) && !REST_NOT_CUSTOM.contains(&name)
}

/// The decoded `<extraParams>`: protocol values typed, the rest as custom parameters.
///
/// Decoding keeps the first `save_to_history`, `dialog_id`, `message_id` and `date_sent`
/// (a `date_sent` that is not an integer reads as absent), every attachment, and every other
/// child as a custom parameter (a repeated name: the last wins). `save_to_history` is `true`
/// only for `1`; `false` is written as no element.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExtraParams {
    pub save_to_history: bool,
    pub dialog_id: Option<String>,
    pub message_id: Option<String>,
    /// Unix seconds.
    pub date_sent: Option<i64>,
    /// One object of attribute values per `<attachment/>` (strings when decoded).
    pub attachments: Vec<Map<String, Value>>,
    pub custom: Map<String, Value>,
}

impl ExtraParams {
    /// Only `dialog_id`: what edits, deletes, markers and reactions carry.
    pub fn dialog(dialog: &ObjectId) -> ExtraParams {
        ExtraParams {
            dialog_id: Some(dialog.to_string()),
            ..ExtraParams::default()
        }
    }

    /// The `<extraParams>` child of a message, if any.
    pub fn of(message: &Element) -> Option<&Element> {
        message.child("extraParams", ns::CLIENT)
    }

    /// Does the sender of `message` ask for it to be stored (`save_to_history` is `1`)?
    pub fn wants_history(message: &Element) -> bool {
        Self::of(message)
            .and_then(|x| x.child("save_to_history", ns::CLIENT))
            .is_some_and(|s| s.text().trim() == "1")
    }

    /// Decodes an `<extraParams>` element (its name is not checked: see `TryFrom`).
    pub fn decode(x: &Element) -> ExtraParams {
        let mut out = ExtraParams::default();
        let (mut saw_save, mut saw_date) = (false, false);
        for c in x.elements() {
            let protocol = c.ns == ns::CLIENT;
            match c.name.as_str() {
                "attachment" => out.attachments.push(
                    c.attrs
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect(),
                ),
                "save_to_history" if protocol && !saw_save => {
                    saw_save = true;
                    out.save_to_history = c.text().trim() == "1";
                }
                "date_sent" if protocol && !saw_date => {
                    saw_date = true;
                    out.date_sent = c.text().trim().parse().ok();
                }
                "dialog_id" if protocol && out.dialog_id.is_none() => {
                    out.dialog_id = Some(c.text());
                }
                "message_id" if protocol && out.message_id.is_none() => {
                    out.message_id = Some(c.text());
                }
                name if RESERVED.contains(&name) => {}
                name => {
                    out.custom.insert(name.to_owned(), value_of(c));
                }
            }
        }
        out
    }

    /// The `<extraParams>` element: `dialog_id`, `save_to_history`, `date_sent`, `message_id`,
    /// the attachments, then the custom parameters (any with a reserved name is skipped, so the
    /// protocol values cannot be doubled).
    pub fn to_element(&self) -> Element {
        let mut x = Element::new("extraParams", ns::CLIENT);
        if let Some(d) = &self.dialog_id {
            x.push(text_child("dialog_id", d.clone()));
        }
        if self.save_to_history {
            x.push(text_child("save_to_history", "1".into()));
        }
        if let Some(t) = self.date_sent {
            x.push(text_child("date_sent", t.to_string()));
        }
        if let Some(m) = &self.message_id {
            x.push(text_child("message_id", m.clone()));
        }
        for a in &self.attachments {
            x.push(attachment(a));
        }
        for (k, v) in self
            .custom
            .iter()
            .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
        {
            x.push(param(k, v));
        }
        x
    }

    /// Writes the stored `dialog_id`, `date_sent` and `message_id` into `message`'s
    /// `<extraParams>` (added if missing), replacing what the sender wrote and leaving the
    /// rest as sent, so every recipient sees the stored values.
    pub fn stamp(message: &mut Element, stored: &Message) {
        let values = [
            text_child("dialog_id", stored.dialog_id.to_string()),
            text_child("date_sent", stored.date_sent.to_string()),
            text_child("message_id", stored.id.to_string()),
        ];
        if Self::of(message).is_none() {
            message.push(Element::new("extraParams", ns::CLIENT));
        }
        let found = message.children.iter_mut().find_map(|n| match n {
            Node::Element(x) if x.is("extraParams", ns::CLIENT) => Some(x),
            _ => None,
        });
        if let Some(x) = found {
            for v in values {
                x.children
                    .retain(|c| !matches!(c, Node::Element(e) if e.name == v.name));
                x.push(v);
            }
        }
    }
}

impl TryFrom<&Element> for ExtraParams {
    type Error = StanzaError;

    fn try_from(x: &Element) -> Result<Self, Self::Error> {
        if !x.is("extraParams", ns::CLIENT) {
            return Err(StanzaError::bad_request());
        }
        Ok(Self::decode(x))
    }
}

impl From<&ExtraParams> for Element {
    fn from(x: &ExtraParams) -> Element {
        x.to_element()
    }
}

impl From<ExtraParams> for Element {
    fn from(x: ExtraParams) -> Element {
        x.to_element()
    }
}

fn text_child(name: &str, text: String) -> Element {
    Element::new(name, ns::CLIENT).with_text(text)
}

/// A JSON scalar as element or attribute text: strings as they are, anything else as JSON.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// `<attachment/>` with one attribute per field (attributes only, as the SDK writes them).
fn attachment(a: &Map<String, Value>) -> Element {
    let mut att = Element::new("attachment", ns::CLIENT);
    for (k, v) in a {
        att.set_attr(k, scalar_text(v).unwrap_or_else(|| "null".into()));
    }
    att
}

/// A leaf custom parameter: text, or empty for `null`.
fn leaf(name: &str, v: &Value) -> Element {
    let e = Element::new(name, ns::CLIENT);
    match scalar_text(v) {
        Some(t) => e.with_text(t),
        None => e,
    }
}

/// **The** custom parameter encoder: scalars as text, `null` as an empty element, objects as
/// nested elements (arrays, which the SDK cannot write, as JSON text). The chat layer admitted
/// only XML names (`chat/params.rs`); the writer drops any other name. Iterative.
pub fn param(name: &str, v: &Value) -> Element {
    let Value::Object(m) = v else {
        return leaf(name, v);
    };
    let mut stack = vec![(Element::new(name, ns::CLIENT), m.iter())];
    loop {
        let Some((el, entries)) = stack.last_mut() else {
            // Unreachable: the root is returned when it is popped.
            return Element::new(name, ns::CLIENT);
        };
        match entries.next() {
            Some((k, Value::Object(m))) => stack.push((Element::new(k, ns::CLIENT), m.iter())),
            Some((k, v)) => el.push(leaf(k, v)),
            None => {
                let Some((done, _)) = stack.pop() else {
                    return Element::new(name, ns::CLIENT);
                };
                match stack.last_mut() {
                    Some((parent, _)) => parent.push(done),
                    None => return done,
                }
            }
        }
    }
}

/// **The** custom parameter decoder: an element without child elements is its text; one with
/// children is an object of them (text beside children is dropped). Iterative.
pub fn value_of(root: &Element) -> Value {
    fn is_leaf(e: &Element) -> bool {
        e.elements().next().is_none()
    }
    if is_leaf(root) {
        return Value::String(root.text());
    }
    let mut stack = vec![(root, root.elements(), Map::new())];
    loop {
        let Some((_, kids, obj)) = stack.last_mut() else {
            return Value::Null;
        };
        match kids.next() {
            Some(k) if is_leaf(k) => {
                obj.insert(k.name.clone(), Value::String(k.text()));
            }
            Some(k) => stack.push((k, k.elements(), Map::new())),
            None => {
                let Some((el, _, obj)) = stack.pop() else {
                    return Value::Null;
                };
                match stack.last_mut() {
                    Some((_, _, parent)) => {
                        parent.insert(el.name.clone(), Value::Object(obj));
                    }
                    None => return Value::Object(obj),
                }
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::message::MessageView;
    use serde_json::json;

    pub(crate) fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn full() -> ExtraParams {
        ExtraParams {
            save_to_history: true,
            dialog_id: Some("5c094c0ce588ce6856f87401".into()),
            message_id: Some("5c094c0ce588ce6856f87422".into()),
            date_sent: Some(1_643_634_366),
            attachments: vec![
                obj(json!({"type": "image", "uid": "f1", "size": "1234"})),
                obj(json!({"type": "file"})),
            ],
            custom: obj(json!({
                "country": "USA",
                "nested": {"a": "1", "b": {"c": "two", "d": ""}},
            })),
        }
    }

    #[test]
    fn extra_params_round_trip_through_their_element() {
        let x = full();
        assert_eq!(ExtraParams::decode(&x.to_element()), x);
    }

    #[test]
    fn extra_params_round_trip_through_a_serialised_stanza() {
        let x = full();
        let xml = x.to_element().to_standalone_xml();
        let limits = crate::xmpp::stream::Limits {
            max_stanza_bytes: 64 * 1024,
            max_depth: 16,
            max_attributes: 16,
        };
        let el = crate::xmpp::stream::reader::parse_element(xml.as_bytes(), &[], &limits).unwrap();
        assert_eq!(ExtraParams::try_from(&el), Ok(x));
    }

    #[test]
    fn a_nested_custom_parameter_is_nested_elements_not_json_text() {
        let x = ExtraParams {
            custom: obj(json!({"nested": {"a": "1", "b": "two"}})),
            ..ExtraParams::default()
        };
        let el = x.to_element();
        let nested = el.child("nested", ns::CLIENT).unwrap();
        assert_eq!(nested.child("a", ns::CLIENT).unwrap().text(), "1");
        assert_eq!(nested.child("b", ns::CLIENT).unwrap().text(), "two");
        assert!(!nested.text().contains('{'));
    }

    #[test]
    fn leaves_decode_as_strings_as_the_sdk_reads_them() {
        let x = ExtraParams {
            custom: obj(json!({"n": 5, "t": true, "z": null, "o": {"k": 1}})),
            ..ExtraParams::default()
        };
        let back = ExtraParams::decode(&x.to_element());
        assert_eq!(
            Value::Object(back.custom),
            json!({"n": "5", "t": "true", "z": "", "o": {"k": "1"}})
        );
    }

    #[test]
    fn reserved_names_are_never_custom_parameters() {
        let el = Element::new("extraParams", ns::CLIENT)
            .with_child(text_child("save_to_history", "1".into()))
            .with_child(text_child("dialog_id", "d".into()))
            .with_child(text_child("dialog_id", "second".into()))
            .with_child(text_child("date_sent", "not a number".into()))
            .with_child(text_child("message_id", "m".into()));
        let x = ExtraParams::decode(&el);
        assert!(x.custom.is_empty());
        assert_eq!(x.dialog_id.as_deref(), Some("d"));
        assert_eq!(x.date_sent, None);
        assert!(x.save_to_history);
    }

    #[test]
    fn a_custom_parameter_with_a_reserved_name_is_not_written_twice() {
        let x = ExtraParams {
            message_id: Some("real".into()),
            custom: obj(json!({"message_id": "forged"})),
            ..ExtraParams::default()
        };
        let el = x.to_element();
        assert_eq!(el.elements().filter(|e| e.name == "message_id").count(), 1);
        assert_eq!(el.child("message_id", ns::CLIENT).unwrap().text(), "real");
    }

    #[test]
    fn stamping_replaces_the_senders_protocol_values_and_keeps_the_rest() {
        let mut el = Element::new("message", ns::CLIENT).with_child(
            Element::new("extraParams", ns::CLIENT)
                .with_child(text_child("dialog_id", "forged".into()))
                .with_child(text_child("country", "USA".into())),
        );
        let stored = view().message;
        ExtraParams::stamp(&mut el, &stored);
        let x = ExtraParams::decode(ExtraParams::of(&el).unwrap());
        assert_eq!(x.dialog_id, Some(stored.dialog_id.to_string()));
        assert_eq!(x.message_id, Some(stored.id.to_string()));
        assert_eq!(x.date_sent, Some(stored.date_sent));
        assert_eq!(x.custom.get("country"), Some(&json!("USA")));
    }

    #[test]
    fn stamping_adds_extra_params_to_a_message_without_them() {
        let mut el = Element::new("message", ns::CLIENT);
        ExtraParams::stamp(&mut el, &view().message);
        assert!(ExtraParams::of(&el).is_some());
    }

    pub(crate) fn view() -> MessageView {
        let t = time::OffsetDateTime::UNIX_EPOCH;
        MessageView {
            message: Message {
                id: "5c094c0ce588ce6856f87422".parse().unwrap(),
                dialog_id: "5c094c0ce588ce6856f87401".parse().unwrap(),
                seq: 1,
                sender_id: 1001,
                recipient_id: 0,
                body: Some("hi".into()),
                attachments: json!([{"type": "image", "size": 12}]),
                custom: obj(json!({"nested": {"a": "1"}, "k": "v"})),
                markable: true,
                date_sent: 1_700_000_000,
                read_ids: vec![],
                delivered_ids: vec![],
                views_count: 0,
                edited_at: None,
                created_at: t,
                updated_at: t,
            },
            own_reactions: vec![],
            reaction_totals: Map::new(),
        }
    }

    #[test]
    fn only_an_extra_params_element_decodes_as_one() {
        let el = Element::new("body", ns::CLIENT);
        assert!(ExtraParams::try_from(&el).is_err());
    }

    /// Depth of `{"a": {"a": … "leaf"}}`, walked without recursion.
    fn depth(mut v: &Value) -> usize {
        let mut d = 0;
        while let Some(inner) = v.get("a") {
            (d, v) = (d + 1, inner);
        }
        d
    }

    #[test]
    fn a_very_deep_parameter_is_walked_without_recursion() {
        let mut v = json!("leaf");
        for _ in 0..100_000 {
            // Not `json!`, which would serialise `v` again, recursively.
            v = Value::Object(Map::from_iter([("a".to_owned(), v)]));
        }
        let el = param("deep", &v);
        let back = value_of(&el);
        assert_eq!(depth(&back), 100_000);
        // Values and elements drop recursively: leak these two rather than overflow.
        std::mem::forget((el, v, back));
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn extra_params_stay_small() {
        assert_eq!(std::mem::size_of::<ExtraParams>(), 120);
    }

    #[test]
    fn the_rest_list_is_the_message_fields_plus_two_reserved_names() {
        let overlap: Vec<&str> = REST_NOT_CUSTOM
            .into_iter()
            .filter(|n| RESERVED.contains(n))
            .collect();
        assert_eq!(overlap, ["date_sent", "save_to_history", "dialog_id"]);
    }
}
