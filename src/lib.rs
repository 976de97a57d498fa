//! Parley: a self-hostable chat server speaking the ConnectyCube Chat API (REST + XMPP).
//!
//! Module map:
//! - `config`   — typed configuration: every option, its default, its environment variable.
//! - `model`    — typed values shared by all layers (ids, time, filter operators, accounts).
//! - `db`       — PostgreSQL: pool, embedded server, migrations, repositories (all SQL).
//! - `identity` — applications, users, sessions: who is calling and every account rule.
//! - `chat`     — dialogs, messages, roles, unread counts, search, domain events.
//! - `hub`      — live state: the session registry (user → connections), room occupancy and
//!   membership cache, and fan-out to them.
//! - `privacy`  — XEP-0016 lists and the block list: rules, per-user cache, the one decision.
//! - `pubsub`   — personal eventing (XEP-0163 PEP) storage rules: nodes, items, access models.
//! - `push`     — the push API's rules, provider credentials, the outbox workers (FCM, APNs,
//!   Web Push) and webhooks.
//! - `limits`   — rate limiters and connection caps (bounded bookkeeping, no I/O).
//! - `rest`     — the HTTP adapter: route table, parameter extraction, one error shape.
//! - `secret_file` — files holding secrets, created with mode 0600.
//! - `server`   — wiring: listeners, background tasks, signals, graceful shutdown.
//! - `storage`  — where blob bytes live: local disk or S3-compatible, signed URLs.
//! - `files`    — the storage API's rules: blobs, limits, who may read a file.
//! - `xml`      — the owned XML element and its writer, XML names and characters (no protocol).
//! - `xmpp`     — the XMPP adapter: streams, negotiation, routing, one file per XEP.

pub mod chat;
pub mod config;
pub mod db;
pub mod files;
pub mod hub;
pub mod identity;
pub mod limits;
pub mod model;
pub mod ops;
pub mod privacy;
pub mod pubsub;
pub mod push;
pub mod rest;
pub mod secret_file;
pub mod server;
pub mod storage;
pub mod xml;
pub mod xmpp;

#[cfg(test)]
mod layering {
    //! The layering, checked on the source text so it cannot regress silently: each module
    //! below may name only the crate modules listed for it (`crate::m`, `super::…::m`, grouped
    //! `crate::{m, …}`). Above all, neither the domain (`chat`, `identity`) nor the live state
    //! (`hub`) knows the adapters (`rest`, `xmpp`). Comment lines are not code and not read.

    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    /// Module → the crate modules it may import.
    const MAY_IMPORT: &[(&str, &[&str])] = &[
        ("xml", &[]),
        ("model", &["xml"]),
        ("db", &["config", "model"]),
        // `ops` below: metric names only (`ops::telemetry`, which imports nothing of the crate).
        (
            "identity",
            &["config", "db", "limits", "model", "ops", "secret_file"],
        ),
        (
            "chat",
            &["config", "db", "identity", "limits", "model", "ops", "xml"],
        ),
        ("hub", &["identity", "model", "ops", "xml"]),
        // Where blob bytes live: the disk store keeps its signing key as a secret file.
        ("storage", &["config", "model", "secret_file"]),
        // The storage API's rules: blob records (`db`), bytes (`storage`), and the chat
        // service's answer to "may this user read a message carrying the file".
        ("files", &["chat", "config", "db", "model", "storage"]),
        // Privacy rules: neutral, so both adapters can ask them; no adapter here either.
        ("privacy", &["db", "hub", "model"]),
        // PEP storage rules: neutral like `privacy` (the roster is the `presence` access model),
        // bounded by config; no adapter, no live state.
        ("pubsub", &["config", "db", "model"]),
        // Observing and driving the process: probes, metrics, live numbers (the hub's and the
        // connection caps' counts, `limits`) and the operator's commands, which call the
        // account rules (`identity`) with typed ids (`model`); no chat rules, no SQL of its own.
        (
            "ops",
            &["config", "db", "hub", "identity", "limits", "model", "push"],
        ),
        // An adapter: the domain's services, never the other adapter or the live state.
        // `ops`: only the metric names of `ops::telemetry`, so each name is defined once.
        (
            "rest",
            &[
                "chat", "config", "db", "identity", "limits", "model", "ops", "xml", "push",
                // The storage API (`files`) and the disk store's signed byte paths (`storage`).
                "files", "storage",
            ],
        ),
        // Pushes: the API's rules share the chat error and callers (`chat`, `identity`); the
        // workers ask the live state (`hub`) and privacy whether a recipient gets an alert.
        (
            "push",
            &[
                "chat", "config", "db", "hub", "identity", "model", "ops", "privacy",
            ],
        ),
    ];

