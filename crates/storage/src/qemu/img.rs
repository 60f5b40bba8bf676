//! `qemu-img` (and, for tests and tools, `qemu-io`): create, inspect, resize,
//! convert, compare and check images.
//!
//! Three rules hold for every invocation here (see [`super`] for why):
//!
//! - The format is always given with `-f`. qemu never probes a format: a raw
//!   image whose guest wrote a qcow2 header must stay raw, or the guest could make
//!   the host open any file named as its "backing file".
//! - Image paths are absolute. qemu parses `proto:rest` in a file name as a
//!   protocol (`nbd:`, `ssh:`, `json:`…) unless a `/` comes first.
//! - A backing file is only ever named by a bare image name
//!   ([`create_overlay`]), resolved by qemu against the overlay's directory.
//! - A failure carries qemu's stderr ([`StorageError::Qemu`]), and a full file
//!   system becomes [`StorageError::NoSpace`].
//!
//! `qemu-img` (and, for [`write_pattern`], `qemu-io`) is found on `PATH`. Its JSON
//! output (`--output=json`) is parsed into [`ImageInfo`] and [`CheckReport`]; the
//! progress `qemu-img convert -p` prints (`    (12.34/100%)\r`) is read as it
//! comes ([`ProgressParser`]).

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::{Output, Stdio};

use serde::Deserialize;

use crate::{Format, ImageInfo, Result, StorageError};

/// The `qemu-img` program, looked up on `PATH`.
pub const QEMU_IMG: &str = "qemu-img";
/// The `qemu-io` program, looked up on `PATH` (tests and tools only).
pub const QEMU_IO: &str = "qemu-io";

/// `qemu-img check` exit status: the image has corruptions.
const CHECK_CORRUPT: i32 = 2;
/// `qemu-img check` exit status: the image has leaked clusters only.
const CHECK_LEAKS: i32 = 3;
/// `qemu-img check` exit status: the format has nothing to check (raw).
const CHECK_UNSUPPORTED: i32 = 63;

/// Run `program` with `args` and collect its output. The exit status is left to the
/// caller.
///
pub(super) async fn run(program: &str, args: &[OsString]) -> Result<Output> {
    tracing::debug!(program, args = ?args, "running");
    super::command(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A caller that gives up on the operation must not leave qemu-img behind.
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| crate::io_error(format!("starting {program}"), e))
}

/// As [`run`], handing stdout to `on_stdout` chunk by chunk as the program
/// writes it (the returned `Output` has an empty stdout). Stderr is collected
/// at the same time, so neither pipe can fill up and stall the program.
async fn run_streaming(
    program: &str,
    args: &[OsString],
    on_stdout: &mut (dyn FnMut(&[u8]) + Send),
) -> Result<Output> {
    use tokio::io::AsyncReadExt;

    tracing::debug!(program, args = ?args, "running");
    let started = |e| crate::io_error(format!("starting {program}"), e);
    let mut child = super::command(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(started)?;
    let no_pipe = || started(std::io::Error::other("no pipe to the child"));
    let mut stdout = child.stdout.take().ok_or_else(no_pipe)?;
    let mut stderr = child.stderr.take().ok_or_else(no_pipe)?;
    let read_stdout = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = stdout.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            on_stdout(&chunk[..n]);
        }
    };
    let read_stderr = async {
        let mut buf = Vec::new();
        stderr.read_to_end(&mut buf).await.map(|_| buf)
    };
    let (out, err) = tokio::join!(read_stdout, read_stderr);
    let reading = |e| crate::io_error(format!("reading the output of {program}"), e);
    out.map_err(reading)?;
    let stderr = err.map_err(reading)?;
    let status = child
        .wait()
        .await
        .map_err(|e| crate::io_error(format!("waiting for {program}"), e))?;
    Ok(Output {
        status,
        stdout: Vec::new(),
        stderr,
    })
}

/// Reads the progress `qemu-img … -p` prints: records such as
/// `    (12.34/100%)`, ended by `\r` (or `\n`), possibly split across reads.
#[derive(Debug, Default)]
pub struct ProgressParser {
    pending: Vec<u8>,
}

impl ProgressParser {
    /// Feed the next chunk of output; returns the last whole percent it
    /// completed, if any.
    pub fn feed(&mut self, chunk: &[u8]) -> Option<u8> {
        self.pending.extend_from_slice(chunk);
        let mut last = None;
        while let Some(end) = self.pending.iter().position(|&b| b == b'\r' || b == b'\n') {
            let record: Vec<u8> = self.pending.drain(..=end).collect();
            if let Some(p) = parse_progress(&record[..end]) {
                last = Some(p);
            }
        }
        last
    }
}

