//! The owned XML element every layer above the reader works with: name, namespace, attributes,
//! children and text, plus escaping-correct serialisation. It never holds raw XML text and knows
//! nothing about stanza semantics.

use crate::xmpp::ns;

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

    /// Serialises as a top-level element of a `jabber:client` stream (TCP framing: the stream
    /// header declares `jabber:client` and the `stream` prefix).
    pub fn to_stream_xml(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write(&mut out, ns::CLIENT, false);
        out
    }

    /// Appends the stream serialisation to `out` (several stanzas, one write).
    pub fn write_stream_xml(&self, out: &mut String) {
        self.write(out, ns::CLIENT, false);
    }

    /// Serialises as a self-contained document (WebSocket framing: every frame declares its
    /// namespaces, including the `stream` prefix on `stream:*` elements).
    pub fn to_standalone_xml(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write(&mut out, "", true);
        out
    }

    fn write(&self, out: &mut String, parent_ns: &str, declare_stream_prefix: bool) {
        let streams = self.ns == ns::STREAMS;
        out.push('<');
        if streams {
            out.push_str("stream:");
        }
        out.push_str(&self.name);
        if streams {
            if declare_stream_prefix {
                out.push_str(" xmlns:stream=\"");
                out.push_str(ns::STREAMS);
                out.push('"');
            }
        } else if self.ns != parent_ns {
            out.push_str(" xmlns=\"");
            escape_into(out, &self.ns, true);
            out.push('"');
        }
        for (k, v) in &self.attrs {
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
        // Children of a `stream:*` element inherit the default namespace of the stream (none
        // when standalone), so each of them states its own.
        let inner_ns = if streams {
            if declare_stream_prefix {
                ""
            } else {
                ns::CLIENT
            }
        } else {
            &self.ns
        };
        for c in &self.children {
            match c {
                Node::Element(e) => e.write(out, inner_ns, false),
                Node::Text(t) => escape_into(out, t, false),
            }
        }
        out.push_str("</");
        if streams {
            out.push_str("stream:");
        }
        out.push_str(&self.name);
        out.push('>');
    }
}

/// Escapes `&`, `<`, `>` (and quotes inside attribute values).
pub fn escape_into(out: &mut String, s: &str, attr: bool) {
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            '\'' if attr => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attributes_are_escaped_on_write() {
        let e = Element::new("body", ns::CLIENT)
            .with_attr("a", "x\"<&'")
            .with_text("1 < 2 & 3 > 0");
        assert_eq!(
            e.to_stream_xml(),
            "<body a=\"x&quot;&lt;&amp;&apos;\">1 &lt; 2 &amp; 3 &gt; 0</body>"
        );
    }

    #[test]
    fn namespace_is_declared_only_where_it_changes() {
        let e = Element::new("iq", ns::CLIENT).with_child(Element::new("ping", ns::PING));
        assert_eq!(
            e.to_stream_xml(),
            "<iq><ping xmlns=\"urn:xmpp:ping\"/></iq>"
        );
        assert_eq!(
            e.to_standalone_xml(),
            "<iq xmlns=\"jabber:client\"><ping xmlns=\"urn:xmpp:ping\"/></iq>"
        );
    }

    #[test]
    fn standalone_stream_features_declare_the_stream_prefix() {
        let f = Element::new("features", ns::STREAMS).with_child(Element::new("bind", ns::BIND));
        assert_eq!(
            f.to_standalone_xml(),
            "<stream:features xmlns:stream=\"http://etherx.jabber.org/streams\"><bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\"/></stream:features>"
        );
    }
}
