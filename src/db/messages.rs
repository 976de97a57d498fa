//! The `messages` and `message_reactions` tables. Functions run inside the caller's transaction.

use tokio_postgres::Transaction;

use crate::model::ObjectId;

type Tx<'a> = Transaction<'a>;

/// Which of `ids` are messages of the dialog.
pub async fn existing_in_dialog(
    tx: &Tx<'_>,
    dialog: &ObjectId,
    ids: &[String],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = tx
        .query(
            "SELECT id FROM messages WHERE dialog_id = $1 AND id = ANY($2)",
            &[&dialog.as_str(), &ids],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