/// `    (12.34/100%)` → 12. Anything else → `None`.
fn parse_progress(record: &[u8]) -> Option<u8> {
    let text = std::str::from_utf8(record).ok()?.trim();
    let inner = text.strip_prefix('(')?.strip_suffix("/100%)")?;
    let value: f64 = inner.parse().ok()?;
    (0.0..=100.0).contains(&value).then(|| value.floor() as u8)
}

/// A `qemu-img` (or `qemu-io`) invocation: its arguments and, for messages, its
/// command line.
pub(super) struct QemuImg {
    program: &'static str,
    args: Vec<OsString>,
}

impl QemuImg {
    pub(super) fn new(subcommand: &str) -> Self {
        Self {
            program: QEMU_IMG,
            args: vec![subcommand.into()],
        }
    }

    pub(super) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub(super) fn format(self, format: Format) -> Self {
        self.arg("-f").arg(format.as_str())
    }

    /// The image path, which must be absolute.
    pub(super) fn image(self, path: &Path) -> Result<Self> {
        if !path.is_absolute() {
            return Err(StorageError::InvalidName(path.display().to_string()));
        }
        Ok(self.arg(path))
    }

    pub(super) fn command_line(&self) -> String {
        let mut line = self.program.to_owned();
        for arg in &self.args {
            line.push(' ');
            line.push_str(&arg.to_string_lossy());
        }
        line
    }

    pub(super) async fn output(&self) -> Result<Output> {
        run(self.program, &self.args).await
    }

    /// Run and require success; return stdout.
    pub(super) async fn run(&self) -> Result<Vec<u8>> {
        let out = self.output().await?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(self.failed(&out))
        }
    }

    pub(super) fn failed(&self, out: &Output) -> StorageError {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if stderr.contains("No space left on device") || stderr.contains("Disk quota exceeded") {
            return StorageError::NoSpace;
        }
        let stderr = if stderr.is_empty() {
            format!("exit status {}", out.status)
        } else {
            stderr
        };
        StorageError::Qemu {
            command: self.command_line(),
            stderr,
        }
    }

    pub(super) fn parse<'a, T: Deserialize<'a>>(&self, stdout: &'a [u8]) -> Result<T> {
        serde_json::from_slice(stdout).map_err(|source| StorageError::QemuOutput {
            command: self.command_line(),
            source,
        })
    }
}

/// `qemu-img info --output=json` output, the fields Scoria reads.
#[derive(Debug, Deserialize)]
struct InfoJson {
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    #[serde(rename = "actual-size", default)]
    actual_size: u64,
    format: String,
    #[serde(rename = "backing-filename")]
    backing_filename: Option<String>,
    #[serde(rename = "backing-filename-format")]
    backing_filename_format: Option<String>,
    #[serde(rename = "format-specific")]
    format_specific: Option<FormatSpecific>,
}

#[derive(Debug, Deserialize)]
struct FormatSpecific {
    #[serde(default)]
    data: FormatSpecificData,
}

#[derive(Debug, Default, Deserialize)]
struct FormatSpecificData {
    #[serde(rename = "data-file")]
    data_file: Option<String>,
}

/// Describe the image at `path` (absolute) as qemu-img sees it: the authoritative
/// answer, slower than [`crate::qcow2::read_header`]. `name` in the result is the
/// file name; `backing` is set only when the backing reference is one a backend
/// allows ([`crate::backing_name`]), and `immutable` is left false (qemu-img
/// does not know).
pub async fn info(path: &Path, format: Format) -> Result<ImageInfo> {
    let cmd = QemuImg::new("info")
        .arg("--output=json")
        .format(format)
        .image(path)?;
    let stdout = cmd.run().await?;
    parse_info(&cmd, path, format, &stdout)
}

