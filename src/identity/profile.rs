//! The account's profile as XMPP clients see it: the vCard (XEP-0054) kept in step with the REST
//! user — its `FN` is `full_name`, its `PHOTO/EXTVAL` is `avatar` — and private XML storage
//! (XEP-0049). Knows no stanza: callers hand in the vCard's fields and its serialized form.

use super::users::validate;
use super::{Identity, IdentityError};
use crate::db;
use crate::model::account::UserFields;
use crate::model::{AppId, User, UserId};

/// What a stored vCard changes on the REST user.
pub struct VcardFields {
    /// `FN`: the user's `full_name` (`Some(None)` clears it).
    pub full_name: Option<Option<String>>,
    /// `PHOTO/EXTVAL`: the user's `avatar` URL. A vCard without one leaves `avatar` as it is:
    /// clients that do not know photos must not erase one set through REST.
    pub avatar: Option<String>,
}

impl Identity {
    /// The user and the vCard they last set (serialized), if any.
    pub async fn vcard(
        &self,
        app: AppId,
        user: UserId,
    ) -> Result<(User, Option<String>), IdentityError> {
        let u = self.user(app, user).await?;
        let stored = db::profile::vcard(self.pool(), app, user).await?;
        Ok((u, stored))
    }

    /// Stores the user's own vCard and applies its `FN`/`PHOTO` to the REST user, under the
    /// REST update's rules for those fields (422-like `Invalid` naming `full_name`/`avatar`).
    pub async fn set_vcard(
        &self,
        app: AppId,
        user: UserId,
        fields: VcardFields,
        serialized: &str,
    ) -> Result<User, IdentityError> {
        let update = UserFields {
            full_name: fields.full_name,
            avatar: fields.avatar.map(Some),
            ..Default::default()
        };
        validate(&update)?;
        db::profile::set_vcard(self.pool(), app, user, serialized, self.clock().now()).await?;
        db::users::update(self.pool(), app, user, &update, None, self.clock().now())
            .await?
            .ok_or_else(|| IdentityError::NotFound(format!("User {user} not found")))
    }

    /// The private XML element stored under (`name`, `ns`), serialized.
    pub async fn private_get(
        &self,
        app: AppId,
        user: UserId,
        name: &str,
        ns: &str,
    ) -> Result<Option<String>, IdentityError> {
        Ok(db::profile::private_get(self.pool(), app, user, name, ns).await?)
    }

    /// Stores a private XML element; false when the user already keeps `max_items` others.
    pub async fn private_set(
        &self,
        app: AppId,
        user: UserId,
        (name, ns): (&str, &str),
        serialized: &str,
        max_items: usize,
    ) -> Result<bool, IdentityError> {
        let max = i64::try_from(max_items).unwrap_or(i64::MAX);
        Ok(db::profile::private_set(self.pool(), app, user, name, ns, serialized, max).await?)
    }
}
