//! What the operator does to accounts (`parley user …`, `parley session kick`), and the ban
//! rule every session must pass. Operators are trusted (see the README's threat model), so
//! nothing here asks who is calling; users are named by id alone (ids are unique across
//! applications).
//!
//! The command runs in its own process, so closing live streams cannot go through this
//! process's hub: each change commits together with a notice (`db::notify`) that every
//! running server turns into the same [`Revocation`] its own REST calls would issue.

use super::{Identity, IdentityError, Revocation};
use crate::db;
use crate::model::account::Ban;
use crate::model::{AppId, User, UserId};

/// The most users one `parley user list` page shows.
pub const MAX_PAGE: i64 = 1000;

fn no_such_user(id: UserId) -> IdentityError {
    IdentityError::NotFound(format!("User {id} not found"))
}

impl Identity {
    /// **The ban rule**: a banned user opens no session and no XMPP stream. Asked after the
    /// credentials proved right, so it tells nothing to someone who does not hold them.
    pub(super) async fn refuse_banned(
        &self,
        app: AppId,
        user: UserId,
    ) -> Result<(), IdentityError> {
        match db::users::ban_of(self.pool(), app, user).await? {
            Some(_) => Err(IdentityError::Banned),
            None => Ok(()),
        }
    }

    /// A user of any application, with their ban.
    pub async fn find_user(&self, id: UserId) -> Result<(User, Option<Ban>), IdentityError> {
        db::users::find_any(self.pool(), id)
            .await?
            .ok_or_else(|| no_such_user(id))
    }

    /// One page of users (of one application, or of all) in id order, with the total.
    pub async fn list_users(
        &self,
        app: Option<AppId>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<(User, Option<Ban>)>, i64), IdentityError> {
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(IdentityError::invalid(
                "limit",
                format!("must be between 1 and {MAX_PAGE}"),
            ));
        }
        if offset < 0 {
            return Err(IdentityError::invalid("offset", "cannot be negative"));
        }
        Ok(db::users::list_with_bans(self.pool(), app, limit, offset).await?)
    }

    /// Deletes a user as `DELETE /users/{id}` does for themselves.
    pub async fn operator_delete_user(&self, id: UserId) -> Result<User, IdentityError> {
        let (user, _) = self.find_user(id).await?;
        if !self.remove_account(user.application_id, id).await? {
            return Err(no_such_user(id));
        }
        Ok(user)
    }

    /// Bans a user: every session ends and every live stream closes, and no new one opens
    /// until [`Identity::unban_user`]. Banning again replaces the reason.
    pub async fn ban_user(
        &self,
        id: UserId,
        reason: Option<String>,
    ) -> Result<User, IdentityError> {
        if reason.as_ref().is_some_and(|r| r.chars().count() > 1000) {
            return Err(IdentityError::invalid(
                "reason",
                "is too long (maximum is 1000 characters)",
            ));
        }
        let (user, _) = self.find_user(id).await?;
        let app = user.application_id;
        let revocation = Revocation::Sessions { app, user: id };
        let notice = revocation.notice();
        let now = self.clock().now();
        if !db::users::ban(self.pool(), app, id, now, reason.as_deref(), &notice).await? {
            return Err(no_such_user(id));
        }
        self.revoke(revocation);
        Ok(user)
    }

    /// Lifts a ban (nothing else is restored: the user logs in again).
    pub async fn unban_user(&self, id: UserId) -> Result<User, IdentityError> {
        let (user, _) = self.find_user(id).await?;
        if !db::users::unban(self.pool(), user.application_id, id).await? {
            return Err(no_such_user(id));
        }
        Ok(user)
    }

    /// Ends every session of a user and closes their live streams (`parley session kick`);
    /// returns how many sessions ended. They may log in again at once: a kick is not a ban.
    pub async fn kick_user(&self, id: UserId) -> Result<u64, IdentityError> {
        let (user, _) = self.find_user(id).await?;
        let revocation = Revocation::Sessions {
            app: user.application_id,
            user: id,
        };
        let notice = revocation.notice();
        let ended = db::sessions::revoke_all(self.pool(), id, &notice).await?;
        self.revoke(revocation);
        Ok(ended)
    }
}
