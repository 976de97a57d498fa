//! Arbitrary bytes, in arbitrary chunkings, into the XMPP stream reader with the server's default
//! limits: it must never panic, never yield a stanza over the limits, and every element it
//! yields must serialize to XML it reads back as the same element (what the server writes of a
//! parsed stanza is well-formed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley::config::Config;
use parley::xmpp::ns;
use parley::xmpp::stream::reader::parse_element;
use parley::xmpp::stream::{Element, Framer, Limits, Node, Packet};

fn limits() -> Limits {
    let x = Config::default().xmpp;
    Limits {
        max_stanza_bytes: x.max_stanza_bytes,
        max_depth: x.max_depth,
        max_attributes: x.max_attributes,
    }
}

/// Depth of an element tree, without recursion.
fn depth(el: &Element) -> usize {
    let mut max = 0;
    let mut stack = vec![(el, 1)];
    while let Some((e, d)) = stack.pop() {
        max = max.max(d);
        for c in &e.children {
            if let Node::Element(c) = c {
                stack.push((c, d + 1));
            }
        }
    }
    max
}

fn check(el: &Element, lim: &Limits) {
    assert!(depth(el) <= lim.max_depth + 1, "depth {}", depth(el));
    // Round trip: what we would write of it, on a TCP stream (the header declares
    // `jabber:client` and the `stream` prefix) and as a WebSocket frame (declares everything),
    // reads back as the same element.
    let big = Limits {
        max_stanza_bytes: usize::MAX,
        max_depth: usize::MAX,
        max_attributes: usize::MAX,
    };
    let stream_scope = [
        (String::new(), ns::CLIENT.to_owned()),
        ("stream".to_owned(), ns::STREAMS.to_owned()),
    ];
    for (xml, scope) in [
        (el.to_stream_xml(), &stream_scope[..]),
        (el.to_standalone_xml(), &[][..]),
    ] {
        match parse_element(xml.as_bytes(), scope, &big) {
            Ok(back) => assert_eq!(&back, el, "round trip of {xml}"),
            Err(e) => panic!("the server would write XML it cannot read ({e:?}): {xml}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let lim = limits();
    // Chunk sizes cycle through the low bits of `mode`: 1 byte at a time up to large reads.
    let sizes = [1usize, 2, 3, 7, 64, 512, 4096, usize::MAX];
    let size = sizes[(mode & 7) as usize];
    if mode & 0x80 != 0 {
        // WebSocket: every chunk is one frame.
        let scope = [(String::new(), ns::CLIENT.to_owned())];
        for frame in rest.chunks(size.min(rest.len().max(1))) {
            if let Ok(el) = parse_element(frame, &scope, &lim) {
                check(&el, &lim);
            }
        }
        return;
    }
    let mut f = Framer::new(lim);
    for chunk in rest.chunks(size.min(rest.len().max(1))) {
        f.push(chunk);
        loop {
            match f.next_packet() {
                Ok(Some(Packet::Stanza(el))) => {
                    check(&el, &lim);
                    // SASL success and STARTTLS restart the stream.
                    if el.name == "auth" && mode & 0x40 != 0 {
                        f.reset();
                    }
                }
                Ok(Some(Packet::StreamStart(_) | Packet::StreamEnd)) => {}
                Ok(None) => break,
                // The session closes the stream here.
                Err(_) => return,
            }
        }
        assert!(f.pending() <= lim.max_stanza_bytes + size.min(rest.len()) + 1);
    }
});
