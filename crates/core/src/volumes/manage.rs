//! Cinder's manage and unmanage (admins): bring a file that is on a backend
//! but not Scoria's under management as a new volume (`os-volume-manage`,
//! `POST /manageable_volumes` from 3.8), and let a volume go while its data
//! stays on the backend as a file of its own (`os-unmanage`).
//!
//! An unmanaged volume's data is handed back as `volume-<id>.<format>`
//! (`flows::volume_delete::handed_back_name`), so `{"source-name":
//! "volume-<id>"}` manages it back; any self-contained qcow2 or raw file in
//! the backend's directory can be managed the same way by its name. The file
//! is treated as untrusted until checked: the driver's own look (a legal
//! name, the format its extension says, no reference to another file), then
//! the same checks as an uploaded image (`scoria_storage::vet`: the header,
//! then `qemu-img info` under limits) where the backend keeps local files.
//! Its size becomes whole GiB (rounded up, as Cinder does; the file is grown
//! to match). A file that another file of the backend is layered on is
//! refused (writing to it would change that file). The volume is made by the create flow (`from_file.rs`), counted
//! in the caller's project's quota like any create.

use std::collections::BTreeMap;

use scoria_model::VolumeId;
use scoria_model::volume::GIB;
use scoria_storage::inspect::DiskFormat;
use scoria_storage::{Format, StorageError};
use serde_json::Value;

use super::VolumeView;
use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result, from_outcome};
use crate::flows::{volume_create, volume_delete};

/// What a manage asks (Cinder's `volume` body of `os-volume-manage`).
#[derive(Clone, Debug, Default)]
pub struct ManageRequest {
    /// `scoria@<backend>[#<pool>]`.
    pub host: String,
    /// The driver's reference: `{"source-name": "<file name>"}`.
    pub reference: serde_json::Map<String, Value>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub volume_type: Option<String>,
    pub availability_zone: Option<String>,
    pub bootable: bool,
    pub metadata: BTreeMap<String, String>,
}

fn invalid_ref(reference: &serde_json::Map<String, Value>, why: &str) -> Error {
    Error::Invalid(format!(
        "Manage existing volume failed due to invalid backend reference {}: {why}",
        Value::Object(reference.clone())
    ))
}

/// `os-volume-manage`: a new volume whose data is the file `req.reference`
/// names on the backend `req.host` names. Returns once its quota is
/// committed (status `creating`); the file is taken over right after.
pub async fn manage(app: &App, ctx: &Context, req: ManageRequest) -> Result<VolumeView> {
    ctx.authorize(Op::VolumeManage)?;
    let project = ctx.project()?.clone();
    crate::rules::validate::validate_described(
        req.name.as_deref(),
        req.description.as_deref(),
        &req.metadata,
    )?;
    let Some(backend) = crate::rules::hosts::backend_of_host(&app.env, &req.host) else {
        return Err(Error::NotFound(format!(
            "Service {} could not be found: name a backend of this Scoria (scoria@<backend>).",
            req.host
        )));
    };
    let b = app.env.backend(backend)?;
    if let Some(az) = &req.availability_zone
        && *az != b.config.availability_zone
    {
        return Err(Error::Invalid(format!(
            "Invalid input received: backend {backend} is in availability zone {}, not {az}.",
            b.config.availability_zone
        )));
    }
    let (name, format) = resolve_file(app, backend, &req.reference).await?;
    let mut conn = app.store().read().await?;
    if let Some(i) = scoria_store::images::image_list_on_backend(&mut conn, backend)
        .await?
        .into_iter()
        .find(|i| i.name == name)
    {
        return Err(invalid_ref(
            &req.reference,
            &format!("{name} is already Scoria's (image {}).", i.id),
        ));
    }
    let virtual_size = vet(app, backend, &name, format, &req.reference).await?;
    let size = virtual_size.div_ceil(GIB).max(1) as i64;
    super::validate_size(size)?;
    let ty = super::resolve_type(&mut conn, ctx, req.volume_type.as_deref()).await?;
    super::refuse_encrypted(&mut conn, ty.id).await?;
    drop(conn);
    let id = VolumeId::new();
    let zone = b.config.availability_zone.clone();
    let params = volume_create::Params {
        volume_id: id,
        project_id: project.0.clone(),
        user_id: ctx.user_id.0.clone(),
        name: req.name,
        description: req.description,
        size,
        availability_zone: Some(zone.clone()),
        default_zone: zone,
        bootable: req.bootable,
        multiattach: false,
        volume_type_id: ty.id,
        metadata: req.metadata,
        request_id: Some(ctx.request_id.clone()),
        source_volid: None,
        snapshot_id: None,
        glance_image_id: None,
        glance_image_virtual_size: None,
        group_id: None,
        backup: None,
        hints: Default::default(),
        manage: Some(volume_create::FromFile {
            backend: backend.to_owned(),
            name,
            format,
        }),
    };
    let handle = app.engine.start::<volume_create::VolumeCreate>(params)?;
    handle
        .wait_step("commit_quota")
        .await
        .map_err(from_outcome)?;
    super::get_unchecked(app, id).await
}

