//! The single route table of the REST API. Paths match with or without `.json`, and literal
//! segments without regard to case (`/chat/dialog` = `/chat/Dialog`).

use std::future::Future;
use std::pin::Pin;

use hyper::Method;

use super::error::ApiError;
use super::{blobs, calls, dialogs, health, messages, openapi, push, session, users, Ctx, Reply};

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Reply, ApiError>> + Send>>;
pub type Handler = fn(Ctx) -> HandlerFuture;

pub struct Route {
    pub method: Method,
    /// Segments separated by `/`; `{}` captures one segment.
    pub pattern: &'static str,
    pub handler: Handler,
}

macro_rules! routes {
    ($($method:ident $pattern:literal => $handler:path),* $(,)?) => {
        vec![$(Route { method: Method::$method, pattern: $pattern, handler: |ctx| Box::pin($handler(ctx)) }),*]
    };
}

/// Every route. Specific paths come before the `{}` captures they would otherwise match.
pub fn table() -> Vec<Route> {
    routes![
        GET "healthz" => health::alive,
        GET "readyz" => health::ready,
        // Served as `/openapi.json` (the `.json` suffix is optional on every path).
        GET "openapi" => openapi::document,
        POST "session" => session::create,
        GET "session" => session::get,
        DELETE "session" => session::destroy,
        POST "login" => session::login,
        DELETE "login" => session::logout,
        POST "users" => users::signup,
        GET "users/v2" => users::list_v2,
        GET "users/by_login" => users::by_login,
        GET "users/by_email" => users::by_email,
        GET "users/by_full_name" => users::by_full_name,
        GET "users/by_tags" => users::by_tags,
        GET "users/by_facebook_id" => users::by_facebook_id,
        GET "users/by_twitter_id" => users::by_twitter_id,
        GET "users/external/{}" => users::by_external,
        GET "users/{}" => users::get,
        PUT "users/{}" => users::update,
        DELETE "users/{}" => users::delete,
        GET "chat/Dialog" => dialogs::list,
        POST "chat/Dialog" => dialogs::create,
        DELETE "chat/Dialog/clearHistory/{}" => dialogs::clear_history,
        POST "chat/Dialog/{}/subscribe" => dialogs::subscribe,
        DELETE "chat/Dialog/{}/subscribe" => dialogs::unsubscribe,
        PUT "chat/Dialog/{}/admins" => dialogs::admins,
        GET "chat/Dialog/{}/notifications" => dialogs::get_notifications,
        PUT "chat/Dialog/{}/notifications" => dialogs::set_notifications,
        GET "chat/Dialog/{}/occupants" => dialogs::occupants,
        PUT "chat/Dialog/{}" => dialogs::update,
        DELETE "chat/Dialog/{}" => dialogs::delete,
        GET "chat/Message" => messages::list,
        GET "chat/Message/unread" => messages::unread,
        POST "chat/Message" => messages::create,
        POST "chat/Message/system" => messages::system,
        PUT "chat/Message" => messages::update_all,
        PUT "chat/Message/{}/reactions" => messages::react,
        GET "chat/Message/{}/reactions" => messages::reactions,
        PUT "chat/Message/{}" => messages::update,
        DELETE "chat/Message/{}" => messages::delete,
        GET "chat/search" => messages::search,
        GET "calls/ice_servers" => calls::ice_servers,
        POST "calls/reject" => calls::reject,
        POST "blobs" => blobs::create,
        GET "blobs" => blobs::list,
        PUT "blobs/{}/complete" => blobs::complete,
        // The hosted documentation's curl example completes with POST.
        POST "blobs/{}/complete" => blobs::complete,
        GET "blobs/{}/download" => blobs::download,
        // XEP-0363 GET URLs: the file's name after the uid (ignored) for clients that guess
        // the type from the URL's extension.
        GET "blobs/{}/download/{}" => blobs::download,
        GET "blobs/{}/object" => blobs::object,
        GET "blobs/{}" => blobs::get,
        DELETE "blobs/{}" => blobs::delete,
        PUT "blobs/{}" => blobs::update,
        POST "subscriptions" => push::subscribe,
        GET "subscriptions" => push::list,
        DELETE "subscriptions/{}" => push::unsubscribe,
        POST "events" => push::create_event,
        GET "events/{}" => push::get_event,
        DELETE "events/{}" => push::delete_event,
    ]
}

