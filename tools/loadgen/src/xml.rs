//! XML for XMPP by byte scanning: the [`Framer`] splits a stream's bytes into the stream header,
//! top-level elements (stanzas, features, SASL replies) and the stream end, without building a
//! tree; a few look-ups read what the scenarios need from one element (its name, a root
//! attribute, a child's text); the builders write every stanza the generator sends, escaped.
//! It must never panic on what a server sends: malformed input is an error value.

use std::fmt::Write as _;

/// What the framer yields.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// `<stream:stream …>` (TCP) or `<open/>` (WebSocket).
    StreamOpen(Vec<u8>),
    /// One complete top-level element.
    Element(Vec<u8>),
    /// `</stream:stream>` (TCP) or `<close/>` (WebSocket).
    StreamEnd,
}

#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    TooLarge,
    Malformed(&'static str),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge => f.write_str("element over the size limit"),
            FrameError::Malformed(why) => write!(f, "malformed XML: {why}"),
        }
    }
}

/// Incremental splitter of an XMPP byte stream into frames.
pub struct Framer {
    buf: Vec<u8>,
    /// Where scanning resumes.
    pos: usize,
    /// Element depth: 0 outside the stream, 1 inside it between stanzas.
    depth: u32,
    /// Start of the depth-1 element being read.
    start: usize,
    max: usize,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// End of a start tag beginning at `from` (index of its `>`), honouring quoted attribute values.
fn tag_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut quote = 0u8;
    for (i, &c) in buf.iter().enumerate().skip(from) {
        if quote != 0 {
            if c == quote {
                quote = 0;
            }
        } else if c == b'"' || c == b'\'' {
            quote = c;
        } else if c == b'>' {
            return Some(i);
        }
    }
    None
}

impl Framer {
    pub fn new(max: usize) -> Self {
        Framer {
            buf: Vec::with_capacity(4096),
            pos: 0,
            depth: 0,
            start: 0,
            max,
        }
    }

    /// Append bytes read from the socket.
    pub fn extend(&mut self, data: &[u8]) {
        // Drop what has been consumed before growing the buffer.
        let keep_from = if self.depth > 1 { self.start } else { self.pos };
        if keep_from > 0 {
            self.buf.drain(..keep_from);
            self.pos -= keep_from;
            self.start = self.start.saturating_sub(keep_from);
        }
        self.buf.extend_from_slice(data);
    }

    /// Forget the stream nesting after a stream restart (SASL success, STARTTLS); bytes not
    /// yet framed are kept and belong to the new stream.
    pub fn reset(&mut self) {
        self.buf.drain(..self.pos);
        self.pos = 0;
        self.start = 0;
        self.depth = 0;
    }

    /// Bytes received but not yet framed (what a TLS upgrade must not lose).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Copy a frame out; the consumed bytes are dropped by the next `extend` (not here, so a
    /// read holding many stanzas is not shifted once per stanza).
    fn take(&mut self, from: usize, to: usize) -> Vec<u8> {
        self.pos = to;
        self.start = to;
        self.buf[from..to].to_vec()
    }

