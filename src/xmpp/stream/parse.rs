//! One complete element (a stanza or a WebSocket frame), already cut out of the stream by the
//! framer in `reader.rs`, parsed into an [`Element`] with its namespaces resolved, under the same
//! limits (stanza bytes, element depth, attributes per element). Names must be XML names and
//! prefixes declared; only the five predefined entities and character references are expanded.
//! Iterative: an explicit stack, never recursion on the input's depth.

use quick_xml::events::{BytesStart, Event};

use super::element::{Element, Node};
use super::reader::{Fault, Limits};
use crate::model::xml;

/// Parses one complete element (a stanza or a WebSocket frame) with the namespace declarations
/// `scope` already in force (prefix, namespace; "" is the default namespace).
pub fn parse_element(
    xml: &[u8],
    scope: &[(String, String)],
    limits: &Limits,
) -> Result<Element, Fault> {
    if xml.len() > limits.max_stanza_bytes {
        return Err(Fault::PolicyViolation);
    }
    let mut scope = scope.to_vec();
    parse_with_scope(xml, &mut scope, limits)
}

/// Parses one element; on return `scope` holds the root's declarations (used for the header).
pub(super) fn parse_with_scope(
    xml: &[u8],
    scope: &mut Vec<(String, String)>,
    limits: &Limits,
) -> Result<Element, Fault> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut stack: Vec<(Element, usize)> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let ev = reader.read_event().map_err(|_| Fault::NotWellFormed)?;
        match ev {
            Event::Start(s) | Event::Empty(s) if root.is_some() => {
                let _ = s;
                return Err(Fault::NotWellFormed);
            }
            Event::Start(s) => {
                if stack.len() >= limits.max_depth {
                    return Err(Fault::PolicyViolation);
                }
                let mark = scope.len();
                let el = open(&s, scope, limits)?;
                stack.push((el, mark));
            }
            Event::Empty(s) => {
                let mark = scope.len();
                let el = open(&s, scope, limits)?;
                if stack.is_empty() {
                    root = Some(el);
                } else {
                    scope.truncate(mark);
                    attach(&mut stack, el);
                }
            }
            Event::End(_) => {
                let (el, mark) = stack.pop().ok_or(Fault::NotWellFormed)?;
                if stack.is_empty() {
                    root = Some(el);
                } else {
                    scope.truncate(mark);
                    attach(&mut stack, el);
                }
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|_| Fault::NotWellFormed)?;
                no_forbidden_char(&text)?;
                match stack.last_mut() {
                    Some((el, _)) => push_text(el, &text),
                    None if text.trim().is_empty() => {}
                    None => return Err(Fault::NotWellFormed),
                }
            }
            Event::CData(c) => {
                let text = std::str::from_utf8(&c).map_err(|_| Fault::NotWellFormed)?;
                no_forbidden_char(text)?;
                match stack.last_mut() {
                    Some((el, _)) => push_text(el, text),
                    None => return Err(Fault::NotWellFormed),
                }
            }
            Event::Decl(_) if root.is_none() && stack.is_empty() => {}
            Event::DocType(_) => return Err(Fault::PolicyViolation),
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) => return Err(Fault::RestrictedXml),
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(Fault::NotWellFormed);
    }
    root.ok_or(Fault::NotWellFormed)
}

fn push_text(el: &mut Element, text: &str) {
    if let Some(Node::Text(prev)) = el.children.last_mut() {
        prev.push_str(text);
    } else {
        el.children.push(Node::Text(text.to_owned()));
    }
}

fn attach(stack: &mut [(Element, usize)], el: Element) {
    if let Some((parent, _)) = stack.last_mut() {
        parent.children.push(Node::Element(el));
    }
}

/// A character XML 1.0 does not allow (NUL, other C0 controls but tab/LF/CR, U+FFFE, U+FFFF),
/// raw or as a character reference, makes the document not well-formed: it is refused here
/// rather than stored and later written as U+FFFD (found by the `xml_reader` fuzz target: a NUL
/// in a namespace did not read back the same).
fn no_forbidden_char(s: &str) -> Result<(), Fault> {
    match xml::forbidden_char(s) {
        Some(_) => Err(Fault::NotWellFormed),
        None => Ok(()),
    }
}

