//! XEP-0313 archives read from the `messages` table: one page of a user's archive (every
//! message of their private dialogs) or of one dialog, as that user sees it (nothing they
//! deleted for themselves, nothing up to their cleared point: the conditions of
//! [`super::messages::history`]), and a bounded count. Functions run inside the caller's
//! transaction; who may read which archive is the chat service's question.
//!
//! **Order.** An archive is read in `(date_sent, dialog_id, seq)` order: within one dialog that
//! is `GET /chat/Message`'s order `(date_sent, seq)`, and across a user's dialogs the dialog id
//! breaks ties, so every message has one position and a message id is a stable cursor.
//!
//! **Indexed.** A user's page is two ordered range scans merged: the side where the user sent
//! (`messages_archive_sender`) and the side where they received (`messages_archive_recipient`,
//! migration 0008), each cut to the page size before the merge, each row checked against the
//! user's inbox entry by primary key. PostgreSQL plans it as `Limit → Merge Append → (Limit →
//! Nested Loop → Index Scan [Backward] using messages_archive_*)`; on a 1,000,000-message
//! archive a page of 100 reads about 400 buffers in about 1 ms. (Written as one `UNION ALL` of
//! plain filtered selects instead, PostgreSQL cannot keep the branches' index order and sorts
//! the whole archive: over a second.) `tests/xmpp_mam.rs` checks the plan. A dialog's page
//! is one range scan of `messages_dialog_date`.
//!
//! **Counted cheaply.** RSM's `<count/>` is given only for a set of at most the caller's cap;
//! [`count`] first bounds the set from the indexes alone (an index-only read of at most
//! `cap + 1` entries), so a large archive costs no per-message check, and counts exactly only
//! a set the bound finds small.

use tokio_postgres::Row;

use crate::model::message::Message;
use crate::model::{ObjectId, UserId};

use super::filter::{refs, Param};
use super::messages::{from_row, COLUMNS};
use super::{Cached, Tx};

/// Whose archive, as whom.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// Every private dialog of the user (the messages with a recipient), as they see them.
    User(UserId),
    /// One dialog as `user` sees it; `cleared_seq` is their inbox entry's (0 without one).
    Dialog {
        id: &'a ObjectId,
        user: UserId,
        cleared_seq: i64,
    },
}

/// A message's place in an archive's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub date_sent: i64,
    pub dialog_id: String,
    pub seq: i64,
}

impl Position {
    pub fn of(m: &Message) -> Position {
        Position {
            date_sent: m.date_sent,
            dialog_id: m.dialog_id.to_string(),
            seq: m.seq,
        }
    }
}

/// Which messages of the archive: `date_sent` within `start..=end`, among `ids`, strictly after
/// every position of `after` and strictly before every position of `before`.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub ids: Option<Vec<String>>,
    pub after: Vec<Position>,
    pub before: Vec<Position>,
}

/// Where `id` sits in the archive; `None` when it is not a message of that archive.
pub async fn position(
    tx: &Tx<'_>,
    scope: Scope<'_>,
    id: &ObjectId,
) -> Result<Option<Position>, tokio_postgres::Error> {
    let row = match scope {
        Scope::User(user) => {
            tx.q01(
                "SELECT date_sent, dialog_id, seq FROM messages
                 WHERE id = $1 AND recipient_id <> 0 AND (sender_id = $2 OR recipient_id = $2)",
                &[&id.as_str(), &user.0],
            )
            .await?
        }
        Scope::Dialog { id: dialog, .. } => {
            tx.q01(
                "SELECT date_sent, dialog_id, seq FROM messages WHERE id = $1 AND dialog_id = $2",
                &[&id.as_str(), &dialog.as_str()],
            )
            .await?
        }
    };
    Ok(row.map(|r: Row| Position {
        date_sent: r.get(0),
        dialog_id: r.get(1),
        seq: r.get(2),
    }))
}

/// The SQL of one archive read: text and parameters.
struct Query {
    sql: String,
    params: Vec<Param>,
}