    fn wait(&mut self, at: usize) -> Result<Option<Frame>, FrameError> {
        self.pos = at;
        let from = if self.depth > 1 { self.start } else { at };
        if self.buf.len() - from > self.max {
            return Err(FrameError::TooLarge);
        }
        Ok(None)
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        loop {
            let Some(off) = self.buf[self.pos..].iter().position(|&c| c == b'<') else {
                let end = self.buf.len();
                return self.wait(end);
            };
            let lt = self.pos + off;
            if lt + 1 >= self.buf.len() {
                return self.wait(lt);
            }
            match self.buf[lt + 1] {
                b'?' => match find(&self.buf[lt + 2..], b"?>") {
                    Some(e) => self.pos = lt + 2 + e + 2,
                    None => return self.wait(lt),
                },
                b'!' => {
                    let rest = &self.buf[lt..];
                    let (open, close): (&[u8], &[u8]) = if rest.starts_with(b"<!--") {
                        (b"<!--", b"-->")
                    } else if rest.starts_with(b"<![CDATA[") {
                        (b"<![CDATA[", b"]]>")
                    } else if b"<![CDATA[".starts_with(&rest[..rest.len().min(9)])
                        || b"<!--".starts_with(&rest[..rest.len().min(4)])
                    {
                        return self.wait(lt);
                    } else {
                        return Err(FrameError::Malformed("markup declaration"));
                    };
                    match find(&self.buf[lt + open.len()..], close) {
                        Some(e) => self.pos = lt + open.len() + e + close.len(),
                        None => return self.wait(lt),
                    }
                }
                b'/' => {
                    let Some(gt) = self.buf[lt..].iter().position(|&c| c == b'>') else {
                        return self.wait(lt);
                    };
                    let gt = lt + gt;
                    if self.depth == 0 {
                        return Err(FrameError::Malformed("end tag outside the stream"));
                    }
                    self.depth -= 1;
                    self.pos = gt + 1;
                    if self.depth == 1 {
                        let start = self.start;
                        let end = self.pos;
                        return Ok(Some(Frame::Element(self.take(start, end))));
                    }
                    if self.depth == 0 {
                        self.start = self.pos;
                        return Ok(Some(Frame::StreamEnd));
                    }
                }
                _ => {
                    let Some(gt) = tag_end(&self.buf, lt + 1) else {
                        return self.wait(lt);
                    };
                    let self_closing = self.buf[gt - 1] == b'/';
                    self.pos = gt + 1;
                    if self.depth == 0 {
                        let end = self.pos;
                        if self_closing {
                            return Ok(Some(Frame::Element(self.take(lt, end))));
                        }
                        self.depth = 1;
                        return Ok(Some(Frame::StreamOpen(self.take(lt, end))));
                    }
                    if self.depth == 1 {
                        self.start = lt;
                        if self_closing {
                            let end = self.pos;
                            return Ok(Some(Frame::Element(self.take(lt, end))));
                        }
                    }
                    if !self_closing {
                        self.depth += 1;
                    }
                }
            }
        }
    }
}

/// The qualified name of an element's root tag (`stream:features`, `message`).
pub fn name(el: &[u8]) -> &[u8] {
    let body = el.strip_prefix(b"<").unwrap_or(el);
    let end = body
        .iter()
        .position(|&c| c.is_ascii_whitespace() || c == b'/' || c == b'>')
        .unwrap_or(body.len());
    &body[..end]
}

/// The name without its prefix (`features` for `stream:features`).
pub fn local_name(el: &[u8]) -> &[u8] {
    let n = name(el);
    match n.iter().rposition(|&c| c == b':') {
        Some(i) => &n[i + 1..],
        None => n,
    }
}

/// An attribute of the root tag, raw (entities not expanded).
pub fn attr<'a>(el: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let end = tag_end(el, 0).unwrap_or(el.len());
    let tag = &el[..end];
    let mut i = name(el).len() + 1;
    while i < tag.len() {
        while i < tag.len() && (tag[i].is_ascii_whitespace() || tag[i] == b'/') {
            i += 1;
        }
        let ks = i;
        while i < tag.len() && tag[i] != b'=' && !tag[i].is_ascii_whitespace() {
            i += 1;
        }
        let k = &tag[ks..i];
        while i < tag.len() && (tag[i] == b'=' || tag[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= tag.len() {
            return None;
        }
        let q = tag[i];
        if q != b'"' && q != b'\'' {
            return None;
        }
        let vs = i + 1;
        let ve = vs + tag[vs..].iter().position(|&c| c == q)?;
        if k == key.as_bytes() {
            return Some(&tag[vs..ve]);
        }
        i = ve + 1;
    }
    None
}

/// The text of the first descendant element named `tag` (raw; `Some(b"")` when empty).
pub fn child_text<'a>(el: &'a [u8], tag: &str) -> Option<&'a [u8]> {
    let open = format!("<{tag}");
    let mut from = 1;
    loop {
        let at = from + find(&el[from..], open.as_bytes())?;
        let after = at + open.len();
        let c = *el.get(after)?;
        if c == b'>' || c == b'/' || c.is_ascii_whitespace() {
            let gt = tag_end(el, after)?;
            if el[gt - 1] == b'/' {
                return Some(&el[gt..gt]);
            }
            let close = format!("</{tag}>");
            let end = gt + 1 + find(&el[gt + 1..], close.as_bytes())?;
            return Some(&el[gt + 1..end]);
        }
        from = after;
    }
}

pub fn contains(el: &[u8], needle: &str) -> bool {
    find(el, needle.as_bytes()).is_some()
}

