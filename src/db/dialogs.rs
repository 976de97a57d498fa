//! The `dialogs` and `dialog_members` tables (the inbox). Every function runs inside the caller's
//! transaction, so a chat operation commits or rolls back as one.

use tokio_postgres::Row;

use crate::model::dialog::{DialogField, DialogQuery, DialogView, MessageStatus};
use crate::model::filter::FilterOp;
use crate::model::{AppId, Dialog, DialogType, ObjectId, UserId};

use super::filter::{bind, refs, scalar, Param};
use super::{Cached, Tx};

const COLUMNS: &str = "d.id, d.application_id, d.type, d.user_id, d.name, d.photo, d.description, d.occupants_ids, \
     d.admins_ids, d.pinned_messages_ids, d.occupants_count, d.extensions, d.data, d.allow_preview, d.last_message_id, \
     d.last_message, d.last_message_user_id, d.last_message_date_sent, d.created_at, d.updated_at";
const NCOL: usize = 20;

fn from_row(r: &Row) -> Dialog {
    let id: String = r.get(0);
    Dialog {
        id: id.parse().unwrap_or_else(|_| ObjectId::generate(0)),
        application_id: AppId(r.get(1)),
        kind: DialogType::from_i64(r.get::<_, i16>(2).into()).unwrap_or(DialogType::Group),
        owner: UserId(r.get(3)),
        name: r.get(4),
        photo: r.get(5),
        description: r.get(6),
        occupants: r.get(7),
        admins: r.get(8),
        pinned: r.get(9),
        occupants_count: r.get(10),
        extensions: r.get(11),
        data: r.get(12),
        allow_preview: r.get(13),
        last_message_id: r.get(14),
        last_message: r.get(15),
        last_message_user_id: r.get(16),
        last_message_date_sent: r.get(17),
        created_at: r.get(18),
        updated_at: r.get(19),
    }
}

/// A user's inbox entry for one dialog.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub unread: i32,
    pub hidden: bool,
    pub joined_seq: i64,
    pub cleared_seq: i64,
    pub notifications: bool,
}

/// Inserts a dialog; `None` when its private key is taken (the pair already has a dialog).
pub async fn insert(
    tx: &Tx<'_>,
    d: &Dialog,
    private_key: Option<&str>,
) -> Result<Option<Dialog>, tokio_postgres::Error> {
    let row = tx
        .q01(
            &format!(
                "INSERT INTO dialogs AS d (id, application_id, type, user_id, name, photo, description, occupants_ids, admins_ids,
                     occupants_count, extensions, data, allow_preview, private_key, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)
                 ON CONFLICT (private_key) DO NOTHING RETURNING {COLUMNS}"
            ),
            &[
                &d.id.as_str(),
                &d.application_id.0,
                &d.kind.code(),
                &d.owner.0,
                &d.name,
                &d.photo,
                &d.description,
                &d.occupants,
                &d.admins,
                &d.occupants_count,
                &d.extensions,
                &d.data,
                &d.allow_preview,
                &private_key,
                &d.created_at,
            ],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// The private dialog of a pair of users, locked for the rest of the transaction when `lock`.
pub async fn by_private_key(
    tx: &Tx<'_>,
    key: &str,
    lock: bool,
) -> Result<Option<Dialog>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM dialogs d WHERE private_key = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = tx.q01(&sql, &[&key]).await?;
    Ok(row.as_ref().map(from_row))
}

/// The dialog, locked for the rest of the transaction when `lock` is set.
pub async fn get(
    tx: &Tx<'_>,
    app: AppId,
    id: &ObjectId,
    lock: bool,
) -> Result<Option<Dialog>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM dialogs d WHERE d.id = $1 AND d.application_id = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    Ok(tx
        .q01(&sql, &[&id.as_str(), &app.0])
        .await?
        .as_ref()
        .map(from_row))
}

/// The dialog (locked for the transaction) with `user`'s inbox entry, in one round trip.
pub async fn get_with_member(
    tx: &Tx<'_>,
    app: AppId,
    id: &ObjectId,
    user: UserId,
) -> Result<Option<(Dialog, Option<Member>)>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {COLUMNS}, m.unread_count, m.hidden, m.joined_seq, m.cleared_seq, m.notifications
         FROM dialogs d LEFT JOIN dialog_members m ON m.dialog_id = d.id AND m.user_id = $3
         WHERE d.id = $1 AND d.application_id = $2 FOR UPDATE OF d"
    );
    let row = tx.q01(&sql, &[&id.as_str(), &app.0, &user.0]).await?;
    Ok(row.map(|r| (from_row(&r), member_after_columns(&r))))
}