/// The conditions of `filter` on `m`, binding into `params`. A position compares on the
/// archive's order: `(date_sent, seq)` inside one dialog (the order of `messages_dialog_date`
/// after its dialog column), `(date_sent, dialog_id, seq)` across a user's dialogs.
fn conditions(scope: Scope<'_>, filter: &Filter, params: &mut Vec<Param>) -> String {
    let mut out = String::new();
    let bind = |p: Param, params: &mut Vec<Param>| {
        params.push(p);
        params.len()
    };
    if let Some(s) = filter.start {
        let n = bind(Box::new(s), params);
        out.push_str(&format!(" AND m.date_sent >= ${n}"));
    }
    if let Some(e) = filter.end {
        let n = bind(Box::new(e), params);
        out.push_str(&format!(" AND m.date_sent <= ${n}"));
    }
    if let Some(ids) = &filter.ids {
        let n = bind(Box::new(ids.clone()), params);
        out.push_str(&format!(" AND m.id = ANY(${n})"));
    }
    let bounds = filter
        .after
        .iter()
        .map(|p| (p, '>'))
        .chain(filter.before.iter().map(|p| (p, '<')));
    for (p, op) in bounds {
        let d = bind(Box::new(p.date_sent), params);
        let s = bind(Box::new(p.seq), params);
        match scope {
            Scope::Dialog { .. } => {
                out.push_str(&format!(" AND (m.date_sent, m.seq) {op} (${d}, ${s})"));
            }
            Scope::User(_) => {
                let i = bind(Box::new(p.dialog_id.clone()), params);
                out.push_str(&format!(
                    " AND (m.date_sent, m.dialog_id, m.seq) {op} (${d}, ${i}, ${s})"
                ));
            }
        }
    }
    out
}

/// The scope's leading parameters and, for each side of the archive (one for a dialog, two
/// for a user), the `FROM … WHERE` that selects its visible messages before `filter`.
fn sides(scope: Scope<'_>) -> (Vec<Param>, Vec<&'static str>) {
    match scope {
        Scope::User(user) => (
            vec![Box::new(user.0)],
            vec![
                "messages m JOIN dialog_members dm ON dm.dialog_id = m.dialog_id AND dm.user_id = $1
                 WHERE m.sender_id = $1 AND m.recipient_id <> 0
                   AND m.seq > dm.cleared_seq AND NOT ($1 = ANY(m.hidden_for))",
                "messages m JOIN dialog_members dm ON dm.dialog_id = m.dialog_id AND dm.user_id = $1
                 WHERE m.recipient_id = $1 AND m.recipient_id <> 0 AND m.sender_id <> $1
                   AND m.seq > dm.cleared_seq AND NOT ($1 = ANY(m.hidden_for))",
            ],
        ),
        Scope::Dialog {
            id,
            user,
            cleared_seq,
        } => (
            vec![
                Box::new(id.as_str().to_owned()),
                Box::new(user.0),
                Box::new(cleared_seq),
            ],
            vec![
                "messages m WHERE m.dialog_id = $1 AND m.seq > $3 AND NOT ($2 = ANY(m.hidden_for))",
            ],
        ),
    }
}

fn order(scope: Scope<'_>, backward: bool, qualified: bool) -> String {
    let dir = if backward { "DESC" } else { "ASC" };
    let m = if qualified { "m." } else { "" };
    match scope {
        Scope::Dialog { .. } => format!("{m}date_sent {dir}, {m}seq {dir}"),
        Scope::User(_) => format!("{m}date_sent {dir}, {m}dialog_id {dir}, {m}seq {dir}"),
    }
}

/// Up to `limit` messages of `filter` nearest its start (or, `backward`, nearest its end),
/// in that reading direction.
fn page_query(scope: Scope<'_>, filter: &Filter, backward: bool, limit: i64) -> Query {
    let (mut params, sides) = sides(scope);
    let conds = conditions(scope, filter, &mut params);
    params.push(Box::new(limit.max(0)));
    let l = params.len();
    let inner = order(scope, backward, true);
    let branches: Vec<String> = sides
        .iter()
        .map(|from| format!("SELECT {COLUMNS} FROM {from}{conds} ORDER BY {inner} LIMIT ${l}"))
        .collect();
    let sql = match branches.as_slice() {
        [one] => one.clone(),
        // Each side cut to the page before the merge: the top of the union is the top of the
        // two tops, and each side reads its index in order.
        many => format!(
            "({}) ORDER BY {} LIMIT ${l}",
            many.join(") UNION ALL ("),
            order(scope, backward, false)
        ),
    };
    Query { sql, params }
}