    /// Every `.rs` file under `dir`, with its module path (`hub/rooms.rs` → `[hub, rooms]`).
    fn sources(dir: &Path, module: &str) -> Vec<(PathBuf, Vec<String>)> {
        let mut out = Vec::new();
        let mut todo = vec![(dir.to_path_buf(), vec![module.to_owned()])];
        while let Some((d, path)) = todo.pop() {
            for entry in std::fs::read_dir(&d).expect("readable source directory") {
                let p = entry.expect("directory entry").path();
                let stem = p
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_owned();
                let mut sub = path.clone();
                if p.is_dir() {
                    sub.push(stem);
                    todo.push((p, sub));
                } else if p.extension().is_some_and(|e| e == "rs") {
                    if stem != "mod" {
                        sub.push(stem);
                    }
                    out.push((p, sub));
                }
            }
        }
        out
    }

    fn ident(s: &str) -> &str {
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        s.get(..end).unwrap_or_default()
    }

    /// The crate's top-level modules: `src/*.rs` and `src/*/`.
    fn crate_modules(src: &Path) -> BTreeSet<String> {
        std::fs::read_dir(src)
            .expect("readable src/")
            .filter_map(|e| {
                let p = e.ok()?.path();
                let stem = p.file_stem()?.to_str()?.to_owned();
                (p.is_dir() || p.extension().is_some_and(|e| e == "rs")).then_some(stem)
            })
            .filter(|m| m != "lib" && m != "main")
            .collect()
    }

    /// Which of the crate's top-level `modules` the code of one file (of module `path`) names.
    /// `super` is resolved from the file's place; a path that stays inside the file's own
    /// top-level module, or names no crate module (`super::*` in a test module), is not counted.
    fn named_modules(code: &str, path: &[String], modules: &BTreeSet<String>) -> BTreeSet<String> {
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut found = BTreeSet::new();
        let mut name = |s: &str| {
            let m = ident(s);
            if modules.contains(m) {
                found.insert(m.to_owned());
            }
        };
        let mut rest = code.as_str();
        while let Some(at) = rest.find(['c', 's']) {
            let before = rest.get(..at).and_then(|b| b.chars().last());
            let tail = rest.get(at..).unwrap_or_default();
            rest = tail.get(1..).unwrap_or_default();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let after = if let Some(a) = tail.strip_prefix("crate::") {
                a
            } else if tail.starts_with("super::") {
                let (mut a, mut depth) = (tail, path.len());
                while let Some(next) = a.strip_prefix("super::") {
                    depth = depth.saturating_sub(1);
                    a = next;
                }
                if depth > 0 {
                    continue;
                }
                a
            } else {
                continue;
            };
            let Some(group) = after.strip_prefix('{') else {
                name(after);
                continue;
            };
            let (mut level, mut start) = (0, true);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => level += 1,
                    '}' if level == 0 => break,
                    '}' => level -= 1,
                    ',' if level == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start => {
                        name(group.get(i..).unwrap_or_default());
                        start = false;
                    }
                    _ => {}
                }
            }
        }
        found
    }

    #[test]
    fn each_layer_imports_only_the_layers_below_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let modules = crate_modules(&src);
        let mut wrong = Vec::new();
        for (module, allowed) in MAY_IMPORT {
            let files = sources(&src.join(module), module);
            assert!(!files.is_empty(), "no sources for {module}");
            for (file, path) in files {
                let code = std::fs::read_to_string(&file).expect("readable source");
                for m in named_modules(&code, &path, &modules) {
                    if !allowed.contains(&m.as_str()) && m != *module {
                        wrong.push(format!("{} names crate::{m}", file.display()));
                    }
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "layering broken (see MAY_IMPORT):\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn the_import_scan_sees_every_spelling_of_a_path() {
        let hub = ["hub".to_owned(), "rooms".to_owned()];
        let modules = ["model", "rest", "xml", "xmpp", "hub"]
            .map(str::to_owned)
            .into();
        let names = |code: &str| {
            named_modules(code, &hub, &modules)
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(names("use crate::xmpp::stream::Element;"), ["xmpp"]);
        assert_eq!(names("use crate::{model::AppId, rest};"), ["model", "rest"]);
        assert_eq!(
            names("use crate::{\n    xmpp::{a, b},\n    xml,\n};"),
            ["xml", "xmpp"]
        );
        assert_eq!(names("use super::super::xmpp::ns;"), ["xmpp"]);
        assert_eq!(names("use super::ConnId;"), Vec::<String>::new());
        assert_eq!(names("use super::super::*;"), Vec::<String>::new());
        assert_eq!(names("let x = crate::rest::Ctx::new();"), ["rest"]);
        assert_eq!(names("// crate::xmpp in a comment"), Vec::<String>::new());
        assert_eq!(names("fn supercrate::x() {}"), Vec::<String>::new());
    }
}
