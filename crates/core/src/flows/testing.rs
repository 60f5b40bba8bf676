//! The world the generic flow tests run the real flows in: a store and a real
//! file backend (qemu-img, qcow2) in a temporary directory.
//!
//! Each flow's own file says what its generic tests start from and expect, as
//! a [`Scenario`]: what to prepare (with the real flows, on a fresh world),
//! the parameters of the flow under test, and what must hold once everything
//! settled. This module only provides the world and the checks every
//! scenario shares ([`World::check_common`]): the invariants of
//! the invariant check (`invariants.rs`), no temporary file left on the backend. [`generic`]
//! hands a scenario to `scoria_flows::testkit::run_all`, which knows nothing
//! of volumes.

use std::sync::Arc;

use scoria_failpoints::Failpoints;
use scoria_flows::testkit::{self, BoxFut, Expect, Report, TestWorld};
use scoria_flows::{Engine, EngineOptions, Flow, FlowHandle, Outcome};
use scoria_model::volume::VolumeStatus;
use scoria_model::{VolumeId, VolumeTypeId};
use scoria_store::volumes::Volume;
use scoria_store::{images, messages, volumes};

use super::volume_create;
use crate::{App, Config, DriverConfig, Env, invariants};

const MIB: u64 = 1 << 20;

/// That the image at `path` reads what [`World::layered_volume`] wrote into
/// its first `layers` layers (`bytes[i]` at MiB `i`), zeroes after.
pub async fn reads_layers(
    path: &std::path::Path,
    bytes: &[u8],
    layers: usize,
) -> Result<(), String> {
    for (i, byte) in bytes.iter().enumerate() {
        let expect = if i < layers { *byte } else { 0 };
        let ok = scoria_storage::qemu::read_pattern(
            path,
            scoria_storage::Format::Qcow2,
            i as u64 * MIB,
            MIB,
            expect,
        )
        .await
        .map_err(text)?;
        if !ok {
            return Err(format!(
                "{}: MiB {i} does not read {expect:#x}",
                path.display()
            ));
        }
    }
    Ok(())
}

/// A configuration tweak: every backend allows chains of 3 layers.
pub fn three_layers(c: &mut Config) {
    for b in &mut c.backends {
        b.max_chain_depth = 3;
    }
}

/// The project every scenario's resources belong to.
pub const PROJECT: &str = "0123456789abcdef0123456789abcdef";
/// The user that makes them.
pub const USER: &str = "fedcba9876543210fedcba9876543210";

/// One way of running a flow under the generic tests. A fresh value is made
/// for every run (its ids are fresh too).
pub trait Scenario: Send + Sync + 'static {
    /// The flow under test.
    type F: Flow<Env = Env>;
    /// What the reports call it (the flow's kind, or a variant of it).
    const NAME: &'static str;
    /// Make what exists before the flow starts, with the real flows.
    fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()>;
    /// The parameters of the flow under test.
    fn params(&self) -> <Self::F as Flow>::Params;
    /// What must hold once flows settled, beyond [`World::check_common`].
    fn check<'a>(
        &'a self,
        w: &'a World,
        engine: &'a Engine<Env>,
        expect: Expect,
    ) -> BoxFut<'a, Result<(), String>>;
}

/// A temporary data directory with a store and one qcow2 file backend
/// (`file`), or two (with [`World::with_second_backend`]: also
/// [`SECOND`], raw, in `volumes-b`, same zone).
pub struct World {
    dir: tempfile::TempDir,
    second: bool,
    /// A change to the configuration every engine opens with (more backends).
    tweak: Option<fn(&mut Config)>,
    /// Failpoint specs armed on every engine opened (after the test's own).
    arm: Vec<String>,
}

/// The name of the second backend of [`World::with_second_backend`].
pub const SECOND: &str = "other";

fn config(dir: &std::path::Path, second: bool) -> Config {
    let mut c = Config::with_data_dir(dir.to_path_buf());
    c.store.durability = scoria_store::Durability::Normal;
    if let DriverConfig::File { fsync, .. } = &mut c.backends[0].driver {
        *fsync = false;
    }
    if second {
        let mut b = c.backends[0].clone();
        b.name = SECOND.into();
        b.format = scoria_storage::Format::Raw;
        // Less room to promise than `file` on the same disk: new volumes go
        // to `file`, and a test moves them.
        if let crate::scheduler::OverSubscription::Fixed(r) = b.max_over_subscription_ratio {
            b.max_over_subscription_ratio = crate::scheduler::OverSubscription::Fixed(r / 2.0);
        }
        b.driver = DriverConfig::File {
            path: dir.join("volumes-b"),
            fsync: false,
        };
        c.backends.push(b);
    }
    c
}