fn parse_info(cmd: &QemuImg, path: &Path, format: Format, stdout: &[u8]) -> Result<ImageInfo> {
    let json: InfoJson = cmd.parse(stdout)?;
    if json.format != format.as_str() {
        return Err(StorageError::Qemu {
            command: cmd.command_line(),
            stderr: format!("reported format {:?}", json.format),
        });
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The name within a backend, when the reference is one a backend allows.
    let backing = json.backing_filename.as_deref().and_then(|reference| {
        crate::backing_name(&name, reference, json.backing_filename_format.as_deref()).ok()
    });
    Ok(ImageInfo {
        name,
        format,
        virtual_size: json.virtual_size,
        actual_size: json.actual_size,
        backing_file: json.backing_filename,
        data_file: json.format_specific.and_then(|s| s.data.data_file),
        backing,
        // qemu-img does not say; the file driver fills it in.
        immutable: false,
    })
}

/// Create a blank image of `size` bytes at `path` (absolute) with qemu-img's
/// defaults for `format`. The file driver writes qcow2 natively
/// ([`crate::qcow2`]); this is the reference it is tested against and its fallback.
pub async fn create(path: &Path, format: Format, size: u64) -> Result<()> {
    let cmd = QemuImg::new("create")
        .arg("-q")
        .format(format)
        .image(path)?
        .arg(size.to_string());
    cmd.run().await.map(drop)
}

/// Create an empty copy-on-write overlay of `size` bytes at `path` (absolute)
/// on the image `backing_file` of format `backing_format`, with qemu-img's
/// defaults: `qemu-img create -f qcow2 -F <format> -b <backing_file>`. The
/// backing file is a bare image name (see [`crate::format_of_name`]), recorded
/// as given and resolved by qemu against the overlay's directory, so that a
/// backend directory can move; anything else (a path, a `proto:` name) is
/// `InvalidName`. qemu-img opens the backing image (read-only) to check it, so
/// it must exist. The file driver writes overlays natively
/// ([`crate::qcow2::write_overlay`]); this is the reference and the fallback.
pub async fn create_overlay(
    path: &Path,
    size: u64,
    backing_file: &str,
    backing_format: Format,
) -> Result<()> {
    if crate::format_of_name(backing_file)? != backing_format {
        return Err(StorageError::InvalidName(backing_file.to_owned()));
    }
    let cmd = QemuImg::new("create")
        .arg("-q")
        .format(Format::Qcow2)
        .arg("-F")
        .arg(backing_format.as_str())
        .arg("-b")
        .arg(backing_file)
        .image(path)?
        .arg(size.to_string());
    cmd.run().await.map(drop)
}

/// Grow (or, should a caller ask, shrink: qemu-img refuses that without
/// `--shrink`) the image at `path` to `new_size` bytes.
pub async fn resize(path: &Path, format: Format, new_size: u64) -> Result<()> {
    let cmd = QemuImg::new("resize")
        .arg("-q")
        .format(format)
        .image(path)?
        .arg(new_size.to_string());
    cmd.run().await.map(drop)
}

/// Copy the data of the image at `source` into the existing image at `target`
/// (both absolute), which must be at least as large and read as zeroes (a blank
/// image just made). Only what reads as non-zero is written, so a sparse source
/// gives a sparse copy, in either format (`-S 4k`: zero runs of 4 KiB and more
/// stay holes in a raw target, unallocated clusters in a qcow2 one). `progress`
/// gets the percent done as qemu-img reports it.
///
/// qemu-img takes qemu's image locks: a source that another qemu process holds
/// for writing (a VM, an export) cannot be read this way, and the call fails
/// with qemu's message rather than copying an image that changes under it.
pub async fn convert_into(
    source: &Path,
    source_format: Format,
    target: &Path,
    target_format: Format,
    progress: &(dyn Fn(u8) + Send + Sync),
) -> Result<()> {
    convert_named_into(
        source,
        source_format.as_str(),
        target,
        target_format,
        progress,
    )
    .await
}

/// As [`convert_into`], the source's format given by its qemu name (`vmdk`,
/// `vpc`, … for uploaded images, after `crate::inspect` accepted them). The
/// format is still always explicit.
pub async fn convert_named_into(
    source: &Path,
    source_format: &str,
    target: &Path,
    target_format: Format,
    progress: &(dyn Fn(u8) + Send + Sync),
) -> Result<()> {
    let cmd = QemuImg::new("convert")
        .arg("-p")
        // The target exists (-n) and is known to read as zeroes.
        .arg("-n")
        .arg("--target-is-zero")
        .arg("-S")
        .arg("4k")
        .arg("-f")
        .arg(source_format)
        .arg("-O")
        .arg(target_format.as_str())
        .image(source)?
        .image(target)?;
    let mut parser = ProgressParser::default();
    let mut on_stdout = |chunk: &[u8]| {
        if let Some(p) = parser.feed(chunk) {
            progress(p);
        }
    };
    let out = run_streaming(cmd.program, &cmd.args, &mut on_stdout).await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(cmd.failed(&out))
    }
}

