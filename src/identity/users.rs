//! Users: sign-up validation, self-only update and delete, look-ups and the `GET /users/v2`
//! query rules (which field takes which operator).

use super::revocation::token_digest;
use super::{Caller, Identity, IdentityError, Revocation};
use crate::db;
use crate::model::account::{UserField, UserFields, UserFilter, UserFilterValue, UserQuery};
pub use crate::model::filter::RawFilter;
use crate::model::filter::{FilterOp, SortDir};
use crate::model::{time::parse_date, AppId, User, UserId};

const MAX_PASSWORD: usize = 128;

fn check_len(field: &str, v: &Option<String>, min: usize, max: usize) -> Result<(), IdentityError> {
    if let Some(s) = v {
        let n = s.chars().count();
        if n < min {
            return Err(IdentityError::invalid(
                field,
                format!("is too short (minimum is {min} characters)"),
            ));
        }
        if n > max {
            return Err(IdentityError::invalid(
                field,
                format!("is too long (maximum is {max} characters)"),
            ));
        }
    }
    Ok(())
}

/// Field rules shared by sign-up and update.
pub(super) fn validate(f: &UserFields) -> Result<(), IdentityError> {
    if let Some(login) = &f.login {
        check_len("login", login, 3, 70)?;
        if login.as_deref().is_some_and(|l| l.trim() != l) {
            return Err(IdentityError::invalid(
                "login",
                "cannot start or end with spaces",
            ));
        }
    }
    if let Some(Some(email)) = &f.email {
        let ok = email.len() <= 255
            && !email.chars().any(char::is_whitespace)
            && email
                .split_once('@')
                .is_some_and(|(a, b)| !a.is_empty() && b.contains('.') && !b.contains('@'));
        if !ok {
            return Err(IdentityError::invalid(
                "email",
                "is not a valid email address",
            ));
        }
    }
    for (name, v, max) in [
        ("full_name", &f.full_name, 200),
        ("phone", &f.phone, 50),
        ("website", &f.website, 255),
        ("custom_data", &f.custom_data, 65_536),
        ("external_id", &f.external_id, 255),
        ("facebook_id", &f.facebook_id, 255),
        ("twitter_id", &f.twitter_id, 255),
        ("avatar", &f.avatar, 1024),
    ] {
        if let Some(v) = v {
            check_len(name, v, 0, max)?;
        }
    }
    if let Some(tags) = &f.tags {
        if tags.len() > 50 || tags.iter().any(|t| t.chars().count() > 100) {
            return Err(IdentityError::invalid(
                "tag_list",
                "takes at most 50 tags of at most 100 characters",
            ));
        }
    }
    if let Some(Some(tz)) = f.timezone {
        if !(-720..=840).contains(&tz) {
            return Err(IdentityError::invalid(
                "timezone",
                "must be a UTC offset in minutes (-720..840)",
            ));
        }
    }
    Ok(())
}

impl Identity {
    fn check_password(&self, password: &str) -> Result<(), IdentityError> {
        let min = self.inner.passwords.min_length;
        let n = password.chars().count();
        if n < min {
            return Err(IdentityError::invalid(
                "password",
                format!("is too short (minimum is {min} characters)"),
            ));
        }
        if n > MAX_PASSWORD {
            return Err(IdentityError::invalid(
                "password",
                format!("is too long (maximum is {MAX_PASSWORD} characters)"),
            ));
        }
        Ok(())
    }

    /// `POST /users`: a new user of `app` with a login or an email, and a password.
    pub async fn signup(
        &self,
        app: AppId,
        fields: UserFields,
        password: Option<String>,
    ) -> Result<User, IdentityError> {
        let has = |v: &Option<Option<String>>| {
            v.as_ref()
                .is_some_and(|s| s.as_ref().is_some_and(|s| !s.is_empty()))
        };
        if !has(&fields.login) && !has(&fields.email) {
            return Err(IdentityError::invalid("login", "or email is required"));
        }
        let password = password.ok_or_else(|| IdentityError::invalid("password", "is required"))?;
        self.check_password(&password)?;
        validate(&fields)?;
        let secrets = self.hash_password(password).await?;
        db::users::insert(self.pool(), app, &fields, &secrets, self.clock().now())
            .await
            .map_err(taken)
    }

