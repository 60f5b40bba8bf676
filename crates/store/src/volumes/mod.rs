//! Volumes and their metadata: writes and single reads here, how a row is
//! read in `row.rs`, lists in `list.rs`.

use std::collections::BTreeMap;

use scoria_model::volume::{AttachStatus, VolumeStatus};
use scoria_model::{GlanceImageId, GroupId, ImageId, ReservationId, VolumeId, VolumeTypeId};
use sqlx::Row;

mod list;
mod migrate;
mod row;

use crate::shared::KeyValues;
pub use crate::shared::SortDir;
use crate::{Conn, Result, StoreError, now, parse};
pub use list::{SortKey, VolumeQuery, volume_count, volume_list, volume_list_all, volume_summary};
pub use migrate::{
    MIGRATION_BUSY, Switch, is_migrating, volume_begin_migration, volume_fail_migration,
    volume_switch_migration,
};
use row::{JSON_ROW, from_json};

/// A volume as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Volume {
    pub id: VolumeId,
    pub project_id: String,
    pub user_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// GiB.
    pub size: i64,
    pub status: VolumeStatus,
    pub attach_status: AttachStatus,
    pub migration_status: Option<String>,
    pub bootable: bool,
    /// `None` until the flag is first set.
    pub read_only: Option<bool>,
    pub multiattach: bool,
    pub availability_zone: String,
    pub volume_type_id: VolumeTypeId,
    pub snapshot_id: Option<String>,
    pub source_volid: Option<String>,
    /// The backend the volume was placed on (Cinder's `host`); its images
    /// are there.
    pub backend: Option<String>,
    /// Its data: the active image (see `images.rs`), once placed.
    pub image_id: Option<ImageId>,
    /// The image service's image it was made from (see `volume_images.rs`).
    pub glance_image_id: Option<GlanceImageId>,
    pub reservation_id: Option<ReservationId>,
    pub last_flow_id: Option<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
    pub launched_at: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// The group the volume belongs to (see `groups/`).
    pub group_id: Option<GroupId>,
    /// Its type's name, when read with the row (the one-value reads of
    /// `row.rs`); `None` from a plain row.
    pub volume_type_name: Option<String>,
}

/// What a create flow writes when it makes the entry.
#[derive(Clone, Debug)]
pub struct NewVolume {
    pub id: VolumeId,
    pub project_id: String,
    pub user_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub size: i64,
    pub status: VolumeStatus,
    pub bootable: bool,
    pub multiattach: bool,
    pub availability_zone: String,
    pub volume_type_id: VolumeTypeId,
    pub snapshot_id: Option<String>,
    pub source_volid: Option<String>,
    pub reservation_id: Option<ReservationId>,
    pub last_flow_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// Insert a new volume entry with its metadata. An entry with that id already
/// present is reported as `Duplicate` (a re-run of the step finds it there).
pub async fn volume_create(conn: &mut Conn, v: &NewVolume) -> Result<()> {
    let inserted = sqlx::query(
        "INSERT INTO volumes (id, project_id, user_id, name, description, size, status,
                attach_status, bootable, multiattach, availability_zone,
                volume_type_id, snapshot_id, source_volid, reservation_id, last_flow_id,
                created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'detached', $8, $9, $10, $11, $12, $13,
                 $14, $15, $16)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(v.id.to_string())
    .bind(&v.project_id)
    .bind(&v.user_id)
    .bind(&v.name)
    .bind(&v.description)
    .bind(v.size)
    .bind(v.status.as_str())
    .bind(v.bootable)
    .bind(v.multiattach)
    .bind(&v.availability_zone)
    .bind(v.volume_type_id.to_string())
    .bind(&v.snapshot_id)
    .bind(&v.source_volid)
    .bind(v.reservation_id.map(|r| r.to_string()))
    .bind(&v.last_flow_id)
    .bind(now())
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::Duplicate(format!("volume {}", v.id)));
    }
    // A new entry has no metadata yet: adding is enough.
    volume_metadata_merge(conn, v.id, &v.metadata).await
}