/// The file `reference` names on `backend`: `source-name`, with or without
/// its format's extension.
async fn resolve_file(
    app: &App,
    backend: &str,
    reference: &serde_json::Map<String, Value>,
) -> Result<(String, Format)> {
    if let Some(k) = reference.keys().find(|k| *k != "source-name") {
        return Err(invalid_ref(
            reference,
            &format!("'{k}' is not understood; give source-name, the file's name on the backend."),
        ));
    }
    let Some(wanted) = reference.get("source-name").and_then(Value::as_str) else {
        return Err(invalid_ref(
            reference,
            "give source-name, the file's name on the backend.",
        ));
    };
    let listed = app
        .env
        .backend(backend)?
        .driver
        .list()
        .await
        .map_err(|e| Error::internal("The backend's files could not be listed.", e))?;
    let found = listed.into_iter().find(|n| {
        n == wanted
            || n.strip_suffix(".qcow2") == Some(wanted)
            || n.strip_suffix(".raw") == Some(wanted)
    });
    let Some(name) = found else {
        return Err(invalid_ref(
            reference,
            &format!("backend {backend} has no file {wanted} (.qcow2 or .raw)."),
        ));
    };
    let format = scoria_storage::format_of_name(&name)
        .map_err(|e| invalid_ref(reference, &e.to_string()))?;
    Ok((name, format))
}

/// The file's virtual size, once it passed the driver's look and, where the
/// backend keeps local files, the checks of an uploaded image.
async fn vet(
    app: &App,
    backend: &str,
    name: &str,
    format: Format,
    reference: &serde_json::Map<String, Value>,
) -> Result<u64> {
    let driver = &app.env.backend(backend)?.driver;
    let refused = |e: StorageError| invalid_ref(reference, &format!("{name} is refused: {e}"));
    let info = driver
        .info(name)
        .await
        .map_err(refused)?
        .ok_or_else(|| invalid_ref(reference, &format!("{name} is gone.")))?;
    if info.refers_to_other_files() || info.immutable {
        return Err(invalid_ref(
            reference,
            &format!(
                "{name} is layered on another file or read-only; only a self-contained, writable file can be managed."
            ),
        ));
    }
    // A file others are layered on would change under them once written.
    let listed = driver
        .list()
        .await
        .map_err(|e| Error::internal("The backend's files could not be listed.", e))?;
    for other in listed.iter().filter(|n| *n != name) {
        if let Ok(Some(i)) = driver.info(other).await
            && i.backing.as_deref() == Some(name)
        {
            return Err(invalid_ref(
                reference,
                &format!(
                    "{name} is the backing file of {other}; writing to it would change {other}."
                ),
            ));
        }
    }
    match driver.local_file(name).await {
        Ok(file) => {
            let disk = match format {
                Format::Qcow2 => DiskFormat::Qcow2,
                Format::Raw => DiskFormat::Raw,
            };
            driver
                .inspect_untrusted(&file.path, disk, app.env.inspect_limits)
                .await
                .map_err(refused)?;
        }
        Err(StorageError::Unsupported(_)) => {}
        Err(e) => return Err(refused(e)),
    }
    Ok(info.virtual_size)
}

/// `os-unmanage`: volume `id` leaves Scoria and its data stays on its
/// backend as `volume-<id>.<format>`. Refused as a delete would be (attached,
/// in a group, with snapshots, …). Returns once the volume is `deleting`.
pub async fn unmanage(app: &App, ctx: &Context, id: VolumeId) -> Result<()> {
    crate::rules::volumes::authorize_on(app.store(), ctx, id, Op::VolumeUnmanage).await?;
    let params = volume_delete::Params {
        volume_id: id,
        project_id: None,
        force: false,
        request_id: Some(ctx.request_id.clone()),
        group_id: None,
        cascade: false,
        unmanage: true,
    };
    let handle = app.engine.start::<volume_delete::VolumeDelete>(params)?;
    handle.wait_step("begin_delete").await.map_err(from_outcome)
}
