//! The README's protocol table, rendered from the dispatch table: every registered extension's
//! [`Spec`] rows, plus the few protocols no extension implements (the stream, SASL, transports,
//! stream management live in `session/` and the listeners). `tests/readme_xep_table.rs` fails
//! when README's table (between the marker comments) differs from [`markdown`], and prints it.
//!
//! Rows are ordered RFCs first, then XEPs by number, then ConnectyCube's own protocols in table
//! order, so a new extension's row lands where a reader looks for it.

use super::dispatch::{table, Spec};

/// README's markers around the generated table.
pub const START: &str =
    "<!-- xep-table:start (generated from dispatch::table(), see src/xmpp/xep_table.rs) -->";
pub const END: &str = "<!-- xep-table:end -->";

/// Protocols that are not dispatch entries: the stream, its security and its transports.
pub const OUTSIDE_DISPATCH: &[Spec] = &[
    Spec {
        name: "RFC 6120 core (TLS, SASL PLAIN, bind, stream errors)",
        status: "complete",
        notes: "an iq without `to` is the account's (answered from the bare JID; disco#info as `account/registered`); ill-formed XML ends the stream with `not-well-formed` at once, before or after authentication; no SASL2, no compression",
        ejabberd: "yes",
        prosody: "yes",
    },
    Spec {
        name: "RFC 6120 SASL SCRAM (RFC 5802/7677/9266)",
        status: "complete",
        notes: "SCRAM-SHA-256(-PLUS) by default, SCRAM-SHA-1(-PLUS) with `xmpp.scram = \"all\"`; `tls-exporter` on TLS 1.3 only; token logins on PLAIN",
        ejabberd: "yes",
        prosody: "yes (SCRAM-SHA-1)",
    },
    Spec {
        name: "XEP-0440 SASL Channel-Binding Type Capability",
        status: "complete",
        notes: "`tls-exporter` advertised when -PLUS is offered",
        ejabberd: "no (23.01)",
        prosody: "no",
    },
    Spec {
        name: "RFC 7395 XMPP over WebSocket",
        status: "complete",
        notes: "on `ws.addr` (`wss://` with `ws.tls = true`), `Sec-WebSocket-Protocol: xmpp`",
        ejabberd: "yes",
        prosody: "mod_websocket",
    },
    Spec {
        name: "XEP-0198 Stream Management",
        status: "complete",
        notes: "acks both ways, resumption within `xmpp.sm_resume_secs`; un-acked messages of a stream not resumed go to offline storage",
        ejabberd: "mod_stream_mgmt",
        prosody: "mod_smacks",
    },
    Spec {
        name: "XEP-0368 SRV records for XMPP over TLS",
        status: "complete",
        notes: "direct TLS on `xmpp.tls_addr` (port 5223 by default); the `_xmpps-client._tcp` SRV record is the operator's DNS",
        ejabberd: "yes",
        prosody: "yes",
    },
];

/// Sorting key of a row by its first cell: RFCs, then XEPs, by number; anything else after.
fn order(name: &str) -> (u8, u32) {
    let number = |rest: &str| {
        rest.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or(u32::MAX)
    };
    if let Some(rest) = name.strip_prefix("RFC ") {
        (0, number(rest))
    } else if let Some(rest) = name.strip_prefix("XEP-") {
        (1, number(rest))
    } else {
        (2, 0)
    }
}

/// Every row: the static ones and those the registered extensions declare, sorted (stably).
pub fn rows() -> Vec<&'static Spec> {
    let dispatch = table();
    let mut rows: Vec<&'static Spec> = OUTSIDE_DISPATCH.iter().collect();
    rows.extend(dispatch.specs().iter().copied());
    rows.sort_by_key(|s| order(s.name));
    rows
}

/// The table as README shows it, markers excluded.
pub fn markdown() -> String {
    let mut out = String::from(
        "| XEP / RFC | status | notes | ejabberd 23.01 | Prosody 0.12 |\n|---|---|---|---|---|\n",
    );
    for s in rows() {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            s.name, s.status, s.notes, s.ejabberd, s.prosody
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfcs_come_first_then_xeps_by_number_then_the_rest() {
        assert!(order("RFC 7395 x") < order("XEP-0012 x"));
        assert!(order("XEP-0012 x") < order("XEP-0199 x"));
        assert!(order("XEP-0199 x") < order("ConnectyCube x"));
        assert!(order("RFC 3921 x") < order("RFC 6120 x"));
    }

    #[test]
    fn every_registered_extension_declares_its_protocol_rows() {
        assert_eq!(
            table().undocumented(),
            0,
            "an extension in dispatch::table() declares no Spec (Extension::documented)"
        );
    }

    #[test]
    fn no_cell_breaks_the_markdown_table() {
        for s in rows() {
            for cell in [s.name, s.status, s.notes, s.ejabberd, s.prosody] {
                assert!(!cell.is_empty(), "{}: an empty cell", s.name);
                assert!(!cell.contains('\n'), "{}: a newline in {cell:?}", s.name);
                assert!(
                    !cell.contains(" | "),
                    "{}: a cell separator in {cell:?}",
                    s.name
                );
            }
        }
    }

    #[test]
    fn every_row_is_listed_once() {
        let rows = rows();
        for (i, s) in rows.iter().enumerate() {
            assert!(
                rows.iter().skip(i + 1).all(|o| o.name != s.name),
                "{} twice",
                s.name
            );
        }
    }
}