/// One volume with its metadata, or `None`.
pub async fn volume_get(conn: &mut Conn, id: VolumeId) -> Result<Option<Volume>> {
    let j: Option<String> =
        sqlx::query_scalar(&format!("SELECT {JSON_ROW} FROM volumes WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    j.as_deref().map(from_json).transpose()
}

/// Conditionally move a volume to `to`: only if its status is one of `from`
/// (any status when `from` is empty). Returns whether it applied.
pub async fn volume_set_status(
    conn: &mut Conn,
    id: VolumeId,
    from: &[VolumeStatus],
    to: VolumeStatus,
) -> Result<bool> {
    volume_set_status_by_flow(conn, id, from, to, None).await
}

/// As [`volume_set_status`], also recording `flow` as the volume's last flow.
pub async fn volume_set_status_by_flow(
    conn: &mut Conn,
    id: VolumeId,
    from: &[VolumeStatus],
    to: VolumeStatus,
    flow: Option<&str>,
) -> Result<bool> {
    let mut sql = String::from(
        "UPDATE volumes SET status = $2, updated_at = $3, last_flow_id = COALESCE($4, last_flow_id)
         WHERE id = $1",
    );
    if !from.is_empty() {
        let params: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 5)).collect();
        sql.push_str(&format!(" AND status IN ({})", params.join(", ")));
    }
    let mut q = sqlx::query(&sql)
        .bind(id.to_string())
        .bind(to.as_str())
        .bind(now())
        .bind(flow);
    for s in from {
        q = q.bind(s.as_str());
    }
    let r = q.execute(conn).await?;
    Ok(r.rows_affected() == 1)
}

/// Commit a create flow's quota: the entry stops pointing at its reservation
/// (the caller deletes the reservation in the same transaction).
pub async fn volume_commit_quota(conn: &mut Conn, id: VolumeId) -> Result<bool> {
    let r = sqlx::query("UPDATE volumes SET reservation_id = NULL WHERE id = $1")
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Record where the volume's data lives: the backend, its active image
/// (recorded by the caller in the same transaction) and the backend's zone.
/// Only while `creating`.
pub async fn volume_place(
    conn: &mut Conn,
    id: VolumeId,
    backend: &str,
    image: ImageId,
    availability_zone: &str,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE volumes SET backend = $2, image_id = $3, availability_zone = $4, updated_at = $5
         WHERE id = $1 AND status = 'creating'",
    )
    .bind(id.to_string())
    .bind(backend)
    .bind(image.to_string())
    .bind(availability_zone)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Point a volume at another active image, or at none (`None`: the undo of
/// a placement). Reports whether the volume exists.
pub async fn volume_set_image(
    conn: &mut Conn,
    id: VolumeId,
    image: Option<ImageId>,
) -> Result<bool> {
    let r = sqlx::query("UPDATE volumes SET image_id = $2, updated_at = $3 WHERE id = $1")
        .bind(id.to_string())
        .bind(image.map(|i| i.to_string()))
        .bind(now())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Switch a volume from its active image `from` to `to`, only while `from`
/// is still its active image (a snapshot, a clone by overlay or a revert
/// switching it); reports whether it switched.
pub async fn volume_switch_image(
    conn: &mut Conn,
    id: VolumeId,
    from: ImageId,
    to: ImageId,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE volumes SET image_id = $3, updated_at = $4 WHERE id = $1 AND image_id = $2",
    )
    .bind(id.to_string())
    .bind(from.to_string())
    .bind(to.to_string())
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Hold a volume that a clone is about to read: succeeds (true) only while it
/// is `available` or `in-use`. It changes nothing, but it writes the row, so on
/// PostgreSQL it waits for (and then re-reads) a concurrent change of the
/// source's status and holds the row until the caller commits. Every flow that
/// would make the source unreadable changes its status first and then asks
/// [`volume_clones_in_progress`]: in either order, one of the two sees the other.
/// (SQLite's single writer serializes the transactions anyway.)
pub async fn volume_hold_for_read(conn: &mut Conn, id: VolumeId) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE volumes SET updated_at = updated_at
         WHERE id = $1 AND status IN ('available', 'in-use')",
    )
    .bind(id.to_string())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The volumes being created from `id` (`creating`, with `id` as their
/// source), by id: while there are any, `id` is being read.
pub async fn volume_clones_in_progress(conn: &mut Conn, id: VolumeId) -> Result<Vec<VolumeId>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM volumes WHERE source_volid = $1 AND status = 'creating' ORDER BY id",
    )
    .bind(id.to_string())
    .fetch_all(conn)
    .await?;
    ids.iter().map(|s| parse("volume id", s)).collect()
}

/// Whether nothing that can stand in a delete's way is there, in one query:
/// no attachment, no clone being made of it, no snapshot (of any status),
/// no unsettled flow on it but `flow`, and its backend's service (`host`,
/// `binary`) not frozen. `true` lets a delete skip the checks that name the
/// obstacle; `false` says only that one of them has something to say.
pub async fn volume_nothing_in_the_way(
    conn: &mut Conn,
    id: VolumeId,
    flow: &str,
    service: Option<(&str, &str)>,
) -> Result<bool> {
    let (host, binary) = service.unzip();
    let blocked: i64 = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM attachments WHERE volume_id = $1)
             OR EXISTS (SELECT 1 FROM volumes WHERE source_volid = $1 AND status = 'creating')
             OR EXISTS (SELECT 1 FROM snapshots WHERE volume_id = $1)
             OR EXISTS (SELECT 1 FROM flows WHERE resource_id = $1 AND id <> $2
                          AND state IN ('running', 'unwinding', 'stuck'))
             OR EXISTS (SELECT 1 FROM services WHERE host = $3 AND binary_name = $4 AND frozen)",
    )
    .bind(id.to_string())
    .bind(flow)
    .bind(host)
    .bind(binary)
    .fetch_one(conn)
    .await?;
    Ok(blocked == 0)
}