/// The parameters of a blank volume of `size` GiB in [`PROJECT`].
pub fn create_params(volume: VolumeId, size: i64) -> volume_create::Params {
    volume_create::Params {
        volume_id: volume,
        project_id: PROJECT.into(),
        user_id: USER.into(),
        name: Some("v".into()),
        description: None,
        size,
        availability_zone: None,
        default_zone: "nova".into(),
        bootable: false,
        multiattach: false,
        volume_type_id: default_type(),
        metadata: [("k".to_string(), "v".to_string())].into(),
        request_id: Some("req-test".into()),
        group_id: None,
        source_volid: None,
        snapshot_id: None,
        glance_image_id: None,
        glance_image_virtual_size: None,
        backup: None,
        hints: Default::default(),
        manage: None,
    }
}

/// The default volume type.
pub fn default_type() -> VolumeTypeId {
    scoria_store::volume_types::DEFAULT_TYPE_ID
        .parse()
        .expect("type id")
}

/// The store's error as a check's message.
pub fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl World {
    /// A fresh world, for tests that drive flows by hand.
    pub fn new_for_tests() -> World {
        World::new()
    }

    fn new() -> World {
        World {
            dir: tempfile::tempdir().expect("tempdir"),
            second: false,
            tweak: None,
            arm: Vec::new(),
        }
    }

    /// A fresh world with two file backends: `file` (qcow2) and [`SECOND`]
    /// (raw, half the over-subscription ratio: new volumes go to `file`).
    pub fn with_second_backend() -> World {
        World {
            dir: tempfile::tempdir().expect("tempdir"),
            second: true,
            tweak: None,
            arm: Vec::new(),
        }
    }

    /// The directory of a backend's files.
    pub fn backend_dir(&self, backend: &str) -> std::path::PathBuf {
        match backend {
            SECOND => self.dir.path().join("volumes-b"),
            _ => self.dir.path().join("volumes"),
        }
    }

    /// A fresh world whose engines open with `tweak` applied to the
    /// configuration and the failpoint specs `arm` armed (after whatever
    /// the caller armed, so a crash sweep's `*` still counts every hit).
    pub fn with(tweak: fn(&mut Config), arm: &[&str]) -> World {
        let mut w = World::new();
        w.tweak = Some(tweak);
        w.arm = arm.iter().map(|a| a.to_string()).collect();
        w
    }

    /// The data directory.
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// An engine over this world's store and backend.
    pub async fn open(&self, fp: Arc<Failpoints>, options: EngineOptions) -> Engine<Env> {
        let mut c = config(self.dir.path(), self.second);
        if let Some(tweak) = self.tweak {
            tweak(&mut c);
        }
        for spec in &self.arm {
            fp.arm_spec(spec).expect("failpoint spec");
        }
        App::assemble(c, fp, options)
            .await
            .expect("assemble")
            .engine
    }

    /// An engine without failpoints (for preparing and for checks that act).
    pub async fn plain(&self) -> Engine<Env> {
        self.open(Failpoints::new(), EngineOptions::default()).await
    }

    /// Run a flow to its end on `e`; panics unless it succeeds.
    pub async fn run<F: Flow<Env = Env>>(&self, e: &Engine<Env>, params: F::Params, what: &str) {
        let h = e.start::<F>(params).expect("start");
        let outcome = h.wait().await;
        assert!(
            matches!(outcome, Outcome::Done),
            "preparing {what} failed: {outcome:?}"
        );
        e.wait_idle().await;
    }

    /// Attach volume `id` with a connector (the attach flow) and complete
    /// the attachment: the volume is `in-use`, its export served.
    pub async fn attach(&self, e: &Engine<Env>, volume: VolumeId) -> scoria_model::AttachmentId {
        self.attach_as(e, volume, None).await
    }

    /// [`World::attach`] in `mode` (`None`: the default, read-write).
    pub async fn attach_as(
        &self,
        e: &Engine<Env>,
        volume: VolumeId,
        mode: Option<scoria_model::attachment::AttachMode>,
    ) -> scoria_model::AttachmentId {
        use scoria_model::attachment::AttachmentStatus;
        let id = scoria_model::AttachmentId::new();
        let params = crate::flows::attachment_attach::Params {
            attachment_id: id,
            volume_id: volume,
            project_id: Some(PROJECT.into()),
            instance_uuid: Some("instance-1".into()),
            connector: Some(serde_json::json!({"host": "compute-1"})),
            mode,
            create: true,
        };
        self.run::<crate::flows::attachment_attach::AttachmentAttach>(e, params, "an attachment")
            .await;
        let mut tx = e.store().begin().await.expect("begin");
        assert!(
            scoria_store::attachments::attachment_set_status(
                &mut tx,
                id,
                &[AttachmentStatus::Attaching],
                AttachmentStatus::Attached,
            )
            .await
            .expect("complete")
        );
        crate::rules::attachments::settle(&mut tx, volume)
            .await
            .expect("settle");
        tx.commit().await.expect("commit");
        id
    }

    /// What the file backend's exporter serves now, as found.
    pub async fn exports(
        &self,
        e: &Engine<Env>,
    ) -> Result<Vec<scoria_storage::export::ExportState>, String> {
        use scoria_storage::export::Exporter;
        let exports = e.env().exports.get("file").ok_or("no exporter")?;
        exports.exporter.list().await.map_err(text)
    }

    /// Make an available volume of `size` GiB with the create flow.
    pub async fn create_volume(&self, e: &Engine<Env>, id: VolumeId, size: i64) {
        self.run::<volume_create::VolumeCreate>(e, create_params(id, size), "a volume")
            .await;
    }

    /// An `active` image of the image service in [`PROJECT`], with `file`'s
    /// bytes (copied into the image store) declared `disk_format`.
    pub async fn create_glance_image(
        &self,
        e: &Engine<Env>,
        id: scoria_model::GlanceImageId,
        file: &std::path::Path,
        disk_format: &str,
    ) {
        let bytes = std::fs::read(file).expect("read the image");
        let mut hasher = scoria_digest::ImageHasher::new();
        hasher.update(&bytes);
        let digest = hasher.finish();
        let dir = self.dir.path().join("images");
        std::fs::create_dir_all(&dir).expect("image store dir");
        std::fs::write(dir.join(id.to_string()), &bytes).expect("write the image file");
        let mut i = scoria_store::glance::GlanceImage::new(id, PROJECT);
        i.name = Some("img".into());
        i.disk_format = Some(disk_format.into());
        i.container_format = Some("bare".into());
        i.visibility = scoria_model::glance::Visibility::Private;
        let mut tx = e.store().begin().await.expect("begin");
        scoria_store::glance::glance_image_create(&mut tx, &i)
            .await
            .expect("image row");
        scoria_store::glance::glance_image_set_status(
            &mut tx,
            id,
            scoria_model::glance::GlanceImageStatus::Queued,
            scoria_model::glance::GlanceImageStatus::Saving,
        )
        .await
        .expect("saving");
        scoria_store::glance::glance_image_finish_upload(
            &mut tx,
            id,
            &scoria_store::glance::UploadedData {
                size: bytes.len() as i64,
                checksum: digest.md5,
                os_hash_algo: "sha512".into(),
                os_hash_value: digest.sha512,
            },
        )
        .await
        .expect("active");
        tx.commit().await.expect("commit");
    }

    /// Take a snapshot of `volume` with the snapshot flow.
    pub async fn create_snapshot(
        &self,
        e: &Engine<Env>,
        id: scoria_model::SnapshotId,
        volume: VolumeId,
    ) {
        self.run::<super::snapshot_create::SnapshotCreate>(
            e,
            super::snapshot_create::Params {
                snapshot_id: id,
                project_id: PROJECT.into(),
                user_id: USER.into(),
                volume_id: volume,
                name: Some("s".into()),
                description: None,
                metadata: Default::default(),
                allow_in_use: false,
                request_id: Some("req-test".into()),
            },
            "a snapshot",
        )
        .await;
    }

    /// A volume of 1 GiB whose layers each hold data: 1 MiB of `bytes[i]` at
    /// MiB `i` written, then the snapshot `snapshots[i]` taken, for each
    /// byte; a byte past the snapshots is written on top. Its chain has
    /// `snapshots.len() + 1` layers.
    pub async fn layered_volume(
        &self,
        e: &Engine<Env>,
        volume: VolumeId,
        snapshots: &[scoria_model::SnapshotId],
        bytes: &[u8],
    ) {
        self.create_volume(e, volume, 1).await;
        for (i, byte) in bytes.iter().enumerate() {
            let top = self.image_of(e, volume).await;
            scoria_storage::qemu::write_pattern(
                &top,
                scoria_storage::Format::Qcow2,
                i as u64 * MIB,
                MIB,
                *byte,
            )
            .await
            .expect("write");
            if let Some(s) = snapshots.get(i) {
                self.create_snapshot(e, *s, volume).await;
            }
        }
    }

    /// The file of a volume's active image, as its image record names it.
    pub async fn image_of(&self, e: &Engine<Env>, volume: VolumeId) -> std::path::PathBuf {
        let mut c = e.store().read().await.expect("read");
        let v = volumes::volume_get(&mut c, volume)
            .await
            .expect("read volume")
            .expect("the volume");
        let image = images::image_get(&mut c, v.image_id.expect("an active image"))
            .await
            .expect("read image")
            .expect("the image");
        self.backend_dir(&image.backend).join(image.name)
    }

    /// The file of an image, as its record names it.
    pub async fn image_path(
        &self,
        e: &Engine<Env>,
        image: scoria_model::ImageId,
    ) -> Result<std::path::PathBuf, String> {
        let mut c = e.store().read().await.map_err(text)?;
        let image = images::image_get(&mut c, image)
            .await
            .map_err(text)?
            .ok_or("no such image")?;
        Ok(self.backend_dir(&image.backend).join(image.name))
    }

    /// A snapshot, if it exists.
    pub async fn snapshot(
        &self,
        e: &Engine<Env>,
        id: scoria_model::SnapshotId,
    ) -> Result<Option<scoria_store::snapshots::Snapshot>, String> {
        let mut c = e.store().read().await.map_err(text)?;
        scoria_store::snapshots::snapshot_get(&mut c, id)
            .await
            .map_err(text)
    }

    /// A volume, if it exists.
    pub async fn volume(&self, e: &Engine<Env>, id: VolumeId) -> Result<Option<Volume>, String> {
        let mut c = e.store().read().await.map_err(text)?;
        volumes::volume_get(&mut c, id).await.map_err(text)
    }

    /// How many user messages tell of `id`.
    pub async fn messages_about(
        &self,
        e: &Engine<Env>,
        id: impl std::fmt::Display,
    ) -> Result<usize, String> {
        Ok(self.user_messages(e, id).await?.len())
    }

    /// The user messages that tell of `id`, their text.
    pub async fn user_messages(
        &self,
        e: &Engine<Env>,
        id: impl std::fmt::Display,
    ) -> Result<Vec<String>, String> {
        let mut c = e.store().read().await.map_err(text)?;
        Ok(messages::message_list(
            &mut c,
            &messages::MessageQuery {
                filters: vec![(messages::MessageField::ResourceUuid, id.to_string())],
                now: scoria_store::now(),
                ..Default::default()
            },
        )
        .await
        .map_err(text)?
        .into_iter()
        .map(|m| m.user_message)
        .collect())
    }

    /// A volume left in an error status is told to its project exactly once;
    /// any other volume never.
    pub async fn check_told(&self, e: &Engine<Env>, id: VolumeId) -> Result<(), String> {
        let status = self.volume(e, id).await?.map(|v| v.status);
        let told = self.messages_about(e, id).await?;
        let want = usize::from(status.is_some_and(VolumeStatus::is_error));
        if told != want {
            return Err(format!(
                "volume {id} is {status:?} and {told} messages tell of it, expected {want}"
            ));
        }
        Ok(())
    }

    /// Temporary files left on the backends (`volumes*` directories), and staging files left.
    pub fn temporaries(&self) -> Vec<String> {
        let dirs = std::fs::read_dir(self.dir.path())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("volumes"))
                    .map(|e| e.path())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut left: Vec<String> = dirs
            .iter()
            .flat_map(|dir| {
                std::fs::read_dir(dir)
                    .map(|entries| {
                        entries
                            .filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .filter(|n| n.starts_with('.'))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
            .collect();
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("staging")) {
            left.extend(
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
        left
    }

    /// What every scenario must satisfy once flows settled and the reaper
    /// freed what nothing uses: the invariants and no temporary left behind.
    pub async fn check_common(&self, e: &Engine<Env>) -> Result<(), String> {
        // On a fresh engine: the one under test may still have a crash armed,
        // and its drivers share its failpoints.
        let fresh = self.plain().await;
        // The routine pass (candidates only), not the full scan: an image a
        // flow left unused without its candidate row then stays, and the
        // check says so.
        crate::reaper::reap_changed(fresh.env())
            .await
            .map_err(|e| e.chain())?;
        let bad = invariants::check(e.env()).await.map_err(|e| e.chain())?;
        if !bad.is_empty() {
            return Err(bad.join("; "));
        }
        let left = self.temporaries();
        if !left.is_empty() {
            return Err(format!("temporaries left: {left:?}"));
        }
        Ok(())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Export daemons outlive engines by design; a test's do not.
        crate::exports::kill_all_for_tests(&self.dir.path().join("run").join("exports"));
    }
}

/// A world and the scenario run in it.
struct Case<S> {
    world: World,
    scenario: S,
}

impl<S: Scenario> TestWorld<Env> for Case<S> {
    fn engine(&self, fp: Arc<Failpoints>, options: EngineOptions) -> BoxFut<'_, Engine<Env>> {
        Box::pin(self.world.open(fp, options))
    }

    fn start<'a>(&'a self, engine: &'a Engine<Env>) -> BoxFut<'a, Result<FlowHandle, String>> {
        Box::pin(async move {
            engine
                .start::<S::F>(self.scenario.params())
                .map_err(|e| e.to_string())
        })
    }

    fn check<'a>(
        &'a self,
        engine: &'a Engine<Env>,
        expect: Expect,
    ) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            self.world.check_common(engine).await?;
            self.scenario
                .check(&self.world, engine, expect)
                .await
                .map_err(|e| format!("{}: {e}", S::NAME))
        })
    }
}

