//! One test suite, run against both drivers: the memory driver is only useful if
//! it behaves like the file driver.
//!
//! Each test is a function of a [`Kind`]; the `both!` macro makes a test per
//! driver, named `<test>::memory` and `<test>::file`. Tests see a driver
//! through [`DataAccess`], the [`Driver`] trait plus what only tests need:
//! writing and reading guest data, comparing images, fingerprinting an image
//! to show it did not change, and planting images whose references a driver
//! must refuse. The file driver does those with qemu-io and qemu-img, the
//! memory driver on its sector maps; neither is part of the production trait.
//!
//! - this file: the harness, the basic operations, capabilities;
//! - [`layers`]: immutability, overlays, chains, foreign references, copies of
//!   layered images;
//! - [`streams`]: imports and exports;
//! - `crash`: every failpoint, as a crash and as an error, then a re-run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use scoria_failpoints::Failpoints;

use crate::file::{FileDriver, FileOptions};
use crate::memory::MemoryDriver;
use crate::{Driver, ExportProtocol, Format, ImageSpec, Result, StorageError, qcow2, qemu};

#[cfg(feature = "failpoints")]
mod crash;
mod layers;
mod streams;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Memory,
    File,
}

/// A reference a driver must refuse to follow, planted in an image.
#[derive(Clone, Copy, Debug)]
enum Foreign<'a> {
    /// A backing file and the backing format recorded for it, if any.
    Backing(&'a str, Option<&'a str>),
    /// An external data file (an absolute path).
    DataFile(&'a str),
}

/// What the suite needs of a driver beyond [`Driver`]. Offsets and lengths are
/// whole sectors.
#[async_trait::async_trait]
trait DataAccess: Driver {
    /// Write `len` bytes of `byte` at `offset` into the image, as a guest
    /// would. An immutable image is `Immutable`.
    async fn write(&self, name: &str, offset: u64, len: u64, byte: u8) -> Result<()>;
    /// Whether the `len` bytes at `offset` read as `byte`, through the chain.
    async fn reads_as(&self, name: &str, offset: u64, len: u64, byte: u8) -> Result<bool>;
    /// Whether two images read the same (beyond the smaller one's end, the
    /// larger reads as zeroes), as `qemu-img compare` says.
    async fn same_data(&self, a: &str, b: &str) -> Result<bool>;
    /// The image's own state, byte for byte: equal before and after means the
    /// image did not change.
    async fn fingerprint(&self, name: &str) -> Vec<u8>;
    /// Put a qcow2 image of 1 MiB under `name` that records `foreign`.
    async fn plant(&self, name: &str, foreign: Foreign<'_>);
}

#[async_trait::async_trait]
impl DataAccess for FileDriver {
    async fn write(&self, name: &str, offset: u64, len: u64, byte: u8) -> Result<()> {
        let info = self.info(name).await?;
        let info = info.ok_or_else(|| StorageError::NotFound(name.to_owned()))?;
        // The driver runs as root here, whom the mode does not stop: refuse as
        // the memory driver does, so a test cannot write an immutable image by
        // mistake.
        if info.immutable {
            return Err(StorageError::Immutable(name.to_owned()));
        }
        qemu::write_pattern(&self.path_of(name)?, info.format, offset, len, byte).await
    }

    async fn reads_as(&self, name: &str, offset: u64, len: u64, byte: u8) -> Result<bool> {
        let format = crate::format_of_name(name)?;
        qemu::read_pattern(&self.path_of(name)?, format, offset, len, byte).await
    }

    async fn same_data(&self, a: &str, b: &str) -> Result<bool> {
        let (fa, fb) = (crate::format_of_name(a)?, crate::format_of_name(b)?);
        qemu::compare(&self.path_of(a)?, fa, &self.path_of(b)?, fb).await
    }

    async fn fingerprint(&self, name: &str) -> Vec<u8> {
        use std::os::unix::fs::MetadataExt;
        let path = self.path_of(name).expect("name");
        let mut bytes = std::fs::read(&path).expect("read image");
        let mode = std::fs::metadata(&path).expect("metadata").mode();
        bytes.extend_from_slice(&mode.to_be_bytes());
        bytes
    }