/// A create flow's last step: `creating` → `available`, with the launch
/// time, and the volume's image `ready` if it is still `creating`: two
/// statements sent as one command. Whether the volume moved.
pub async fn volume_mark_available(conn: &mut Conn, id: VolumeId) -> Result<bool> {
    let t = now();
    let moved = sqlx::query(
        "UPDATE images SET state = 'ready', updated_at = $2
         WHERE id = (SELECT image_id FROM volumes WHERE id = $1) AND state = 'creating';
         UPDATE volumes SET status = 'available', launched_at = $2, updated_at = $2
         WHERE id = $1 AND status IN ('creating', 'downloading', 'restoring-backup')
         RETURNING id",
    )
    .bind(id.to_string())
    .bind(&t)
    .fetch_all(conn)
    .await?;
    Ok(moved.len() == 1)
}

/// An extend flow's last step: `extending` → `available` at the new size.
pub async fn volume_finish_extend(conn: &mut Conn, id: VolumeId, new_size: i64) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE volumes SET status = 'available', size = $2, updated_at = $3
         WHERE id = $1 AND status = 'extending'",
    )
    .bind(id.to_string())
    .bind(new_size)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Hand a volume awaiting transfer to its new owner: project, user, and
/// `available` again, only while it is `awaiting-transfer`. Its quota usage
/// moves with it, being derived from `project_id`. Returns whether it applied.
pub async fn volume_accept_transfer(
    conn: &mut Conn,
    id: VolumeId,
    project_id: &str,
    user_id: &str,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE volumes SET project_id = $2, user_id = $3, status = 'available', updated_at = $4
         WHERE id = $1 AND status = 'awaiting-transfer' AND reservation_id IS NULL",
    )
    .bind(id.to_string())
    .bind(project_id)
    .bind(user_id)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Change name and/or description (`Some(None)` clears a field).
pub async fn volume_update_text(
    conn: &mut Conn,
    id: VolumeId,
    name: Option<Option<&str>>,
    description: Option<Option<&str>>,
) -> Result<bool> {
    crate::shared::update_text(conn, "volumes", &id.to_string(), name, description).await
}

