//! What one push says, independent of the provider: read from a `POST /events` message (the
//! ConnectyCube universal payload: base64 of a JSON object) or built from a chat alert with the
//! application's template. Each provider maps it to its own format.

use base64::Engine;
use serde_json::{Map, Value};

/// A push, before a provider formats it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Notification {
    /// The visible text (`aps.alert.body`, FCM `data.message`); `None` for a silent push.
    pub message: Option<String>,
    pub badge: Option<i64>,
    pub sound: Option<String>,
    pub content_available: bool,
    pub mutable_content: bool,
    pub category: Option<String>,
    pub thread_id: Option<String>,
    /// `ios_push_type`: `alert` or `background`.
    pub ios_push_type: Option<String>,
    /// Unix seconds after which the provider may drop it.
    pub expiration: Option<i64>,
    /// FCM `android.notification`, as given.
    pub android_notification: Option<Value>,
    /// Every other key, passed through to the app.
    pub custom: Map<String, Value>,
}

/// Keys of the universal payload that are instructions, not data for the app.
const INSTRUCTIONS: [&str; 13] = [
    "message",
    "ios_badge",
    "ios_sound",
    "ios_content_available",
    "ios_mutable_content",
    "ios_category",
    "ios_voip",
    "ios_push_type",
    "ios_thread_id",
    "expiration",
    "android_fcm_notification",
    "ios_loc_data",
    "badge",
];

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn flag(v: Option<&Value>) -> bool {
    matches!(int(v), Some(1)) || matches!(v, Some(Value::Bool(true)))
}

impl Notification {
    /// The universal payload's object.
    pub fn from_object(m: &Map<String, Value>) -> Self {
        Self {
            message: text(m.get("message")),
            badge: int(m.get("ios_badge")).or_else(|| int(m.get("badge"))),
            sound: text(m.get("ios_sound")),
            content_available: flag(m.get("ios_content_available")),
            mutable_content: flag(m.get("ios_mutable_content")),
            category: text(m.get("ios_category")),
            thread_id: text(m.get("ios_thread_id")),
            ios_push_type: text(m.get("ios_push_type")),
            expiration: int(m.get("expiration")),
            android_notification: m
                .get("android_fcm_notification")
                .filter(|v| v.is_object())
                .cloned(),
            custom: m
                .iter()
                .filter(|(k, _)| !INSTRUCTIONS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// An event's `message`: base64 of a JSON object (the SDKs' form), or of plain text, or
    /// plain text as given; the text becomes the visible message.
    pub fn from_event_message(raw: &str) -> Self {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw.trim()))
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let text = decoded.unwrap_or_else(|| raw.to_owned());
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => Self::from_object(&m),
            _ => Self {
                message: Some(text),
                ..Self::default()
            },
        }
    }

    /// The app-visible data: custom keys plus `message`, as FCM wants them (strings only).
    pub fn data_strings(&self) -> Map<String, Value> {
        let mut out = Map::new();
        if let Some(m) = &self.message {
            out.insert("message".into(), Value::String(m.clone()));
        }
        for (k, v) in &self.custom {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.insert(k.clone(), Value::String(s));
        }
        out
    }

    /// The JSON object a Web Push service worker receives (the universal payload, as sent).
    pub fn web_json(&self) -> Value {
        let mut out = self.custom.clone();
        if let Some(m) = &self.message {
            out.insert("message".into(), Value::String(m.clone()));
        }
        if let Some(b) = self.badge {
            out.insert("badge".into(), b.into());
        }
        Value::Object(out)
    }
}

/// The default chat-alert template.
pub const DEFAULT_TEMPLATE: &str = "{sender_name}: {text}";

/// Renders a chat-alert template: `{sender_name}`, `{text}`, `{dialog_name}`, `{dialog_id}`,
/// `{message_id}`, `{sender_id}` are replaced (once each, left to right; user text is never
/// read as a placeholder).
pub fn render(template: &str, fields: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(rest.get(..open).unwrap_or_default());
        let after = rest.get(open..).unwrap_or_default();
        let close = after.find('}');
        let name = close.and_then(|c| after.get(1..c));
        match name.and_then(|n| fields.iter().find(|(k, _)| *k == n)) {
            Some((_, v)) => {
                out.push_str(v);
                rest = after.get(close.unwrap_or(0) + 1..).unwrap_or_default();
            }
            None => {
                out.push('{');
                rest = after.get(1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// The first `max` bytes of `b`.
pub fn cut_bytes(b: &[u8], max: usize) -> &[u8] {
    b.get(..max.min(b.len())).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_universal_payload_splits_instructions_from_data() {
        let raw = base64::engine::general_purpose::STANDARD
            .encode(r#"{"message":"hi","ios_badge":"3","ios_sound":"x.caf","photo":"p.jpg"}"#);
        let n = Notification::from_event_message(&raw);
        assert_eq!(n.message.as_deref(), Some("hi"));
        assert_eq!(n.badge, Some(3));
        assert_eq!(n.sound.as_deref(), Some("x.caf"));
        assert_eq!(n.custom.get("photo"), Some(&Value::from("p.jpg")));
        assert!(!n.custom.contains_key("ios_sound"));
    }

    #[test]
    fn plain_text_is_the_message() {
        assert_eq!(
            Notification::from_event_message("hello there").message,
            Some("hello there".into())
        );
    }

    #[test]
    fn templates_replace_known_fields_and_never_reread_user_text() {
        let f = [("sender_name", "{text}"), ("text", "hi")];
        assert_eq!(render("{sender_name}: {text} {x}", &f), "{text}: hi {x}");
        assert_eq!(render("{", &f), "{");
        assert_eq!(render("a{text", &f), "a{text");
    }

    #[test]
    fn cutting_respects_characters() {
        assert_eq!(cut("ééé", 3), "é");
        assert_eq!(cut("abc", 10), "abc");
    }
}
