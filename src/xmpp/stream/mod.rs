//! The XMPP stream layer: bytes and WebSocket frames in, packets out; elements in, bytes out.
//! Owns buffers, limits, TLS, the WebSocket handshake and the stream's framing of written
//! elements (which namespaces the stream header declared). Handlers above never see XML text.
//! The element type itself is protocol-neutral and lives in `crate::xml`.

mod parse;
pub mod reader;
pub mod tls;
pub mod transport;

pub use crate::xml::element;
pub use crate::xml::{Element, Node};
pub use reader::{Fault, Framer, Limits, Packet};
pub use transport::Transport;

use super::ns;
use crate::xml::{Prefixed, Scope};

/// `stream:` for the streams namespace, declared by the stream header on TCP.
const STREAM_PREFIX: Prefixed<'static> = Prefixed {
    prefix: "stream",
    ns: ns::STREAMS,
    bound: true,
};

/// A top-level element of a `jabber:client` stream (TCP framing: the stream header declares
/// `jabber:client` and the `stream` prefix).
const IN_STREAM: Scope<'static> = Scope {
    default_ns: ns::CLIENT,
    prefixed: Some(STREAM_PREFIX),
};

/// A self-contained document (WebSocket framing, RFC 7395: every frame declares its namespaces,
/// including the `stream` prefix on `stream:*` elements).
const STANDALONE: Scope<'static> = Scope {
    default_ns: "",
    prefixed: Some(Prefixed {
        bound: false,
        ..STREAM_PREFIX
    }),
};

/// Parses one self-contained element (namespaces declared on it) under `limits`: a stanza that
/// crossed the cluster bus gets the same bounded parser as one read from a client.
pub fn parse_standalone(xml: &[u8], limits: &Limits) -> Result<Element, Fault> {
    parse::parse_element(xml, &[], limits)
}

impl Element {
    /// Serialises as a top-level element of a `jabber:client` stream.
    pub fn to_stream_xml(&self) -> String {
        self.to_xml(IN_STREAM)
    }

    /// Appends the stream serialisation to `out` (several stanzas, one write).
    pub fn write_stream_xml(&self, out: &mut String) {
        self.write_xml(out, IN_STREAM);
    }

    /// Serialises as a self-contained document (a WebSocket frame).
    pub fn to_standalone_xml(&self) -> String {
        self.to_xml(STANDALONE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_writes_jabber_client_and_the_stream_prefix_as_declared_by_its_header() {
        let iq = Element::new("iq", ns::CLIENT).with_child(Element::new("ping", ns::PING));
        assert_eq!(
            iq.to_stream_xml(),
            "<iq><ping xmlns=\"urn:xmpp:ping\"/></iq>"
        );
        let mut batch = String::new();
        iq.write_stream_xml(&mut batch);
        assert_eq!(batch, iq.to_stream_xml());
        let f = Element::new("features", ns::STREAMS).with_child(Element::new("bind", ns::BIND));
        assert_eq!(
            f.to_stream_xml(),
            "<stream:features><bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\"/></stream:features>"
        );
    }

    #[test]
    fn a_websocket_frame_declares_every_namespace_it_uses() {
        let iq = Element::new("iq", ns::CLIENT).with_child(Element::new("ping", ns::PING));
        assert_eq!(
            iq.to_standalone_xml(),
            "<iq xmlns=\"jabber:client\"><ping xmlns=\"urn:xmpp:ping\"/></iq>"
        );
        let f = Element::new("features", ns::STREAMS);
        assert_eq!(
            f.to_standalone_xml(),
            "<stream:features xmlns:stream=\"http://etherx.jabber.org/streams\"/>"
        );
    }
}