/// Retype in place: the volume takes type `to` (and the multiattach flag it
/// implies), only if it still has type `from`, is `available` or `in-use`
/// and its quota is committed (a reservation still holding it would be
/// counted under the old type). Its per-type usage moves in the same update.
/// Returns whether it applied.
pub async fn volume_retype(
    conn: &mut Conn,
    id: VolumeId,
    from: VolumeTypeId,
    to: VolumeTypeId,
    multiattach: bool,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE volumes SET volume_type_id = $3, multiattach = $4, updated_at = $5
         WHERE id = $1 AND volume_type_id = $2 AND status IN ('available', 'in-use')
           AND reservation_id IS NULL",
    )
    .bind(id.to_string())
    .bind(from.to_string())
    .bind(to.to_string())
    .bind(multiattach)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Set the bootable flag.
pub async fn volume_set_bootable(conn: &mut Conn, id: VolumeId, bootable: bool) -> Result<bool> {
    set_flag(conn, id, "bootable", bootable).await
}

/// Set the read-only flag.
pub async fn volume_set_read_only(conn: &mut Conn, id: VolumeId, read_only: bool) -> Result<bool> {
    set_flag(conn, id, "read_only", read_only).await
}

/// Set one boolean column (named by the callers above, never by a request).
async fn set_flag(
    conn: &mut Conn,
    id: VolumeId,
    column: &'static str,
    value: bool,
) -> Result<bool> {
    let sql = format!("UPDATE volumes SET {column} = $2, updated_at = $3 WHERE id = $1");
    let r = sqlx::query(&sql)
        .bind(id.to_string())
        .bind(value)
        .bind(now())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Admin reset: set any of status, attach status, migration status.
pub async fn volume_reset_state(
    conn: &mut Conn,
    id: VolumeId,
    status: Option<VolumeStatus>,
    attach_status: Option<AttachStatus>,
    migration_status: Option<Option<&str>>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE volumes SET
            status = COALESCE($2, status),
            attach_status = COALESCE($3, attach_status),
            migration_status = CASE WHEN $4 THEN $5 ELSE migration_status END,
            updated_at = $6
         WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(status.map(|s| s.as_str()))
    .bind(attach_status.map(|s| s.as_str()))
    .bind(migration_status.is_some())
    .bind(migration_status.flatten())
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Remove the entry (and its metadata). Only from `deleting`. Returns whether a
/// row went; an already removed entry is `false`.
pub async fn volume_delete(conn: &mut Conn, id: VolumeId) -> Result<bool> {
    let r = sqlx::query("DELETE FROM volumes WHERE id = $1 AND status = 'deleting'")
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Remove the entry whatever its status (undo of a create whose entry must go).
pub async fn volume_purge(conn: &mut Conn, id: VolumeId) -> Result<bool> {
    let r = sqlx::query("DELETE FROM volumes WHERE id = $1")
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Sum of the sizes (GiB) of the volumes placed on each backend, from the
/// totals migration 0021's triggers keep (one row per backend).
pub async fn volume_provisioned_by_backend(conn: &mut Conn) -> Result<BTreeMap<String, i64>> {
    let rows = sqlx::query("SELECT backend, gb FROM backend_totals")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("backend")?, r.try_get("gb")?)))
        .collect()
}

/// Per backend: how many volumes are placed on it and the sum of their sizes
/// (GiB), from the same totals (the scheduler's weighers read both).
pub async fn volume_totals_by_backend(conn: &mut Conn) -> Result<BTreeMap<String, (i64, i64)>> {
    let rows = sqlx::query("SELECT backend, n, gb FROM backend_totals")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("backend")?, (r.try_get("n")?, r.try_get("gb")?))))
        .collect()
}

/// Sum of the sizes (GiB) of the volumes placed on a backend.
pub async fn volume_provisioned_gib(conn: &mut Conn, backend: &str) -> Result<i64> {
    let gb: i64 =
        sqlx::query_scalar("SELECT COALESCE(SUM(gb), 0) FROM backend_totals WHERE backend = $1")
            .bind(backend)
            .fetch_one(conn)
            .await?;
    Ok(gb)
}

