//! Attachments: one row per use of a volume by an instance (see the
//! migration `0013_attachments.sql` for what a row means).
//!
//! A row with an export (`export_transport` set) in a status of
//! [`AttachmentStatus::EXPORTED`] is the intent that the volume is served to
//! its holder; [`attachment_list_exported`] is what the exports' reconciler
//! converges to.

use scoria_model::attachment::{AttachMode, AttachmentStatus};
use scoria_model::{AttachmentId, VolumeId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Conn, Result, StoreError, parse};

/// How an export is reached, as planned for an attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportPlan {
    /// `tcp-psk` (TCP with TLS and a pre-shared key of its own), `tcp`
    /// (plain TCP, only when TLS is turned off) or `unix` (a socket on the
    /// storage host).
    pub transport: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub psk_identity: Option<String>,
    /// Hex. Secret.
    pub psk_key: Option<String>,
}

/// An attachment as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    pub id: AttachmentId,
    pub volume_id: VolumeId,
    /// The volume's project when the attachment was made.
    pub project_id: String,
    pub instance_uuid: Option<String>,
    pub status: AttachmentStatus,
    pub attach_mode: AttachMode,
    /// The connector as the client gave it (JSON text).
    pub connector: Option<String>,
    pub host_name: Option<String>,
    pub mountpoint: Option<String>,
    pub export: Option<ExportPlan>,
    pub attached_at: Option<String>,
    pub detached_at: Option<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("id", &self.id)
            .field("volume_id", &self.volume_id)
            .field("status", &self.status)
            .field("attach_mode", &self.attach_mode)
            .field("instance_uuid", &self.instance_uuid)
            .field(
                "export",
                &self
                    .export
                    .as_ref()
                    .map(|e| (&e.transport, &e.host, e.port, &e.psk_identity)),
            )
            .finish_non_exhaustive()
    }
}

fn from_row(r: &SqliteRow) -> Result<Attachment> {
    let transport: Option<String> = r.try_get("export_transport")?;
    let port: Option<i64> = r.try_get("export_port")?;
    Ok(Attachment {
        id: parse("attachment id", r.try_get::<&str, _>("id")?)?,
        volume_id: parse("volume id", r.try_get::<&str, _>("volume_id")?)?,
        project_id: r.try_get("project_id")?,
        instance_uuid: r.try_get("instance_uuid")?,
        status: parse("attachment status", r.try_get::<&str, _>("status")?)?,
        attach_mode: parse("attach mode", r.try_get::<&str, _>("attach_mode")?)?,
        connector: r.try_get("connector")?,
        host_name: r.try_get("host_name")?,
        mountpoint: r.try_get("mountpoint")?,
        export: match transport {
            None => None,
            Some(transport) => Some(ExportPlan {
                transport,
                host: r.try_get("export_host")?,
                port: port
                    .map(|p| {
                        u16::try_from(p)
                            .map_err(|_| StoreError::Corrupt(format!("export port {p}")))
                    })
                    .transpose()?,
                psk_identity: r.try_get("psk_identity")?,
                psk_key: r.try_get("psk_key")?,
            }),
        },
        attached_at: r.try_get("attached_at")?,
        detached_at: r.try_get("detached_at")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// What a new attachment starts with.
#[derive(Clone, Debug)]
pub struct NewAttachment {
    pub id: AttachmentId,
    pub volume_id: VolumeId,
    pub project_id: String,
    pub instance_uuid: Option<String>,
    pub status: AttachmentStatus,
    pub attach_mode: AttachMode,
}

/// Insert an attachment; an existing id is `Duplicate`.
pub async fn attachment_create(conn: &mut Conn, a: &NewAttachment) -> Result<()> {
    let r = sqlx::query(
        "INSERT INTO attachments (id, volume_id, project_id, instance_uuid, status, attach_mode,
                created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT DO NOTHING",
    )
    .bind(a.id.to_string())
    .bind(a.volume_id.to_string())
    .bind(&a.project_id)
    .bind(&a.instance_uuid)
    .bind(a.status.as_str())
    .bind(a.attach_mode.as_str())
    .bind(crate::now())
    .execute(conn)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Duplicate(format!("attachment {}", a.id)));
    }
    Ok(())
}

/// One attachment, or `None`.
pub async fn attachment_get(conn: &mut Conn, id: AttachmentId) -> Result<Option<Attachment>> {
    let row = sqlx::query("SELECT * FROM attachments WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// A volume's attachments, oldest first.
pub async fn attachment_list_for_volume(
    conn: &mut Conn,
    volume: VolumeId,
) -> Result<Vec<Attachment>> {
    let rows =
        sqlx::query("SELECT * FROM attachments WHERE volume_id = $1 ORDER BY created_at, id")
            .bind(volume.to_string())
            .fetch_all(conn)
            .await?;
    rows.iter().map(from_row).collect()
}

/// The `attached` attachments of each of `volumes` (a page of volume views),
/// oldest first, in one query.
pub async fn attachment_list_attached_for(
    conn: &mut Conn,
    volumes: &[VolumeId],
) -> Result<std::collections::BTreeMap<VolumeId, Vec<Attachment>>> {
    let mut out: std::collections::BTreeMap<VolumeId, Vec<Attachment>> = Default::default();
    let rows = sqlx::query(
        "SELECT * FROM attachments WHERE status = 'attached'
           AND volume_id IN (SELECT value FROM json_each($1))
         ORDER BY created_at, id",
    )
    .bind(crate::shared::id_list(volumes))
    .fetch_all(conn)
    .await?;
    for row in rows {
        let a = from_row(&row)?;
        out.entry(a.volume_id).or_default().push(a);
    }
    Ok(out)
}

/// Every attachment, oldest first (the invariants' check).
pub async fn attachment_list_all(conn: &mut Conn) -> Result<Vec<Attachment>> {
    let rows = sqlx::query("SELECT * FROM attachments ORDER BY created_at, id")
        .fetch_all(conn)
        .await?;
    rows.iter().map(from_row).collect()
}

/// The attachments whose export is wanted now, with their volume's backend
/// and active image name (which is what is served), oldest first.
pub async fn attachment_list_exported(
    conn: &mut Conn,
) -> Result<Vec<(Attachment, Option<String>, Option<String>)>> {
    let rows = sqlx::query(
        "SELECT a.*, i.backend AS image_backend, i.name AS image_name
         FROM attachments a
         JOIN volumes v ON v.id = a.volume_id
         LEFT JOIN images i ON i.id = v.image_id
         WHERE a.export_transport IS NOT NULL AND a.status IN ('attaching', 'attached')
         ORDER BY a.created_at, a.id",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                from_row(r)?,
                r.try_get("image_backend")?,
                r.try_get("image_name")?,
            ))
        })
        .collect()
}