    async fn plant(&self, name: &str, foreign: Foreign<'_>) {
        let path = self.path_of(name).expect("name");
        let path_s = path.to_str().expect("utf-8");
        match foreign {
            // qemu-img refuses to make an overlay without a backing format:
            // write the header natively.
            Foreign::Backing(file, None) => {
                let bytes = qcow2::layout(MIB, Some((file, None)))
                    .expect("layout")
                    .to_bytes();
                std::fs::write(&path, bytes).expect("write");
            }
            // -u: the backing file need not exist (and is not opened).
            Foreign::Backing(file, Some(format)) => qemu::qemu_img_for_tests(&[
                "create", "-q", "-u", "-f", "qcow2", "-F", format, "-b", file, path_s, "1M",
            ])
            .await
            .expect("qemu-img create -b"),
            Foreign::DataFile(data) => {
                let option = format!("data_file={data}");
                qemu::qemu_img_for_tests(&[
                    "create", "-q", "-f", "qcow2", "-o", &option, path_s, "1M",
                ])
                .await
                .expect("qemu-img create -o data_file");
            }
        }
    }
}

#[async_trait::async_trait]
impl DataAccess for MemoryDriver {
    async fn write(&self, name: &str, offset: u64, len: u64, byte: u8) -> Result<()> {
        self.write_data(name, offset, &vec![byte; len as usize])
    }

    async fn reads_as(&self, name: &str, offset: u64, len: u64, byte: u8) -> Result<bool> {
        Ok(self
            .read_data(name, offset, len)?
            .iter()
            .all(|&b| b == byte))
    }

    async fn same_data(&self, a: &str, b: &str) -> Result<bool> {
        self.same_data(a, b)
    }

    async fn fingerprint(&self, name: &str) -> Vec<u8> {
        self.fingerprint(name).expect("present").into_bytes()
    }

    async fn plant(&self, name: &str, foreign: Foreign<'_>) {
        match foreign {
            Foreign::Backing(file, format) => self.plant(name, MIB, Some((file, format)), None),
            Foreign::DataFile(data) => self.plant(name, MIB, None, Some(data)),
        }
    }
}

/// A driver under test, with its failpoints, a directory of its own (the
/// backend of a file driver is `backend/` in it) and a directory outside the
/// backend for imports and exports.
struct Env {
    tmp: tempfile::TempDir,
    // Only the failpoint tests arm them.
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    fp: Arc<Failpoints>,
    d: Arc<dyn DataAccess>,
}

impl Env {
    async fn new(kind: Kind) -> Self {
        let fp = Failpoints::new();
        let tmp = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(tmp.path().join("outside")).expect("outside dir");
        let d: Arc<dyn DataAccess> = match kind {
            Kind::Memory => Arc::new(MemoryDriver::new(fp.clone())),
            Kind::File => Arc::new(
                FileDriver::new(
                    tmp.path().join("backend"),
                    fp.clone(),
                    FileOptions::default(),
                )
                .await
                .expect("file driver"),
            ),
        };
        Self { tmp, fp, d }
    }

    /// The driver as the application sees it.
    fn driver(&self) -> &dyn Driver {
        &*self.d
    }

    /// A file named `name` outside the backend.
    fn outside(&self, name: &str) -> PathBuf {
        self.tmp.path().join("outside").join(name)
    }

    /// Every file in the backend directory (none for memory) and outside it.
    fn files(&self) -> (Vec<String>, Vec<String>) {
        let list = |dir: &Path| -> Vec<String> {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return Vec::new();
            };
            let mut names: Vec<String> = entries
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        (
            list(&self.tmp.path().join("backend")),
            list(&self.tmp.path().join("outside")),
        )
    }
}

fn spec(name: &str, size: u64) -> ImageSpec {
    let format = crate::format_of_name(name).expect("valid name");
    ImageSpec {
        name: name.into(),
        size,
        format,
    }
}

async fn size_of(d: &dyn Driver, name: &str) -> Option<u64> {
    d.info(name).await.expect("info").map(|i| i.virtual_size)
}

/// Assert that `result` is the error `pattern`.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(,)?) => {{
        let result = $result;
        assert!(
            matches!(result, Err($pattern)),
            "{}: {result:?}",
            stringify!($result)
        );
    }};
}
use assert_err;