/// Whether two images (absolute paths) read the same. The parts of the larger one
/// beyond the end of the smaller must read as zeroes.
pub async fn compare(a: &Path, a_format: Format, b: &Path, b_format: Format) -> Result<bool> {
    let cmd = QemuImg::new("compare")
        .arg("-q")
        .format(a_format)
        .arg("-F")
        .arg(b_format.as_str())
        .image(a)?
        .image(b)?;
    let out = cmd.output().await?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(cmd.failed(&out)),
    }
}

/// Write `len` bytes of `pattern` at `offset` into the image at `path` (absolute)
/// with `qemu-io`: guest data, as a VM would write it. For tests and tools that
/// need images with known contents; nothing in Scoria's own paths writes guest
/// data.
pub async fn write_pattern(
    path: &Path,
    format: Format,
    offset: u64,
    len: u64,
    pattern: u8,
) -> Result<()> {
    let cmd = QemuImg {
        program: QEMU_IO,
        args: Vec::new(),
    }
    .format(format)
    .arg("-c")
    .arg(format!("write -q -P {pattern} {offset} {len}"))
    .image(path)?;
    cmd.run().await.map(drop)
}

/// Whether the `len` bytes at `offset` of the image at `path` (absolute) all read
/// as `pattern`, with `qemu-io` (`read -P`), through the image's backing chain:
/// guest data, as a VM would read it. For tests and tools, like
/// [`write_pattern`]. The image is opened read-only, so an immutable image can
/// be read.
pub async fn read_pattern(
    path: &Path,
    format: Format,
    offset: u64,
    len: u64,
    pattern: u8,
) -> Result<bool> {
    let cmd = QemuImg {
        program: QEMU_IO,
        args: Vec::new(),
    }
    .arg("-r")
    .format(format)
    .arg("-c")
    .arg(format!("read -q -P {pattern} {offset} {len}"))
    .image(path)?;
    let out = cmd.output().await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // qemu-io exits with 1 both when verification fails and when the read does;
    // only the first prints this.
    if stdout.contains("Pattern verification failed") {
        return Ok(false);
    }
    if out.status.success() {
        Ok(true)
    } else {
        Err(cmd.failed(&out))
    }
}

/// What `qemu-img check --output=json` found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckReport {
    /// False when the format has no metadata to check (raw): nothing below was
    /// looked at.
    #[serde(skip)]
    pub supported: bool,
    /// Errors that kept the check from completing (I/O errors, out of memory).
    pub check_errors: u64,
    /// Metadata errors that can lose or expose data.
    #[serde(default)]
    pub corruptions: u64,
    /// Clusters allocated but unused: wasted space, harmless otherwise.
    #[serde(default)]
    pub leaks: u64,
    pub image_end_offset: Option<u64>,
    pub total_clusters: Option<u64>,
    pub allocated_clusters: Option<u64>,
    pub fragmented_clusters: Option<u64>,
    pub compressed_clusters: Option<u64>,
}

impl CheckReport {
    /// No corruption, no leak, and the check completed.
    pub fn is_clean(&self) -> bool {
        self.check_errors == 0 && self.corruptions == 0 && self.leaks == 0
    }
}

/// Check the image at `path` (absolute) for metadata errors. Corruptions and leaks
/// are a report, not an error; an image qemu cannot open is an error. A raw image
/// gets a report with `supported: false`.
pub async fn check(path: &Path, format: Format) -> Result<CheckReport> {
    check_as(path, format, false).await
}

/// [`check`] without taking qemu's image lock (`-U`): it never makes a
/// writer fail, and what it reads of an image being written may be torn.
pub async fn check_shared(path: &Path, format: Format) -> Result<CheckReport> {
    check_as(path, format, true).await
}

async fn check_as(path: &Path, format: Format, shared: bool) -> Result<CheckReport> {
    let mut cmd = QemuImg::new("check").arg("--output=json");
    if shared {
        cmd = cmd.arg("-U");
    }
    let cmd = cmd.format(format).image(path)?;
    let out = cmd.output().await?;
    match out.status.code() {
        Some(0 | CHECK_CORRUPT | CHECK_LEAKS) => {
            let mut report: CheckReport = cmd.parse(&out.stdout)?;
            report.supported = true;
            Ok(report)
        }
        Some(CHECK_UNSUPPORTED) => Ok(CheckReport::default()),
        _ => Err(cmd.failed(&out)),
    }
}