/// Filters and page of an attachment list, oldest first.
#[derive(Clone, Debug, Default)]
pub struct AttachmentQuery {
    /// Only this project's; `None`: every project's (admins).
    pub project_id: Option<String>,
    pub volume_id: Option<VolumeId>,
    pub instance_uuid: Option<String>,
    pub status: Option<AttachmentStatus>,
    pub limit: Option<i64>,
    /// Start after this attachment (which must match the query's project).
    pub marker: Option<AttachmentId>,
}

/// A page of attachments; `MarkerNotFound` when the marker names none the
/// query could list.
pub async fn attachment_list(conn: &mut Conn, q: &AttachmentQuery) -> Result<Vec<Attachment>> {
    let marker = match q.marker {
        None => None,
        Some(m) => match attachment_get(conn, m).await? {
            Some(a) if q.project_id.as_ref().is_none_or(|p| *p == a.project_id) => Some(a),
            _ => return Err(StoreError::MarkerNotFound(m.to_string())),
        },
    };
    let rows = sqlx::query(
        "SELECT * FROM attachments
         WHERE ($1 IS NULL OR project_id = $1)
           AND ($2 IS NULL OR volume_id = $2)
           AND ($3 IS NULL OR instance_uuid = $3)
           AND ($4 IS NULL OR status = $4)
           AND ($5 IS NULL OR created_at > $5 OR (created_at = $5 AND id > $6))
         ORDER BY created_at, id
         LIMIT $7",
    )
    .bind(&q.project_id)
    .bind(q.volume_id.map(|v| v.to_string()))
    .bind(&q.instance_uuid)
    .bind(q.status.map(|s| s.as_str()))
    .bind(marker.as_ref().map(|m| m.created_at.clone()))
    .bind(marker.as_ref().map(|m| m.id.to_string()))
    .bind(q.limit.unwrap_or(-1))
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Move an attachment from one of `from` to `to`; whether it applied.
pub async fn attachment_set_status(
    conn: &mut Conn,
    id: AttachmentId,
    from: &[AttachmentStatus],
    to: AttachmentStatus,
) -> Result<bool> {
    let mut sql = String::from(
        "UPDATE attachments SET status = $2, updated_at = $3,
                attached_at = CASE WHEN $2 = 'attached' THEN COALESCE(attached_at, $3)
                                   ELSE attached_at END
         WHERE id = $1",
    );
    if !from.is_empty() {
        let params: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 4)).collect();
        sql.push_str(&format!(" AND status IN ({})", params.join(", ")));
    }
    let mut q = sqlx::query(&sql)
        .bind(id.to_string())
        .bind(to.as_str())
        .bind(crate::now());
    for s in from {
        q = q.bind(s.as_str());
    }
    let r = q.execute(conn).await?;
    Ok(r.rows_affected() == 1)
}