/// The planner settings of every archive read, for the rest of the caller's transaction:
///
/// - **No Memoize.** The planner puts one over each message's membership look-up, keyed on
///   the message's `(seq, dialog_id)` because of the cleared-point filter, and sizes its hash
///   table for every such key it expects: setting that up costs milliseconds, ten times the
///   page's own reads (a page of 100 from a 1M-message archive: 4–9 ms with it, 0.3–0.6 ms
///   without). The plain look-up is a primary-key probe of an index that stays cached.
/// - **Custom plans.** The reads are prepared once per connection (their shapes are few: see
///   [`run`]), but planned for each request's values, as an unprepared query would be: a
///   generic plan cannot see how narrow a `start`/`end` window or a cursor is.
const READ_SETTINGS: &str =
    "SET LOCAL enable_memoize = off; SET LOCAL plan_cache_mode = force_custom_plan";

/// Runs one archive read with [`READ_SETTINGS`] sent ahead of it in the same write: the two
/// are pipelined, so the settings cost no round trip of their own.
///
/// The read goes through the connection's statement cache even though its text depends on
/// the request: the text varies only with which filters are present (scope, `start`, `end`,
/// `ids`, up to two cursors each way, the direction), never with their values, so a connection
/// caches at most a few hundred archive statements however callers combine them.
async fn run(tx: &Tx<'_>, q: &Query) -> Result<Vec<Row>, tokio_postgres::Error> {
    let (_, rows) = futures_util::future::try_join(
        tx.batch_execute(READ_SETTINGS),
        tx.q(&q.sql, &refs(&q.params)),
    )
    .await?;
    Ok(rows)
}

/// [`run`] for a read that answers exactly one row (an aggregate).
async fn run1(tx: &Tx<'_>, q: &Query) -> Result<Row, tokio_postgres::Error> {
    let (_, row) = futures_util::future::try_join(
        tx.batch_execute(READ_SETTINGS),
        tx.q1(&q.sql, &refs(&q.params)),
    )
    .await?;
    Ok(row)
}

/// One page: up to `limit` messages of `filter`, from its start (or, `backward`, from its
/// end), returned in archive order either way.
pub async fn page(
    tx: &Tx<'_>,
    scope: Scope<'_>,
    filter: &Filter,
    backward: bool,
    limit: i64,
) -> Result<Vec<Message>, tokio_postgres::Error> {
    let rows = run(tx, &page_query(scope, filter, backward, limit)).await?;
    let mut out: Vec<Message> = rows.iter().map(from_row).collect();
    if backward {
        out.reverse();
    }
    Ok(out)
}

