//! Volume transfers: pending offers of a volume to another project.
//!
//! A row exists exactly while its volume is `awaiting-transfer`: the row and
//! the status change are written in one transaction when the offer is made,
//! withdrawn, accepted, or voided by a forced delete. Only a salted hash of
//! the auth key is kept (`salt`, `crypt_hash`); the key itself is shown once,
//! to the offering user, and never stored.

use scoria_model::{TransferId, VolumeId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Conn, Result, StoreError, parse};

/// A transfer as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub id: TransferId,
    pub volume_id: VolumeId,
    /// The project that offered the volume.
    pub source_project_id: String,
    /// The user who offered it.
    pub user_id: String,
    pub name: Option<String>,
    /// Hex of the random salt.
    pub salt: String,
    /// Hex of the salted hash of the auth key.
    pub crypt_hash: String,
    pub no_snapshots: bool,
    pub created_at: String,
}

fn from_row(r: &SqliteRow) -> Result<Transfer> {
    Ok(Transfer {
        id: parse("transfer id", r.try_get::<&str, _>("id")?)?,
        volume_id: parse("volume id", r.try_get::<&str, _>("volume_id")?)?,
        source_project_id: r.try_get("source_project_id")?,
        user_id: r.try_get("user_id")?,
        name: r.try_get("name")?,
        salt: r.try_get("salt")?,
        crypt_hash: r.try_get("crypt_hash")?,
        no_snapshots: r.try_get("no_snapshots")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Insert a transfer. A row with that id, or another transfer of the same
/// volume, is reported as `Duplicate`.
pub async fn transfer_create(conn: &mut Conn, t: &Transfer) -> Result<()> {
    let r = sqlx::query(
        "INSERT INTO transfers (id, volume_id, source_project_id, user_id, name, salt,
                crypt_hash, no_snapshots, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT DO NOTHING",
    )
    .bind(t.id.to_string())
    .bind(t.volume_id.to_string())
    .bind(&t.source_project_id)
    .bind(&t.user_id)
    .bind(&t.name)
    .bind(&t.salt)
    .bind(&t.crypt_hash)
    .bind(t.no_snapshots)
    .bind(&t.created_at)
    .execute(conn)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Duplicate(format!(
            "transfer of volume {}",
            t.volume_id
        )));
    }
    Ok(())
}

/// One transfer, or `None`.
pub async fn transfer_get(conn: &mut Conn, id: TransferId) -> Result<Option<Transfer>> {
    let row = sqlx::query("SELECT * FROM transfers WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The pending transfer of a volume, or `None`.
pub async fn transfer_get_by_volume(conn: &mut Conn, volume: VolumeId) -> Result<Option<Transfer>> {
    let row = sqlx::query("SELECT * FROM transfers WHERE volume_id = $1")
        .bind(volume.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Filters and page of a transfer list. Transfers are listed newest first
/// (`created_at` then `id`, both descending).
#[derive(Clone, Debug, Default)]
pub struct TransferQuery {
    /// Only this project's offers; `None`: every project's (admins).
    pub project_id: Option<String>,
    pub name: Option<String>,
    pub limit: Option<i64>,
    /// Start after this transfer (which must match the query's project).
    pub marker: Option<TransferId>,
}

/// A page of transfers; `MarkerNotFound` when the marker names no transfer the
/// query could list.
pub async fn transfer_list(conn: &mut Conn, q: &TransferQuery) -> Result<Vec<Transfer>> {
    let marker = match q.marker {
        None => None,
        Some(m) => match transfer_get(conn, m).await? {
            Some(t)
                if q.project_id
                    .as_ref()
                    .is_none_or(|p| *p == t.source_project_id) =>
            {
                Some(t)
            }
            _ => return Err(StoreError::MarkerNotFound(m.to_string())),
        },
    };
    let rows = sqlx::query(
        "SELECT * FROM transfers
         WHERE ($1 IS NULL OR source_project_id = $1)
           AND ($2 IS NULL OR name = $2)
           AND ($3 IS NULL OR created_at < $3 OR (created_at = $3 AND id < $4))
         ORDER BY created_at DESC, id DESC
         LIMIT $5",
    )
    .bind(&q.project_id)
    .bind(&q.name)
    .bind(marker.as_ref().map(|t| t.created_at.as_str()))
    .bind(marker.as_ref().map(|t| t.id.to_string()))
    // Only SQLite reads a negative limit as "none": no limit binds the largest.
    .bind(q.limit.map(|l| l.max(0)).unwrap_or(i64::MAX))
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Delete a transfer; returns whether it existed.
pub async fn transfer_delete(conn: &mut Conn, id: TransferId) -> Result<bool> {
    let r = sqlx::query("DELETE FROM transfers WHERE id = $1")
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Delete the pending transfer of a volume, if any; returns whether one went.
pub async fn transfer_delete_for_volume(conn: &mut Conn, volume: VolumeId) -> Result<bool> {
    let r = sqlx::query("DELETE FROM transfers WHERE volume_id = $1")
        .bind(volume.to_string())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use scoria_model::volume::VolumeStatus;

    use super::*;
    use crate::testing;
    use crate::volumes::{self, NewVolume};

    async fn volume(conn: &mut Conn, project: &str) -> VolumeId {
        let v = NewVolume {
            id: VolumeId::new(),
            project_id: project.into(),
            user_id: "u".into(),
            name: None,
            description: None,
            size: 1,
            status: VolumeStatus::Available,
            bootable: false,
            multiattach: false,
            availability_zone: "nova".into(),
            volume_type_id: crate::volume_types::DEFAULT_TYPE_ID.parse().unwrap(),
            snapshot_id: None,
            source_volid: None,
            reservation_id: None,
            last_flow_id: None,
            metadata: BTreeMap::new(),
        };
        volumes::volume_create(conn, &v).await.unwrap();
        v.id
    }

    fn transfer(volume: VolumeId, project: &str, name: &str, at: &str) -> Transfer {
        Transfer {
            id: TransferId::new(),
            volume_id: volume,
            source_project_id: project.into(),
            user_id: "u".into(),
            name: Some(name.into()),
            salt: "00".into(),
            crypt_hash: "11".into(),
            no_snapshots: false,
            created_at: at.into(),
        }
    }

    #[tokio::test]
    async fn one_transfer_per_volume_and_it_goes_with_the_volume() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let v = volume(&mut tx, "p").await;
        let t = transfer(v, "p", "a", "2026-01-01T00:00:00.000000");
        transfer_create(&mut tx, &t).await.unwrap();
        assert_eq!(transfer_get(&mut tx, t.id).await.unwrap(), Some(t.clone()));
        let again = transfer(v, "p", "b", "2026-01-01T00:00:01.000000");
        assert!(matches!(
            transfer_create(&mut tx, &again).await,
            Err(StoreError::Duplicate(_))
        ));
        assert_eq!(
            transfer_get_by_volume(&mut tx, v)
                .await
                .unwrap()
                .map(|t| t.id),
            Some(t.id)
        );
        // Removing the volume removes its offer.
        volumes::volume_purge(&mut tx, v).await.unwrap();
        assert_eq!(transfer_get(&mut tx, t.id).await.unwrap(), None);
        assert!(!transfer_delete(&mut tx, t.id).await.unwrap());
    }

    #[tokio::test]
    async fn list_filters_by_project_and_pages_newest_first() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let mut mine = Vec::new();
        for i in 0..5 {
            let project = if i == 2 { "other" } else { "p" };
            let v = volume(&mut tx, project).await;
            // Two share a creation time: the id breaks the tie.
            let at = format!("2026-01-01T00:00:0{}.000000", i.min(3));
            let t = transfer(v, project, &format!("t{i}"), &at);
            transfer_create(&mut tx, &t).await.unwrap();
            if project == "p" {
                mine.push(t);
            }
        }
        mine.sort_by(|a, b| (&b.created_at, b.id).cmp(&(&a.created_at, a.id)));
        let q = |limit, marker| TransferQuery {
            project_id: Some("p".into()),
            limit,
            marker,
            ..Default::default()
        };
        let all = transfer_list(&mut tx, &q(None, None)).await.unwrap();
        assert_eq!(all, mine);
        let mut paged = Vec::new();
        let mut marker = None;
        loop {
            let page = transfer_list(&mut tx, &q(Some(2), marker)).await.unwrap();
            if page.is_empty() {
                break;
            }
            marker = page.last().map(|t| t.id);
            paged.extend(page);
        }
        assert_eq!(paged, mine);
        let everyone = transfer_list(&mut tx, &TransferQuery::default())
            .await
            .unwrap();
        assert_eq!(everyone.len(), 5);
        let named = TransferQuery {
            name: Some("t1".into()),
            ..Default::default()
        };
        assert_eq!(transfer_list(&mut tx, &named).await.unwrap().len(), 1);
        // Another project's transfer is no marker for this project.
        let theirs = everyone
            .iter()
            .find(|t| t.source_project_id == "other")
            .unwrap()
            .id;
        assert!(matches!(
            transfer_list(&mut tx, &q(None, Some(theirs))).await,
            Err(StoreError::MarkerNotFound(_))
        ));
        assert!(
            transfer_delete_for_volume(&mut tx, mine[0].volume_id)
                .await
                .unwrap()
        );
        assert_eq!(
            transfer_list(&mut tx, &q(None, None)).await.unwrap().len(),
            3
        );
    }
}
