//! Types `GET /chat/Dialog` parameters: which fields can be filtered, with which operators, and
//! how values are read. Unknown fields and operators are refused by name.

use super::ChatError;
use crate::model::dialog::{DialogField, DialogFilter, DialogQuery, FilterValue};
use crate::model::filter::{FilterOp, RawFilter, SortDir};
use crate::model::time::parse_date;
use crate::model::Application;

pub const MAX_LIMIT: i64 = 100;

fn field(app: &Application, name: &str) -> Result<DialogField, ChatError> {
    Ok(match name {
        "_id" => DialogField::Id,
        "type" => DialogField::Type,
        "name" => DialogField::Name,
        "last_message_date_sent" => DialogField::LastMessageDateSent,
        "created_at" => DialogField::CreatedAt,
        "updated_at" => DialogField::UpdatedAt,
        "occupants_ids" => DialogField::OccupantsIds,
        _ => {
            if let Some(key) = name.strip_prefix("extensions.") {
                if app.dialog_extensions.iter().any(|k| k == key) {
                    return Ok(DialogField::Extension(key.to_string()));
                }
                return Err(ChatError::invalid(
                    format!("extensions[{key}]"),
                    "is not an extension field of this application",
                ));
            }
            return Err(ChatError::invalid(
                name,
                "is not a field dialogs can be filtered by",
            ));
        }
    })
}

fn ints(field: &str, values: &[String]) -> Result<FilterValue, ChatError> {
    values
        .iter()
        .map(|v| v.parse::<i64>())
        .collect::<Result<Vec<_>, _>>()
        .map(FilterValue::Ints)
        .map_err(|_| ChatError::invalid(field, "must be integers"))
}

/// Builds the typed query. `raw` holds every filter parameter; extension filters arrive with the
/// field written `extensions.<key>`.
pub fn dialog_query(
    app: &Application,
    raw: Vec<RawFilter>,
    sort: Option<(String, SortDir)>,
    limit: Option<i64>,
    skip: Option<i64>,
) -> Result<DialogQuery, ChatError> {
    let limit = limit.unwrap_or(MAX_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ChatError::invalid(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let skip = skip.unwrap_or(0);
    if skip < 0 {
        return Err(ChatError::invalid("skip", "cannot be negative"));
    }
    let mut filters = Vec::new();
    for r in raw {
        let f = field(app, &r.field)?;
        let op = r.op().map_err(|m| ChatError::invalid(&r.field, m))?;
        let allowed = match f {
            DialogField::OccupantsIds => matches!(
                op,
                FilterOp::Eq | FilterOp::In | FilterOp::All | FilterOp::Nin | FilterOp::Ne
            ),
            DialogField::Name | DialogField::Id | DialogField::Extension(_) => {
                !matches!(op, FilterOp::All | FilterOp::StartWith)
            }
            DialogField::Type
            | DialogField::LastMessageDateSent
            | DialogField::CreatedAt
            | DialogField::UpdatedAt => {
                !matches!(op, FilterOp::All | FilterOp::StartWith | FilterOp::Ctn)
            }
        };
        if !allowed {
            return Err(ChatError::invalid(
                &r.field,
                format!("does not take the operator `{op}`"),
            ));
        }
        let values = r
            .clean_values()
            .map_err(|m| ChatError::invalid(&r.field, m))?;
        if !op.takes_list() && values.len() > 1 && f != DialogField::OccupantsIds {
            return Err(ChatError::invalid(
                &r.field,
                format!("`{op}` takes one value"),
            ));
        }
        let value = match f {
            DialogField::Type | DialogField::LastMessageDateSent | DialogField::OccupantsIds => {
                ints(&r.field, &values)?
            }
            DialogField::CreatedAt | DialogField::UpdatedAt => FilterValue::Dates(
                values
                    .iter()
                    .map(|v| parse_date(v))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        ChatError::invalid(&r.field, "must be a date (unix seconds or ISO-8601)")
                    })?,
            ),
            DialogField::Id | DialogField::Name | DialogField::Extension(_) => {
                FilterValue::Texts(values)
            }
        };
        filters.push(DialogFilter {
            field: f,
            op,
            value,
        });
    }
    let sort = match sort {
        None => (DialogField::LastMessageDateSent, SortDir::Desc),
        Some((name, dir)) => {
            let f = match name.as_str() {
                "last_message_date_sent" | "date_sent" => DialogField::LastMessageDateSent,
                "created_at" => DialogField::CreatedAt,
                "updated_at" => DialogField::UpdatedAt,
                "_id" => DialogField::Id,
                "name" => DialogField::Name,
                _ => {
                    return Err(ChatError::invalid(
                        "sort",
                        format!("cannot sort dialogs by `{name}`"),
                    ))
                }
            };
            (f, dir)
        }
    };
    Ok(DialogQuery {
        filters,
        sort,
        limit,
        skip,
    })
}

/// True when the query asks for public dialogs only (`type=4`, `type[in]=4`): then public
/// dialogs are findable by users who have not subscribed.
pub fn asks_public_only(q: &DialogQuery) -> bool {
    q.filters.iter().any(|f| {
        f.field == DialogField::Type
            && matches!(f.op, FilterOp::Eq | FilterOp::In)
            && matches!(&f.value, FilterValue::Ints(v) if !v.is_empty() && v.iter().all(|t| *t == 4))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AppId;

    fn app() -> Application {
        Application {
            id: AppId(1),
            name: "a".into(),
            auth_key: "k".into(),
            auth_secret: "s".into(),
            require_signature: false,
            session_creates_users: true,
            dialog_extensions: vec!["friend_id".into()],
        }
    }

    fn raw(field: &str, op: Option<&str>, v: &[&str]) -> RawFilter {
        RawFilter {
            field: field.into(),
            op: op.map(Into::into),
            values: v.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn unknown_field_is_named() {
        let e = dialog_query(
            &app(),
            vec![raw("colour", None, &["red"])],
            None,
            None,
            None,
        )
        .unwrap_err();
        assert!(matches!(e, ChatError::Invalid { ref field, .. } if field == "colour"));
    }

    #[test]
    fn unknown_operator_is_named() {
        let e = dialog_query(
            &app(),
            vec![raw("type", Some("like"), &["2"])],
            None,
            None,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("like"));
    }

    #[test]
    fn extension_filters_need_an_allowed_field() {
        assert!(dialog_query(
            &app(),
            vec![raw("extensions.friend_id", Some("in"), &["1", "2"])],
            None,
            None,
            None
        )
        .is_ok());
        let e = dialog_query(
            &app(),
            vec![raw("extensions.other", None, &["1"])],
            None,
            None,
            None,
        )
        .unwrap_err();
        assert!(matches!(e, ChatError::Invalid { ref field, .. } if field == "extensions[other]"));
    }

    #[test]
    fn limit_is_capped_at_one_hundred() {
        assert!(dialog_query(&app(), vec![], None, Some(101), None).is_err());
        assert_eq!(
            dialog_query(&app(), vec![], None, None, None)
                .unwrap()
                .limit,
            100
        );
    }

    #[test]
    fn type_four_alone_makes_public_dialogs_findable() {
        let q = dialog_query(&app(), vec![raw("type", None, &["4"])], None, None, None).unwrap();
        assert!(asks_public_only(&q));
        let q = dialog_query(
            &app(),
            vec![raw("type", Some("in"), &["2", "4"])],
            None,
            None,
            None,
        )
        .unwrap();
        assert!(!asks_public_only(&q));
    }
}