/// Escape text or an attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// RFC 7395 §3.3.3: over WebSocket every stanza stands alone and must carry its own
/// `jabber:client` namespace; add it to `message`, `presence` and `iq` elements that lack one.
pub fn qualify_for_ws(el: String) -> String {
    let n = name(el.as_bytes());
    if !matches!(n, b"message" | b"presence" | b"iq") || attr(el.as_bytes(), "xmlns").is_some() {
        return el;
    }
    let at = 1 + n.len();
    let mut out = String::with_capacity(el.len() + 22);
    out.push_str(&el[..at]);
    out.push_str(" xmlns='jabber:client'");
    out.push_str(&el[at..]);
    out
}

/// Stream header for TCP/TLS.
pub fn stream_open(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
        escape(domain)
    )
}

/// RFC 7395 open element for WebSocket.
pub fn ws_open(domain: &str) -> String {
    format!(
        "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{}' version='1.0'/>",
        escape(domain)
    )
}

/// The body every measured message carries: a sequence number and the send time in
/// nanoseconds on the generator's monotonic clock, then optional padding.
pub fn probe_body(seq: u64, sent_ns: u64, pad: usize) -> String {
    let mut s = format!("lg {seq} {sent_ns}");
    if pad > 0 {
        s.push(' ');
        s.push_str(&"x".repeat(pad));
    }
    s
}

/// Reads `probe_body`'s sequence number and timestamp back.
pub fn parse_probe(body: &[u8]) -> Option<(u64, u64)> {
    let s = std::str::from_utf8(body).ok()?;
    let mut it = s.split(' ');
    if it.next()? != "lg" {
        return None;
    }
    let seq = it.next()?.parse().ok()?;
    let t = it.next()?.parse().ok()?;
    Some((seq, t))
}

/// A 1:1 chat message; with `save_to_history` it carries ConnectyCube's extraParams.
pub fn chat_message(out: &mut String, to: &str, id: &str, body: &str, save_to_history: bool) {
    let _ = write!(
        out,
        "<message to='{}' type='chat' id='{}'><body>{}</body>",
        escape(to),
        escape(id),
        escape(body)
    );
    if save_to_history {
        out.push_str(
            "<extraParams xmlns='jabber:client'><save_to_history>1</save_to_history></extraParams>",
        );
    }
    out.push_str("</message>");
}

/// A groupchat message to a room.
pub fn groupchat_message(out: &mut String, room: &str, id: &str, body: &str) {
    let _ = write!(
        out,
        "<message to='{}' type='groupchat' id='{}'><body>{}</body></message>",
        escape(room),
        escape(id),
        escape(body)
    );
}

/// XEP-0045 join presence, asking for no discussion history.
pub fn muc_join(room: &str, nick: &str) -> String {
    format!(
        "<presence to='{}/{}'><x xmlns='http://jabber.org/protocol/muc'>\
         <history maxstanzas='0'/></x></presence>",
        escape(room),
        escape(nick)
    )
}

