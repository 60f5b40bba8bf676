//! Upload a volume's data to a new image of the image service
//! (`os-volume_upload_image`).
//!
//! ```text
//!  begin ─────────────────────────► convert ───────────────────► finish
//!   the volume `uploading`; the      the volume's chain, flat,     the image `active` with
//!   image's row `saving`, holding    into the image's file in      its size and hashes; the
//!   the volume's size of quota       the requested format; its     volume back to the status
//!   undo: the image `killed`, the    size and hashes               it had
//!   volume back (a failure after     undo: remove the file
//!   the answer is told once)
//! ```
//!
//! The image's row says which volume fills it (`filled_by_volume`): the
//! start-time recovery of interrupted uploads (`image_service::recover`)
//! leaves it and its file to this flow, which resumes or undoes after a
//! crash. While the volume is `uploading` nothing changes its data from the
//! API (no snapshot, extend, revert, delete), so the copy is of one state;
//! an `in-use` volume (with `force`) is copied as it is being written,
//! crash-consistent, as Cinder does.

use scoria_model::GlanceImageId;
use scoria_model::VolumeId;
use scoria_model::glance::{HASH_ALGO, Visibility};
use scoria_model::volume::{GIB, VolumeStatus};
use scoria_storage::Format;
use scoria_store::glance::{self as glance_store, GlanceImage, UploadedData};
use scoria_store::{Conn, volumes};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncReadExt;

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};

use crate::error::Error;
use crate::{Env, flows::storage_error, messages};

pub struct VolumeUpload;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub volume_id: VolumeId,
    /// The volume's project: the image's owner.
    pub project_id: String,
    /// The new image.
    pub image_id: GlanceImageId,
    pub image_name: String,
    /// The image's `disk_format`: the data's format in the image's file.
    pub disk_format: Format,
    pub container_format: String,
    pub visibility: Visibility,
    pub protected: bool,
    /// Upload an `in-use` volume too.
    pub force: bool,
    /// The image service's limit on each project's image bytes.
    pub image_size_total: u64,
    #[serde(default)]
    pub request_id: Option<String>,
}

/// What `begin` found.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Plan {
    /// The status the volume returns to.
    status: VolumeStatus,
    backend: String,
    /// The volume's active image on its backend.
    image_name: String,
    /// Bytes.
    virtual_size: u64,
}

/// What `convert` learned of the file.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Converted {
    size: u64,
    md5: String,
    sha512: String,
}

impl Flow for VolumeUpload {
    const KIND: &'static str = "volume_upload";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("begin", |cx, c| Box::pin(begin(cx, c)))
                .undo_db(|cx, c| Box::pin(abort(cx, c))),
            Step::external("convert", |cx| Box::pin(convert(cx)))
                .undo_external(|cx| Box::pin(remove_file(cx))),
            Step::db("finish", |cx, c| Box::pin(finish(cx, c))),
        ]
    }

    fn meta(p: &Params) -> FlowMeta {
        FlowMeta {
            resource_type: Some("volume"),
            resource_id: Some(p.volume_id.to_string()),
            project_id: Some(p.project_id.clone()),
        }
    }
}

