//! Databases as older releases left them, for the tests of migrations (here
//! and in the crates above). Not for anything but tests: it writes rows in
//! shapes the current code no longer writes.

use scoria_model::VolumeId;
use scoria_model::volume::{AttachStatus, VolumeStatus};

use crate::{Conn, Result, now, volume_types};

/// A volume as schema version 7 (before images were records) stored it.
#[derive(Clone, Debug)]
pub struct V7Volume {
    pub id: VolumeId,
    pub project_id: String,
    pub size: i64,
    pub status: VolumeStatus,
    pub attach_status: AttachStatus,
    /// Where its data was: backend, file name, format.
    pub placed: Option<(String, String, String)>,
}

/// Insert a volume the way release 7's create flow wrote it, into a store
/// opened with `Store::open_before(.., 8)`.
pub async fn insert_v7_volume(conn: &mut Conn, v: &V7Volume) -> Result<()> {
    let (backend, location, format) = match &v.placed {
        Some((b, l, f)) => (Some(b.as_str()), Some(l.as_str()), Some(f.as_str())),
        None => (None, None, None),
    };
    sqlx::query(
        "INSERT INTO volumes (id, project_id, user_id, name, size, status, attach_status,
                bootable, multiattach, availability_zone, volume_type_id, backend, location,
                format, created_at)
         VALUES ($1, $2, 'fedcba9876543210fedcba9876543210', $3, $4, $5, $6, FALSE, FALSE,
                 'nova', $7, $8, $9, $10, $11)",
    )
    .bind(v.id.to_string())
    .bind(&v.project_id)
    .bind(format!("v7-{}", v.status))
    .bind(v.size)
    .bind(v.status.as_str())
    .bind(v.attach_status.as_str())
    .bind(volume_types::DEFAULT_TYPE_ID)
    .bind(backend)
    .bind(location)
    .bind(format)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(())
}

/// Lose an image's candidate row (`image_unref`, migration 0022), as a writer
/// that bypassed the triggers would: for the tests of the reaper's full scan,
/// the safety net for such images.
pub async fn image_unref_lose(conn: &mut Conn, id: scoria_model::ImageId) -> Result<()> {
    sqlx::query("DELETE FROM image_unref WHERE image_id = $1")
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use scoria_model::ImageId;
    use scoria_model::image::{ImageFormat, ImageState};

    use super::*;
    use crate::{Store, StoreOptions, images, volumes};

    /// A database of release 7 with a volume in every status migrates: each
    /// placed volume gets one image record named as its file was (state
    /// `creating` while the volume is), and the volume points at it.
    #[tokio::test]
    async fn volumes_of_every_status_get_their_image_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("scoria.db");
        let old = Store::open_before(&path, &StoreOptions::default(), 8)
            .await
            .expect("open at 7");
        assert_eq!(old.schema_version().await.expect("version"), 7);
        let mut tx = old.begin().await.expect("begin");
        let mut made = Vec::new();
        for (n, status) in VolumeStatus::ALL.iter().enumerate() {
            let v = V7Volume {
                id: VolumeId::new(),
                project_id: "p".into(),
                size: 1 + n as i64,
                status: *status,
                attach_status: AttachStatus::Detached,
                placed: Some(("file".into(), format!("volume-{n}.qcow2"), "qcow2".into())),
            };
            insert_v7_volume(&mut tx, &v).await.expect("insert");
            made.push(v);
        }
        let unplaced = V7Volume {
            id: VolumeId::new(),
            project_id: "p".into(),
            size: 1,
            status: VolumeStatus::Error,
            attach_status: AttachStatus::Detached,
            placed: None,
        };
        insert_v7_volume(&mut tx, &unplaced).await.expect("insert");
        tx.commit().await.expect("commit");
        old.close().await;

        let store = Store::open(&path, &StoreOptions::default())
            .await
            .expect("migrate");
        let mut c = store.read().await.expect("read");
        for v in &made {
            let now = volumes::volume_get(&mut c, v.id)
                .await
                .expect("read")
                .expect("the volume");
            let image_id: ImageId = v.id.to_string().parse().expect("id");
            assert_eq!(now.image_id, Some(image_id), "{}", v.status);
            assert_eq!(now.status, v.status);
            let i = images::image_get(&mut c, image_id)
                .await
                .expect("read image")
                .expect("the image");
            let (backend, name, _) = v.placed.clone().expect("placed");
            assert_eq!(
                (
                    i.backend,
                    i.name,
                    i.format,
                    i.virtual_size,
                    i.mutable,
                    i.base_id
                ),
                (backend, name, ImageFormat::Qcow2, v.size << 30, true, None)
            );
            let want = if v.status == VolumeStatus::Creating {
                ImageState::Creating
            } else {
                ImageState::Ready
            };
            assert_eq!(i.state, want, "{}", v.status);
            assert_eq!(
                images::image_users(&mut c, image_id).await.expect("users"),
                [images::ImageUser::Volume(v.id)]
            );
        }
        let v = volumes::volume_get(&mut c, unplaced.id)
            .await
            .expect("read")
            .expect("the volume");
        assert_eq!((v.image_id, v.backend), (None, None));
        assert_eq!(
            images::image_list_all(&mut c).await.expect("list").len(),
            made.len()
        );
    }
}