/// Writes back the fields a dialog update may change.
pub async fn save(tx: &Tx<'_>, d: &Dialog) -> Result<(), tokio_postgres::Error> {
    tx.x(
        "UPDATE dialogs SET name = $2, photo = $3, description = $4, occupants_ids = $5, admins_ids = $6,
             pinned_messages_ids = $7, occupants_count = $8, extensions = $9, data = $10, allow_preview = $11,
             updated_at = $12
         WHERE id = $1",
        &[
            &d.id.as_str(),
            &d.name,
            &d.photo,
            &d.description,
            &d.occupants,
            &d.admins,
            &d.pinned,
            &d.occupants_count,
            &d.extensions,
            &d.data,
            &d.allow_preview,
            &d.updated_at,
        ],
    )
    .await?;
    Ok(())
}

pub async fn delete(tx: &Tx<'_>, id: &ObjectId) -> Result<(), tokio_postgres::Error> {
    tx.x("DELETE FROM dialogs WHERE id = $1", &[&id.as_str()])
        .await?;
    Ok(())
}

/// The dialog's current message sequence number (messages up to it exist or existed).
pub async fn current_seq(tx: &Tx<'_>, id: &ObjectId) -> Result<i64, tokio_postgres::Error> {
    Ok(tx
        .q1(
            "SELECT message_seq FROM dialogs WHERE id = $1",
            &[&id.as_str()],
        )
        .await?
        .get(0))
}

/// Adds inbox entries (or shows hidden ones again) for `users`; new members start unread at 0.
pub async fn add_members(
    tx: &Tx<'_>,
    d: &Dialog,
    users: &[i64],
) -> Result<(), tokio_postgres::Error> {
    tx.x(
        "INSERT INTO dialog_members (dialog_id, user_id, joined_seq, sort_at)
         SELECT $1, u, d.message_seq, COALESCE(d.last_message_date_sent, extract(epoch FROM d.created_at)::BIGINT)
         FROM unnest($2::BIGINT[]) AS u, dialogs d WHERE d.id = $1
         ON CONFLICT (dialog_id, user_id) DO UPDATE SET hidden = FALSE",
        &[&d.id.as_str(), &users],
    )
    .await?;
    Ok(())
}

pub async fn remove_members(
    tx: &Tx<'_>,
    id: &ObjectId,
    users: &[i64],
) -> Result<(), tokio_postgres::Error> {
    tx.x(
        "DELETE FROM dialog_members WHERE dialog_id = $1 AND user_id = ANY($2)",
        &[&id.as_str(), &users],
    )
    .await?;
    Ok(())
}

/// Gives `user` an inbox entry for every broadcast dialog of the application they lack, with
/// every present message unread (broadcast dialogs belong to every user of the application).
pub async fn ensure_broadcast_members(
    c: &(impl Cached + Sync),
    app: AppId,
    user: UserId,
) -> Result<(), tokio_postgres::Error> {
    c.x(
        "INSERT INTO dialog_members (dialog_id, user_id, unread_count, sort_at)
         SELECT d.id, $2, LEAST(d.message_count, 2147483647)::INTEGER,
                COALESCE(d.last_message_date_sent, extract(epoch FROM d.created_at)::BIGINT)
         FROM dialogs d WHERE d.application_id = $1 AND d.type = 1
         ON CONFLICT (dialog_id, user_id) DO NOTHING",
        &[&app.0, &user.0],
    )
    .await?;
    Ok(())
}

pub async fn member(
    tx: &Tx<'_>,
    id: &ObjectId,
    user: UserId,
) -> Result<Option<Member>, tokio_postgres::Error> {
    let row = tx
        .q01(
            "SELECT unread_count, hidden, joined_seq, cleared_seq, notifications FROM dialog_members
             WHERE dialog_id = $1 AND user_id = $2",
            &[&id.as_str(), &user.0],
        )
        .await?;
    Ok(row.map(|r| Member {
        unread: r.get(0),
        hidden: r.get(1),
        joined_seq: r.get(2),
        cleared_seq: r.get(3),
        notifications: r.get(4),
    }))
}