async fn begin(cx: &Cx<VolumeUpload>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let v = volumes::volume_get(c, p.volume_id)
        .await?
        .filter(|v| v.project_id == p.project_id)
        .ok_or_else(|| Error::volume_not_found(p.volume_id))?;
    let allowed: &[VolumeStatus] = if p.force {
        &[VolumeStatus::Available, VolumeStatus::InUse]
    } else {
        &[VolumeStatus::Available]
    };
    if !allowed.contains(&v.status) {
        let hint = if v.status == VolumeStatus::InUse {
            " (an in-use volume is uploaded with force=true)"
        } else {
            ""
        };
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} status must be available or in-use to upload, but current status is: {}{hint}.",
            v.id, v.status
        ))
        .into());
    }
    crate::rules::volumes::assert_not_held(c, v.id, "uploaded").await?;
    let image = crate::rules::images::active_image(c, &v)
        .await?
        .ok_or_else(|| {
            Error::InvalidState(format!("Invalid volume: Volume {} has no data.", v.id))
        })?;
    let virtual_size = v.size as u64 * GIB;
    let used = glance_store::glance_image_usage(c, &p.project_id, None)
        .await?
        .max(0) as u64;
    if used.saturating_add(virtual_size) > p.image_size_total {
        return Err(
            crate::image_service::over_quota(p.image_size_total, used, virtual_size).into(),
        );
    }
    if !volumes::volume_set_status_by_flow(
        c,
        v.id,
        &[v.status],
        VolumeStatus::Uploading,
        Some(&cx.flow_id.to_string()),
    )
    .await?
    {
        return Err(Error::InvalidState(format!(
            "Invalid volume: volume {} changed status.",
            v.id
        ))
        .into());
    }
    let mut i = GlanceImage::new(p.image_id, &p.project_id);
    i.name = Some(p.image_name.clone());
    i.disk_format = Some(p.disk_format.as_str().to_owned());
    i.container_format = Some(p.container_format.clone());
    i.visibility = p.visibility;
    i.protected = p.protected;
    glance_store::glance_image_create_filled_by(c, &i, &v.id.to_string(), virtual_size as i64)
        .await?;
    let backend = image.backend.clone();
    serde_json::to_value(Plan {
        status: v.status,
        backend,
        image_name: image.name,
        virtual_size,
    })
    .map_err(|e| StepError::msg(e.to_string()))
}

/// Undo of `begin`: the image is `killed`, the volume back to its status; a
/// failure of the copy is told once.
async fn abort(cx: &Cx<VolumeUpload>, c: &mut Conn) -> Result<(), StepError> {
    let p = &cx.params;
    let plan: Plan = cx.output("begin")?;
    glance_store::glance_image_kill_fill(c, p.image_id).await?;
    let moved =
        volumes::volume_set_status(c, p.volume_id, &[VolumeStatus::Uploading], plan.status).await?;
    if moved && cx.failure().is_some_and(|f| f.step != "begin") {
        messages::record_volume_failure(
            c,
            &p.project_id,
            p.volume_id,
            &messages::request_id_or(&p.request_id, cx.flow_id),
            messages::COPY_VOLUME_TO_IMAGE,
            messages::FAILED_TO_UPLOAD_VOLUME,
        )
        .await?;
    }
    Ok(())
}

async fn convert(cx: &Cx<VolumeUpload>) -> Result<Value, StepError> {
    let p = &cx.params;
    let plan: Plan = cx.output("begin")?;
    let name = p.image_id.to_string();
    let dest = cx.env.image_store.local_path(&name).ok_or_else(|| {
        StepError::new(Error::Unavailable(format!(
            "backend {} cannot write the image store's files",
            plan.backend
        )))
    })?;
    cx.env
        .backend(&plan.backend)?
        .driver
        .export_to(&plan.image_name, &dest, p.disk_format, &|percent| {
            cx.report_percent(percent)
        })
        .await
        .map_err(|e| storage_error("copy the volume's data into the image", e))?;
    let converted = digest(&dest)
        .await
        .map_err(|e| StepError::msg(format!("read the image's file {}: {e}", dest.display())))?;
    serde_json::to_value(converted).map_err(|e| StepError::msg(e.to_string()))
}

/// Size, MD5 (Glance's `checksum`) and SHA-512 of a file, read once.
async fn digest(path: &std::path::Path) -> std::io::Result<Converted> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut buf = vec![0u8; 1 << 20];
    let mut h = scoria_digest::ImageHasher::new();
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let d = h.finish();
    Ok(Converted {
        size: d.len,
        md5: d.md5,
        sha512: d.sha512,
    })
}

async fn remove_file(cx: &Cx<VolumeUpload>) -> Result<(), StepError> {
    cx.env
        .image_store
        .delete(&cx.params.image_id.to_string())
        .await
        .map_err(|e| storage_error("remove a partly uploaded image", e))
}