macro_rules! both {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[tokio::test]
                async fn memory() {
                    super::$test(super::Kind::Memory).await
                }
                #[tokio::test]
                async fn file() {
                    super::$test(super::Kind::File).await
                }
            }
        )*
    };
}
use both;

both!(
    lifecycle,
    idempotency,
    invalid_input,
    copies,
    capabilities,
    renames
);

/// What each driver says it can do, and the Cinder strings made of it.
async fn capabilities(kind: Kind) {
    let env = Env::new(kind).await;
    let caps = env.d.capabilities();
    assert!(caps.thin_provisioning && caps.layering);
    assert!(!caps.online_snapshot && !caps.online_extend);
    assert_eq!(caps.formats, [Format::Qcow2, Format::Raw]);
    let cinder: Vec<(&str, String)> = caps.cinder();
    let value = |key: &str| {
        cinder
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(value("vendor_name"), Some("Scoria"));
    assert_eq!(value("thin_provisioning_support"), Some("True"));
    assert_eq!(value("volume_backend_name"), None);
    match kind {
        Kind::File => {
            assert_eq!(
                caps.export_protocols,
                [ExportProtocol::Nbd, ExportProtocol::Local]
            );
            assert!(caps.multiattach);
            assert_eq!(value("storage_protocol"), Some("nbd"));
            assert_eq!(value("multiattach"), Some("True"));
        }
        Kind::Memory => {
            assert!(caps.export_protocols.is_empty());
            assert!(!caps.multiattach);
            assert_eq!(value("storage_protocol"), Some("none"));
            assert_eq!(value("multiattach"), Some("False"));
        }
    }
}

/// A rename keeps the data and the mode, is idempotent, never overwrites,
/// and never changes the format.
async fn renames(kind: Kind) {
    let env = Env::new(kind).await;
    let d = env.driver();
    d.create(&spec("a.qcow2", GIB)).await.expect("create");
    env.d
        .write("a.qcow2", 4096, 8192, 0x5a)
        .await
        .expect("write");
    d.rename("a.qcow2", "b.qcow2").await.expect("rename");
    assert_eq!(d.list().await.expect("list"), ["b.qcow2"]);
    assert!(
        env.d
            .reads_as("b.qcow2", 4096, 8192, 0x5a)
            .await
            .expect("read")
    );
    // A re-run is success; nothing to rename at all is not.
    d.rename("a.qcow2", "b.qcow2").await.expect("re-run");
    assert_err!(
        d.rename("c.qcow2", "d.qcow2").await,
        StorageError::NotFound(_)
    );
    // Never over another image, never to another format.
    d.create(&spec("c.qcow2", GIB)).await.expect("create");
    assert_err!(
        d.rename("b.qcow2", "c.qcow2").await,
        StorageError::Mismatch { .. }
    );
    assert_err!(
        d.rename("b.qcow2", "b.raw").await,
        StorageError::InvalidName(_)
    );
    assert_eq!(d.list().await.expect("list"), ["b.qcow2", "c.qcow2"]);
    // An immutable image stays immutable.
    d.make_immutable("c.qcow2").await.expect("freeze");
    d.rename("c.qcow2", "e.qcow2").await.expect("rename");
    assert!(
        d.info("e.qcow2")
            .await
            .expect("info")
            .expect("present")
            .immutable
    );
    if kind == Kind::File {
        // Nothing else is left in the directory (no temporaries).
        assert_eq!(env.files().0, ["b.qcow2", "e.qcow2"]);
    }
}

async fn lifecycle(kind: Kind) {
    let env = Env::new(kind).await;
    let d = env.driver();
    for name in ["volume-1.qcow2", "volume-2.raw"] {
        d.create(&spec(name, GIB)).await.expect("create");
        let info = d.info(name).await.expect("info").expect("present");
        assert_eq!((info.name.as_str(), info.virtual_size), (name, GIB));
        assert_eq!(info.format, crate::format_of_name(name).expect("name"));
        assert!(!info.refers_to_other_files());
        d.extend(name, 2 * GIB).await.expect("extend");
        assert_eq!(size_of(d, name).await, Some(2 * GIB));
    }
    assert_eq!(
        d.list().await.expect("list"),
        ["volume-1.qcow2", "volume-2.raw"]
    );
    for name in ["volume-1.qcow2", "volume-2.raw"] {
        d.delete(name).await.expect("delete");
        assert_eq!(size_of(d, name).await, None);
    }
    assert!(d.list().await.expect("list").is_empty());
}

async fn idempotency(kind: Kind) {
    let env = Env::new(kind).await;
    let d = env.driver();
    for name in ["v.qcow2", "v.raw"] {
        // Create twice: the second finds the same shape and succeeds.
        d.create(&spec(name, GIB)).await.expect("create");
        d.create(&spec(name, GIB)).await.expect("create again");
        // A different size is a mismatch, and changes nothing.
        let err = d.create(&spec(name, 2 * GIB)).await;
        assert!(
            matches!(err, Err(StorageError::Mismatch { .. })),
            "{name}: {err:?}"
        );
        assert_eq!(size_of(d, name).await, Some(GIB));

        // Extend twice; extending to a size the image has (or exceeds) does nothing.
        d.extend(name, 2 * GIB).await.expect("extend");
        d.extend(name, 2 * GIB).await.expect("extend again");
        d.extend(name, MIB).await.expect("no shrink");
        assert_eq!(size_of(d, name).await, Some(2 * GIB));

        // Delete twice.
        d.delete(name).await.expect("delete");
        d.delete(name).await.expect("delete again");
        assert_eq!(size_of(d, name).await, None);
        let err = d.extend(name, 4 * GIB).await;
        assert!(
            matches!(err, Err(StorageError::NotFound(_))),
            "{name}: {err:?}"
        );
    }
    // A name is one image: the extension makes v.raw and v.qcow2 distinct.
    d.create(&spec("w.raw", MIB)).await.expect("create");
    d.create(&spec("w.qcow2", 2 * MIB)).await.expect("create");
    assert_eq!(size_of(d, "w.raw").await, Some(MIB));
    assert_eq!(size_of(d, "w.qcow2").await, Some(2 * MIB));
}

async fn invalid_input(kind: Kind) {
    let env = Env::new(kind).await;
    let d = env.driver();
    let long = format!("{}.raw", "a".repeat(crate::MAX_NAME_LEN - 4));
    d.create(&spec(&long, MIB)).await.expect("longest name");
    let too_long = format!("{}.raw", "a".repeat(crate::MAX_NAME_LEN - 3));
    for bad in [
        "",
        "volume",
        "volume.vmdk",
        ".qcow2",
        ".hidden.qcow2",
        ".v.qcow2.tmp",
        "a/b.qcow2",
        "../b.raw",
        "/etc/passwd.raw",
        "v .raw",
        "v\0.raw",
        "vé.raw",
        "v.qcow2/",
        too_long.as_str(),
    ] {
        let spec = ImageSpec {
            name: bad.into(),
            size: MIB,
            format: Format::Raw,
        };
        let invalid = |r: crate::Result<()>| matches!(r, Err(StorageError::InvalidName(_)));
        assert!(invalid(d.create(&spec).await), "create {bad:?}");
        assert!(invalid(d.delete(bad).await), "delete {bad:?}");
        assert!(invalid(d.extend(bad, GIB).await), "extend {bad:?}");
        assert!(invalid(d.info(bad).await.map(drop)), "info {bad:?}");
        assert!(
            invalid(d.copy_from(bad, &self::spec("c.raw", MIB), &|_| {}).await),
            "copy from {bad:?}"
        );
        assert!(
            invalid(d.copy_from(&long, &spec, &|_| {}).await),
            "copy to {bad:?}"
        );
        assert!(invalid(d.make_immutable(bad).await), "immutable {bad:?}");
        assert!(invalid(d.make_mutable(bad).await), "mutable {bad:?}");
        assert!(invalid(d.chain(bad).await.map(drop)), "chain {bad:?}");
        let overlay = self::spec("o.qcow2", MIB);
        assert!(
            invalid(d.create_overlay(bad, &overlay).await),
            "overlay on {bad:?}"
        );
        assert!(
            invalid(d.create_overlay(&long, &spec).await),
            "overlay named {bad:?}"
        );
        let outside = env.outside("x.raw");
        assert!(
            invalid(d.import_from(&spec, &outside, Format::Raw, &|_| {}).await),
            "import to {bad:?}"
        );
        assert!(
            invalid(d.export_to(bad, &outside, Format::Raw, &|_| {}).await),
            "export from {bad:?}"
        );
    }
    // The format must agree with the extension.
    let wrong = ImageSpec {
        name: "v.raw".into(),
        size: MIB,
        format: Format::Qcow2,
    };
    let err = d.create(&wrong).await;
    assert!(matches!(err, Err(StorageError::InvalidName(_))), "{err:?}");
    // Sizes are whole sectors; qcow2 has a maximum.
    for (name, size) in [("v.raw", 1), ("v.qcow2", MIB + 1), ("v.qcow2", 1 << 52)] {
        let err = d.create(&spec(name, size)).await;
        assert!(
            matches!(err, Err(StorageError::InvalidSize { .. })),
            "{name} {size}: {err:?}"
        );
    }
    d.create(&spec("v.raw", MIB)).await.expect("create");
    let err = d.extend("v.raw", GIB + 7).await;
    assert!(
        matches!(err, Err(StorageError::InvalidSize { .. })),
        "{err:?}"
    );
    assert_eq!(d.list().await.expect("list"), [long.as_str(), "v.raw"]);
}

/// Copies of an image: to the same or a larger size, into either format; a
/// re-run is success, a different shape is a mismatch; errors copy nothing.
async fn copies(kind: Kind) {
    let env = Env::new(kind).await;
    let d = env.driver();
    d.create(&spec("src.qcow2", GIB)).await.expect("create");
    d.create(&spec("src.raw", MIB)).await.expect("create");
    let seen = std::sync::Mutex::new(Vec::new());
    let progress = |p: u8| seen.lock().expect("lock").push(p);
    for (source, copy, size) in [
        ("src.qcow2", "same.qcow2", GIB),
        ("src.qcow2", "big.raw", 2 * GIB),
        ("src.raw", "big.qcow2", 3 * MIB),
    ] {
        seen.lock().expect("lock").clear();
        d.copy_from(source, &spec(copy, size), &progress)
            .await
            .unwrap_or_else(|e| panic!("{source} → {copy}: {e:?}"));
        assert_eq!(size_of(d, copy).await, Some(size), "{copy}");
        let seen = std::mem::take(&mut *seen.lock().expect("lock"));
        assert_eq!(seen.last(), Some(&100), "{copy}: progress {seen:?}");
        assert!(seen.is_sorted(), "{copy}: progress {seen:?}");
        // A re-run finds the copy and succeeds; another size is a mismatch.
        d.copy_from(source, &spec(copy, size), &|_| {})
            .await
            .expect("copy again");
        let err = d.copy_from(source, &spec(copy, size + MIB), &|_| {}).await;
        assert!(
            matches!(err, Err(StorageError::Mismatch { .. })),
            "{copy}: {err:?}"
        );
    }
    // The sources are unchanged.
    assert_eq!(size_of(d, "src.qcow2").await, Some(GIB));
    assert_eq!(size_of(d, "src.raw").await, Some(MIB));

    // Errors leave nothing behind.
    let err = d
        .copy_from("gone.qcow2", &spec("c1.qcow2", GIB), &|_| {})
        .await;
    assert!(matches!(err, Err(StorageError::NotFound(_))), "{err:?}");
    let err = d
        .copy_from("src.qcow2", &spec("c2.raw", MIB), &|_| {})
        .await;
    assert!(
        matches!(err, Err(StorageError::InvalidSize { .. })),
        "{err:?}"
    );
    let err = d.copy_from("src.raw", &spec("src.raw", MIB), &|_| {}).await;
    assert!(matches!(err, Err(StorageError::InvalidName(_))), "{err:?}");
    assert_eq!(
        d.list().await.expect("list"),
        ["big.qcow2", "big.raw", "same.qcow2", "src.qcow2", "src.raw"]
    );
}
