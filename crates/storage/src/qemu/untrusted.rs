//! `qemu-img info` on a file nobody vouches for (an uploaded image), after
//! Scoria's own inspector passed it (`crate::inspect`): always with an
//! explicit format, under CPU-time and address-space limits, so that a file
//! crafted to make qemu spin or allocate is stopped by the kernel, as Cinder
//! stops it with `prlimit`. The limits are set in the child between fork and
//! exec (`setrlimit`), so nothing but the one qemu-img process is bound.

use std::path::Path;
use std::process::Stdio;

use serde::Deserialize;

use crate::inspect::{DiskFormat, QemuView, Refusal};

/// Limits for a qemu-img that reads an untrusted image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// CPU seconds (RLIMIT_CPU): the kernel sends SIGXCPU, then SIGKILL.
    pub cpu_seconds: u64,
    /// Bytes of address space (RLIMIT_AS): allocations beyond fail.
    pub address_space: u64,
}

impl Default for Limits {
    /// Cinder's defaults: 60 s of CPU, 1 GiB of address space.
    fn default() -> Self {
        Limits {
            cpu_seconds: 60,
            address_space: 1 << 30,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Json {
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    format: String,
    #[serde(rename = "backing-filename")]
    backing_filename: Option<String>,
    #[serde(rename = "format-specific")]
    format_specific: Option<Specific>,
}

#[derive(Debug, Deserialize)]
struct Specific {
    #[serde(default)]
    data: SpecificData,
}

#[derive(Debug, Default, Deserialize)]
struct SpecificData {
    #[serde(rename = "data-file")]
    data_file: Option<String>,
    #[serde(rename = "create-type")]
    create_type: Option<String>,
    #[serde(default)]
    extents: Vec<Extent>,
}

#[derive(Debug, Deserialize)]
struct Extent {
    filename: String,
}

/// What qemu-img says of `path`, read as `format`, within `limits`. A qemu-img
/// stopped by a limit, or failing to read the file, is a [`Refusal`] that says
/// so; the caller then checks the view (`inspect::check_qemu_view`).
pub async fn info_untrusted(
    path: &Path,
    format: DiskFormat,
    limits: Limits,
) -> Result<QemuView, Refusal> {
    if !path.is_absolute() {
        return Err(Refusal::Unreadable(format!(
            "{} is not an absolute path",
            path.display()
        )));
    }
    let mut cmd = super::command(super::QEMU_IMG);
    cmd.args(["info", "--output=json", "-f", format.qemu_name()])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (cpu, mem) = (limits.cpu_seconds, limits.address_space);
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls setrlimit, which is async-signal-safe; it touches no memory of
    // the parent besides the two copied integers.
    unsafe {
        cmd.pre_exec(move || {
            let set = |resource, value: u64| {
                let lim = libc::rlimit {
                    rlim_cur: value as libc::rlim_t,
                    rlim_max: value as libc::rlim_t,
                };
                if libc::setrlimit(resource, &lim) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            set(libc::RLIMIT_CPU, cpu)?;
            set(libc::RLIMIT_AS, mem)
        });
    }
    tracing::debug!(path = %path.display(), format = %format, cpu, mem, "qemu-img info on an untrusted image");
    let out = cmd
        .output()
        .await
        .map_err(|e| Refusal::Unreadable(format!("starting qemu-img: {e}")))?;
    if !out.status.success() {
        use std::os::unix::process::ExitStatusExt;
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        let signal = out.status.signal();
        if matches!(signal, Some(libc::SIGXCPU | libc::SIGKILL))
            || stderr.contains("Cannot allocate memory")
            || stderr.contains("Failed to allocate")
            || stderr.contains("Could not allocate")
            || stderr.contains("Resource temporarily unavailable")
            || stderr.contains("out of memory")
        {
            return Err(Refusal::Unreadable(format!(
                "qemu-img went past its limits ({cpu} s of CPU, {} MiB of memory) reading it",
                mem >> 20
            )));
        }
        return Err(Refusal::Unreadable(if stderr.is_empty() {
            format!("qemu-img ended with {}", out.status)
        } else {
            stderr
        }));
    }
    let json: Json = serde_json::from_slice(&out.stdout)
        .map_err(|e| Refusal::Unreadable(format!("its answer could not be parsed: {e}")))?;
    let data = json.format_specific.map(|f| f.data).unwrap_or_default();
    Ok(QemuView {
        format: json.format,
        virtual_size: json.virtual_size,
        backing_filename: json.backing_filename,
        data_file: data.data_file,
        vmdk_create_type: data.create_type,
        vmdk_extents: data.extents.into_iter().map(|e| e.filename).collect(),
    })
}