    /// `PUT /users/{id}`: only yourself; a new password needs the old one (checked under the
    /// password throttle of `peer`). A password change ends every other session of the user
    /// and closes every stream that does not rest on the caller's own session: whoever knew
    /// the old password must not keep a foothold.
    pub async fn update_user(
        &self,
        caller: &Caller,
        id: UserId,
        fields: UserFields,
        password: Option<String>,
        old_password: Option<String>,
        peer: std::net::IpAddr,
    ) -> Result<User, IdentityError> {
        let me = caller.user()?;
        if me.id != id {
            return Err(IdentityError::Forbidden(
                "You can update only your own user".into(),
            ));
        }
        let keeps = |given: &Option<Option<String>>, current: &Option<String>| match given {
            Some(v) => v.is_some(),
            None => current.is_some(),
        };
        if !keeps(&fields.login, &me.login) && !keeps(&fields.email, &me.email) {
            return Err(IdentityError::invalid("login", "or email is required"));
        }
        validate(&fields)?;
        let secrets = match password {
            Some(new) => {
                let old = old_password.ok_or_else(|| {
                    IdentityError::invalid("old_password", "is required to change the password")
                })?;
                let current = db::users::password_hash(self.pool(), caller.app.id, id)
                    .await?
                    .ok_or(IdentityError::SessionNotFound)?;
                if !self
                    .password_matches(caller.app.id, id, &old, current, peer)
                    .await?
                {
                    return Err(IdentityError::invalid("old_password", "is incorrect"));
                }
                self.check_password(&new)?;
                Some(self.hash_password(new).await?)
            }
            None => None,
        };
        // Every node closes the streams resting on the old password or on the sessions that
        // ended: the other sessions and the notice go in the password's own transaction.
        let revocation = Revocation::Password {
            app: caller.app.id,
            user: id,
            keep: token_digest(&caller.token),
        };
        let notice = revocation.notice();
        let change = secrets.as_ref().map(|secrets| db::users::PasswordChange {
            secrets,
            keep: caller.session.id,
            notice: &notice,
        });
        let user = db::users::update(
            self.pool(),
            caller.app.id,
            id,
            &fields,
            change.as_ref(),
            self.clock().now(),
        )
        .await
        .map_err(taken)?
        .ok_or_else(|| IdentityError::NotFound(format!("User {id} not found")))?;
        if change.is_some() {
            self.revoke(revocation);
        }
        Ok(user)
    }

    /// `DELETE /users/{id}`: only yourself; everything that is yours alone goes in one
    /// transaction (see `db::users::delete`), then every stream and parked session of yours
    /// closes.
    pub async fn delete_user(&self, caller: &Caller, id: UserId) -> Result<(), IdentityError> {
        let me = caller.user()?;
        if me.id != id {
            return Err(IdentityError::Forbidden(
                "You can delete only your own user".into(),
            ));
        }
        self.remove_account(caller.app.id, id).await?;
        Ok(())
    }

    /// Deletes an account (see `db::users::delete`) and closes its streams, here and, through
    /// the database's notice, in every running server. False when there was no such user.
    pub(super) async fn remove_account(
        &self,
        app: AppId,
        id: UserId,
    ) -> Result<bool, IdentityError> {
        let local = format!("{id}-{app}");
        let revocation = Revocation::Account { app, user: id };
        let notice = revocation.notice();
        let gone = db::users::delete(self.pool(), app, id, &local, &notice).await?;
        if gone {
            self.revoke(revocation);
        }
        Ok(gone)
    }

    pub async fn user(&self, app: AppId, id: UserId) -> Result<User, IdentityError> {
        db::users::get(self.pool(), app, id)
            .await?
            .ok_or_else(|| IdentityError::NotFound(format!("User {id} not found")))
    }

