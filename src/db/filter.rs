//! SQL for typed filters, shared by the repositories: binding a value, escaping LIKE patterns,
//! and the condition of a scalar operator. Column names come from each repository's own
//! field → column match, never from request text.

use time::OffsetDateTime;
use tokio_postgres::types::ToSql;

use crate::model::dialog::FilterValue;
use crate::model::filter::FilterOp;

pub(super) type Param = Box<dyn ToSql + Sync + Send>;

pub(super) fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// `s` with LIKE's wildcards escaped.
pub(super) fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Binds the value (the whole list for list operators, else its first item); returns `$n`.
pub(super) fn bind(params: &mut Vec<Param>, v: &FilterValue, list: bool) -> usize {
    let p: Param = match (v, list) {
        (FilterValue::Ints(x), true) => Box::new(x.clone()),
        (FilterValue::Texts(x), true) => Box::new(x.clone()),
        (FilterValue::Dates(x), true) => Box::new(x.clone()),
        (FilterValue::Ints(x), false) => Box::new(x.first().copied().unwrap_or_default()),
        (FilterValue::Texts(x), false) => Box::new(x.first().cloned().unwrap_or_default()),
        (FilterValue::Dates(x), false) => {
            Box::new(x.first().copied().unwrap_or(OffsetDateTime::UNIX_EPOCH))
        }
    };
    params.push(p);
    params.len()
}

/// The condition of a scalar field filter; `ctn` uses `like` (`LIKE` or `ILIKE`).
pub(super) fn scalar(
    col: &str,
    op: FilterOp,
    v: &FilterValue,
    like: &str,
    params: &mut Vec<Param>,
) -> String {
    if op == FilterOp::Ctn {
        let needle = match v {
            FilterValue::Texts(t) => t.first().cloned().unwrap_or_default(),
            _ => String::new(),
        };
        params.push(Box::new(format!("%{}%", like_escape(&needle))));
        return format!("{col} {like} ${}", params.len());
    }
    let n = bind(params, v, op.takes_list());
    match op {
        FilterOp::Eq => format!("{col} = ${n}"),
        FilterOp::Ne => format!("{col} IS DISTINCT FROM ${n}"),
        FilterOp::Lt => format!("{col} < ${n}"),
        FilterOp::Lte => format!("{col} <= ${n}"),
        FilterOp::Gt => format!("{col} > ${n}"),
        FilterOp::Gte => format!("{col} >= ${n}"),
        FilterOp::In => format!("{col} = ANY(${n})"),
        FilterOp::Nin => format!("({col} IS NULL OR {col} <> ALL(${n}))"),
        // The typed queries refuse these for scalar fields.
        FilterOp::All | FilterOp::Ctn | FilterOp::StartWith => "FALSE".into(),
    }
}
