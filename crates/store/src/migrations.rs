//! Embedded, forward-only schema migrations.
//!
//! Each migration is a SQL file compiled into the binary, applied once, in order,
//! inside a write transaction together with its row in `schema_migrations`. There
//! is no "down": a release that needs to undo a change ships a new migration.

use sqlx::{Connection as _, SqliteConnection};

use crate::{Result, StoreError};

/// Every migration, in order. Append only; never edit one that has shipped.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "core", include_str!("../migrations/0001_core.sql")),
    (
        2,
        "identity",
        include_str!("../migrations/0002_identity.sql"),
    ),
    (
        3,
        "types_qos",
        include_str!("../migrations/0003_types_qos.sql"),
    ),
    (
        4,
        "messages",
        include_str!("../migrations/0004_messages.sql"),
    ),
    (
        5,
        "transfers",
        include_str!("../migrations/0005_transfers.sql"),
    ),
    (6, "clones", include_str!("../migrations/0006_clones.sql")),
    (7, "groups", include_str!("../migrations/0007_groups.sql")),
    (
        8,
        "flow_ownership",
        include_str!("../migrations/0008_flow_ownership.sql"),
    ),
    (9, "images", include_str!("../migrations/0009_images.sql")),
    (
        10,
        "snapshots",
        include_str!("../migrations/0010_snapshots.sql"),
    ),
    (
        11,
        "snapshot_progress",
        include_str!("../migrations/0011_snapshot_progress.sql"),
    ),
    (
        12,
        "image_service",
        include_str!("../migrations/0012_image_service.sql"),
    ),
    (
        13,
        "attachments",
        include_str!("../migrations/0013_attachments.sql"),
    ),
    (
        14,
        "volume_images",
        include_str!("../migrations/0014_volume_images.sql"),
    ),
    (
        15,
        "default_types",
        include_str!("../migrations/0015_default_types.sql"),
    ),
    (
        16,
        "system_scope",
        include_str!("../migrations/0016_system_scope.sql"),
    ),
    (
        18,
        "backups",
        include_str!("../migrations/0018_backups.sql"),
    ),
    (
        20,
        "backup_metadata",
        include_str!("../migrations/0020_backup_metadata.sql"),
    ),
    (
        21,
        "usage_totals",
        include_str!("../migrations/0021_usage_totals.sql"),
    ),
    (
        22,
        "image_unref",
        include_str!("../migrations/0022_image_unref.sql"),
    ),
    (
        23,
        "page_indexes",
        include_str!("../migrations/0023_page_indexes.sql"),
    ),
    (
        24,
        "placements",
        include_str!("../migrations/0024_placements.sql"),
    ),
    (
        25,
        "unmanaged_snapshots",
        include_str!("../migrations/0025_unmanaged_snapshots.sql"),
    ),
    (
        26,
        "backends",
        include_str!("../migrations/0026_backends.sql"),
    ),
    (
        27,
        "image_checks",
        include_str!("../migrations/0027_image_checks.sql"),
    ),
];

/// The schema version this build's migrations end at.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Apply every migration not yet applied whose version is below `before`
/// (all of them when `None`).
pub(crate) async fn run(conn: &mut SqliteConnection, before: Option<i64>) -> Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    BIGINT PRIMARY KEY,
            name       TEXT NOT NULL,
            applied_at TEXT NOT NULL
        )",
    )
    .execute(&mut *conn)
    .await?;
    for &(version, name, sql) in MIGRATIONS {
        if before.is_some_and(|b| version >= b) {
            break;
        }
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
        if applied.is_some() {
            continue;
        }
        // A migration file holds several statements; SQLite's driver runs them
        // in order. (PostgreSQL's simple query protocol does the same.)
        sqlx::query(sql)
            .execute(&mut *tx)
            .await
            .map_err(|source| StoreError::Migration {
                version,
                name,
                source,
            })?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(version)
        .bind(name)
        .bind(crate::now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(version, name, "applied schema migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_start_at_one_and_increase() {
        // Strictly increasing rather than dense: migration numbers are handed
        // out to branches in advance, and each migration is applied by its own
        // version, so a gap (a branch not merged yet) is harmless.
        let versions: Vec<i64> = super::MIGRATIONS.iter().map(|m| m.0).collect();
        assert_eq!(versions.first(), Some(&1));
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    }
}