/// Hides the dialog from the user's list and their history up to now (delete for self).
pub async fn hide_for(
    tx: &Tx<'_>,
    id: &ObjectId,
    user: UserId,
) -> Result<(), tokio_postgres::Error> {
    tx.x(
        "UPDATE dialog_members m SET hidden = TRUE, unread_count = 0, cleared_seq = d.message_seq
         FROM dialogs d WHERE d.id = m.dialog_id AND m.dialog_id = $1 AND m.user_id = $2",
        &[&id.as_str(), &user.0],
    )
    .await?;
    Ok(())
}

/// Hides every message so far from the user's history (`clearHistory`).
pub async fn clear_history(
    tx: &Tx<'_>,
    id: &ObjectId,
    user: UserId,
) -> Result<(), tokio_postgres::Error> {
    tx.x(
        "UPDATE dialog_members m SET unread_count = 0, cleared_seq = d.message_seq
         FROM dialogs d WHERE d.id = m.dialog_id AND m.dialog_id = $1 AND m.user_id = $2",
        &[&id.as_str(), &user.0],
    )
    .await?;
    Ok(())
}

pub async fn set_notifications(
    tx: &Tx<'_>,
    id: &ObjectId,
    user: UserId,
    on: bool,
) -> Result<bool, tokio_postgres::Error> {
    let n = tx
        .x(
            "UPDATE dialog_members SET notifications = $3 WHERE dialog_id = $1 AND user_id = $2",
            &[&id.as_str(), &user.0, &on],
        )
        .await?;
    Ok(n == 1)
}

/// Subscriber ids of a public dialog, paged.
pub async fn member_ids(
    tx: &Tx<'_>,
    id: &ObjectId,
    limit: i64,
    skip: i64,
) -> Result<Vec<i64>, tokio_postgres::Error> {
    let rows = tx
        .q(
            "SELECT user_id FROM dialog_members WHERE dialog_id = $1 ORDER BY user_id LIMIT $2 OFFSET $3",
            &[&id.as_str(), &limit, &skip],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

fn column(f: &DialogField) -> String {
    match f {
        DialogField::Id => "d.id".into(),
        // Bound as BIGINT like every integer filter value.
        DialogField::Type => "d.type::BIGINT".into(),
        DialogField::Name => "d.name".into(),
        DialogField::LastMessageDateSent => "d.last_message_date_sent".into(),
        // The API shows whole seconds, so filters compare whole seconds.
        DialogField::CreatedAt => "date_trunc('second', d.created_at)".into(),
        DialogField::UpdatedAt => "date_trunc('second', d.updated_at)".into(),
        DialogField::OccupantsIds => "d.occupants_ids".into(),
        // The key is a validated identifier (letters, digits, _), never user text.
        DialogField::Extension(k) => format!("(d.extensions ->> '{k}')"),
    }
}

/// SQL condition for one typed filter; operators were validated per field by `chat/query.rs`.
fn condition(f: &crate::model::dialog::DialogFilter, params: &mut Vec<Param>) -> String {
    let col = column(&f.field);
    if f.field == DialogField::OccupantsIds {
        let n = bind(params, &f.value, true);
        return match f.op {
            FilterOp::All => format!("{col} @> ${n}"),
            FilterOp::Nin | FilterOp::Ne => format!("NOT ({col} && ${n})"),
            _ => format!("{col} && ${n}"),
        };
    }
    scalar(&col, f.op, &f.value, "ILIKE", params)
}

/// The caller's last-message status: 3 read, 2 delivered, 1 sent, NULL when someone else sent it.
/// The last message is read only when the caller sent it (`CASE` evaluates its branch only
/// then), so other people's last messages, most of a busy inbox, cost no index probe.
const STATUS: &str = "CASE WHEN p.last_message_user_id = $1 THEN COALESCE((
        SELECT CASE WHEN cardinality(array_remove(lm.read_ids, $1)) > 0 THEN 3
                    WHEN cardinality(array_remove(lm.delivered_ids, $1)) > 0 THEN 2
                    ELSE 1 END
        FROM messages lm WHERE lm.id = p.last_message_id), 1)
    END";

/// Whether the application has a broadcast dialog the user has no inbox entry for (broadcast
/// dialogs belong to every user; their entries are added lazily). `OFFSET 0` keeps the inner
/// check a per-dialog primary-key probe: pulled up into an anti-join, a generic plan scanned
/// the user's whole inbox once per broadcast dialog.
const MISSING_BROADCAST: &str = "EXISTS (SELECT 1 FROM dialogs b WHERE b.application_id = $2 AND b.type = 1
        AND NOT EXISTS (SELECT 1 FROM dialog_members bm WHERE bm.dialog_id = b.id AND bm.user_id = $1 OFFSET 0))";