/// Run the generic tests of `S::F` in the scenario `make` makes (fresh for
/// every run).
pub async fn generic<S: Scenario>(make: impl Fn() -> S) -> Report {
    generic_in(World::new, make).await
}

/// [`generic`] in worlds made by `world` (more backends, failpoints armed).
pub async fn generic_in<S: Scenario>(world: impl Fn() -> World, make: impl Fn() -> S) -> Report {
    let steps: Vec<&'static str> = S::F::steps().iter().map(|s| s.name).collect();
    testkit::run_all(S::F::KIND, &steps, || async {
        let case = Case {
            world: world(),
            scenario: make(),
        };
        case.scenario.prepare(&case.world).await;
        case
    })
    .await
}

impl World {
    /// A group type, an available group `group` on the file backend that
    /// accepts the default type, and `members` made in it by the create flow.
    pub async fn create_group(&self, group: scoria_model::GroupId, members: &[VolumeId]) {
        use scoria_model::group::GroupStatus;
        use scoria_store::groups;
        let e = self.plain().await;
        let mut tx = e.store().begin().await.expect("begin");
        let ty = scoria_model::GroupTypeId::new();
        groups::group_type_create(&mut tx, ty, "gt", None, true, &Default::default())
            .await
            .expect("group type");
        groups::group_create(
            &mut tx,
            &groups::NewGroup {
                id: group,
                project_id: PROJECT.into(),
                user_id: USER.into(),
                name: Some("g".into()),
                description: None,
                status: GroupStatus::Available,
                availability_zone: "nova".into(),
                group_type_id: ty,
                backend: Some("file".into()),
                source_group_id: None,
                last_flow_id: None,
                volume_type_ids: vec![default_type()],
            },
        )
        .await
        .expect("group");
        tx.commit().await.expect("commit");
        for id in members {
            self.run::<volume_create::VolumeCreate>(
                &e,
                volume_create::Params {
                    group_id: Some(group),
                    ..create_params(*id, 1)
                },
                "a group volume",
            )
            .await;
        }
    }
}