/// Run `qemu-img` with arbitrary arguments, for tests that need images this module
/// does not make (with a backing file, an external data file…).
#[cfg(test)]
pub(crate) async fn qemu_img_for_tests(args: &[&str]) -> Result<()> {
    let mut cmd = QemuImg::new(args[0]);
    for arg in &args[1..] {
        cmd = cmd.arg(arg);
    }
    cmd.run().await.map(drop)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    // Verbatim output of qemu-img 10.0.2 (children elided).
    const INFO_OVERLAY: &str = r#"{
        "children": [],
        "backing-filename-format": "qcow2",
        "virtual-size": 1048576,
        "filename": "ov",
        "cluster-size": 65536,
        "format": "qcow2",
        "actual-size": 200704,
        "format-specific": {"type": "qcow2", "data": {"compat": "1.1",
            "compression-type": "zlib", "lazy-refcounts": false, "refcount-bits": 16,
            "corrupt": false, "extended-l2": false}},
        "full-backing-filename": "/tmp/q/img_1M",
        "backing-filename": "/tmp/q/img_1M",
        "dirty-flag": false
    }"#;
    const INFO_DATA_FILE: &str = r#"{
        "children": [], "virtual-size": 1048576, "filename": "ext",
        "cluster-size": 65536, "format": "qcow2", "actual-size": 200704,
        "format-specific": {"type": "qcow2", "data": {"compat": "1.1",
            "compression-type": "zlib", "lazy-refcounts": false, "refcount-bits": 16,
            "data-file": "/tmp/q/dfile", "data-file-raw": false, "corrupt": false,
            "extended-l2": false}},
        "dirty-flag": false
    }"#;
    // An overlay made as the file driver makes them: its base by bare name.
    const INFO_RELATIVE: &str = r#"{
        "children": [], "backing-filename-format": "raw",
        "virtual-size": 1048576, "filename": "/b/ov.qcow2", "cluster-size": 65536,
        "format": "qcow2", "actual-size": 200704,
        "full-backing-filename": "/b/base.raw", "backing-filename": "base.raw",
        "dirty-flag": false
    }"#;
    const INFO_RAW: &str = r#"{
        "children": [], "virtual-size": 512, "filename": "r1", "format": "raw",
        "actual-size": 4096, "dirty-flag": false
    }"#;

    fn check_info(json: &str, format: Format, expected: ImageInfo) {
        let cmd = QemuImg::new("info");
        let path = PathBuf::from(format!("/backend/{}", expected.name));
        let info = parse_info(&cmd, &path, format, json.as_bytes()).expect("parse");
        assert_eq!(info, expected);
    }

    #[test]
    fn info_json_is_parsed() {
        let base = |name: &str, format| ImageInfo {
            name: name.into(),
            format,
            virtual_size: 1 << 20,
            actual_size: 200_704,
            backing_file: None,
            data_file: None,
            backing: None,
            immutable: false,
        };
        check_info(
            INFO_OVERLAY,
            Format::Qcow2,
            ImageInfo {
                backing_file: Some("/tmp/q/img_1M".into()),
                ..base("ov", Format::Qcow2)
            },
        );
        check_info(
            INFO_RELATIVE,
            Format::Qcow2,
            ImageInfo {
                backing_file: Some("base.raw".into()),
                backing: Some("base.raw".into()),
                ..base("ov.qcow2", Format::Qcow2)
            },
        );
        check_info(
            INFO_DATA_FILE,
            Format::Qcow2,
            ImageInfo {
                data_file: Some("/tmp/q/dfile".into()),
                ..base("ext", Format::Qcow2)
            },
        );
        check_info(
            INFO_RAW,
            Format::Raw,
            ImageInfo {
                virtual_size: 512,
                actual_size: 4096,
                ..base("r1", Format::Raw)
            },
        );
    }

    #[test]
    fn progress_is_read_across_chunks() {
        let check = |chunks: &[&str], expected: &[Option<u8>]| {
            let mut parser = ProgressParser::default();
            let got: Vec<_> = chunks.iter().map(|c| parser.feed(c.as_bytes())).collect();
            assert_eq!(got, expected, "{chunks:?}");
        };
        check(&["    (0.00/100%)\r    (3.08/100%)\r"], &[Some(3)]);
        check(
            &[
                "    (12.3",
                "1/100%)\r",
                "    (99.99/100%)\r    (100.00/100%)\n",
            ],
            &[None, Some(12), Some(100)],
        );
        // Anything else on stdout is not progress.
        check(
            &[
                "warning: something\n",
                "(150.00/100%)\r",
                "(x/100%)\r",
                "(5/100%)",
            ],
            &[None, None, None, None],
        );
    }

    #[test]
    fn a_format_other_than_the_one_asked_for_is_an_error() {
        let cmd = QemuImg::new("info");
        let err = parse_info(&cmd, Path::new("/b/r1"), Format::Qcow2, INFO_RAW.as_bytes());
        assert!(matches!(err, Err(StorageError::Qemu { .. })), "{err:?}");
        let err = parse_info(&cmd, Path::new("/b/r1"), Format::Raw, b"not json");
        assert!(
            matches!(err, Err(StorageError::QemuOutput { .. })),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn relative_paths_are_refused() {
        let err = info(Path::new("nbd:localhost:10809"), Format::Raw).await;
        assert!(matches!(err, Err(StorageError::InvalidName(_))), "{err:?}");
        let err = create(Path::new("x.qcow2"), Format::Qcow2, 512).await;
        assert!(matches!(err, Err(StorageError::InvalidName(_))), "{err:?}");
    }

    #[tokio::test]
    async fn failures_carry_stderr() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing.qcow2");
        match info(&missing, Format::Qcow2).await {
            Err(StorageError::Qemu { command, stderr }) => {
                assert!(
                    command.starts_with("qemu-img info --output=json -f qcow2 /"),
                    "{command}"
                );
                assert!(stderr.contains("No such file or directory"), "{stderr}");
            }
            other => panic!("expected a qemu error, got {other:?}"),
        }
        // A raw file is not a qcow2 image, whatever it contains: no probing.
        let raw = dir.path().join("r.raw");
        create(&raw, Format::Raw, 1 << 20)
            .await
            .expect("create raw");
        let err = info(&raw, Format::Qcow2).await;
        assert!(matches!(err, Err(StorageError::Qemu { .. })), "{err:?}");
        assert_eq!(
            info(&raw, Format::Raw).await.expect("info").virtual_size,
            1 << 20
        );
    }

    #[tokio::test]
    async fn check_reports_leaks_and_corruptions() {
        use std::os::unix::fs::FileExt;

        let dir = tempfile::tempdir().expect("temp dir");
        let clean = dir.path().join("clean.qcow2");
        create(&clean, Format::Qcow2, 1 << 30)
            .await
            .expect("create");
        let report = check(&clean, Format::Qcow2).await.expect("check");
        assert!(report.supported && report.is_clean(), "{report:?}");

        // A cluster with refcount 1 that nothing references is a leak.
        let leaky = dir.path().join("leaky.qcow2");
        std::fs::copy(&clean, &leaky).expect("copy");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&leaky)
            .expect("open");
        file.set_len(5 << 16).expect("grow");
        file.write_all_at(&1u16.to_be_bytes(), (2 << 16) + 4 * 2)
            .expect("patch refcount");
        let report = check(&leaky, Format::Qcow2).await.expect("check");
        assert_eq!((report.leaks, report.corruptions), (1, 0), "{report:?}");
        assert!(!report.is_clean());

        // An L1 entry pointing past the end of the file is a corruption.
        let corrupt = dir.path().join("corrupt.qcow2");
        std::fs::copy(&clean, &corrupt).expect("copy");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&corrupt)
            .expect("open");
        file.write_all_at(&(5u64 << 16).to_be_bytes(), 3 << 16)
            .expect("patch L1");
        let report = check(&corrupt, Format::Qcow2).await.expect("check");
        assert!(report.corruptions > 0, "{report:?}");

        // Raw has nothing to check.
        let raw = dir.path().join("r.raw");
        create(&raw, Format::Raw, 1 << 20)
            .await
            .expect("create raw");
        assert!(!check(&raw, Format::Raw).await.expect("check").supported);

        // An image qemu cannot open is an error, not a report.
        let err = check(&dir.path().join("missing.qcow2"), Format::Qcow2).await;
        assert!(matches!(err, Err(StorageError::Qemu { .. })), "{err:?}");
    }

    #[tokio::test]
    async fn resize_grows() {
        let dir = tempfile::tempdir().expect("temp dir");
        for format in [Format::Qcow2, Format::Raw] {
            let path = dir.path().join(format!("img.{format}"));
            create(&path, format, 1 << 20).await.expect("create");
            resize(&path, format, 3 << 20).await.expect("resize");
            assert_eq!(
                info(&path, format).await.expect("info").virtual_size,
                3 << 20
            );
        }
    }
}
