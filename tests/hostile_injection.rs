//! Stanza injection: nothing a REST caller sends can make a recipient's XMPP stream receive
//! anything but one well-formed element per stanza, written by the server's rules. Keys that
//! would become element or attribute names are refused with 422 naming the field (never
//! rewritten), characters XML forbids are refused (4xx, not the database's 503), sizes are
//! bounded, and whatever odd values the store already holds are written well-formed.
//!
//! The recipient here reads raw WebSocket frames (one stanza per frame, RFC 7395) and parses
//! each strictly with quick-xml, so a frame holding two elements, an unbound prefix, a repeated
//! attribute or a forbidden character fails the test.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parley::model::xml;
use serde_json::{json, Map, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::common::xmpp::plain_b64;
use crate::common::{TestServer, PASSWORD};

const ATTACK: &str = "x/></extraParams></message><message type=\"chat\" from=\"999-1@localhost\"><body>FORGED</body></message><message><extraParams><y";

/// Parses `text` strictly as one WebSocket frame: exactly one root element, every name an XML
/// name, every prefix bound, no repeated attribute, every entity known, only XML characters.
fn strictly_one_element(text: &str) -> Result<(), String> {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    if let Some(c) = xml::forbidden_char(text) {
        return Err(format!("forbidden character {c:?}"));
    }
    let mut r = quick_xml::NsReader::from_str(text);
    let (mut depth, mut roots) = (0usize, 0usize);
    loop {
        let (res, ev) = r.read_resolved_event().map_err(|e| e.to_string())?;
        match ev {
            Event::Start(ref s) | Event::Empty(ref s) => {
                if depth == 0 {
                    roots += 1;
                }
                if matches!(res, ResolveResult::Unknown(_)) {
                    return Err("unbound element prefix".into());
                }
                let name = std::str::from_utf8(s.name().as_ref())
                    .map_err(|e| e.to_string())?
                    .to_owned();
                if !xml::is_name(&name) {
                    return Err(format!("bad element name {name:?}"));
                }
                for a in s.attributes().with_checks(true) {
                    let a = a.map_err(|e| e.to_string())?;
                    let k = std::str::from_utf8(a.key.as_ref()).map_err(|e| e.to_string())?;
                    if !xml::is_name(k) {
                        return Err(format!("bad attribute name {k:?}"));
                    }
                    if matches!(r.resolve_attribute(a.key).0, ResolveResult::Unknown(_)) {
                        return Err(format!("unbound attribute prefix {k:?}"));
                    }
                    a.unescape_value().map_err(|e| e.to_string())?;
                }
                if matches!(ev, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => depth = depth.checked_sub(1).ok_or("unbalanced end")?,
            Event::Text(t) => {
                if depth == 0 {
                    return Err("text outside the element".into());
                }
                t.unescape().map_err(|e| e.to_string())?;
            }
            Event::Eof => break,
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    match (roots, depth) {
        (1, 0) => Ok(()),
        _ => Err(format!("{roots} root elements, depth {depth} at the end")),
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A logged-in XMPP-over-WebSocket client that hands back raw frames.
struct RawWs {
    ws: Ws,
    jid: String,
}

impl RawWs {
    async fn login(srv: &TestServer, uid: i64) -> RawWs {
        let tcp = tokio::net::TcpStream::connect(srv.xmpp.ws).await.unwrap();
        let mut req = format!("ws://{}/", srv.xmpp.ws)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "xmpp".parse().unwrap());
        let (ws, _) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
        let mut c = RawWs {
            ws,
            jid: String::new(),
        };
        let open =
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>";
        c.send(open).await;
        c.frame_named("<stream:features").await;
        c.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            plain_b64(&srv.local(uid), PASSWORD)
        ))
        .await;
        c.frame_named("<success").await;
        c.send(open).await;
        c.frame_named("<stream:features").await;
        c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
            .await;
        let bound = c.frame_named("<iq").await;
        let start = bound.find("<jid>").unwrap() + 5;
        let end = bound.find("</jid>").unwrap();
        c.jid = bound[start..end].to_string();
        c
    }

    async fn send(&mut self, xml: &str) {
        self.ws.send(Message::Text(xml.to_owned())).await.unwrap();
    }

    /// The next text frame within `wait`, checked to be exactly one well-formed element.
    async fn frame_within(&mut self, wait: Duration) -> Option<String> {
        loop {
            let msg = tokio::time::timeout(wait, self.ws.next()).await.ok()??;
            if let Ok(Message::Text(t)) = msg {
                strictly_one_element(&t)
                    .unwrap_or_else(|e| panic!("the server sent a bad frame ({e}): {t}"));
                return Some(t);
            }
        }
    }

    /// Frames until one starts with `prefix` (each checked).
    async fn frame_named(&mut self, prefix: &str) -> String {
        loop {
            let f = self
                .frame_within(Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("no {prefix} frame"));
            if f.starts_with(prefix) {
                return f;
            }
        }
    }

    /// No message arrives for a while (other frames are still checked).
    async fn no_message(&mut self) {
        while let Some(f) = self.frame_within(Duration::from_millis(400)).await {
            assert!(!f.starts_with("<message"), "unexpected message: {f}");
        }
    }
}

/// Alice (REST only) and Bob (REST, and XMPP over WebSocket) with a private dialog.
struct Pair {
    srv: TestServer,
    a_token: String,
    a_id: i64,
    b_token: String,
    b_id: i64,
    b: RawWs,
    dialog: String,
}

async fn pair(prefix: &str) -> Pair {
    let srv = TestServer::start().await;
    let (a_token, a_id) = srv.user_token(&format!("{prefix}_alice")).await;
    let (b_token, b_id) = srv.user_token(&format!("{prefix}_bob")).await;
    let b = RawWs::login(&srv, b_id).await;
    let d = srv
        .dialog(&a_token, json!({"type": 3, "occupants_ids": [b_id]}))
        .await;
    let dialog = d["_id"].as_str().unwrap().to_string();
    Pair {
        srv,
        a_token,
        a_id,
        b_token,
        b_id,
        b,
        dialog,
    }
}

impl Pair {
    async fn post(&self, path: &str, body: Value) -> crate::common::http::Resp {
        self.srv
            .http
            .post_json(path, Some(&self.a_token), body)
            .await
    }

    /// The server still serves: health, and a plain system message reaches Bob from Alice.
    async fn still_serves(&mut self) {
        let r = self.srv.http.get("/healthz", None).await;
        assert_eq!(r.status, 200);
        let r = self
            .post(
                "/chat/Message/system",
                json!({"recipientId": self.b_id, "still": "here"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let m = self.b.frame_named("<message").await;
        assert!(m.contains("<still>here</still>"), "{m}");
        assert!(
            m.contains(&format!("from=\"{}-", self.a_id)),
            "from the real sender: {m}"
        );
    }

    /// How many messages the private dialog holds (as Bob sees it).
    async fn stored(&self) -> usize {
        let r = self
            .srv
            .http
            .get(
                &format!("/chat/Message?chat_dialog_id={}", self.dialog),
                Some(&self.b_token),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["items"].as_array().unwrap().len()
    }
}

/// The field a refusal names for `key` (keys past 64 characters are shortened with "…").
fn shown(key: &str) -> String {
    match key.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &key[..cut]),
        None => key.to_owned(),
    }
}

fn assert_refused(r: &crate::common::http::Resp, field: &str) {
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.field_error(field).is_some(),
        "errors name {field:?}: {}",
        r.body
    );
}

#[tokio::test]
async fn the_forged_system_message_attack_is_refused_and_nothing_reaches_the_recipient() {
    let mut p = pair("inj_sys").await;
    let r = p
        .post(
            "/chat/Message/system",
            json!({"recipientId": p.b_id, ATTACK: null}),
        )
        .await;
    assert_refused(&r, &shown(ATTACK));
    assert!(r
        .field_error(&shown(ATTACK))
        .unwrap()
        .contains("parameter name"));
    p.b.no_message().await;
    p.still_serves().await;
}

#[tokio::test]
async fn the_forged_system_message_attack_in_a_form_body_is_refused_too() {
    let mut p = pair("inj_sysform").await;
    let form = format!("recipientId={}&{}=", p.b_id, url_encode(ATTACK));
    let r = p
        .srv
        .http
        .post_form("/chat/Message/system", Some(&p.a_token), &form)
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    p.b.no_message().await;
    p.still_serves().await;
}

#[tokio::test]
async fn a_system_message_may_not_name_the_server_s_own_module_identifier() {
    let mut p = pair("inj_sysmod").await;
    let r = p
        .post(
            "/chat/Message/system",
            json!({"recipientId": p.b_id, "moduleIdentifier": "Forged"}),
        )
        .await;
    assert_refused(&r, "moduleIdentifier");
    p.b.no_message().await;
    p.still_serves().await;
}

#[tokio::test]
async fn a_custom_parameter_key_that_is_not_an_xml_name_is_refused_in_send_to_chat() {
    let mut p = pair("inj_custom").await;
    let r = p
        .post(
            "/chat/Message",
            json!({"chat_dialog_id": p.dialog, "message": "hi", "send_to_chat": 1, ATTACK: "v"}),
        )
        .await;
    assert_refused(&r, &shown(ATTACK));
    assert_eq!(p.stored().await, 0, "nothing is stored");
    p.b.no_message().await;
    p.still_serves().await;
}

#[tokio::test]
async fn a_nested_custom_parameter_key_that_is_not_an_xml_name_is_refused() {
    let mut p = pair("inj_nested").await;
    let r = p
        .post(
            "/chat/Message",
            json!({"chat_dialog_id": p.dialog, "send_to_chat": 1, "o": {"a><b": 1}}),
        )
        .await;
    assert_refused(&r, "o[a><b]");
    p.b.no_message().await;
    p.still_serves().await;
}

#[tokio::test]
async fn custom_parameter_names_with_a_prefix_or_starting_with_xml_are_refused() {
    let mut p = pair("inj_prefix").await;
    for key in ["p:q", "xmlns", "XMLthing"] {
        let r = p
            .post(
                "/chat/Message",
                json!({"chat_dialog_id": p.dialog, "send_to_chat": 1, key: "v"}),
            )
            .await;
        assert_refused(&r, key);
    }
    p.b.no_message().await;
    p.still_serves().await;
}

#[tokio::test]
async fn a_custom_parameter_may_not_take_a_name_the_server_writes() {
    let mut p = pair("inj_reserved").await;
    for key in ["message_id", "attachment"] {
        let r = p
            .post(
                "/chat/Message",
                json!({"chat_dialog_id": p.dialog, "send_to_chat": 1, key: "forged"}),
            )
            .await;
        assert_refused(&r, key);
    }
    p.b.no_message().await;
    p.still_serves().await;
}

#[tokio::test]
async fn an_attachment_key_that_is_not_an_xml_name_is_refused() {
    let mut p = pair("inj_att").await;
    let r = p
        .post(
            "/chat/Message",
            json!({"chat_dialog_id": p.dialog, "send_to_chat": 1,
                   "attachments": [{"type": "image", "x\"/><evil a=\"": "1"}]}),
        )
        .await;
    assert_refused(&r, "attachments[0][x\"/><evil a=\"]");
    assert_eq!(p.stored().await, 0);
    p.b.no_message().await;
    p.still_serves().await;
}

#[tokio::test]
async fn a_dialog_data_key_that_is_not_an_xml_name_is_refused_on_create_and_update() {
    let mut p = pair("inj_data").await;
    let r = p
        .post(
            "/chat/Dialog",
            json!({"type": 2, "name": "g", "occupants_ids": [p.b_id],
                   "data": {"class_name": "c", "x/><y": 1}}),
        )
        .await;
    assert_refused(&r, "data[x/><y]");
    let g = p
        .srv
        .dialog(
            &p.a_token,
            json!({"type": 2, "name": "g", "occupants_ids": [p.b_id]}),
        )
        .await;
    let r = p
        .srv
        .http
        .put_json(
            &format!("/chat/Dialog/{}", g["_id"].as_str().unwrap()),
            Some(&p.a_token),
            json!({"data": {"class_name": "c", "a b": 1}}),
        )
        .await;
    assert_refused(&r, "data[a b]");
    p.still_serves().await;
}

#[tokio::test]
async fn a_nul_in_a_message_body_is_a_client_error_not_a_database_error() {
    let mut p = pair("inj_nulbody").await;
    let r = p
        .post(
            "/chat/Message",
            json!({"chat_dialog_id": p.dialog, "message": "a\u{0}b", "send_to_chat": 1}),
        )
        .await;
    assert!((400..500).contains(&r.status), "{} {}", r.status, r.body);
    assert!(r.body.contains("message"), "names the field: {}", r.body);
    assert_eq!(p.stored().await, 0);
    p.b.no_message().await;
    p.still_serves().await;
}

#[tokio::test]
async fn a_nul_in_a_dialog_name_is_a_client_error_not_a_database_error() {
    let mut p = pair("inj_nulname").await;
    let r = p
        .post(
            "/chat/Dialog",
            json!({"type": 2, "name": "g\u{0}", "occupants_ids": [p.b_id]}),
        )
        .await;
    assert!((400..500).contains(&r.status), "{} {}", r.status, r.body);
    assert!(r.body.contains("name"), "{}", r.body);
    let g = p
        .srv
        .dialog(
            &p.a_token,
            json!({"type": 2, "name": "g", "occupants_ids": [p.b_id]}),
        )
        .await;
    let r = p
        .srv
        .http
        .put_json(
            &format!("/chat/Dialog/{}", g["_id"].as_str().unwrap()),
            Some(&p.a_token),
            json!({"name": "n\u{0}"}),
        )
        .await;
    assert!((400..500).contains(&r.status), "{} {}", r.status, r.body);
    p.still_serves().await;
}

#[tokio::test]
async fn a_nul_in_a_custom_parameter_value_or_a_reaction_is_a_client_error() {
    let mut p = pair("inj_nulval").await;
    let r = p
        .post(
            "/chat/Message",
            json!({"chat_dialog_id": p.dialog, "mood": {"deep": ["ok", "x\u{0}"]}}),
        )
        .await;
    assert_refused(&r, "mood[deep][1]");
    let m = p
        .post(
            "/chat/Message",
            json!({"chat_dialog_id": p.dialog, "message": "react to me"}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.body);
    let id = m.json()["_id"].as_str().unwrap().to_string();
    let r = p
        .srv
        .http
        .put_json(
            &format!("/chat/Message/{id}/reactions"),
            Some(&p.b_token),
            json!({"add": "\u{1}"}),
        )
        .await;
    assert_refused(&r, "add");
    p.still_serves().await;
}

#[tokio::test]
async fn custom_parameters_past_their_count_depth_or_bytes_are_refused_naming_the_key() {
    let mut p = pair("inj_limits").await;
    let mut many = Map::new();
    many.insert("chat_dialog_id".into(), json!(p.dialog));
    for i in 0..65 {
        many.insert(format!("k{i:02}"), json!(1));
    }
    let r = p.post("/chat/Message", Value::Object(many)).await;
    assert_refused(&r, "k64");
    let r = p
        .post(
            "/chat/Message",
            json!({"chat_dialog_id": p.dialog, "a": {"b": {"c": {"d": {"e": 1}}}}}),
        )
        .await;
    assert_refused(&r, "a[b][c][d][e]");
    let r = p
        .post(
            "/chat/Message",
            json!({"chat_dialog_id": p.dialog, "big": "x".repeat(16 * 1024)}),
        )
        .await;
    assert_refused(&r, "big");
    let r = p
        .post(
            "/chat/Message/system",
            json!({"recipientId": p.b_id, "big": "x".repeat(16 * 1024)}),
        )
        .await;
    assert_refused(&r, "big");
    assert_eq!(p.stored().await, 0);
    p.still_serves().await;
}

#[tokio::test]
async fn an_attachment_or_dialog_data_past_its_bytes_is_refused_naming_it() {
    let mut p = pair("inj_sizes").await;
    let r = p
        .post(
            "/chat/Message",
            json!({"chat_dialog_id": p.dialog,
                   "attachments": [{"type": "image"}, {"type": "image", "url": "u".repeat(4096)}]}),
        )
        .await;
    assert_refused(&r, "attachments[1][url]");
    let r = p
        .post(
            "/chat/Dialog",
            json!({"type": 2, "name": "g", "occupants_ids": [p.b_id],
                   "data": {"class_name": "c", "blob": "b".repeat(16 * 1024)}}),
        )
        .await;
    assert_refused(&r, "data[blob]");
    let mut data = Map::new();
    data.insert("class_name".into(), json!("c"));
    for i in 0..64 {
        data.insert(format!("f{i:02}"), json!(i));
    }
    let r = p
        .post(
            "/chat/Dialog",
            json!({"type": 2, "name": "g", "occupants_ids": [p.b_id], "data": data}),
        )
        .await;
    assert_eq!(r.status, 422, "65 keys: {}", r.body);
    p.still_serves().await;
}

#[tokio::test]
async fn join_history_of_a_room_with_odd_stored_values_is_still_well_formed() {
    let mut p = pair("inj_hist").await;
    let g = p
        .srv
        .dialog(
            &p.a_token,
            json!({"type": 2, "name": "g", "occupants_ids": [p.b_id]}),
        )
        .await;
    let room = g["_id"].as_str().unwrap().to_string();
    let m = p
        .post(
            "/chat/Message",
            json!({"chat_dialog_id": room, "message": "before"}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.body);
    let id = m.json()["_id"].as_str().unwrap().to_string();
    // Values stored before the server checked them (or by another writer of the database).
    let db = crate::common::connect(&p.srv.pg).await;
    let custom = json!({ATTACK: "v", "ok": "<&>\"'", "ctl": "a\u{1}b"});
    let attachments =
        json!([{"type": "image", "a b": "1", "xmlns": "urn:evil", "p:q": "2", "url": "x\ty"}]);
    db.execute(
        "UPDATE messages SET custom = $1::text::jsonb, attachments = $2::text::jsonb, body = $3 WHERE id = $4",
        &[&custom.to_string(), &attachments.to_string(), &"bell\u{7}</body>", &id],
    )
    .await
    .unwrap();
    let presence = format!(
        "<presence to='{}_{room}@muc.localhost/{}'><x xmlns='http://jabber.org/protocol/muc'/></presence>",
        p.srv.app.id.0, p.b_id
    );
    p.b.send(&presence).await;
    let h = p.b.frame_named("<message").await;
    assert!(h.contains("<ok>&lt;&amp;&gt;\"'</ok>"), "{h}");
    assert!(h.contains("<body>bell\u{FFFD}&lt;/body&gt;</body>"), "{h}");
    assert!(h.contains("url=\"x&#9;y\""), "{h}");
    assert!(!h.contains("FORGED") && !h.contains("urn:evil"), "{h}");
    // The join ends with the room's subject (XEP-0045 §7.2.15).
    let s = p.b.frame_named("<message").await;
    assert!(s.contains("<subject"), "{s}");
    p.still_serves().await;
}

#[tokio::test]
async fn an_xmpp_save_to_history_message_is_held_to_the_same_rules_as_rest() {
    let mut p = pair("inj_xmpp").await;
    let mut a = crate::common::xmpp::Client::login(
        p.srv.xmpp,
        crate::common::xmpp::Via::Tcp,
        &p.srv.local(p.a_id),
        PASSWORD,
    )
    .await;
    let to = p.srv.local(p.b_id);
    // A custom parameter named like XML's reserved names: the chat rules refuse the stanza.
    for (id, inner) in [
        ("x1", "<body>hi</body><extraParams><save_to_history>1</save_to_history><xmlfoo>v</xmlfoo></extraParams>"),
    ] {
        a.send_raw(&format!(
            "<message to='{to}@localhost' type='chat' id='{id}'>{inner}</message>"
        ))
        .await;
        let e = a
            .expect("the refusal", |e| e.name == "message" && e.attr("id") == Some(id))
            .await;
        assert_eq!(e.attr("type"), Some("error"), "{e:?}");
        let err = e.child("error", "jabber:client").expect("error child");
        assert!(
            err.child("bad-request", "urn:ietf:params:xml:ns:xmpp-stanzas").is_some(),
            "{err:?}"
        );
    }
    // A control character XML 1.0 forbids (here as a character reference) is not XML at all:
    // the stream ends with not-well-formed, as RFC 6120 §4.9.3.13 asks.
    a.send_raw(&format!(
        "<message to='{to}@localhost' type='chat' id='x2'><body>bell&#7;</body><extraParams><save_to_history>1</save_to_history></extraParams></message>"
    ))
    .await;
    assert_eq!(a.stream_error().await, "not-well-formed");
    assert_eq!(p.stored().await, 0, "nothing is stored");
    p.b.no_message().await;
    p.still_serves().await;
}

/// Percent-encodes everything but unreserved characters.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A seeded generator (splitmix64): the property tests are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    /// Hostile text: markup, quotes, prefixes, whitespace, controls, non-characters, emoji.
    fn text(&mut self) -> String {
        const ATOMS: [&str; 30] = [
            "a",
            "Z",
            "_",
            "-",
            ".",
            "9",
            ":",
            "<",
            ">",
            "&",
            "\"",
            "'",
            "/",
            " ",
            "=",
            "\t",
            "\n",
            "\r",
            "\u{0}",
            "\u{1B}",
            "é",
            "😀",
            "\u{FFFE}",
            "]]>",
            "xml",
            "&amp;",
            "<b>",
            "</message>",
            "[",
            "]",
        ];
        let n = self.below(7);
        (0..n).map(|_| self.pick(&ATOMS)).collect()
    }

    /// A key: often a plausible name, often hostile.
    fn key(&mut self) -> String {
        const NAMES: [&str; 12] = [
            "country",
            "mood",
            "x-y.z",
            "é",
            "_p",
            "xmlns",
            "p:q",
            "9a",
            "a b",
            ATTACK,
            "XmLx",
            "moduleIdentifier",
        ];
        match self.below(4) {
            0 => self.pick(&NAMES).to_owned(),
            1 | 2 => format!("k{}", self.below(1000)),
            _ => self.text(),
        }
    }

    fn value(&mut self, depth: usize) -> Value {
        match self.below(if depth > 5 { 4 } else { 7 }) {
            0 => Value::Null,
            1 => json!(self.below(2) == 0),
            2 => json!(self.next() as i64),
            3 => json!(self.text()),
            4 | 5 => {
                let mut m = Map::new();
                for _ in 0..self.below(4) {
                    m.insert(self.key(), self.value(depth + 1));
                }
                Value::Object(m)
            }
            _ => Value::Array((0..self.below(3)).map(|_| self.value(depth + 1)).collect()),
        }
    }

    fn params(&mut self) -> Map<String, Value> {
        (0..1 + self.below(4))
            .map(|_| (self.key(), self.value(1)))
            .collect()
    }
}

/// Sends `n` random requests built by `body` through `path`; each is refused with 4xx, or its
/// stanza reaches Bob as one well-formed element (checked by `RawWs`) from Alice.
async fn fuzz_path(
    p: &mut Pair,
    rng: &mut Rng,
    n: usize,
    path: &str,
    body: impl Fn(&Pair, &mut Rng) -> Value,
) -> (usize, usize) {
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..n {
        let b = body(p, rng);
        let r = p.post(path, b.clone()).await;
        match r.status {
            200 | 201 => {
                accepted += 1;
                let m = p.b.frame_named("<message").await;
                assert!(
                    m.contains(&format!("{}-{}@localhost", p.a_id, p.srv.app.id.0))
                        || m.contains(&format!("/{}\"", p.a_id)),
                    "from Alice: {m} for {b}"
                );
            }
            400..=499 => refused += 1,
            s => panic!("{s} for {b}: {}", r.body),
        }
    }
    (accepted, refused)
}

#[tokio::test]
async fn any_json_through_every_rest_path_that_reaches_a_stream_is_refused_or_well_formed() {
    let mut p = pair("inj_prop").await;
    let g = p
        .srv
        .dialog(
            &p.a_token,
            json!({"type": 2, "name": "g", "occupants_ids": [p.b_id]}),
        )
        .await;
    let group = g["_id"].as_str().unwrap().to_string();
    let mut rng = Rng(0x1A7E_C7ED);
    let mut totals = Vec::new();
    totals.push(
        fuzz_path(&mut p, &mut rng, 120, "/chat/Message/system", |p, rng| {
            let mut m = rng.params();
            m.insert("recipientId".into(), json!(p.b_id));
            Value::Object(m)
        })
        .await,
    );
    for dialog in [p.dialog.clone(), group.clone()] {
        totals.push(
            fuzz_path(&mut p, &mut rng, 120, "/chat/Message", move |_, rng| {
                let mut m = rng.params();
                for k in ["chat_dialog_id", "send_to_chat", "message", "attachments"] {
                    m.remove(k);
                }
                m.insert("chat_dialog_id".into(), json!(dialog));
                m.insert("send_to_chat".into(), json!(1));
                if rng.below(2) == 0 {
                    m.insert("message".into(), json!(rng.text()));
                }
                let atts: Vec<Value> = (0..rng.below(3))
                    .map(|_| {
                        let mut a = rng.params();
                        if rng.below(2) == 0 {
                            a.insert("type".into(), json!("image"));
                        }
                        Value::Object(a)
                    })
                    .collect();
                m.insert("attachments".into(), Value::Array(atts));
                Value::Object(m)
            })
            .await,
        );
    }
    // Dialog updates send no stanza with their data; they must still never fail with 5xx.
    let mut updated = (0, 0);
    for _ in 0..60 {
        let mut data = rng.params();
        data.insert("class_name".into(), json!("c"));
        let r = p
            .srv
            .http
            .put_json(
                &format!("/chat/Dialog/{group}"),
                Some(&p.a_token),
                json!({"data": data, "name": format!("g{}", rng.text())}),
            )
            .await;
        match r.status {
            200 => updated.0 += 1,
            400..=499 => updated.1 += 1,
            s => panic!("{s}: {}", r.body),
        }
    }
    totals.push(updated);
    p.b.no_message().await;
    for (accepted, refused) in &totals {
        // The generator reaches both outcomes on every path.
        assert!(*accepted > 5 && *refused > 5, "{totals:?}");
    }
    eprintln!("accepted, refused per path: {totals:?}");
    p.still_serves().await;
}

#[tokio::test]
async fn any_form_keys_through_the_system_message_are_refused_or_well_formed() {
    let mut p = pair("inj_propform").await;
    let mut rng = Rng(0xF0_12E5);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..120 {
        let mut form = format!("recipientId={}", p.b_id);
        for _ in 0..1 + rng.below(3) {
            let mut key = rng.key();
            for _ in 0..rng.below(3) {
                key.push_str(&format!("[{}]", rng.key()));
            }
            form.push_str(&format!(
                "&{}={}",
                url_encode(&key),
                url_encode(&rng.text())
            ));
        }
        let r = p
            .srv
            .http
            .post_form("/chat/Message/system", Some(&p.a_token), &form)
            .await;
        match r.status {
            200 => {
                accepted += 1;
                p.b.frame_named("<message").await;
            }
            400..=499 => refused += 1,
            s => panic!("{s} for {form}: {}", r.body),
        }
    }
    assert!(accepted > 5 && refused > 5, "{accepted} {refused}");
    p.still_serves().await;
}
