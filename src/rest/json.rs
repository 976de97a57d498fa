//! Answers serialized straight from borrowed views, without building a `serde_json::Value`
//! tree first (for pages of 100 objects the tree cost more CPU than the database work).
//! Objects keep `Value`'s alphabetical key order, so answers stay byte-for-byte the same.

use std::cmp::Ordering;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::model::message::MessageView;

/// A timestamp written as [`iso`] writes it, formatted on the stack: a page of 100 dialogs
/// would otherwise allocate 200 short-lived strings.
pub struct Iso(pub OffsetDateTime);

impl Serialize for Iso {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0.to_offset(time::UtcOffset::UTC);
        let t = t.replace_nanosecond(0).unwrap_or(t);
        let mut buf = [0u8; 40];
        let mut out = &mut buf[..];
        // Like `iso`: a time RFC 3339 cannot express (a year past 9999) is written as "".
        let len = t.format_into(&mut out, &Rfc3339).unwrap_or(0);
        let text = buf.get(..len).and_then(|b| std::str::from_utf8(b).ok());
        s.serialize_str(text.unwrap_or(""))
    }
}

/// A message as the API shows it to `me` (what `read` and `reactions` mean depends on who asks).
pub struct MessageJson<'a> {
    pub view: &'a MessageView,
    pub me: i64,
}

/// One standard field of a message answer.
enum Field<'a> {
    Str(&'a str),
    OptStr(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
    Ids(&'a [i64]),
    Json(&'a Value),
    Owned(Value),
    Time(Iso),
}

impl Serialize for Field<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Str(v) => v.serialize(s),
            Field::OptStr(v) => v.serialize(s),
            Field::Int(v) => v.serialize(s),
            Field::OptInt(v) => v.serialize(s),
            Field::Ids(v) => v.serialize(s),
            Field::Json(v) => v.serialize(s),
            Field::Owned(v) => v.serialize(s),
            Field::Time(v) => v.serialize(s),
        }
    }
}