/// One page of a user's dialog list, with what the same statement learnt on the way.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListPage {
    pub items: Vec<DialogView>,
    /// Every dialog matching the filters, read in the same snapshot as the page.
    pub total: i64,
    /// The application has a broadcast dialog the user has no inbox entry for yet: the caller
    /// should add the entries (`ensure_broadcast_members`) and read again.
    pub missing_broadcast: bool,
}

/// A user's dialogs (their inbox, read in the inbox index's order), or with `discover_public`
/// every public dialog of the application (with the user's entry where they have one).
/// Returns the page and the total. The last message is joined for the page only.
pub async fn list(
    tx: &Tx<'_>,
    app: AppId,
    user: UserId,
    q: &DialogQuery,
    discover_public: bool,
    count_only: bool,
) -> Result<(Vec<DialogView>, i64), tokio_postgres::Error> {
    let page = list_page(tx, app, user, q, discover_public, count_only).await?;
    Ok((page.items, page.total))
}

/// [`list`] without a transaction, in one round trip when the page is not empty: the total and
/// the broadcast check ride along as init plans (computed once, in the page's snapshot). Only
/// an empty page (past the end, a new user, `count_only`) asks for them separately.
pub async fn list_page(
    c: &(impl Cached + Sync),
    app: AppId,
    user: UserId,
    q: &DialogQuery,
    discover_public: bool,
    count_only: bool,
) -> Result<ListPage, tokio_postgres::Error> {
    let mut params: Vec<Param> = vec![Box::new(user.0), Box::new(app.0)];
    let (from, mut conds) = if discover_public {
        (
            "dialogs d LEFT JOIN dialog_members m ON m.dialog_id = d.id AND m.user_id = $1",
            vec![
                "d.application_id = $2".to_string(),
                "d.type = 4".to_string(),
            ],
        )
    } else {
        // A user belongs to one application, so their inbox rows need no application filter.
        (
            "dialog_members m JOIN dialogs d ON d.id = m.dialog_id",
            vec!["m.user_id = $1".to_string(), "NOT m.hidden".to_string()],
        )
    };
    for f in &q.filters {
        conds.push(condition(f, &mut params));
    }
    let filter = conds.join(" AND ");
    let count = if !discover_public && q.filters.is_empty() {
        // The inbox index alone answers this (PostgreSQL never drops an inner join).
        "SELECT count(*) FROM dialog_members m WHERE m.user_id = $1 AND NOT m.hidden".to_string()
    } else {
        format!("SELECT count(*) FROM {from} WHERE {filter}")
    };
    let meta = format!("SELECT ({count}), {MISSING_BROADCAST}");
    let mut page = ListPage::default();
    if !count_only {
        let dir = q.sort.1.sql();
        let (sort, tiebreak, nulls) = match (&q.sort.0, discover_public) {
            // Exactly the inbox index's order, so a page is read from the index and stops early.
            (DialogField::LastMessageDateSent, false) => {
                ("m.sort_at".to_string(), "m.dialog_id", "")
            }
            (DialogField::LastMessageDateSent, true) => (
                "COALESCE(d.last_message_date_sent, extract(epoch FROM d.created_at)::BIGINT)"
                    .to_string(),
                "d.id",
                "",
            ),
            (f, _) => (column(f), "d.id", " NULLS LAST"),
        };
        let n = params.len();
        let outer = COLUMNS.replace("d.", "p.");
        let sql = format!(
            "SELECT {outer}, p.unread_count, {STATUS}, ({count}), {MISSING_BROADCAST}
             FROM (SELECT {COLUMNS}, m.unread_count, {sort} AS sort_key, {tiebreak} AS tie
                   FROM {from} WHERE {filter}
                   ORDER BY {sort} {dir}{nulls}, {tiebreak} {dir} LIMIT ${} OFFSET ${}) p
             ORDER BY p.sort_key {dir}{nulls}, p.tie {dir}",
            n + 1,
            n + 2
        );
        let mut all = refs(&params);
        all.push(&q.limit);
        all.push(&q.skip);
        // The shape depends on the filters given: cached only without any (sort and scope are
        // a handful of fixed shapes).
        let rows = if q.filters.is_empty() {
            c.q(&sql, &all).await?
        } else {
            c.dq(&sql, &all).await?
        };
        if let Some(first) = rows.first() {
            page.total = first.get(NCOL + 2);
            page.missing_broadcast = first.get(NCOL + 3);
            page.items = rows.iter().map(view_from_row).collect();
            return Ok(page);
        }
    }
    let row = if q.filters.is_empty() {
        c.q1(&meta, &refs(&params)).await?
    } else {
        c.dq1(&meta, &refs(&params)).await?
    };
    page.total = row.get(0);
    page.missing_broadcast = row.get(1);
    Ok(page)
}

