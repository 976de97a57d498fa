//! The owned XML element every layer above the reader works with: name, namespace, attributes,
//! children and text, plus escaping-correct serialisation. It never holds raw XML text and knows
//! nothing about stanza semantics, nor any protocol's namespaces: what is declared around an
//! element is the caller's [`Scope`] (the XMPP adapter's framing lives in `xmpp::stream`).

use super::names as xml;

/// A child of an element: another element or a run of (unescaped) text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// An XML element with its resolved namespace. Attribute names are kept as written
/// (`xml:lang` stays `xml:lang`); namespace declarations are not attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub ns: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

impl Element {
    pub fn new(name: &str, ns: &str) -> Self {
        Element {
            name: name.to_owned(),
            ns: ns.to_owned(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder: sets an attribute.
    pub fn with_attr(mut self, k: &str, v: impl Into<String>) -> Self {
        self.set_attr(k, v);
        self
    }

    /// Builder: appends a child element.
    pub fn with_child(mut self, c: Element) -> Self {
        self.children.push(Node::Element(c));
        self
    }

    /// Builder: appends text.
    pub fn with_text(mut self, t: impl Into<String>) -> Self {
        self.children.push(Node::Text(t.into()));
        self
    }

    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    pub fn attr(&self, k: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    pub fn set_attr(&mut self, k: &str, v: impl Into<String>) {
        let v = v.into();
        match self.attrs.iter_mut().find(|(n, _)| n == k) {
            Some(slot) => slot.1 = v,
            None => self.attrs.push((k.to_owned(), v)),
        }
    }

    pub fn remove_attr(&mut self, k: &str) {
        self.attrs.retain(|(n, _)| n != k);
    }

    pub fn push(&mut self, c: Element) {
        self.children.push(Node::Element(c));
    }

    /// Child elements in document order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element with this name and namespace.
    pub fn child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(name, ns))
    }

    /// The first child element in this namespace, whatever its name.
    pub fn child_ns(&self, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.ns == ns)
    }

    /// The concatenated direct text of this element.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }

    /// Serialises this element in `scope` (see [`Element::write_xml`]).
    pub fn to_xml(&self, scope: Scope<'_>) -> String {
        let mut out = String::with_capacity(256);
        self.write_xml(&mut out, scope);
        out
    }

    /// Appends this element to `out`, or nothing at all when its name is not an XML name: the
    /// bytes written are always exactly one well-formed element (or none). An attribute whose
    /// name cannot be written (not a name, a namespace declaration — the writer declares
    /// namespaces itself —, a prefix other than `xml`, a repeat) is left out, as is a child
    /// element with an invalid name; each omission is logged. Text and attribute values are
    /// escaped and characters XML forbids are replaced (see [`escape_into`]). Names from users
    /// are refused before they get here (`chat::params`); this is the last guard.
    ///
    /// `scope` says what is declared around the element: the default namespace, and the one
    /// namespace written with a fixed prefix, if any, with whether that prefix is bound yet.
    pub fn write_xml(&self, out: &mut String, scope: Scope<'_>) {
        if !xml::is_ncname(&self.name) {
            tracing::warn!(name = %self.name.escape_debug(), "not writing an element with an invalid name");
            return;
        }
        let prefixed = scope.prefixed.filter(|p| p.ns == self.ns);
        out.push('<');
        if let Some(p) = prefixed {
            out.push_str(p.prefix);
            out.push(':');
        }
        out.push_str(&self.name);
        match prefixed {
            Some(p) if !p.bound => {
                out.push_str(" xmlns:");
                out.push_str(p.prefix);
                out.push_str("=\"");
                escape_into(out, p.ns, true);
                out.push('"');
            }
            Some(_) => {}
            None if self.ns != scope.default_ns => {
                out.push_str(" xmlns=\"");
                escape_into(out, &self.ns, true);
                out.push('"');
            }
            None => {}
        }
        for (i, (k, v)) in self.attrs.iter().enumerate() {
            let repeated = self.attrs.iter().take(i).any(|(p, _)| p == k);
            if repeated || !writable_attr_name(k) {
                tracing::warn!(element = %self.name, attr = %k.escape_debug(), "not writing an attribute with an invalid or repeated name");
                continue;
            }
            out.push(' ');
            out.push_str(k);
            out.push_str("=\"");
            escape_into(out, v, true);
            out.push('"');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        // A prefixed element leaves the default namespace as it was, so its children inherit
        // the parent's (the stream's `jabber:client`, or none when standalone).
        let inner = Scope {
            default_ns: if prefixed.is_some() {
                scope.default_ns
            } else {
                &self.ns
            },
            prefixed: scope.prefixed.map(|p| Prefixed {
                bound: p.bound || prefixed.is_some(),
                ..p
            }),
        };
        for c in &self.children {
            match c {
                Node::Element(e) => e.write_xml(out, inner),
                Node::Text(t) => escape_into(out, t, false),
            }
        }
        out.push_str("</");
        if let Some(p) = prefixed {
            out.push_str(p.prefix);
            out.push(':');
        }
        out.push_str(&self.name);
        out.push('>');
    }
}

/// What is declared where an element is written, so the writer declares only what changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope<'a> {
    /// The default namespace in scope (`""`: none).
    pub default_ns: &'a str,
    /// The namespace written with a fixed prefix rather than as a default namespace, if any.
    pub prefixed: Option<Prefixed<'a>>,
}

/// A namespace always written with one prefix (XMPP's `stream:`). `prefix` must be an `NCName`
/// (it is a constant of the caller, never user input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefixed<'a> {
    pub prefix: &'a str,
    pub ns: &'a str,
    /// Whether the prefix is declared already (by an enclosing header); if not, the outermost
    /// element written in that namespace declares it.
    pub bound: bool,
}

