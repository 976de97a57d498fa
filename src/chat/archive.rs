//! Message archives (XEP-0313 over XMPP) read from the same history REST serves: one store,
//! two APIs. A user's archive is every message of their private dialogs as they see them in
//! `GET /chat/Message` (nothing they deleted for themselves, nothing before their cleared
//! point; edits show the edited body, messages deleted for everyone are gone); a room's
//! archive is its dialog's history, readable exactly when `GET /chat/Message` would be
//! (`Chat::readable`, i.e. [`super::rules::visible`]). Reading an archive marks nothing read.
//!
//! Order and cursors are `db::archive`'s: `(date_sent, dialog_id, seq)`, a message id marks a
//! position. Paging is RSM's (XEP-0059): forward from the start or after a cursor, backward
//! from the end or before one; a page says whether it reached the end of the result set in its
//! direction (`complete`).

use super::{Actor, Chat, ChatError};
use crate::db::archive::{self as repo, Filter, Position, Scope};
use crate::db::dialogs as dialog_repo;
use crate::model::message::MessageView;
use crate::model::{Dialog, ObjectId, UserId};
use crate::ops::telemetry::DB_QUERY_DURATION;

/// Whose archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Whose {
    /// The actor's own: their private dialogs.
    Own,
    /// A group, public or broadcast dialog's (a room's).
    Room(String),
}

/// What a page asks for (XEP-0059).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Paging {
    /// Most messages in the page (the adapter bounds it; 0 asks for the count only).
    pub max: i64,
    /// After this message (exclusive).
    pub after: Option<String>,
    /// `Some(None)`: the last page; `Some(Some(id))`: the page just before this message.
    pub before: Option<Option<String>>,
}

/// An archive query: the result set (filters) and the page of it wanted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    /// Own archive only: the private dialog with this user (none yet: an empty result).
    pub with: Option<UserId>,
    /// `date_sent` bounds, unix seconds, inclusive.
    pub start: Option<i64>,
    pub end: Option<i64>,
    /// Only messages after / before this one (exclusive; XEP-0313 `after-id`/`before-id`).
    pub after_id: Option<String>,
    pub before_id: Option<String>,
    /// Only these messages.
    pub ids: Option<Vec<String>>,
    pub page: Paging,
    /// Count the result set only while it holds at most this many messages (0: never).
    pub count_max: i64,
}

/// One page of an archive.
#[derive(Clone, Debug, Default)]
pub struct ArchivePage {
    /// In archive order, whichever way the page was read.
    pub items: Vec<MessageView>,
    /// Nothing of the result set lies beyond this page in the direction it was read.
    pub complete: bool,
    /// The size of the result set and the first item's index in it, when counted.
    pub count: Option<i64>,
    pub first_index: Option<i64>,
}

fn no_message(id: &str) -> ChatError {
    ChatError::NotFound(format!("Message {id} is not in this archive"))
}

impl Chat {
    /// One page of the actor's own archive or of a room's; a cursor that is not a message of
    /// that archive is `NotFound`, as is a room the actor may not read.
    pub async fn archive(
        &self,
        actor: &Actor,
        whose: &Whose,
        q: &ArchiveQuery,
    ) -> Result<ArchivePage, ChatError> {
        let started = std::time::Instant::now();
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let dialog: Dialog;
        let scope = match (whose, q.with) {
            (Whose::Own, None) => Scope::User(actor.user),
            (Whose::Own, Some(other)) => {
                let key = super::messages::private_key(actor, other.0);
                let found = match dialog_repo::by_private_key(&tx, &key, false).await? {
                    Some(d) => dialog_repo::member(&tx, &d.id, actor.user)
                        .await?
                        .map(|m| (d, m)),
                    None => None,
                };
                // No conversation with that user (yet): nothing to show.
                let Some((d, member)) = found else {
                    return Ok(ArchivePage {
                        complete: true,
                        count: (q.count_max > 0).then_some(0),
                        ..Default::default()
                    });
                };
                dialog = d;
                Scope::Dialog {
                    id: &dialog.id,
                    user: actor.user,
                    cleared_seq: member.cleared_seq,
                }
            }
            (Whose::Room(id), _) => {
                let (d, _, member) = self.readable(&tx, actor, id).await?;
                if !d.kind.is_room() {
                    return Err(ChatError::NotFound(format!("Dialog {id} not found")));
                }
                dialog = d;
                Scope::Dialog {
                    id: &dialog.id,
                    user: actor.user,
                    cleared_seq: member.map_or(0, |m| m.cleared_seq),
                }
            }
        };
        let at = |id: String| {
            let tx = &tx;
            async move {
                let oid: ObjectId = id.parse().map_err(|_| no_message(&id))?;
                repo::position(tx, scope, &oid)
                    .await?
                    .ok_or_else(|| no_message(&id))
            }
        };
        let mut set = Filter {
            start: q.start,
            end: q.end,
            ids: q.ids.clone(),
            ..Default::default()
        };
        if let Some(id) = &q.after_id {
            set.after.push(at(id.clone()).await?);
        }
        if let Some(id) = &q.before_id {
            set.before.push(at(id.clone()).await?);
        }
        let mut window = set.clone();
        if let Some(id) = &q.page.after {
            window.after.push(at(id.clone()).await?);
        }
        if let Some(Some(id)) = &q.page.before {
            window.before.push(at(id.clone()).await?);
        }
        let backward = q.page.before.is_some();
        let max = q.page.max.max(0);
        // The page and the count's bound need nothing of each other: both go out at once.
        let counting = q.count_max > 0;
        // One more than the page: whether anything lies beyond it.
        let read = repo::page(&tx, scope, &window, backward, max.saturating_add(1));
        let (mut rows, countable) = if counting {
            futures_util::future::try_join(read, repo::countable(&tx, scope, &set, q.count_max))
                .await?
        } else {
            (read.await?, false)
        };
        let complete = rows.len() as i64 <= max;
        if !complete {
            // The extra row is the one furthest in the reading direction.
            if backward {
                rows.remove(0);
            } else {
                rows.pop();
            }
        }
        let (count, first_index) = if countable {
            let first = rows.first().map(Position::of);
            match repo::count_exactly(&tx, scope, &set, first.as_ref(), q.count_max).await? {
                Some((total, before)) => (Some(total), first.map(|_| before)),
                None => (None, None),
            }
        } else {
            (None, None)
        };
        tx.commit().await?;
        metrics::histogram!(DB_QUERY_DURATION, "query" => "archive_page").record(started.elapsed());
        Ok(ArchivePage {
            items: rows
                .into_iter()
                .map(|message| MessageView {
                    message,
                    own_reactions: Vec::new(),
                    reaction_totals: Default::default(),
                })
                .collect(),
            complete,
            count,
            first_index,
        })
    }
}
