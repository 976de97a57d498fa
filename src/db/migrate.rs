//! Schema migrations: `migrations/NNNN_name.sql`, applied in order, each in its own transaction,
//! recorded in `schema_migrations`. Forward-only; a failure leaves the database as it was.

use tokio_postgres::Client;

pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Adding one: a new file and one line here (a test checks both agree).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init",
        sql: include_str!("../../migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_chat",
        sql: include_str!("../../migrations/0002_chat.sql"),
    },
    Migration {
        version: 3,
        name: "0003_xmpp",
        sql: include_str!("../../migrations/0003_xmpp.sql"),
    },
    Migration {
        version: 4,
        name: "0004_privacy",
        sql: include_str!("../../migrations/0004_privacy.sql"),
    },
    Migration {
        version: 5,
        name: "0005_session_nonce",
        sql: include_str!("../../migrations/0005_session_nonce.sql"),
    },
    Migration {
        version: 6,
        name: "0006_offline_sender",
        sql: include_str!("../../migrations/0006_offline_sender.sql"),
    },
    Migration {
        version: 7,
        name: "0007_user_ban",
        sql: include_str!("../../migrations/0007_user_ban.sql"),
    },
    Migration {
        version: 8,
        name: "0008_archive",
        sql: include_str!("../../migrations/0008_archive.sql"),
    },
    Migration {
        version: 9,
        name: "0009_scram",
        sql: include_str!("../../migrations/0009_scram.sql"),
    },
    Migration {
        version: 10,
        name: "0010_pep",
        sql: include_str!("../../migrations/0010_pep.sql"),
    },
    Migration {
        version: 11,
        name: "0011_blobs",
        sql: include_str!("../../migrations/0011_blobs.sql"),
    },
    Migration {
        version: 12,
        name: "0012_push",
        sql: include_str!("../../migrations/0012_push.sql"),
    },
    Migration {
        version: 13,
        name: "0013_vcard_private",
        sql: include_str!("../../migrations/0013_vcard_private.sql"),
    },
    Migration {
        version: 14,
        name: "0014_muc_rooms",
        sql: include_str!("../../migrations/0014_muc_rooms.sql"),
    },
    Migration {
        version: 15,
        name: "0015_blob_slots",
        sql: include_str!("../../migrations/0015_blob_slots.sql"),
    },
];

/// Serialises concurrent migrators (several Parley nodes starting at once).
const LOCK_KEY: i64 = 0x7061_726c_6579; // "parley"

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration {name} failed, nothing of it was applied: {source}")]
    Failed {
        name: &'static str,
        source: tokio_postgres::Error,
    },
    #[error("reading applied migrations: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// Applies every pending migration; returns the names applied.
pub async fn run(client: &mut Client) -> Result<Vec<&'static str>, MigrateError> {
    run_list(client, MIGRATIONS).await
}

/// Applies the pending migrations of `list` (tests pass their own lists).
pub async fn run_list(
    client: &mut Client,
    list: &'static [Migration],
) -> Result<Vec<&'static str>, MigrateError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = apply_pending(client, list).await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    result
}

async fn apply_pending(
    client: &mut Client,
    list: &'static [Migration],
) -> Result<Vec<&'static str>, MigrateError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY,
                 name TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
    let applied: Vec<i32> = client
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut done = Vec::new();
    for m in list.iter().filter(|m| !applied.contains(&m.version)) {
        let fail = |source| MigrateError::Failed {
            name: m.name,
            source,
        };
        let tx = client.transaction().await.map_err(fail)?;
        tx.batch_execute(m.sql).await.map_err(fail)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        tracing::info!(migration = m.name, "applied");
        done.push(m.name);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("{}.sql", m.name))
            .collect();
        assert_eq!(files, listed);
        // Versions only increase; numbers may be reserved by work on another branch.
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
        for m in MIGRATIONS {
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
        }
    }
}