/// PostgreSQL's plan for [`page`] (the text of `EXPLAIN`), to check it reads an index.
pub async fn explain_page(
    tx: &Tx<'_>,
    scope: Scope<'_>,
    filter: &Filter,
    backward: bool,
    limit: i64,
) -> Result<String, tokio_postgres::Error> {
    let q = page_query(scope, filter, backward, limit);
    tx.batch_execute(READ_SETTINGS).await?;
    let rows = tx
        .dq(&format!("EXPLAIN {}", q.sql), &refs(&q.params))
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// For each side of the archive, the `FROM … WHERE` of [`sides`] cut down to the columns of
/// its index: a superset of the side's visible messages (it ignores the cleared point of a
/// user's dialogs and `hidden_for`) that PostgreSQL counts with an index-only scan. `$2` (the
/// reader of a dialog) narrows nothing here; it is named only to keep [`sides`]' parameters.
fn bound_sides(scope: Scope<'_>) -> &'static [&'static str] {
    match scope {
        Scope::User(_) => &[
            "messages m WHERE m.sender_id = $1 AND m.recipient_id <> 0",
            "messages m WHERE m.recipient_id = $1 AND m.recipient_id <> 0",
        ],
        Scope::Dialog { .. } => {
            &["messages m WHERE m.dialog_id = $1 AND m.seq > $3 AND $2::BIGINT IS NOT NULL"]
        }
    }
}

/// The SQL of [`countable`]: whether the set can hold more than `cap` messages at all.
fn bound_query(scope: Scope<'_>, filter: &Filter, cap: i64) -> Query {
    let limit = cap.max(0).saturating_add(1);
    // The bound reads at most `cap + 1` index entries in all: the union is cut, not each side,
    // and every branch is ordered like its index so PostgreSQL walks the index (a plain
    // `LIMIT` lets it choose a sequential scan, which on a table of many users reads it all).
    let (mut params, _) = sides(scope);
    let conds = conditions(scope, filter, &mut params);
    params.push(Box::new(limit));
    let l = params.len();
    let inner = order(scope, false, true);
    let branches: Vec<String> = bound_sides(scope)
        .iter()
        .map(|from| format!("SELECT 1 FROM {from}{conds} ORDER BY {inner} LIMIT ${l}"))
        .collect();
    Query {
        sql: format!(
            "SELECT count(*) FROM (SELECT 1 FROM (({})) u LIMIT ${l}) s",
            branches.join(") UNION ALL (")
        ),
        params,
    }
}

/// The SQL of [`count_exactly`]: the set's size (each side cut at `cap + 1`) and how much of
/// it comes before `first`.
fn exact_query(scope: Scope<'_>, filter: &Filter, first: Option<&Position>, cap: i64) -> Query {
    let limit = cap.max(0).saturating_add(1);
    let inner = order(scope, false, true);
    let (mut params, from) = sides(scope);
    let conds = conditions(scope, filter, &mut params);
    params.push(Box::new(limit));
    let l = params.len();
    let before = match (first, scope) {
        (None, _) => "0::BIGINT".to_owned(),
        (Some(p), Scope::Dialog { .. }) => {
            params.push(Box::new(p.date_sent));
            params.push(Box::new(p.seq));
            let n = params.len();
            format!(
                "count(*) FILTER (WHERE (date_sent, seq) < (${}, ${n}))",
                n - 1
            )
        }
        (Some(p), Scope::User(_)) => {
            params.push(Box::new(p.date_sent));
            params.push(Box::new(p.dialog_id.clone()));
            params.push(Box::new(p.seq));
            let n = params.len();
            format!(
                "count(*) FILTER (WHERE (date_sent, dialog_id, seq) < (${}, ${}, ${n}))",
                n - 2,
                n - 1
            )
        }
    };
    let branches: Vec<String> = from
        .iter()
        .map(|from| {
            format!(
                "SELECT m.date_sent, m.dialog_id, m.seq FROM {from}{conds} ORDER BY {inner} LIMIT ${l}"
            )
        })
        .collect();
    Query {
        sql: format!(
            "SELECT count(*), {before} FROM (({})) s",
            branches.join(") UNION ALL (")
        ),
        params,
    }
}

/// How many messages `filter` selects, and how many of them come before `first`; `None` when
/// the set may hold more than `cap`, since counting a whole archive costs a scan of it.
///
/// Two steps so that a large archive costs an index-only read of `cap + 1` entries, not `cap`
/// messages checked against the reader's memberships: the bound (a superset of the set, from
/// the archive indexes alone) settles most large sets; only a set the bound finds within `cap`
/// is counted exactly. A set the bound puts over `cap` whose visible part is within it (many
/// cleared or hidden messages) goes uncounted: XEP-0059 lets a server omit a count it cannot
/// give cheaply.
pub async fn count(
    tx: &Tx<'_>,
    scope: Scope<'_>,
    filter: &Filter,
    first: Option<&Position>,
    cap: i64,
) -> Result<Option<(i64, i64)>, tokio_postgres::Error> {
    if !countable(tx, scope, filter, cap).await? {
        return Ok(None);
    }
    count_exactly(tx, scope, filter, first, cap).await
}

/// The first step of [`count`]: whether the bound lets the set hold at most `cap` messages.
/// It needs nothing from the page, so a reader can run it alongside the page's own read.
pub async fn countable(
    tx: &Tx<'_>,
    scope: Scope<'_>,
    filter: &Filter,
    cap: i64,
) -> Result<bool, tokio_postgres::Error> {
    // `ids` names at most a page of messages: the exact count is as cheap as the bound.
    if filter.ids.is_some() {
        return Ok(true);
    }
    let bound = bound_query(scope, filter, cap);
    Ok(run1(tx, &bound).await?.get::<_, i64>(0) <= cap)
}

/// The second step of [`count`], for a set [`countable`] let through.
pub async fn count_exactly(
    tx: &Tx<'_>,
    scope: Scope<'_>,
    filter: &Filter,
    first: Option<&Position>,
    cap: i64,
) -> Result<Option<(i64, i64)>, tokio_postgres::Error> {
    let row = run1(tx, &exact_query(scope, filter, first, cap)).await?;
    let (total, before): (i64, i64) = (row.get(0), row.get(1));
    Ok((total <= cap).then_some((total, before)))
}

/// PostgreSQL's plans for [`count`] (bound, then exact), to check they read indexes.
pub async fn explain_count(
    tx: &Tx<'_>,
    scope: Scope<'_>,
    filter: &Filter,
    cap: i64,
) -> Result<(String, String), tokio_postgres::Error> {
    let (bound, exact) = (
        bound_query(scope, filter, cap),
        exact_query(scope, filter, None, cap),
    );
    tx.batch_execute(READ_SETTINGS).await?;
    let mut out = Vec::new();
    for q in [bound, exact] {
        let rows = tx
            .dq(&format!("EXPLAIN {}", q.sql), &refs(&q.params))
            .await?;
        out.push(
            rows.iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
    let exact = out.pop().unwrap_or_default();
    let bound = out.pop().unwrap_or_default();
    Ok((bound, exact))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(d: i64) -> Position {
        Position {
            date_sent: d,
            dialog_id: "5c094c0ce588ce6856f87422".into(),
            seq: 3,
        }
    }

    #[test]
    fn a_user_page_merges_two_index_ordered_sides_each_cut_to_the_page() {
        let f = Filter {
            after: vec![pos(10)],
            ..Default::default()
        };
        let q = page_query(Scope::User(UserId(7)), &f, false, 11);
        assert_eq!(q.sql.matches("UNION ALL").count(), 1);
        assert_eq!(q.sql.matches("LIMIT $5").count(), 3, "{}", q.sql);
        assert!(q
            .sql
            .contains("(m.date_sent, m.dialog_id, m.seq) > ($2, $4, $3)"));
        assert!(q
            .sql
            .ends_with("ORDER BY date_sent ASC, dialog_id ASC, seq ASC LIMIT $5"));
        assert_eq!(q.params.len(), 5);
    }

    #[test]
    fn a_count_is_bounded_from_index_columns_before_it_is_counted_exactly() {
        let user = Scope::User(UserId(7));
        let bound = bound_query(user, &Filter::default(), 10);
        let exact = exact_query(user, &Filter::default(), None, 10);
        // The bound: no membership join, no hidden_for; one cut for the whole union.
        assert!(!bound.sql.contains("dialog_members"), "{}", bound.sql);
        assert!(!bound.sql.contains("hidden_for"), "{}", bound.sql);
        assert!(bound.sql.ends_with(") u LIMIT $2) s"), "{}", bound.sql);
        // Every branch of both is ordered like its index, so the index is what is read.
        for q in [&bound, &exact] {
            assert_eq!(
                q.sql
                    .matches("ORDER BY m.date_sent ASC, m.dialog_id ASC, m.seq ASC LIMIT $2")
                    .count(),
                2,
                "{}",
                q.sql
            );
        }
        assert!(exact.sql.contains("dialog_members"));
    }

    #[test]
    fn a_dialog_page_is_one_range_of_the_dialog_index() {
        let id: ObjectId = "5c094c0ce588ce6856f87422".parse().unwrap();
        let scope = Scope::Dialog {
            id: &id,
            user: UserId(7),
            cleared_seq: 0,
        };
        let f = Filter {
            start: Some(5),
            before: vec![pos(10)],
            ..Default::default()
        };
        let q = page_query(scope, &f, true, 11);
        assert!(!q.sql.contains("UNION"));
        assert!(q.sql.contains("m.date_sent >= $4"));
        assert!(q.sql.contains("(m.date_sent, m.seq) < ($5, $6)"));
        assert!(q
            .sql
            .ends_with("ORDER BY m.date_sent DESC, m.seq DESC LIMIT $7"));
    }
}