async fn finish(cx: &Cx<VolumeUpload>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let plan: Plan = cx.output("begin")?;
    let made: Converted = cx.output("convert")?;
    let data = UploadedData {
        size: made.size as i64,
        checksum: made.md5,
        os_hash_algo: HASH_ALGO.into(),
        os_hash_value: made.sha512,
    };
    if !glance_store::glance_image_finish_fill(c, p.image_id, &data, plan.virtual_size as i64)
        .await?
    {
        return Err(Error::InvalidState(format!(
            "Image {} is no longer being uploaded.",
            p.image_id
        ))
        .into());
    }
    if !volumes::volume_set_status(c, p.volume_id, &[VolumeStatus::Uploading], plan.status).await? {
        return Err(Error::InvalidState(format!(
            "Volume {} is no longer being uploaded.",
            p.volume_id
        ))
        .into());
    }
    Ok(Value::Null)
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use scoria_flows::Engine;
    use scoria_flows::testkit::{BoxFut, Expect};
    use scoria_model::glance::{GlanceImageStatus, Visibility};
    use scoria_model::volume::VolumeStatus;
    use scoria_model::{GlanceImageId, VolumeId};
    use scoria_storage::{Format, qemu};

    use super::{Params, VolumeUpload};
    use crate::Env;
    use crate::flows::testing::{self, PROJECT, Scenario, World, text};

    /// A 1 GiB volume holding known data uploaded to a qcow2 image. Done:
    /// the image is `active`, its file reads as the volume and its size and
    /// hashes are the file's; failed: the image is `killed` or was never
    /// made, and has no file. Either way the volume is `available` again
    /// with its data.
    struct Upload {
        volume: VolumeId,
        image: GlanceImageId,
    }

    impl Scenario for Upload {
        type F = VolumeUpload;
        const NAME: &'static str = "volume_upload";

        fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
            Box::pin(async move {
                let e = w.plain().await;
                w.create_volume(&e, self.volume, 1).await;
                let image = w.image_of(&e, self.volume).await;
                qemu::write_pattern(&image, Format::Qcow2, 4 << 20, 1 << 20, 0x3c)
                    .await
                    .expect("write the volume's data");
            })
        }

        fn params(&self) -> Params {
            Params {
                volume_id: self.volume,
                project_id: PROJECT.into(),
                image_id: self.image,
                image_name: "up".into(),
                disk_format: Format::Qcow2,
                container_format: "bare".into(),
                visibility: Visibility::Private,
                protected: false,
                force: false,
                image_size_total: 1 << 40,
                request_id: None,
            }
        }

        fn check<'a>(
            &'a self,
            w: &'a World,
            e: &'a Engine<Env>,
            expect: Expect,
        ) -> BoxFut<'a, Result<(), String>> {
            Box::pin(async move {
                let v = w
                    .volume(e, self.volume)
                    .await?
                    .ok_or("the volume is gone")?;
                if v.status != VolumeStatus::Available {
                    return Err(format!("the volume is {}", v.status));
                }
                let mut c = e.store().read().await.map_err(text)?;
                let i = scoria_store::glance::glance_image_get(&mut c, self.image)
                    .await
                    .map_err(text)?;
                drop(c);
                let file = w.path().join("images").join(self.image.to_string());
                let status = i.as_ref().map(|i| i.status);
                match (expect, status) {
                    (Expect::Done | Expect::Either, Some(GlanceImageStatus::Active)) => {
                        let i = i.expect("image");
                        let len = std::fs::metadata(&file).map_err(text)?.len();
                        if i.size != Some(len as i64) {
                            return Err(format!("size {:?}, file {len}", i.size));
                        }
                        let volume = w.image_of(e, self.volume).await;
                        if !qemu::compare(&volume, Format::Qcow2, &file, Format::Qcow2)
                            .await
                            .map_err(text)?
                        {
                            return Err("the image does not read as the volume".into());
                        }
                    }
                    (Expect::Failed | Expect::Either, None | Some(GlanceImageStatus::Killed)) => {
                        if file.exists() {
                            return Err("a failed upload left its file".into());
                        }
                    }
                    (expect, status) => {
                        return Err(format!("expected {expect:?}, the image is {status:?}"));
                    }
                }
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn passes_the_generic_flow_tests() {
        let report = testing::generic(|| Upload {
            volume: VolumeId::new(),
            image: GlanceImageId::new(),
        })
        .await;
        println!("volume_upload: {report:?}");
        assert!(report.crash_points >= 6, "{report:?}");
    }
}