    /// Ids among `ids` that are not users of the application.
    pub async fn unknown_users(&self, app: AppId, ids: &[i64]) -> Result<Vec<i64>, IdentityError> {
        let c = self.pool().get().await.map_err(db::DbError::from)?;
        Ok(db::users::missing_ids(&c, app, ids)
            .await
            .map_err(db::DbError::from)?)
    }

    /// The one user whose `field` equals `value` (the deprecated `by_login`-style look-ups).
    pub async fn user_by(
        &self,
        app: AppId,
        field: UserField,
        value: UserFilterValue,
    ) -> Result<User, IdentityError> {
        let q = UserQuery {
            filters: vec![UserFilter {
                field,
                op: FilterOp::Eq,
                value,
            }],
            sort: None,
            limit: 1,
            offset: 0,
        };
        let (users, _) = db::users::search(self.pool(), app, &q).await?;
        users
            .into_iter()
            .next()
            .ok_or_else(|| IdentityError::NotFound("User not found".into()))
    }

    /// The paged look-ups of the v1 API (`by_full_name`: contains, case-insensitive; `by_tags`:
    /// any of the tags). `page` counts from 1; `per_page` is at most 100.
    pub async fn users_page(
        &self,
        app: AppId,
        filter: UserFilter,
        page: Option<i64>,
        per_page: Option<i64>,
    ) -> Result<(Vec<User>, i64, i64, i64), IdentityError> {
        let page = page.unwrap_or(1);
        let per_page = per_page.unwrap_or(10);
        if page < 1 {
            return Err(IdentityError::invalid("page", "must be 1 or more"));
        }
        if !(1..=100).contains(&per_page) {
            return Err(IdentityError::invalid(
                "per_page",
                "must be between 1 and 100",
            ));
        }
        let q = UserQuery {
            filters: vec![filter],
            sort: None,
            limit: per_page,
            offset: (page - 1) * per_page,
        };
        let (users, total) = db::users::search(self.pool(), app, &q).await?;
        Ok((users, total, page, per_page))
    }

    /// Runs a users query; returns the page and the total number of matches.
    pub async fn search_users(
        &self,
        app: AppId,
        q: &UserQuery,
    ) -> Result<(Vec<User>, i64), IdentityError> {
        Ok(db::users::search(self.pool(), app, q).await?)
    }
}

fn taken(e: db::DbError) -> IdentityError {
    match db::users::conflicting_field(&e) {
        Some(field) => IdentityError::invalid(field, "has already been taken"),
        None => e.into(),
    }
}

