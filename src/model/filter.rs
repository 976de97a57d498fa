//! Query operators of the REST API (`field[op]=value`), parsed once into a typed value.
//! Which operators a field accepts is decided by each resource, not here.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterOp {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
    Nin,
    All,
    Ctn,
    StartWith,
}

impl FilterOp {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "eq" => Self::Eq,
            "ne" => Self::Ne,
            "lt" => Self::Lt,
            "lte" => Self::Lte,
            "gt" => Self::Gt,
            "gte" => Self::Gte,
            "in" => Self::In,
            "nin" => Self::Nin,
            "all" => Self::All,
            "ctn" => Self::Ctn,
            "start_with" => Self::StartWith,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "eq",
            Self::Ne => "ne",
            Self::Lt => "lt",
            Self::Lte => "lte",
            Self::Gt => "gt",
            Self::Gte => "gte",
            Self::In => "in",
            Self::Nin => "nin",
            Self::All => "all",
            Self::Ctn => "ctn",
            Self::StartWith => "start_with",
        }
    }

    /// Operators whose value is a list (`a,b` or `a[]=x&a[]=y`).
    pub fn takes_list(self) -> bool {
        matches!(self, Self::In | Self::Nin | Self::All)
    }
}

impl fmt::Display for FilterOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `field[op]=values` request parameter before a resource types it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFilter {
    pub field: String,
    pub op: Option<String>,
    pub values: Vec<String>,
}

impl RawFilter {
    /// The operator written (`eq` when none); `Err` carries the message naming an unknown one.
    pub fn op(&self) -> Result<FilterOp, String> {
        match self.op.as_deref() {
            None => Ok(FilterOp::Eq),
            Some(o) => FilterOp::parse(o).ok_or_else(|| format!("unknown operator `{o}`")),
        }
    }

    /// The values trimmed, empty ones dropped; `Err` when none is left.
    pub fn clean_values(&self) -> Result<Vec<String>, &'static str> {
        let v: Vec<String> = self
            .values
            .iter()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        if v.is_empty() {
            Err("needs a value")
        } else {
            Ok(v)
        }
    }
}

/// Sort direction of `sort_asc=field` / `sort_desc=field`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortDir {
    Asc,
    Desc,
}

impl SortDir {
    pub fn sql(self) -> &'static str {
        match self {
            Self::Asc => "ASC",
            Self::Desc => "DESC",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operator_round_trips() {
        for op in [
            FilterOp::Eq,
            FilterOp::Ne,
            FilterOp::Lt,
            FilterOp::Lte,
            FilterOp::Gt,
            FilterOp::Gte,
            FilterOp::In,
            FilterOp::Nin,
            FilterOp::All,
            FilterOp::Ctn,
            FilterOp::StartWith,
        ] {
            assert_eq!(FilterOp::parse(op.as_str()), Some(op));
        }
        assert_eq!(FilterOp::parse("like"), None);
    }
}