/// May `k` be written as an attribute name? An XML name that is not a namespace declaration
/// (`xmlns`, `xmlns:*`: the writer alone declares namespaces) and whose prefix, if any, is
/// `xml` (the only prefix bound without a declaration, e.g. `xml:lang`).
fn writable_attr_name(k: &str) -> bool {
    if !xml::is_name(k) || k == "xmlns" {
        return false;
    }
    match k.split_once(':') {
        None => true,
        Some((prefix, local)) => prefix == "xml" && xml::is_ncname(local),
    }
}

/// Escapes `&`, `<`, `>` (and, inside attribute values, quotes, tab, LF and CR, which a parser
/// would otherwise normalise to spaces; CR in text too, which it would turn into LF).
/// Characters XML 1.0 forbids anywhere (NUL and the other C0 controls, U+FFFE, U+FFFF) are
/// written as U+FFFD: they never reach a stream.
pub fn escape_into(out: &mut String, s: &str, attr: bool) {
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            '\'' if attr => out.push_str("&apos;"),
            '\t' if attr => out.push_str("&#9;"),
            '\n' if attr => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if !xml::is_xml_char(c) => out.push(char::REPLACEMENT_CHARACTER),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // XMPP's framing, spelled out here so that this module stays free of the adapter.
    const CLIENT: &str = "jabber:client";
    const STREAMS: &str = "http://etherx.jabber.org/streams";
    const STREAM_PREFIX: Prefixed = Prefixed {
        prefix: "stream",
        ns: STREAMS,
        bound: true,
    };
    /// Inside a stream whose header declared `jabber:client` and the `stream` prefix.
    const IN_STREAM: Scope = Scope {
        default_ns: CLIENT,
        prefixed: Some(STREAM_PREFIX),
    };
    /// A self-contained document (a WebSocket frame).
    const STANDALONE: Scope = Scope {
        default_ns: "",
        prefixed: Some(Prefixed {
            bound: false,
            ..STREAM_PREFIX
        }),
    };

    #[test]
    fn text_and_attributes_are_escaped_on_write() {
        let e = Element::new("body", CLIENT)
            .with_attr("a", "x\"<&'")
            .with_text("1 < 2 & 3 > 0");
        assert_eq!(
            e.to_xml(IN_STREAM),
            "<body a=\"x&quot;&lt;&amp;&apos;\">1 &lt; 2 &amp; 3 &gt; 0</body>"
        );
    }

    #[test]
    fn namespace_is_declared_only_where_it_changes() {
        let e = Element::new("iq", CLIENT).with_child(Element::new("ping", "urn:xmpp:ping"));
        assert_eq!(
            e.to_xml(IN_STREAM),
            "<iq><ping xmlns=\"urn:xmpp:ping\"/></iq>"
        );
        assert_eq!(
            e.to_xml(STANDALONE),
            "<iq xmlns=\"jabber:client\"><ping xmlns=\"urn:xmpp:ping\"/></iq>"
        );
    }

    #[test]
    fn standalone_stream_features_declare_the_stream_prefix() {
        let f = Element::new("features", STREAMS)
            .with_child(Element::new("bind", "urn:ietf:params:xml:ns:xmpp-bind"));
        assert_eq!(
            f.to_xml(STANDALONE),
            "<stream:features xmlns:stream=\"http://etherx.jabber.org/streams\"><bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\"/></stream:features>"
        );
    }

    #[test]
    fn forbidden_characters_never_reach_the_output() {
        let e = Element::new("body", CLIENT)
            .with_attr("a", "nul\u{0}bell\u{7}\u{FFFE}")
            .with_text("x\u{0}y\u{1B}z\u{FFFF}");
        assert_eq!(
            e.to_xml(IN_STREAM),
            "<body a=\"nul\u{FFFD}bell\u{FFFD}\u{FFFD}\">x\u{FFFD}y\u{FFFD}z\u{FFFD}</body>"
        );
    }

    #[test]
    fn whitespace_in_attribute_values_survives_as_character_references() {
        let e = Element::new("x", CLIENT)
            .with_attr("a", "t\tn\nr\r")
            .with_text("r\rn\n");
        assert_eq!(
            e.to_xml(IN_STREAM),
            "<x a=\"t&#9;n&#10;r&#13;\">r&#13;n\n</x>"
        );
    }

    #[test]
    fn a_child_with_an_invalid_name_is_left_out() {
        let e = Element::new("extraParams", CLIENT)
            .with_child(Element::new("ok", CLIENT).with_text("1"))
            .with_child(
                Element::new(
                    "x/></extraParams></message><message from=\"999-1@localhost\"><body>FORGED</body></message><message><extraParams><y",
                    CLIENT,
                )
                .with_text("v"),
            )
            .with_child(Element::new("", CLIENT))
            .with_child(Element::new("a:b", CLIENT));
        assert_eq!(e.to_xml(IN_STREAM), "<extraParams><ok>1</ok></extraParams>");
    }

    #[test]
    fn an_element_with_an_invalid_name_writes_nothing() {
        assert_eq!(Element::new("a b", CLIENT).to_xml(IN_STREAM), "");
        assert_eq!(Element::new("", CLIENT).to_xml(STANDALONE), "");
    }

    #[test]
    fn unwritable_attributes_are_left_out() {
        let mut e = Element::new("attachment", CLIENT)
            .with_attr("type", "image")
            .with_attr("a\"b", "1")
            .with_attr("x/><evil", "1")
            .with_attr("xmlns", "urn:evil")
            .with_attr("xmlns:p", "urn:evil")
            .with_attr("p:q", "unbound prefix")
            .with_attr("xml:lang", "en")
            .with_attr("9", "1");
        e.attrs.push(("type".into(), "again".into()));
        assert_eq!(
            e.to_xml(IN_STREAM),
            "<attachment type=\"image\" xml:lang=\"en\"/>"
        );
    }

    /// A seeded generator for the property test (splitmix64).
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
        fn string(&mut self) -> String {
            const ATOMS: [&str; 24] = [
                "a", "Z", "_", "-", ".", "9", ":", "<", ">", "&", "\"", "'", "/", " ", "=", "\t",
                "\n", "\r", "\u{0}", "\u{1F}", "é", "😀", "\u{FFFE}", "]]>",
            ];
            let n = self.below(8);
            (0..n).map(|_| self.pick(&ATOMS)).collect()
        }
        fn name(&mut self) -> String {
            const NAMES: [&str; 14] = [
                "a", "body", "x-y.z", "é", "xml:lang", "xmlns", "xmlns:p", "p:q", "", "9a", "a b",
                "x/><y", "a\"b", "xmlfoo",
            ];
            if self.below(2) == 0 {
                self.pick(&NAMES).to_owned()
            } else {
                self.string()
            }
        }
        fn element(&mut self, depth: usize) -> Element {
            const NSS: [&str; 4] = [CLIENT, "urn:x\"<&>", "", STREAMS];
            let mut e = Element::new(&self.name(), self.pick(&NSS));
            for _ in 0..self.below(4) {
                let (k, v) = (self.name(), self.string());
                e.attrs.push((k, v));
            }
            for _ in 0..self.below(if depth < 4 { 4 } else { 1 }) {
                if self.below(2) == 0 {
                    let t = self.string();
                    e.children.push(Node::Text(t));
                } else {
                    let c = self.element(depth + 1);
                    e.children.push(Node::Element(c));
                }
            }
            e
        }
    }

    /// Parses `text` strictly: exactly one root element, every name an XML name, every prefix
    /// bound, no repeated attribute, every entity known, only XML characters. In a stream
    /// (`in_stream`), `text` is read inside a stream header declaring `jabber:client` and the
    /// `stream` prefix, as a client reads a stanza.
    fn strictly_one_element(text: &str, in_stream: bool) -> Result<(), String> {
        use quick_xml::events::Event;
        use quick_xml::name::ResolveResult;
        if let Some(c) = xml::forbidden_char(text) {
            return Err(format!("forbidden character {c:?}"));
        }
        let doc = match in_stream {
            true => format!(
                "<stream:stream xmlns=\"jabber:client\" xmlns:stream=\"{}\">{text}</stream:stream>",
                STREAMS
            ),
            false => text.to_owned(),
        };
        let top = usize::from(in_stream);
        let mut r = quick_xml::NsReader::from_str(&doc);
        let (mut depth, mut roots) = (0usize, 0usize);
        loop {
            let (res, ev) = r.read_resolved_event().map_err(|e| e.to_string())?;
            match ev {
                Event::Start(ref s) | Event::Empty(ref s) => {
                    if depth == top {
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
                    if depth == top {
                        return Err("text outside the element".into());
                    }
                    t.unescape().map_err(|e| e.to_string())?;
                }
                Event::Decl(_) if depth == 0 && roots == 0 => {}
                Event::Eof => break,
                other => return Err(format!("unexpected {other:?}")),
            }
        }
        match (roots, depth) {
            (1, 0) => Ok(()),
            _ => Err(format!("{roots} root elements, depth {depth} at the end")),
        }
    }

    #[test]
    fn the_strict_check_refuses_what_is_not_one_well_formed_element() {
        for bad in [
            "<a><b></a>",
            "<a/><b/>",
            "<a/>tail",
            "<a b=\"1\" b=\"2\"/>",
            "<p:a/>",
            "<a p:b=\"1\"/>",
            "<a>&bogus;</a>",
            "<a>\u{0}</a>",
            "<9/>",
            "<a b=c/>",
            "",
            "<a>",
        ] {
            assert!(strictly_one_element(bad, false).is_err(), "{bad:?}");
        }
        assert!(strictly_one_element("<a xml:lang=\"en\"><b/>t</a>", false).is_ok());
        assert!(strictly_one_element("<stream:features/>", true).is_ok());
        assert!(strictly_one_element("<stream:features/>", false).is_err());
    }

    #[test]
    fn any_element_is_written_as_exactly_one_well_formed_element_or_not_at_all() {
        let mut rng = Rng(0x5EED_0011);
        for i in 0..20_000 {
            let mut e = rng.element(0);
            if i % 2 == 0 {
                // Most stanzas have a server-chosen top-level name.
                e.name = "message".into();
            }
            for (out, in_stream) in [(e.to_xml(IN_STREAM), true), (e.to_xml(STANDALONE), false)] {
                if out.is_empty() {
                    assert!(!xml::is_ncname(&e.name), "{e:?} wrote nothing");
                    continue;
                }
                strictly_one_element(&out, in_stream)
                    .unwrap_or_else(|err| panic!("{err}: {out:?} from {e:?}"));
            }
        }
    }
}