/// Per project: how many volumes are placed on a backend and their total size
/// in GiB (`GET /os-hosts/{host}`), by project id.
pub async fn volume_usage_on_backend(
    conn: &mut Conn,
    backend: &str,
) -> Result<Vec<(String, i64, i64)>> {
    let rows = sqlx::query(
        "SELECT project_id, COUNT(*) AS n, COALESCE(SUM(size), 0) AS gb FROM volumes
         WHERE backend = $1 GROUP BY project_id ORDER BY project_id",
    )
    .bind(backend)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("project_id")?, r.try_get("n")?, r.try_get("gb")?)))
        .collect()
}

// ---------------------------------------------------------------------------
// Metadata

const METADATA: KeyValues = KeyValues {
    table: "volume_metadata",
    owner: "volume_id",
};

pub async fn volume_metadata_get(
    conn: &mut Conn,
    id: VolumeId,
) -> Result<BTreeMap<String, String>> {
    METADATA.get(conn, &id.to_string()).await
}

/// Replace all metadata with `items`.
pub async fn volume_metadata_replace(
    conn: &mut Conn,
    id: VolumeId,
    items: &BTreeMap<String, String>,
) -> Result<()> {
    METADATA.replace(conn, &id.to_string(), items).await
}

/// Add or overwrite the given keys, keeping the others (one statement).
pub async fn volume_metadata_merge(
    conn: &mut Conn,
    id: VolumeId,
    items: &BTreeMap<String, String>,
) -> Result<()> {
    METADATA.merge(conn, &id.to_string(), items).await
}