/// Record the connector and the planned export, and move the attachment to
/// `status`; whether it applied (the attachment exists).
pub async fn attachment_set_connection(
    conn: &mut Conn,
    id: AttachmentId,
    connector: Option<&str>,
    host_name: Option<&str>,
    mode: AttachMode,
    export: Option<&ExportPlan>,
    status: AttachmentStatus,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE attachments SET connector = $2, host_name = $3, attach_mode = $4,
                export_transport = $5, export_host = $6, export_port = $7,
                psk_identity = $8, psk_key = $9, status = $10, updated_at = $11
         WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(connector)
    .bind(host_name)
    .bind(mode.as_str())
    .bind(export.map(|e| e.transport.clone()))
    .bind(export.and_then(|e| e.host.clone()))
    .bind(export.and_then(|e| e.port.map(i64::from)))
    .bind(export.and_then(|e| e.psk_identity.clone()))
    .bind(export.and_then(|e| e.psk_key.clone()))
    .bind(status.as_str())
    .bind(crate::now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Set the instance and mount point (`os-attach`); whether it applied.
pub async fn attachment_set_instance(
    conn: &mut Conn,
    id: AttachmentId,
    instance_uuid: Option<&str>,
    host_name: Option<&str>,
    mountpoint: Option<&str>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE attachments SET instance_uuid = COALESCE($2, instance_uuid),
                host_name = COALESCE($3, host_name), mountpoint = COALESCE($4, mountpoint),
                updated_at = $5
         WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(instance_uuid)
    .bind(host_name)
    .bind(mountpoint)
    .bind(crate::now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The TCP addresses planned for exports, as `(host, port)`.
pub async fn attachment_ports_in_use(conn: &mut Conn) -> Result<Vec<(String, u16)>> {
    let rows = sqlx::query(
        "SELECT export_host, export_port FROM attachments
         WHERE export_port IS NOT NULL AND export_host IS NOT NULL",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let port: i64 = r.try_get("export_port")?;
            Ok((
                r.try_get("export_host")?,
                u16::try_from(port).map_err(|_| StoreError::Corrupt(format!("port {port}")))?,
            ))
        })
        .collect()
}

/// Remove an attachment; whether it existed.
pub async fn attachment_delete(conn: &mut Conn, id: AttachmentId) -> Result<bool> {
    let r = sqlx::query("DELETE FROM attachments WHERE id = $1")
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreOptions};

    #[tokio::test]
    async fn attachments_are_recorded_planned_listed_and_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("s.db"), &StoreOptions::default())
            .await
            .expect("open");
        let mut tx = store.begin().await.expect("begin");
        let vol =
            crate::testing::volume(&mut tx, scoria_model::volume::VolumeStatus::Available).await;
        let a = NewAttachment {
            id: AttachmentId::new(),
            volume_id: vol,
            project_id: "p1".into(),
            instance_uuid: Some("i1".into()),
            status: AttachmentStatus::Reserved,
            attach_mode: AttachMode::Unset,
        };
        attachment_create(&mut tx, &a).await.expect("create");
        assert!(matches!(
            attachment_create(&mut tx, &a).await,
            Err(StoreError::Duplicate(_))
        ));
        assert!(attachment_list_exported(&mut tx).await.unwrap().is_empty());
        let plan = ExportPlan {
            transport: "tcp-psk".into(),
            host: Some("127.0.0.1".into()),
            port: Some(10900),
            psk_identity: Some("id".into()),
            psk_key: Some("00".repeat(32)),
        };
        assert!(
            attachment_set_connection(
                &mut tx,
                a.id,
                Some("{}"),
                Some("h"),
                AttachMode::ReadWrite,
                Some(&plan),
                AttachmentStatus::Attaching,
            )
            .await
            .unwrap()
        );
        let exported = attachment_list_exported(&mut tx).await.unwrap();
        assert_eq!(exported.len(), 1);
        assert_eq!(exported[0].0.export.as_ref(), Some(&plan));
        assert_eq!(
            attachment_ports_in_use(&mut tx).await.unwrap(),
            vec![("127.0.0.1".to_string(), 10900)]
        );
        assert!(
            !attachment_set_status(
                &mut tx,
                a.id,
                &[AttachmentStatus::Reserved],
                AttachmentStatus::Attached
            )
            .await
            .unwrap()
        );
        assert!(
            attachment_set_status(
                &mut tx,
                a.id,
                &[AttachmentStatus::Attaching],
                AttachmentStatus::Attached
            )
            .await
            .unwrap()
        );
        let got = attachment_get(&mut tx, a.id).await.unwrap().unwrap();
        assert_eq!(got.status, AttachmentStatus::Attached);
        assert!(got.attached_at.is_some());
        assert!(
            !format!("{got:?}").contains(&"00".repeat(32)),
            "key in Debug"
        );
        let q = AttachmentQuery {
            project_id: Some("p2".into()),
            ..Default::default()
        };
        assert!(attachment_list(&mut tx, &q).await.unwrap().is_empty());
        let q = AttachmentQuery {
            status: Some(AttachmentStatus::Attached),
            ..Default::default()
        };
        assert_eq!(attachment_list(&mut tx, &q).await.unwrap().len(), 1);
        assert!(attachment_delete(&mut tx, a.id).await.unwrap());
        assert!(!attachment_delete(&mut tx, a.id).await.unwrap());
        assert!(
            attachment_list_for_volume(&mut tx, vol)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
