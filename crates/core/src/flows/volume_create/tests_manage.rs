//! A manage (`from_file.rs`) under the generic flow tests: a foreign qcow2
//! of 768 MiB with known data becomes a 1 GiB volume, or, when the create
//! fails or is undone at any point, is back under its own name with its data.
//! Never lost, never both.

use scoria_flows::Engine;
use scoria_flows::testkit::{BoxFut, Expect};
use scoria_model::VolumeId;
use scoria_model::volume::{GIB, VolumeStatus};
use scoria_storage::{Format, qemu};

use super::{FromFile, Params, VolumeCreate};
use crate::Env;
use crate::flows::testing::{self, Scenario, World, create_params};

const FOREIGN: &str = "volume-foreign.qcow2";
const PATTERN: u8 = 0x3c;

async fn reads_as_written(path: &std::path::Path) -> Result<bool, String> {
    let at = |off, len, byte| qemu::read_pattern(path, Format::Qcow2, off, len, byte);
    Ok(at(1 << 20, 1 << 20, PATTERN).await.map_err(testing::text)?
        && at(0, 1 << 20, 0).await.map_err(testing::text)?)
}

struct Manage {
    volume: VolumeId,
}

impl Scenario for Manage {
    type F = VolumeCreate;
    const NAME: &'static str = "volume_create (manage)";

    fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
        Box::pin(async move {
            // The backend's directory exists once an engine opened it.
            drop(w.plain().await);
            let path = w.backend_dir("file").join(FOREIGN);
            qemu::create(&path, Format::Qcow2, 768 << 20)
                .await
                .expect("a foreign file");
            qemu::write_pattern(&path, Format::Qcow2, 1 << 20, 1 << 20, PATTERN)
                .await
                .expect("its data");
        })
    }

    fn params(&self) -> Params {
        Params {
            manage: Some(FromFile {
                backend: "file".into(),
                name: FOREIGN.into(),
                format: Format::Qcow2,
            }),
            ..create_params(self.volume, 1)
        }
    }

    fn check<'a>(
        &'a self,
        w: &'a World,
        e: &'a Engine<Env>,
        expect: Expect,
    ) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let foreign = w.backend_dir("file").join(FOREIGN);
            let v = w.volume(e, self.volume).await?;
            match v.as_ref().map(|v| v.status) {
                Some(VolumeStatus::Available) if expect != Expect::Failed => {
                    let image = w.image_of(e, self.volume).await;
                    if foreign.exists() {
                        return Err("the file is both managed and left".into());
                    }
                    if !reads_as_written(&image).await? {
                        return Err("the managed volume does not read the file's data".into());
                    }
                    let info = qemu::info(&image, Format::Qcow2)
                        .await
                        .map_err(testing::text)?;
                    if info.virtual_size != GIB {
                        return Err(format!("virtual size {}", info.virtual_size));
                    }
                }
                None | Some(VolumeStatus::Error) if expect != Expect::Done => {
                    if !foreign.exists() || !reads_as_written(&foreign).await? {
                        return Err("a failed manage did not give the file back whole".into());
                    }
                    let names: Vec<String> = std::fs::read_dir(w.backend_dir("file"))
                        .map_err(testing::text)?
                        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                        .collect::<Result<_, _>>()
                        .map_err(testing::text)?;
                    if names != [FOREIGN] {
                        return Err(format!("left on the backend: {names:?}"));
                    }
                }
                other => return Err(format!("expected {expect:?}, the volume is {other:?}")),
            }
            w.check_told(e, self.volume).await
        })
    }
}

#[tokio::test]
async fn a_manage_takes_the_file_or_gives_it_back_under_the_generic_flow_tests() {
    let report = testing::generic(|| Manage {
        volume: VolumeId::new(),
    })
    .await;
    assert!(report.crash_points > 10, "{report:?}");
}
