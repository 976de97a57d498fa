//! README's XMPP protocol table is the one `dispatch::table()` renders (each extension's
//! `Spec` rows plus the few protocols outside the dispatch table): a registered extension, a
//! changed status or note, shows up in README or this test fails, printing the table to paste.

use parley::xmpp::xep_table::{markdown, END, START};

#[test]
fn readme_xep_table_is_the_one_the_dispatch_table_renders() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let found = readme
        .split_once(START)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(table, _)| table.trim_start_matches('\n'));
    let expected = markdown();
    assert!(
        found == Some(expected.as_str()),
        "README's XEP table (between {START} and {END}) differs from the dispatch table's; \
         paste this between the markers:\n----- 8< -----\n{expected}----- 8< -----"
    );
}