impl Serialize for MessageJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = &self.view.message;
        let me = self.me;
        let read = if m.sender_id == me {
            m.read_ids.iter().any(|u| *u != me)
        } else {
            m.read_ids.contains(&me)
        };
        let reactions = if self.view.reaction_totals.is_empty() {
            Value::Null
        } else {
            json!({ "own": self.view.own_reactions, "total": self.view.reaction_totals })
        };
        // In key order; `markable` only when set.
        let mut fields: Vec<(&str, Field)> = vec![
            ("_id", Field::Str(m.id.as_str())),
            ("attachments", Field::Json(&m.attachments)),
            ("chat_dialog_id", Field::Str(m.dialog_id.as_str())),
            ("created_at", Field::Time(Iso(m.created_at))),
            ("date_sent", Field::Int(m.date_sent)),
            ("delivered_ids", Field::Ids(&m.delivered_ids)),
            (
                "edited_at",
                Field::OptInt(m.edited_at.map(|t| t.unix_timestamp())),
            ),
            ("message", Field::OptStr(m.body.as_deref())),
            ("reactions", Field::Owned(reactions)),
            ("read", Field::Int(i64::from(read))),
            ("read_ids", Field::Ids(&m.read_ids)),
            ("recipient_id", Field::Int(m.recipient_id)),
            ("sender_id", Field::Int(m.sender_id)),
            ("updated_at", Field::Time(Iso(m.updated_at))),
            ("views_count", Field::Int(i64::from(m.views_count))),
        ];
        if m.markable {
            fields.insert(7, ("markable", Field::Int(1)));
        }
        // The sender's custom parameters sit beside the standard fields, which win a clash.
        let mut custom = m.custom.iter().peekable();
        let mut map = s.serialize_map(None)?;
        for (name, value) in &fields {
            while let Some((k, v)) = custom.peek() {
                match k.as_str().cmp(name) {
                    Ordering::Less => map.serialize_entry(k.as_str(), v)?,
                    Ordering::Equal => {}
                    Ordering::Greater => break,
                }
                custom.next();
            }
            map.serialize_entry(name, value)?;
        }
        for (k, v) in custom {
            map.serialize_entry(k.as_str(), v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::message::Message;
    use crate::model::time::iso;
    use crate::model::ObjectId;
    use serde_json::Map;

    /// The answer as it was built before, as a `Value` tree.
    fn as_value_tree(v: &MessageView, me: i64) -> Value {
        let m = &v.message;
        let read = if m.sender_id == me {
            m.read_ids.iter().any(|u| *u != me)
        } else {
            m.read_ids.contains(&me)
        };
        let reactions = if v.reaction_totals.is_empty() {
            Value::Null
        } else {
            json!({ "own": v.own_reactions, "total": v.reaction_totals })
        };
        let mut j = json!({
            "_id": m.id, "chat_dialog_id": m.dialog_id, "message": m.body,
            "attachments": m.attachments, "date_sent": m.date_sent, "sender_id": m.sender_id,
            "recipient_id": m.recipient_id, "read_ids": m.read_ids,
            "delivered_ids": m.delivered_ids, "views_count": m.views_count,
            "read": i32::from(read), "reactions": reactions,
            "edited_at": m.edited_at.map(|t| t.unix_timestamp()),
            "created_at": iso(m.created_at), "updated_at": iso(m.updated_at),
        });
        if let Value::Object(o) = &mut j {
            if m.markable {
                o.insert("markable".into(), 1.into());
            }
            for (k, val) in &m.custom {
                o.entry(k.clone()).or_insert_with(|| val.clone());
            }
        }
        j
    }

    fn view(markable: bool, custom: Value, reactions: bool) -> MessageView {
        let t = time::macros::datetime!(2026-11-26 12:00:00.25 UTC);
        let Value::Object(custom) = custom else {
            unreachable!()
        };
        let mut totals = Map::new();
        if reactions {
            totals.insert("+1".into(), 2.into());
        }
        MessageView {
            message: Message {
                id: ObjectId::generate(1),
                dialog_id: ObjectId::generate(2),
                seq: 1,
                sender_id: 7,
                recipient_id: 0,
                body: Some("hi \"there\"".into()),
                attachments: json!([{"type": "image", "id": "1"}]),
                custom,
                markable,
                date_sent: 1_700_000_000,
                read_ids: vec![7, 9],
                delivered_ids: vec![7],
                views_count: 3,
                edited_at: Some(t),
                created_at: t,
                updated_at: t,
            },
            own_reactions: if reactions { vec!["+1".into()] } else { vec![] },
            reaction_totals: totals,
        }
    }

    #[test]
    fn message_answers_are_byte_for_byte_the_value_tree_they_replace() {
        let customs = [
            json!({}),
            // Before, between and after the standard keys, upper case, and clashes.
            json!({"A": 1, "_hidden": 2, "b": "x", "markable": "custom", "read": 5, "zz": [1]}),
            json!({"message": "shadow", "date_sent": 1, "photo": {"w": 1}}),
        ];
        for custom in customs {
            for (markable, reactions, me) in [(false, false, 7), (true, true, 9), (true, false, 8)]
            {
                let v = view(markable, custom.clone(), reactions);
                let direct = serde_json::to_string(&MessageJson { view: &v, me }).unwrap();
                let tree = serde_json::to_string(&as_value_tree(&v, me)).unwrap();
                assert_eq!(direct, tree);
            }
        }
    }

    #[test]
    fn iso_timestamps_serialize_exactly_like_model_iso() {
        for t in [
            OffsetDateTime::UNIX_EPOCH,
            time::macros::datetime!(2018-12-06 12:04:48.987654 UTC),
            time::macros::datetime!(2026-11-26 23:59:59.5 +02:00),
            time::macros::datetime!(9999-12-31 23:59:59 UTC),
        ] {
            let via_serde = serde_json::to_string(&Iso(t)).unwrap();
            assert_eq!(via_serde, format!("\"{}\"", iso(t)), "{t}");
        }
    }
}