/// What a request path resolved to.
pub enum Match<'a> {
    Found(&'a Route, Vec<String>),
    /// The path exists, but not for this method: the pattern it matched.
    WrongMethod(&'static str),
    NotFound,
}

/// Splits a decoded path into segments, dropping empty ones and a trailing `.json`.
pub fn segments(path: &str) -> Vec<String> {
    let mut segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(super::extract::decode_segment)
        .collect();
    if let Some(last) = segs.last_mut() {
        // `get`, not a slice: the cut may fall inside a multi-byte character (`/ééé`).
        let cut = last.len().saturating_sub(5);
        if cut > 0
            && last
                .get(cut..)
                .is_some_and(|tail| tail.eq_ignore_ascii_case(".json"))
        {
            last.truncate(cut);
        }
    }
    segs
}

pub fn find<'a>(table: &'a [Route], method: &Method, segs: &[String]) -> Match<'a> {
    let mut path_known = None;
    for route in table {
        if let Some(args) = captures(route.pattern, segs) {
            if route.method == method {
                return Match::Found(route, args);
            }
            path_known = path_known.or(Some(route.pattern));
        }
    }
    match path_known {
        Some(pattern) => Match::WrongMethod(pattern),
        None => Match::NotFound,
    }
}

fn captures(pattern: &str, segs: &[String]) -> Option<Vec<String>> {
    let parts: Vec<&str> = pattern.split('/').collect();
    if parts.len() != segs.len() {
        return None;
    }
    let mut args = Vec::new();
    for (p, s) in parts.iter().zip(segs) {
        if *p == "{}" {
            args.push(s.clone());
        } else if !p.eq_ignore_ascii_case(s) {
            return None;
        }
    }
    Some(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<String> {
        segments(p)
    }

    #[test]
    fn json_suffix_and_case_do_not_matter() {
        let t = table();
        for p in ["/session", "/session.json", "/Session.json/"] {
            assert!(
                matches!(find(&t, &Method::POST, &segs(p)), Match::Found(r, _) if r.pattern == "session"),
                "{p}"
            );
        }
    }

    #[test]
    fn specific_paths_win_over_captures() {
        let t = table();
        assert!(
            matches!(find(&t, &Method::GET, &segs("/users/by_login.json")), Match::Found(r, _) if r.pattern == "users/by_login")
        );
        assert!(
            matches!(find(&t, &Method::GET, &segs("/users/1002.json")), Match::Found(_, a) if a == vec!["1002"])
        );
    }

    #[test]
    fn a_multibyte_last_segment_is_not_cut_inside_a_character() {
        // Regression: `/%C3%A9%C3%A9%C3%A9` (six bytes, "ééé") panicked slicing at byte 1.
        assert_eq!(segs("/%C3%A9%C3%A9%C3%A9"), vec!["ééé"]);
        assert_eq!(segs("/ab%C3%A9%C3%A9"), vec!["abéé"]);
        assert_eq!(segs("/é.json"), vec!["é"]);
        assert_eq!(segs("/%FF%FF%FF%FF%FF%FF"), vec!["\u{FFFD}".repeat(6)]);
        assert_eq!(segs("/.json"), vec![".json"]);
    }

    #[test]
    fn known_path_with_other_method_is_told_apart() {
        let t = table();
        assert!(matches!(
            find(&t, &Method::PATCH, &segs("/session")),
            Match::WrongMethod("session")
        ));
        assert!(matches!(
            find(&t, &Method::GET, &segs("/nothing")),
            Match::NotFound
        ));
    }
}