/// Delete one key; returns whether it existed.
pub async fn volume_metadata_delete(conn: &mut Conn, id: VolumeId, key: &str) -> Result<bool> {
    METADATA.delete(conn, &id.to_string(), key).await
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn new_volume(project: &str, name: &str, size: i64) -> NewVolume {
        NewVolume {
            id: VolumeId::new(),
            project_id: project.into(),
            user_id: "u".into(),
            name: Some(name.into()),
            description: None,
            size,
            status: VolumeStatus::Creating,
            bootable: false,
            multiattach: false,
            availability_zone: "nova".into(),
            volume_type_id: crate::volume_types::DEFAULT_TYPE_ID.parse().unwrap(),
            snapshot_id: None,
            source_volid: None,
            reservation_id: None,
            last_flow_id: None,
            metadata: [("k".to_string(), name.to_string())].into(),
        }
    }

    #[tokio::test]
    async fn conditional_status_changes_apply_once() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let v = new_volume("p", "a", 1);
        volume_create(&mut tx, &v).await.unwrap();
        assert!(matches!(
            volume_create(&mut tx, &v).await,
            Err(StoreError::Duplicate(_))
        ));
        use VolumeStatus::*;
        assert!(
            !volume_set_status(&mut tx, v.id, &[Available], Deleting)
                .await
                .unwrap()
        );
        assert!(volume_mark_available(&mut tx, v.id).await.unwrap());
        assert!(!volume_mark_available(&mut tx, v.id).await.unwrap());
        assert!(
            volume_set_status(&mut tx, v.id, &[Available, Error], Deleting)
                .await
                .unwrap()
        );
        assert!(
            !volume_set_status(&mut tx, v.id, &[Available, Error], Deleting)
                .await
                .unwrap()
        );
        assert!(volume_delete(&mut tx, v.id).await.unwrap());
        assert!(volume_get(&mut tx, v.id).await.unwrap().is_none());
        assert!(volume_metadata_get(&mut tx, v.id).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_source_is_read_while_a_clone_of_it_is_creating() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        use VolumeStatus::*;
        let source = new_volume("p", "source", 1);
        volume_create(&mut tx, &source).await.unwrap();
        // Only a readable volume can be held for a clone.
        assert!(!volume_hold_for_read(&mut tx, source.id).await.unwrap());
        assert!(volume_mark_available(&mut tx, source.id).await.unwrap());
        assert!(volume_hold_for_read(&mut tx, source.id).await.unwrap());
        assert!(
            !volume_hold_for_read(&mut tx, VolumeId::new())
                .await
                .unwrap()
        );
        let clone = |name| NewVolume {
            source_volid: Some(source.id.to_string()),
            ..new_volume("p", name, 2)
        };
        let (a, b) = (clone("a"), clone("b"));
        volume_create(&mut tx, &a).await.unwrap();
        volume_create(&mut tx, &b).await.unwrap();
        let mut both = vec![a.id, b.id];
        both.sort_by_key(|id| id.to_string());
        assert_eq!(
            volume_clones_in_progress(&mut tx, source.id).await.unwrap(),
            both
        );
        // A clone that is made (or failed) no longer reads its source.
        assert!(volume_mark_available(&mut tx, a.id).await.unwrap());
        assert!(
            volume_set_status(&mut tx, b.id, &[Creating], Error)
                .await
                .unwrap()
        );
        assert!(
            volume_clones_in_progress(&mut tx, source.id)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            volume_clones_in_progress(&mut tx, a.id)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn list_filters_sorts_and_pages_with_a_marker() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let mut ids = Vec::new();
        for (i, name) in ["c", "a", "b", "a", "d"].iter().enumerate() {
            let v = new_volume(if i == 4 { "other" } else { "p" }, name, i as i64 + 1);
            ids.push(v.id);
            volume_create(&mut tx, &v).await.unwrap();
        }
        let q = |sort: Vec<(SortKey, SortDir)>, limit, marker| VolumeQuery {
            project_id: Some("p".into()),
            sort,
            limit,
            marker,
            ..Default::default()
        };
        let names = |vs: &[Volume]| {
            vs.iter()
                .map(|v| v.name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        let all = volume_list(&mut tx, &q(vec![(SortKey::Name, SortDir::Asc)], None, None))
            .await
            .unwrap();
        assert_eq!(names(&all), ["a", "a", "b", "c"]);
        assert_eq!(all[0].metadata["k"], "a");
        // Walk the same order two at a time with markers; nothing repeats or is lost.
        let mut seen = Vec::new();
        let mut marker = None;
        loop {
            let page = volume_list(
                &mut tx,
                &q(vec![(SortKey::Name, SortDir::Asc)], Some(2), marker),
            )
            .await
            .unwrap();
            if page.is_empty() {
                break;
            }
            marker = page.last().map(|v| v.id);
            seen.extend(page);
        }
        assert_eq!(
            seen.iter().map(|v| v.id).collect::<Vec<_>>(),
            all.iter().map(|v| v.id).collect::<Vec<_>>()
        );
        // Descending size.
        let by_size = volume_list(
            &mut tx,
            &q(vec![(SortKey::Size, SortDir::Desc)], None, None),
        )
        .await
        .unwrap();
        assert_eq!(
            by_size.iter().map(|v| v.size).collect::<Vec<_>>(),
            [4, 3, 2, 1]
        );
        // Filters.
        let only_a = VolumeQuery {
            project_id: Some("p".into()),
            name: Some("a".into()),
            ..Default::default()
        };
        assert_eq!(volume_list(&mut tx, &only_a).await.unwrap().len(), 2);
        assert_eq!(volume_count(&mut tx, &only_a).await.unwrap(), 2);
        let meta = VolumeQuery {
            project_id: Some("p".into()),
            metadata: vec![("k".into(), "b".into())],
            ..Default::default()
        };
        assert_eq!(names(&volume_list(&mut tx, &meta).await.unwrap()), ["b"]);
        // Another project's volume is not a valid marker.
        let err = volume_list(&mut tx, &q(vec![], None, Some(ids[4])))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::MarkerNotFound(_)));
        // Admin view sees every project.
        assert_eq!(
            volume_list(&mut tx, &VolumeQuery::default())
                .await
                .unwrap()
                .len(),
            5
        );
        let (n, gb, meta) = volume_summary(&mut tx, Some("p")).await.unwrap();
        assert_eq!((n, gb), (4, 10));
        assert_eq!(meta["k"], ["a", "b", "c"]);
    }
}