/// Types a `GET /users/v2` query by the hosted rules: stand-alone fields take `eq`, `in`,
/// `start_with` (≥ 4 characters, forces limit 5) and `nin`; dates take `gt lt gte lte`; a query
/// needs at least one stand-alone field with `eq`, `in` or `start_with`.
pub fn users_query(
    raw: Vec<RawFilter>,
    sort: Option<(String, SortDir)>,
    limit: Option<i64>,
    offset: Option<i64>,
) -> Result<UserQuery, IdentityError> {
    let mut filters = Vec::new();
    let mut primary = false;
    let mut limit = limit.unwrap_or(100);
    if !(1..=100).contains(&limit) {
        return Err(IdentityError::invalid("limit", "must be between 1 and 100"));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(IdentityError::invalid("offset", "cannot be negative"));
    }
    for r in raw {
        let field = UserField::parse(&r.field).ok_or_else(|| {
            IdentityError::invalid(&r.field, "is not a field users can be filtered by")
        })?;
        let op = r.op().map_err(|m| IdentityError::invalid(&r.field, m))?;
        let allowed = if field.stand_alone() {
            matches!(
                op,
                FilterOp::Eq | FilterOp::In | FilterOp::StartWith | FilterOp::Nin
            )
        } else {
            matches!(
                op,
                FilterOp::Gt | FilterOp::Lt | FilterOp::Gte | FilterOp::Lte
            )
        };
        if !allowed
            || (matches!(field, UserField::Tags | UserField::Id) && op == FilterOp::StartWith)
        {
            return Err(IdentityError::invalid(
                &r.field,
                format!("does not take the operator `{op}`"),
            ));
        }
        let values = r
            .clean_values()
            .map_err(|m| IdentityError::invalid(&r.field, m))?;
        if !op.takes_list() && values.len() > 1 && op != FilterOp::Eq {
            return Err(IdentityError::invalid(
                &r.field,
                format!("`{op}` takes one value"),
            ));
        }
        // `clean_values` never returns an empty list; read the first value without indexing.
        let first = values.first().map(String::as_str).unwrap_or_default();
        if op == FilterOp::StartWith {
            if first.chars().count() < 4 {
                return Err(IdentityError::invalid(
                    &r.field,
                    "start_with needs at least 4 characters",
                ));
            }
            limit = limit.min(5);
        }
        let value = if field.is_date() {
            UserFilterValue::Date(parse_date(first).ok_or_else(|| {
                IdentityError::invalid(&r.field, "must be a date (unix seconds or ISO-8601)")
            })?)
        } else if field == UserField::Id {
            let ids = values
                .iter()
                .map(|v| v.parse::<i64>())
                .collect::<Result<Vec<_>, _>>();
            UserFilterValue::Ints(
                ids.map_err(|_| IdentityError::invalid("id", "must be integers"))?,
            )
        } else {
            UserFilterValue::Texts(values)
        };
        primary |=
            field.stand_alone() && matches!(op, FilterOp::Eq | FilterOp::In | FilterOp::StartWith);
        filters.push(UserFilter { field, op, value });
    }
    if !primary {
        return Err(IdentityError::invalid(
            "base",
            "the query needs at least one of id, login, email, full_name, phone, external_id, facebook_id, twitter_id, user_tags with eq, in or start_with",
        ));
    }
    let sort = match sort {
        Some((name, dir)) => Some((
            UserField::parse(&name)
                .filter(|f| *f != UserField::Tags)
                .ok_or_else(|| {
                    IdentityError::invalid("sort", format!("cannot sort by `{name}`"))
                })?,
            dir,
        )),
        None => None,
    };
    Ok(UserQuery {
        filters,
        sort,
        limit,
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(field: &str, op: Option<&str>, v: &[&str]) -> RawFilter {
        RawFilter {
            field: field.into(),
            op: op.map(Into::into),
            values: v.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn users_query_needs_a_stand_alone_primary_filter() {
        let err = users_query(
            vec![raw("created_at", Some("gt"), &["1"])],
            None,
            None,
            None,
        )
        .unwrap_err();
        assert!(matches!(err, IdentityError::Invalid { ref field, .. } if field == "base"));
        assert!(users_query(vec![raw("login", None, &["bob"])], None, None, None).is_ok());
    }

    #[test]
    fn stand_alone_fields_refuse_compare_operators() {
        let err = users_query(vec![raw("id", Some("gt"), &["1"])], None, None, None).unwrap_err();
        assert!(matches!(err, IdentityError::Invalid { ref field, .. } if field == "id"));
    }

    #[test]
    fn start_with_needs_four_characters_and_forces_limit_five() {
        assert!(users_query(
            vec![raw("login", Some("start_with"), &["bo"])],
            None,
            None,
            None
        )
        .is_err());
        let q = users_query(
            vec![raw("login", Some("start_with"), &["bobb"])],
            None,
            Some(50),
            None,
        )
        .unwrap();
        assert_eq!(q.limit, 5);
    }

    #[test]
    fn unknown_field_and_operator_are_named() {
        let e = users_query(vec![raw("colour", None, &["x"])], None, None, None).unwrap_err();
        assert!(matches!(e, IdentityError::Invalid { ref field, .. } if field == "colour"));
        let e =
            users_query(vec![raw("login", Some("like"), &["x"])], None, None, None).unwrap_err();
        assert!(e.to_string().contains("like"));
    }
}
