//! Incremental, namespace-aware reader: bytes in, packets out (stream start, one stanza, stream
//! end), under hard limits (stanza bytes, element depth, attributes per element). It refuses
//! DTDs, comments and processing instructions after the XML declaration, and never expands an
//! entity beyond the five predefined ones and character references. It must not interpret
//! stanzas: that is the session's job.

use super::element::Element;
pub use super::parse::parse_element;
use super::parse::parse_with_scope;
use crate::xmpp::ns;

/// Reader limits, taken from config.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_stanza_bytes: usize,
    pub max_depth: usize,
    pub max_attributes: usize,
}

/// What the reader yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// `<stream:stream …>` or RFC 7395 `<open/>`: the attributes, no children.
    StreamStart(Element),
    /// One complete top-level element.
    Stanza(Element),
    /// `</stream:stream>` or RFC 7395 `<close/>`.
    StreamEnd,
}

/// Why a stream must be closed; each maps to one RFC 6120 stream error condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Broken XML, undefined entity, unbound prefix, bad UTF-8.
    NotWellFormed,
    /// Over a size, depth or attribute limit, or a DTD (never read, never expanded).
    PolicyViolation,
    /// Comment or processing instruction (RFC 6120 §11.1 restricted XML).
    RestrictedXml,
    /// The stream header is not `jabber:client` / `http://etherx.jabber.org/streams`.
    InvalidNamespace,
}

impl Fault {
    pub fn condition(self) -> &'static str {
        match self {
            Fault::NotWellFormed => "not-well-formed",
            Fault::PolicyViolation => "policy-violation",
            Fault::RestrictedXml => "restricted-xml",
            Fault::InvalidNamespace => "invalid-namespace",
        }
    }
}

/// The first read buffer (and the room every read wants): a login's packets fit, and an idle
/// connection holds no more than this.
const READ_START: usize = 512;
/// A buffer that grew past this (a large stanza, a burst) is freed once it drains, so a
/// connection that goes idle does not keep its high-water mark.
const READ_KEEP: usize = 8 * 1024;

/// Splits a TCP byte stream into packets. Holds at most one stanza (plus one read) in memory.
/// The transport reads straight into its buffer ([`Framer::read_buf`]): no separate read chunk
/// lives in the connection's future.
pub struct Framer {
    limits: Limits,
    buf: Vec<u8>,
    /// The last read filled all the room it had: give the next one more.
    grow: bool,
    /// Where scanning resumes.
    scan: usize,
    /// Element depth at `scan`: 0 before the header, 1 between stanzas.
    depth: usize,
    /// Start of the stanza being collected.
    start: Option<usize>,
    /// Namespace declarations of the stream header, inherited by every stanza.
    scope: Vec<(String, String)>,
    /// Progress through the unfinished markup construct (tag, CDATA, declaration) at
    /// `resume.at`, so a sender dribbling a large tag costs linear time, not quadratic.
    resume: Resume,
}

#[derive(Clone, Copy)]
struct Resume {
    at: usize,
    done: usize,
    quote: Option<u8>,
}

const NO_RESUME: Resume = Resume {
    at: usize::MAX,
    done: 0,
    quote: None,
};

impl Framer {
    pub fn new(limits: Limits) -> Self {
        Framer {
            limits,
            buf: Vec::new(),
            grow: false,
            scan: 0,
            depth: 0,
            start: None,
            scope: Vec::new(),
            resume: NO_RESUME,
        }
    }

    /// Forgets everything: a stream restart (after STARTTLS or SASL success).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.scan = 0;
        self.depth = 0;
        self.start = None;
        self.scope.clear();
        self.resume = NO_RESUME;
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The buffer to read into, with room for a read at its end. Room doubles while reads fill
    /// it (a busy connection converges on large reads); [`Framer::shed`] gives it back.
    pub fn read_buf(&mut self) -> &mut Vec<u8> {
        let room = self.buf.capacity() - self.buf.len();
        if self.grow || room < READ_START / 4 {
            self.buf.reserve(self.buf.capacity().max(READ_START));
        }
        self.grow = false;
        &mut self.buf
    }

    /// After a read of `n` bytes into `room` bytes of room.
    pub fn did_read(&mut self, n: usize, room: usize) {
        self.grow = n == room;
    }

    /// Frees a drained buffer that grew large.
    fn shed(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > READ_KEEP {
            self.buf = Vec::new();
        }
    }

