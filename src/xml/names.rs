//! XML 1.0 (fifth edition) names and characters: the one place that says which strings may be
//! written as an element or attribute name and which characters may appear in XML text at all.
//! Used by the chat layer (user keys that become element names), by the element writer (its
//! last guard) and by the XMPP reader. Pure functions, no I/O.

/// `NameStartChar` of XML 1.0 (including ':').
pub fn is_name_start_char(c: char) -> bool {
    matches!(c,
        ':' | 'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

/// `NameChar` of XML 1.0.
pub fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c,
            '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// The XML 1.0 `Name` production: a name start character, then name characters.
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_name_start_char) && chars.all(is_name_char)
}

/// A `Name` without ':' (Namespaces in XML's `NCName`): what may follow a prefix, or stand
/// alone where no prefix is allowed.
pub fn is_ncname(s: &str) -> bool {
    !s.contains(':') && is_name(s)
}

/// A user-chosen key that the ConnectyCube `<extraParams>` encoding writes as an element (or
/// attribute) name: an `NCName` (no namespace prefix) that does not start with "xml" in any
/// case (XML reserves those names).
pub fn is_param_name(s: &str) -> bool {
    is_ncname(s)
        && !s
            .get(..3)
            .is_some_and(|head| head.eq_ignore_ascii_case("xml"))
}

/// The XML 1.0 `Char` production: tab, LF, CR and everything from U+0020 up, except the
/// surrogates (which a Rust `char` cannot hold) and U+FFFE / U+FFFF.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The first character of `s` that XML 1.0 does not allow anywhere in a document.
pub fn forbidden_char(s: &str) -> Option<char> {
    s.chars().find(|c| !is_xml_char(*c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_xml_name_production() {
        for ok in [
            "a",
            "_x",
            "A-b.c_9",
            "é",
            "日本",
            "x·y",
            "ns:local",
            ":",
            "\u{10000}a",
        ] {
            assert!(is_name(ok), "{ok:?} is a Name");
        }
        for bad in [
            "",
            "9a",
            "-a",
            ".a",
            "a b",
            "a/",
            "a>",
            "a<",
            "a=",
            "a\"",
            "a'",
            "a&b",
            "a\u{0}",
            "a\t",
            "·a",
            "\u{300}a",
            "a\u{FFFE}",
            "x/><message",
        ] {
            assert!(!is_name(bad), "{bad:?} is not a Name");
        }
    }

    #[test]
    fn ncnames_have_no_colon() {
        assert!(is_ncname("local"));
        assert!(!is_ncname("ns:local"));
        assert!(!is_ncname(":"));
    }

    #[test]
    fn parameter_names_are_ncnames_not_starting_with_xml() {
        assert!(is_param_name("country"));
        assert!(is_param_name("xm"));
        assert!(is_param_name("my_xml"));
        for bad in ["xml", "XMLfoo", "xMl_a", "xmlns", "a:b", "1a", ""] {
            assert!(!is_param_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn xml_chars_exclude_controls_and_non_characters() {
        for ok in [
            '\t', '\n', '\r', ' ', 'a', '\u{D7FF}', '\u{E000}', '\u{FFFD}', '😀',
        ] {
            assert!(is_xml_char(ok), "{ok:?}");
        }
        for bad in [
            '\u{0}', '\u{1}', '\u{8}', '\u{B}', '\u{C}', '\u{1F}', '\u{FFFE}', '\u{FFFF}',
        ] {
            assert!(!is_xml_char(bad), "{bad:?}");
        }
        assert_eq!(forbidden_char("ok\u{0}no"), Some('\u{0}'));
        assert_eq!(forbidden_char("fine\ttext\r\n"), None);
    }
}