fn utf8(b: &[u8]) -> Result<&str, Fault> {
    std::str::from_utf8(b).map_err(|_| Fault::NotWellFormed)
}

/// Builds an element from its start tag, pushing its namespace declarations onto `scope`.
/// Names must be namespace-well-formed (`NCName` or `NCName:NCName`, prefixes bound): what the
/// server writes of an element it read must be well-formed for whoever receives it.
fn open(
    s: &BytesStart<'_>,
    scope: &mut Vec<(String, String)>,
    limits: &Limits,
) -> Result<Element, Fault> {
    let mark = scope.len();
    let mut attrs = Vec::new();
    // Attributes in a namespace other than `xml:`: kept out until this tag's declarations are in.
    let mut prefixed = Vec::new();
    for (n, a) in s.attributes().with_checks(true).enumerate() {
        if n >= limits.max_attributes {
            return Err(Fault::PolicyViolation);
        }
        let a = a.map_err(|_| Fault::NotWellFormed)?;
        let key = utf8(a.key.as_ref())?.to_owned();
        if !xml::is_name(&key) {
            return Err(Fault::NotWellFormed);
        }
        let value = a
            .unescape_value()
            .map_err(|_| Fault::NotWellFormed)?
            .into_owned();
        no_forbidden_char(&value)?;
        if key == "xmlns" {
            scope.push((String::new(), value));
        } else if let Some(p) = key.strip_prefix("xmlns:") {
            // A prefix cannot be undeclared (Namespaces in XML 1.0), nor `xmlns` bound.
            if !is_ncname(p) || p == "xmlns" || value.is_empty() {
                return Err(Fault::NotWellFormed);
            }
            scope.push((p.to_owned(), value));
        } else {
            match key.split_once(':') {
                None if is_ncname(&key) => attrs.push((key, value)),
                Some((p, l)) if is_ncname(p) && is_ncname(l) => {
                    if p == "xml" {
                        attrs.push((key, value));
                    } else {
                        prefixed.push(p.to_owned());
                    }
                }
                _ => return Err(Fault::NotWellFormed),
            }
        }
    }
    // An attribute with an unbound prefix is not namespace-well-formed. One with a bound prefix
    // is dropped: the element model keeps no attribute namespaces, and writing it back without
    // its declaration would send the recipient XML it cannot read.
    if prefixed
        .iter()
        .any(|p| !scope.iter().any(|(sp, _)| sp == p))
    {
        return Err(Fault::NotWellFormed);
    }
    let name = s.name();
    let qname = utf8(name.as_ref())?;
    let (prefix, local) = match qname.split_once(':') {
        Some((p, l)) if xml::is_ncname(p) => (p, l),
        Some(_) => return Err(Fault::NotWellFormed),
        None => ("", qname),
    };
    if !xml::is_ncname(local) {
        return Err(Fault::NotWellFormed);
    }
    let ns = scope
        .iter()
        .rev()
        .find(|(p, _)| p == prefix)
        .map(|(_, n)| n.clone());
    let ns = match ns {
        Some(n) => n,
        None if prefix.is_empty() => String::new(),
        None => {
            scope.truncate(mark);
            return Err(Fault::NotWellFormed);
        }
    };
    Ok(Element {
        name: local.to_owned(),
        ns,
        attrs,
        children: Vec::new(),
    })
}

/// An XML `NCName`: a `Name` (XML 1.0 fifth edition, §2.3) without a colon.
fn is_ncname(s: &str) -> bool {
    fn start(c: char) -> bool {
        matches!(c,
            'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}'
            | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}'
            | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}'
            | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
            | '\u{10000}'..='\u{EFFFF}')
    }
    let mut chars = s.chars();
    chars.next().is_some_and(start)
        && chars.all(|c| {
            start(c)
                || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
        })
}