    /// Bytes buffered but not yet yielded.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete packet, `Ok(None)` when more bytes are needed.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, Fault> {
        loop {
            let from = self.start.unwrap_or(self.scan);
            if self.buf.len() - from.min(self.buf.len()) > self.limits.max_stanza_bytes {
                return Err(Fault::PolicyViolation);
            }
            let Some(rel) = self.buf[self.scan..].iter().position(|&b| b == b'<') else {
                self.check_text(self.scan, self.buf.len())?;
                self.consume_text();
                return Ok(None);
            };
            let lt = self.scan + rel;
            self.check_text(self.scan, lt)?;
            if self.buf.len() - lt < 2 {
                return Ok(None);
            }
            match self.buf[lt + 1] {
                b'?' => {
                    let Some(end) = self.find_resumable(lt, b"?>") else {
                        return Ok(None);
                    };
                    // Only the XML declaration, only before the stream header.
                    if self.depth != 0 || !self.buf[lt..].starts_with(b"<?xml ") {
                        return Err(Fault::RestrictedXml);
                    }
                    self.scan = lt + end + 2;
                }
                b'!' => {
                    let rest = &self.buf[lt..];
                    const CDATA: &[u8] = b"<![CDATA[";
                    let n = rest.len().min(CDATA.len());
                    if rest[..n] != CDATA[..n] {
                        // A DTD is refused before anything in it could be expanded; a comment
                        // is restricted XML (RFC 6120 §11.1).
                        return Err(if rest.starts_with(b"<!-") {
                            Fault::RestrictedXml
                        } else {
                            Fault::PolicyViolation
                        });
                    }
                    if n < CDATA.len() {
                        return Ok(None);
                    }
                    if self.depth < 2 {
                        return Err(Fault::NotWellFormed);
                    }
                    let Some(end) = self.find_resumable(lt, b"]]>") else {
                        return Ok(None);
                    };
                    self.scan = lt + end + 3;
                }
                b'/' => {
                    let Some(end) = self.find_resumable(lt, b">") else {
                        // An end tag holds a name and white space only: a `<` in it can never
                        // become well-formed, so do not wait for the `>`.
                        if self.buf.get(lt + 2..).is_some_and(|t| t.contains(&b'<')) {
                            return Err(Fault::NotWellFormed);
                        }
                        return Ok(None);
                    };
                    if self
                        .buf
                        .get(lt + 2..lt + end)
                        .is_some_and(|t| t.contains(&b'<'))
                    {
                        return Err(Fault::NotWellFormed);
                    }
                    self.scan = lt + end + 1;
                    match self.depth {
                        0 => return Err(Fault::NotWellFormed),
                        1 => {
                            self.buf.clear();
                            self.scan = 0;
                            self.depth = 0;
                            return Ok(Some(Packet::StreamEnd));
                        }
                        2 => {
                            self.depth = 1;
                            return self.finish_stanza().map(Some);
                        }
                        _ => self.depth -= 1,
                    }
                }
                _ => {
                    let (from, quote) = match self.resume {
                        r if r.at == lt => (r.done, r.quote),
                        _ => (1, None),
                    };
                    // A tag starts with a name (XML 1.0 §3.1); `<<`, `< a` and the like are
                    // refused at once rather than waited on.
                    if from == 1 && !self.buf.get(lt + 1).is_some_and(|&b| starts_name(b)) {
                        return Err(Fault::NotWellFormed);
                    }
                    let end = match tag_end(&self.buf[lt..], from, quote) {
                        Ok(end) => end,
                        Err(TagScan::Bad) => return Err(Fault::NotWellFormed),
                        Err(TagScan::More(done, quote)) => {
                            self.resume = Resume {
                                at: lt,
                                done,
                                quote,
                            };
                            return Ok(None);
                        }
                    };
                    self.resume = NO_RESUME;
                    let rest = &self.buf[lt..];
                    let empty = end > 0 && rest[end - 1] == b'/';
                    let tag_to = lt + end + 1;
                    match self.depth {
                        0 => {
                            let header = self.parse_header(lt, tag_to)?;
                            self.buf.drain(..tag_to);
                            self.scan = 0;
                            self.depth = 1;
                            return Ok(Some(Packet::StreamStart(header)));
                        }
                        1 => {
                            self.start = Some(lt);
                            self.scan = tag_to;
                            if empty {
                                return self.finish_stanza().map(Some);
                            }
                            self.depth = 2;
                        }
                        d => {
                            self.scan = tag_to;
                            if !empty {
                                if d >= self.limits.max_depth {
                                    return Err(Fault::PolicyViolation);
                                }
                                self.depth += 1;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Where `needle` ends the construct at `lt` (offset from `lt`), scanning only bytes not
    /// already scanned on an earlier call.
    fn find_resumable(&mut self, lt: usize, needle: &[u8]) -> Option<usize> {
        let rest = &self.buf[lt..];
        let from = match self.resume {
            r if r.at == lt => r.done.saturating_sub(needle.len()),
            _ => 0,
        };
        match find(&rest[from..], needle) {
            Some(i) => {
                self.resume = NO_RESUME;
                Some(from + i)
            }
            None => {
                self.resume = Resume {
                    at: lt,
                    done: rest.len(),
                    quote: None,
                };
                None
            }
        }
    }

    /// Text outside stanzas may only be whitespace.
    fn check_text(&self, from: usize, to: usize) -> Result<(), Fault> {
        if self.depth <= 1 && self.buf[from..to].iter().any(|b| !b.is_ascii_whitespace()) {
            return Err(Fault::NotWellFormed);
        }
        Ok(())
    }

    fn consume_text(&mut self) {
        if self.depth <= 1 {
            self.buf.clear();
            self.shed();
            self.scan = 0;
        } else {
            self.scan = self.buf.len();
        }
    }

    fn finish_stanza(&mut self) -> Result<Packet, Fault> {
        let start = self.start.take().unwrap_or(0);
        let end = self.scan;
        let el = parse_element(&self.buf[start..end], &self.scope, &self.limits)?;
        self.buf.drain(..end);
        self.shed();
        self.scan = 0;
        Ok(Packet::Stanza(el))
    }

    fn parse_header(&mut self, from: usize, to: usize) -> Result<Element, Fault> {
        // Parse the open tag as an empty element so the tokenizer sees a complete document.
        let mut tag = self.buf[from..to - 1].to_vec();
        if tag.last() != Some(&b'/') {
            tag.push(b'/');
        }
        tag.push(b'>');
        let mut scope = Vec::new();
        let el = parse_with_scope(&tag, &mut scope, &self.limits)?;
        if el.name != "stream" || el.ns != ns::STREAMS {
            return Err(Fault::InvalidNamespace);
        }
        let default = scope
            .iter()
            .rev()
            .find(|(p, _)| p.is_empty())
            .map(|(_, n)| n.as_str());
        if default != Some(ns::CLIENT) {
            return Err(Fault::InvalidNamespace);
        }
        self.scope = scope;
        Ok(el)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Why a tag's end was not found.
enum TagScan {
    /// Unfinished: how far the scan got, and the open quote.
    More(usize, Option<u8>),
    /// A `<` inside the tag: forbidden even in attribute values (XML 1.0 §3.1, `AttValue`).
    Bad,
}

/// Whether `b` can start an element name: an ASCII letter, `_`, `:` or any non-ASCII byte (the
/// tokenizer checks the full name rule once the tag is complete).
fn starts_name(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80
}

/// Index of the `>` closing the tag at the start of `s`, skipping quoted attribute values;
/// scanning starts at `from` with `quote` open.
fn tag_end(s: &[u8], from: usize, mut quote: Option<u8>) -> Result<usize, TagScan> {
    for (i, &b) in s.iter().enumerate().skip(from.max(1)) {
        match quote {
            _ if b == b'<' => return Err(TagScan::Bad),
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => return Ok(i),
            None => {}
        }
    }
    Err(TagScan::More(s.len(), quote))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_stanza_bytes: 1024,
        max_depth: 8,
        max_attributes: 4,
    };
    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

    /// Simulates the transport's read: copies `data` into the room `read_buf` offers.
    fn read_into(f: &mut Framer, data: &[u8]) -> usize {
        let buf = f.read_buf();
        let room = buf.capacity() - buf.len();
        let n = data.len().min(room);
        buf.extend_from_slice(&data[..n]);
        f.did_read(n, room);
        n
    }

    #[test]
    fn an_idle_connection_keeps_a_small_read_buffer_and_a_burst_is_given_back() {
        let big = LIMITS_BIG;
        let mut f = Framer::new(big);
        read_into(&mut f, HEADER.as_bytes());
        assert!(matches!(f.next_packet(), Ok(Some(Packet::StreamStart(_)))));
        assert!(f.buf.capacity() <= READ_START * 2, "{}", f.buf.capacity());
        // A 40 KiB stanza arrives over several reads: the room grows while reads fill it.
        let body = "x".repeat(40 * 1024);
        let stanza = format!("<message><body>{body}</body></message>");
        let mut rest = stanza.as_bytes();
        let mut reads = 0;
        while !rest.is_empty() {
            let n = read_into(&mut f, rest);
            rest = &rest[n..];
            reads += 1;
        }
        assert!(reads < 12, "{reads} reads for 40 KiB: room did not grow");
        assert!(matches!(f.next_packet(), Ok(Some(Packet::Stanza(_)))));
        // Drained: the large buffer is freed, not kept for the idle time that follows.
        assert_eq!(f.buf.capacity(), 0);
        read_into(&mut f, b"<presence/>");
        assert!(matches!(f.next_packet(), Ok(Some(Packet::Stanza(_)))));
        assert!(f.buf.capacity() <= READ_START * 2);
    }

    const LIMITS_BIG: Limits = Limits {
        max_stanza_bytes: 64 * 1024,
        max_depth: 8,
        max_attributes: 4,
    };

    fn all(input: &[&str]) -> Vec<Result<Packet, Fault>> {
        let mut f = Framer::new(LIMITS);
        let mut out = Vec::new();
        for chunk in input {
            f.push(chunk.as_bytes());
            loop {
                match f.next_packet() {
                    Ok(Some(p)) => out.push(Ok(p)),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e));
                        return out;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn stanzas_split_across_reads_come_out_whole_with_inherited_namespace() {
        let out = all(&[
            &HEADER[..20],
            &HEADER[20..],
            "<message to='a@b'><bo",
            "dy>x &amp; y</body></message> <presence/>",
            "</stream:stream>",
        ]);
        assert!(matches!(&out[0], Ok(Packet::StreamStart(h)) if h.attr("to") == Some("localhost")));
        let Ok(Packet::Stanza(m)) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(m.ns, ns::CLIENT);
        assert_eq!(
            m.child("body", ns::CLIENT).map(|b| b.text()).as_deref(),
            Some("x & y")
        );
        assert!(matches!(&out[2], Ok(Packet::Stanza(p)) if p.name == "presence"));
        assert_eq!(out[3], Ok(Packet::StreamEnd));
    }

    #[test]
    fn a_tag_dribbled_byte_by_byte_is_framed_the_same() {
        let text = format!("{HEADER}<iq id='a>b' type=\"g'et\"><![CDATA[x]]>y</iq>");
        let chunks: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
        let out = all(&refs);
        let Ok(Packet::Stanza(iq)) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(iq.attr("id"), Some("a>b"));
        assert_eq!(iq.attr("type"), Some("g'et"));
        assert_eq!(iq.text(), "xy");
    }

    #[test]
    fn gt_inside_attribute_values_does_not_end_the_tag() {
        let out = all(&[HEADER, "<iq id='a>b' type='get'/>"]);
        assert!(matches!(&out[1], Ok(Packet::Stanza(i)) if i.attr("id") == Some("a>b")));
    }

    #[test]
    fn doctype_is_refused_before_any_expansion() {
        let out = all(&["<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>]>"]);
        assert_eq!(out.last(), Some(&Err(Fault::PolicyViolation)));
        let out = all(&[HEADER, "<!-- hi -->"]);
        assert_eq!(out.last(), Some(&Err(Fault::RestrictedXml)));
    }

    #[test]
    fn undefined_entity_is_not_well_formed() {
        let out = all(&[HEADER, "<message><body>&lol9;</body></message>"]);
        assert_eq!(out.last(), Some(&Err(Fault::NotWellFormed)));
    }

    #[test]
    fn oversized_stanza_is_a_policy_violation_before_it_completes() {
        let big = "a".repeat(2000);
        let out = all(&[HEADER, "<message><body>", &big]);
        assert_eq!(out.last(), Some(&Err(Fault::PolicyViolation)));
    }

    #[test]
    fn too_deep_or_too_many_attributes_is_a_policy_violation() {
        let deep = "<a>".repeat(10);
        let out = all(&[HEADER, "<message>", &deep]);
        assert_eq!(out.last(), Some(&Err(Fault::PolicyViolation)));
        let out = all(&[HEADER, "<message a='1' b='2' c='3' d='4' e='5'/>"]);
        assert_eq!(out.last(), Some(&Err(Fault::PolicyViolation)));
    }

    #[test]
    fn wrong_stream_namespace_is_invalid_namespace() {
        let out = all(&[
            "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>",
        ]);
        assert_eq!(out.last(), Some(&Err(Fault::InvalidNamespace)));
    }

    #[test]
    fn a_lt_that_cannot_start_a_tag_is_refused_without_waiting() {
        for bad in [
            "<<",
            "< message/>",
            "<message><</message>",
            "<a b='<'/>",
            "<1/>",
        ] {
            let got = all(&[HEADER, bad]);
            assert!(
                matches!(got.last(), Some(Err(Fault::NotWellFormed))),
                "{bad}: {got:?}"
            );
        }
    }

    #[test]
    fn a_lt_inside_an_end_tag_is_refused_without_waiting() {
        let got = all(&[HEADER, "<message></mess<"]);
        assert!(
            matches!(got.last(), Some(Err(Fault::NotWellFormed))),
            "{got:?}"
        );
    }

    #[test]
    fn mismatched_end_tag_is_not_well_formed() {
        let out = all(&[HEADER, "<message><body></message></body>"]);
        assert_eq!(out.last(), Some(&Err(Fault::NotWellFormed)));
    }

    #[test]
    fn unbound_prefix_is_not_well_formed() {
        let out = all(&[HEADER, "<x:message/>"]);
        assert_eq!(out.last(), Some(&Err(Fault::NotWellFormed)));
        let out = all(&[HEADER, "<message x:a='1'/>"]);
        assert_eq!(out.last(), Some(&Err(Fault::NotWellFormed)));
    }

    /// Found by the `xml_reader` fuzz target: `<:ns:x/>` was read as the element `ns:x` in no
    /// namespace, which the server then wrote as `<ns:x>` with an unbound prefix.
    #[test]
    fn names_that_are_not_namespace_well_formed_are_refused() {
        for bad in [
            "<:ns:x/>",
            "<:x/>",
            "<a:b:c xmlns:a='u'/>",
            "<x: xmlns:x='u'/>",
            "<message a:b:c='1' xmlns:a='u'/>",
            "<message :a='1'/>",
            "<message xmlns:p=''/>",
            "<message><1x/></message>",
        ] {
            let out = all(&[HEADER, bad]);
            assert_eq!(out.last(), Some(&Err(Fault::NotWellFormed)), "{bad}");
        }
    }

    #[test]
    fn a_prefixed_attribute_is_dropped_and_xml_lang_kept() {
        let out = all(&[
            HEADER,
            "<message p:a='1' xmlns:p='urn:x' xml:lang='en' b='2'/>",
        ]);
        let Ok(Packet::Stanza(m)) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(m.attr("p:a"), None);
        assert_eq!(m.attr("xml:lang"), Some("en"));
        assert_eq!(m.attr("b"), Some("2"));
        // What the server writes of it reads back the same.
        let xml = m.to_standalone_xml();
        let back = parse_element(xml.as_bytes(), &[], &LIMITS_BIG).unwrap();
        assert_eq!(&back, m, "{xml}");
    }

    #[test]
    fn names_that_are_not_xml_names_are_not_well_formed() {
        for stanza in [
            "<message><9a/></message>",
            "<message><a;b/></message>",
            "<message a&b='1'/>",
            "<message><:x/></message>",
            "<message><a:b:c xmlns:a='urn:a'/></message>",
        ] {
            let out = all(&[HEADER, stanza]);
            assert_eq!(out.last(), Some(&Err(Fault::NotWellFormed)), "{stanza}");
        }
    }

    /// Found by the `xml_reader` fuzz target: a NUL in a namespace was read, then written as
    /// U+FFFD, so the element did not read back the same.
    #[test]
    fn characters_xml_forbids_are_not_well_formed_in_text_attributes_and_namespaces() {
        for stanza in [
            "<message><body>a\u{0}b</body></message>",
            "<message><body>a&#0;b</body></message>",
            "<message><body>&#x1F;</body></message>",
            "<message id='a\u{1}'/>",
            "<message id='&#x8;'/>",
            "<message xmlns='urn:\u{0}x'/>",
            "<message><![CDATA[\u{B}]]></message>",
        ] {
            let out = all(&[HEADER, stanza]);
            assert_eq!(out.last(), Some(&Err(Fault::NotWellFormed)), "{stanza:?}");
        }
        let out = all(&[HEADER, "<message><body>tab\tline\ncr\r</body></message>"]);
        assert!(matches!(out.last(), Some(Ok(Packet::Stanza(_)))), "{out:?}");
    }
}