/// XEP-0045 §10.1.2: accept the default configuration (an instant room).
pub fn muc_instant_room(room: &str, id: &str) -> String {
    format!(
        "<iq to='{}' type='set' id='{}'><query xmlns='http://jabber.org/protocol/muc#owner'>\
         <x xmlns='jabber:x:data' type='submit'/></query></iq>",
        escape(room),
        escape(id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[&[u8]]) -> Vec<Frame> {
        let mut f = Framer::new(1 << 16);
        let mut out = vec![];
        for chunk in input {
            f.extend(chunk);
            while let Some(fr) = f.next_frame().unwrap() {
                out.push(fr);
            }
        }
        out
    }

    fn el(s: &str) -> Frame {
        Frame::Element(s.as_bytes().to_vec())
    }

    #[test]
    fn splits_a_stream_into_header_stanzas_and_end() {
        let got = frames(&[
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='a'>\
            <stream:features><bind/></stream:features> <message><body>hi</body></message>\
            </stream:stream>",
        ]);
        assert_eq!(got.len(), 4);
        assert!(matches!(&got[0], Frame::StreamOpen(h) if name(h) == b"stream:stream"));
        assert_eq!(got[1], el("<stream:features><bind/></stream:features>"));
        assert_eq!(got[2], el("<message><body>hi</body></message>"));
        assert_eq!(got[3], Frame::StreamEnd);
    }

    #[test]
    fn frames_survive_byte_by_byte_delivery() {
        let input = b"<stream:stream a='>'><iq id='1'><q a=\"x>y\"/></iq><a/><!-- c --><b><![CDATA[<x>]]></b>";
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        let got = frames(&chunks);
        assert_eq!(got.len(), 4);
        assert_eq!(got[1], el("<iq id='1'><q a=\"x>y\"/></iq>"));
        assert_eq!(got[2], el("<a/>"));
        assert_eq!(got[3], el("<b><![CDATA[<x>]]></b>"));
    }

    #[test]
    fn restart_after_sasl_success_reads_the_new_header() {
        let mut f = Framer::new(1024);
        f.extend(b"<stream:stream><success/><stream:stream id='2'><stream:features/>");
        assert!(matches!(f.next_frame(), Ok(Some(Frame::StreamOpen(_)))));
        assert_eq!(f.next_frame(), Ok(Some(el("<success/>"))));
        f.reset();
        assert!(
            matches!(f.next_frame(), Ok(Some(Frame::StreamOpen(h))) if attr(&h, "id") == Some(b"2"))
        );
        assert_eq!(f.next_frame(), Ok(Some(el("<stream:features/>"))));
    }

    #[test]
    fn oversized_and_malformed_input_are_errors_not_panics() {
        let mut f = Framer::new(16);
        f.extend(b"<s><message><body>aaaaaaaaaaaaaaaaaaaaaaaa");
        assert!(matches!(f.next_frame(), Ok(Some(Frame::StreamOpen(_)))));
        assert_eq!(f.next_frame(), Err(FrameError::TooLarge));
        let mut f = Framer::new(1024);
        f.extend(b"</x>");
        assert!(matches!(f.next_frame(), Err(FrameError::Malformed(_))));
        let mut f = Framer::new(1024);
        f.extend(b"<!DOCTYPE x>");
        assert!(matches!(f.next_frame(), Err(FrameError::Malformed(_))));
        for junk in [
            &b"<"[..],
            b"<s><",
            b"<s></",
            b"<s><a b='",
            b"<s><!-",
            b"<s><?x",
        ] {
            let mut f = Framer::new(1024);
            f.extend(junk);
            while let Ok(Some(_)) = f.next_frame() {}
        }
    }

    #[test]
    fn lookups_read_names_attributes_and_child_text() {
        let m = b"<message from='a@b/c' type=\"chat\" id='x'><bodyx>no</bodyx><body xml:lang='en'>lg 7 123</body></message>";
        assert_eq!(name(m), b"message");
        assert_eq!(local_name(b"<stream:error/>"), b"error");
        assert_eq!(attr(m, "from"), Some(&b"a@b/c"[..]));
        assert_eq!(attr(m, "type"), Some(&b"chat"[..]));
        assert_eq!(attr(m, "to"), None);
        assert_eq!(child_text(m, "body"), Some(&b"lg 7 123"[..]));
        assert_eq!(child_text(b"<m><body/></m>", "body"), Some(&b""[..]));
        assert_eq!(child_text(b"<m><body>unterminated", "body"), None);
        assert_eq!(parse_probe(child_text(m, "body").unwrap()), Some((7, 123)));
        assert_eq!(parse_probe(b"hello"), None);
        assert_eq!(parse_probe(b"lg 1 2 xxxx"), Some((1, 2)));
    }

    #[test]
    fn websocket_stanzas_carry_the_client_namespace() {
        assert_eq!(
            qualify_for_ws("<presence/>".into()),
            "<presence xmlns='jabber:client'/>"
        );
        assert_eq!(
            qualify_for_ws("<iq type='set' id='1'><bind/></iq>".into()),
            "<iq xmlns='jabber:client' type='set' id='1'><bind/></iq>"
        );
        let open = ws_open("localhost");
        assert_eq!(qualify_for_ws(open.clone()), open);
        let auth = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>".to_string();
        assert_eq!(qualify_for_ws(auth.clone()), auth);
    }

    #[test]
    fn chat_message_is_escaped_and_carries_extra_params() {
        let mut s = String::new();
        chat_message(&mut s, "1-2@localhost", "i'd", "a<b", true);
        assert_eq!(
            s,
            "<message to='1-2@localhost' type='chat' id='i&apos;d'><body>a&lt;b</body>\
             <extraParams xmlns='jabber:client'><save_to_history>1</save_to_history></extraParams></message>"
        );
        let got = frames(&[b"<s>", s.as_bytes()]);
        assert_eq!(got[1], Frame::Element(s.as_bytes().to_vec()));
        let mut g = String::new();
        groupchat_message(&mut g, "r@muc.l", "1", &probe_body(3, 9, 2));
        assert_eq!(child_text(g.as_bytes(), "body"), Some(&b"lg 3 9 xx"[..]));
    }
}