fn view_from_row(r: &Row) -> DialogView {
    let status = match r.get::<_, Option<i32>>(NCOL + 1) {
        Some(3) => Some(MessageStatus::Read),
        Some(2) => Some(MessageStatus::Delivered),
        Some(1) => Some(MessageStatus::Sent),
        _ => None,
    };
    DialogView {
        dialog: from_row(r),
        unread: r.get(NCOL),
        last_message_status: status,
    }
}

/// One dialog as `user` sees it.
pub async fn view(
    tx: &Tx<'_>,
    app: AppId,
    user: UserId,
    id: &ObjectId,
) -> Result<Option<DialogView>, tokio_postgres::Error> {
    let outer = COLUMNS.replace("d.", "p.");
    let sql = format!(
        "SELECT {outer}, p.unread_count, {STATUS}
         FROM (SELECT {COLUMNS}, m.unread_count FROM dialogs d
               LEFT JOIN dialog_members m ON m.dialog_id = d.id AND m.user_id = $1
               WHERE d.id = $2 AND d.application_id = $3) p"
    );
    let row = tx.q01(&sql, &[&user.0, &id.as_str(), &app.0]).await?;
    Ok(row.as_ref().map(view_from_row))
}

/// The caller's inbox entry selected right after the dialog's columns (absent for a non-member).
fn member_after_columns(r: &Row) -> Option<Member> {
    r.get::<_, Option<i32>>(NCOL).map(|unread| Member {
        unread,
        hidden: r.get(NCOL + 1),
        joined_seq: r.get(NCOL + 2),
        cleared_seq: r.get(NCOL + 3),
        notifications: r.get(NCOL + 4),
    })
}

/// Batch form of [`get_with_member`] for the message writer: each (application, dialog, user)
/// asked, with the dialogs locked for the transaction, in one round trip. Rows come back for
/// the dialogs that exist in that application, keyed by (dialog id, user). Locks are taken in
/// id order, so two batches never wait on each other in a cycle.
pub async fn get_many_with_member(
    tx: &Tx<'_>,
    asks: &[(AppId, &ObjectId, UserId)],
) -> Result<Vec<(Dialog, i64, Option<Member>)>, tokio_postgres::Error> {
    let apps: Vec<i64> = asks.iter().map(|a| a.0 .0).collect();
    let ids: Vec<&str> = asks.iter().map(|a| a.1.as_str()).collect();
    let users: Vec<i64> = asks.iter().map(|a| a.2 .0).collect();
    let sql = format!(
        "SELECT {COLUMNS}, m.unread_count, m.hidden, m.joined_seq, m.cleared_seq, m.notifications, j.user_id
         FROM unnest($1::BIGINT[], $2::TEXT[], $3::BIGINT[]) AS j(app, id, user_id)
         JOIN dialogs d ON d.id = j.id AND d.application_id = j.app
         LEFT JOIN dialog_members m ON m.dialog_id = d.id AND m.user_id = j.user_id
         ORDER BY d.id FOR UPDATE OF d"
    );
    let rows = tx.q(&sql, &[&apps, &ids, &users]).await?;
    Ok(rows
        .iter()
        .map(|r| (from_row(r), r.get(NCOL + 5), member_after_columns(r)))
        .collect())
}

/// Batch form of [`by_private_key`] with the lock: the private dialogs of these pairs that exist.
pub async fn by_private_keys(
    tx: &Tx<'_>,
    keys: &[String],
) -> Result<Vec<(String, Dialog)>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {COLUMNS}, d.private_key FROM dialogs d WHERE d.private_key = ANY($1)
         ORDER BY d.id FOR UPDATE"
    );
    let rows = tx.q(&sql, &[&keys]).await?;
    Ok(rows.iter().map(|r| (r.get(NCOL), from_row(r))).collect())
}
