//! Arbitrary filter parameters into the dialog, message and user query parsers, both through
//! the REST extractor (a query string, as clients send filters) and as raw (field, op, values):
//! never a panic.
//!
//! Input: a query string (`type[in]=2,3&sort_desc=created_at&limit=10`), or `raw` and then one
//! filter per line, `field|op|value|value…` (an empty op is none), with optional lines
//! `sort|asc|field`, `limit|n`, `skip|n` — so seeds are written by hand.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley::chat::messages::message_query;
use parley::chat::query::dialog_query;
use parley::identity::users::users_query;
use parley::model::filter::{RawFilter, SortDir};
use parley::model::{AppId, Application};
use parley::rest::extract::{raw_filters, sort, ParamLimits, Params};

fn app() -> Application {
    Application {
        id: AppId(1),
        name: "fuzz".into(),
        auth_key: "k".into(),
        auth_secret: "s".into(),
        require_signature: false,
        session_creates_users: true,
        dialog_extensions: vec!["friend_id".into(), "category".into()],
    }
}

fn run(
    raw: Vec<RawFilter>,
    sort: Option<(String, SortDir)>,
    limit: Option<i64>,
    skip: Option<i64>,
) {
    let app = app();
    let _ = dialog_query(&app, raw.clone(), sort.clone(), limit, skip);
    let _ = message_query(raw.clone(), sort.clone(), limit, skip);
    let _ = users_query(raw, sort, limit, skip);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(lines) = text.strip_prefix("raw\n") {
        let (mut raw, mut sort, mut limit, mut skip) = (Vec::new(), None, None, None);
        for line in lines.lines() {
            let mut f = line.split('|');
            let field = f.next().unwrap_or_default().to_string();
            let op = f.next().map(str::to_string);
            let rest: Vec<String> = f.map(str::to_string).collect();
            match (field.as_str(), op.as_deref()) {
                ("sort", Some(dir)) => {
                    let dir = if dir == "asc" {
                        SortDir::Asc
                    } else {
                        SortDir::Desc
                    };
                    sort = rest.first().map(|f| (f.clone(), dir));
                }
                ("limit", Some(n)) => limit = n.parse().ok(),
                ("skip", Some(n)) => skip = n.parse().ok(),
                _ => raw.push(RawFilter {
                    field,
                    op: op.filter(|o| !o.is_empty()),
                    values: rest,
                }),
            }
        }
        run(raw, sort, limit, skip);
        return;
    }
    let Ok(p) = Params::from_request(Some(text), None, b"", &ParamLimits::default()) else {
        return;
    };
    let skip = [
        "limit",
        "skip",
        "sort_asc",
        "sort_desc",
        "count",
        "chat_dialog_id",
    ];
    let sort = sort(&p).ok().flatten();
    let (limit, offset) = (
        p.i64(&["limit"]).ok().flatten(),
        p.i64(&["skip"]).ok().flatten(),
    );
    for nested in [&["extensions"][..], &["attachments"][..], &[][..]] {
        if let Ok(raw) = raw_filters(&p, &skip, nested) {
            run(raw, sort.clone(), limit, offset);
        }
    }
});
