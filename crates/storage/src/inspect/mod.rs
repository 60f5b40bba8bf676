//! Scoria's own format inspector: what a file of unknown origin (an uploaded
//! image) really is, read from its bytes, before any qemu tool opens it.
//!
//! Most block-storage advisories of the last decade come from letting
//! `qemu-img` look at a hostile file: a qcow2 whose backing file is
//! `/etc/passwd` (OSSA-2015-011), a VMDK descriptor whose extents name host
//! files (OSSA-2023-002), a qcow2 with an external data file (OSSA-2024-001),
//! `qemu-img` asked to probe a format (CVE-2026-24708). The rules here close
//! each of them *before* qemu sees the file:
//!
//! 1. the format is detected from the bytes ([`detect`]) and must be the one
//!    the owner declared (a qcow2 declared raw would otherwise be handed to a
//!    guest that reads its header as data, and a raw file declared qcow2 could
//!    carry anything);
//! 2. the format's own references to other files are read natively and
//!    refused ([`inspect`]): a qcow2 backing file or external data file, a VMDK
//!    that is not one self-contained file (`monolithicSparse` or
//!    `streamOptimized` with no extent naming another file), a VMDK text
//!    descriptor;
//! 3. only then may `qemu-img info -f <format>` run, under CPU-time and
//!    address-space limits (`qemu::info_untrusted`), and its answer is checked
//!    again against the same rules ([`check_qemu_view`]).
//!
//! The inspector reads at most [`HEADER_BYTES`] plus the VMDK embedded
//! descriptor; it never follows a reference.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

mod vmdk;

/// How much of a file the inspector reads to recognise it.
pub const HEADER_BYTES: usize = 64 * 1024;

/// The disk formats an uploaded image may declare (Glance's, those qemu can
/// convert from). `Vpc` is the VHD format (qemu's name for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Raw,
    Qcow2,
    Vmdk,
    Vdi,
    Vhdx,
    Vpc,
    Iso,
}

impl DiskFormat {
    /// Glance's name (`vhd` for VHD).
    pub fn glance_name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Vdi => "vdi",
            DiskFormat::Vhdx => "vhdx",
            DiskFormat::Vpc => "vhd",
            DiskFormat::Iso => "iso",
        }
    }

    /// The name `qemu-img -f` takes. An ISO image is read as raw bytes.
    pub fn qemu_name(self) -> &'static str {
        match self {
            DiskFormat::Raw | DiskFormat::Iso => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Vdi => "vdi",
            DiskFormat::Vhdx => "vhdx",
            DiskFormat::Vpc => "vpc",
        }
    }

    /// Parse Glance's name.
    pub fn from_glance(name: &str) -> Option<DiskFormat> {
        Some(match name {
            "raw" => DiskFormat::Raw,
            "qcow2" => DiskFormat::Qcow2,
            "vmdk" => DiskFormat::Vmdk,
            "vdi" => DiskFormat::Vdi,
            "vhdx" => DiskFormat::Vhdx,
            "vhd" | "vpc" => DiskFormat::Vpc,
            "iso" => DiskFormat::Iso,
            _ => return None,
        })
    }
}

impl std::fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.glance_name())
    }
}

/// Why a file is refused. Every message names the rule, for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the image's data is {found}, not the {declared} it was declared as")]
    FormatMismatch {
        declared: DiskFormat,
        found: DiskFormat,
    },
    #[error("the image's data is in a format Scoria does not accept ({0})")]
    UnknownFormat(&'static str),
    #[error("the qcow2 image names a backing file ({0:?}); images must be self-contained")]
    BackingFile(String),
    #[error("the qcow2 image has an external data file; images must be self-contained")]
    DataFile,
    #[error(
        "the VMDK image is of subformat {0:?}; only monolithicSparse and streamOptimized are accepted"
    )]
    VmdkSubformat(String),
    #[error(
        "the VMDK image's descriptor names another file ({0:?}); images must be self-contained"
    )]
    VmdkExtent(String),
    #[error("the image is truncated or its header is corrupt: {0}")]
    Corrupt(String),
    #[error("qemu-img could not describe the image: {0}")]
    Unreadable(String),
}

/// What the inspector found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    pub format: DiskFormat,
    /// The virtual size the header states, where the format has one in its
    /// header (qcow2, VMDK sparse, VDI, VHD); raw and ISO are their length.
    pub virtual_size: Option<u64>,
}

/// Recognise a format from the first bytes of a file (`head`, at least the
/// first [`HEADER_BYTES`] or the whole file if shorter) and its last 512
/// bytes (`tail`: a fixed VHD has its footer only there).
pub fn detect(head: &[u8], tail: &[u8]) -> DiskFormat {
    if head.starts_with(b"QFI\xfb") {
        return DiskFormat::Qcow2;
    }
    if head.starts_with(b"KDMV") || head.starts_with(b"COWD") {
        return DiskFormat::Vmdk;
    }
    if head.starts_with(b"# Disk DescriptorFile") {
        return DiskFormat::Vmdk;
    }
    if head.starts_with(b"vhdxfile") {
        return DiskFormat::Vhdx;
    }
    if head.starts_with(b"conectix") {
        return DiskFormat::Vpc;
    }
    if head.len() >= 0x44 && head[0x40..0x44] == [0x7f, 0x10, 0xda, 0xbe] {
        return DiskFormat::Vdi;
    }
    if head.len() >= 0x8006 && &head[0x8001..0x8006] == b"CD001" {
        return DiskFormat::Iso;
    }
    if tail.starts_with(b"conectix") {
        return DiskFormat::Vpc;
    }
    DiskFormat::Raw
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).map(|s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_be_bytes(a)
    })
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).map(|s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}

/// qcow2: version, backing file, external data file, virtual size.
fn inspect_qcow2(head: &[u8]) -> Result<Option<u64>, Refusal> {
    let corrupt = |what: &str| Refusal::Corrupt(format!("qcow2 header: {what}"));
    let version = be32(head, 4).ok_or_else(|| corrupt("too short"))?;
    if !(2..=3).contains(&version) {
        return Err(corrupt("unknown version"));
    }
    let backing_offset = be64(head, 8).ok_or_else(|| corrupt("too short"))?;
    let backing_size = be32(head, 16).ok_or_else(|| corrupt("too short"))?;
    let size = be64(head, 24).ok_or_else(|| corrupt("too short"))?;
    if backing_offset != 0 || backing_size != 0 {
        let name = usize::try_from(backing_offset)
            .ok()
            .and_then(|o| head.get(o..o + backing_size as usize))
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_else(|| "(beyond the header)".into());
        return Err(Refusal::BackingFile(name));
    }
    if version >= 3 {
        // Incompatible feature bit 2: the data lives in an external file.
        let incompatible = be64(head, 72).ok_or_else(|| corrupt("too short"))?;
        if incompatible & (1 << 2) != 0 {
            return Err(Refusal::DataFile);
        }
        // Header extension 0x44415441 ("DATA") names the data file; refuse
        // it even without the feature bit.
        let header_length = be32(head, 100).ok_or_else(|| corrupt("too short"))? as usize;
        let mut at = header_length.max(104);
        while let (Some(kind), Some(len)) = (be32(head, at), be32(head, at + 4)) {
            if kind == 0 {
                break;
            }
            if kind == 0x4441_5441 {
                return Err(Refusal::DataFile);
            }
            at += 8 + (len as usize).div_ceil(8) * 8;
            if at >= head.len() {
                break;
            }
        }
    }
    Ok(Some(size))
}

/// Inspect a file declared to be `declared`: its real format must be that,
/// and it must not refer to any other file. Reads only the file's head (and a
/// VMDK's embedded descriptor).
pub fn inspect(path: &Path, declared: DiskFormat) -> Result<Inspection, Refusal> {
    let mut file =
        std::fs::File::open(path).map_err(|e| Refusal::Unreadable(format!("opening it: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| Refusal::Unreadable(format!("reading its size: {e}")))?
        .len();
    let mut head = vec![0u8; HEADER_BYTES.max(0x8006)];
    let n = read_up_to(&mut file, &mut head)
        .map_err(|e| Refusal::Unreadable(format!("reading it: {e}")))?;
    head.truncate(n);
    let mut tail = vec![0u8; 512];
    if len >= 512 {
        file.seek(SeekFrom::Start(len - 512))
            .and_then(|_| file.read_exact(&mut tail))
            .map_err(|e| Refusal::Unreadable(format!("reading it: {e}")))?;
    } else {
        tail.clear();
    }
    let found = detect(&head, &tail);
    // An ISO is raw bytes with a file system in them: declared raw it is raw
    // data, declared iso it must be one.
    let compatible = found == declared || (declared == DiskFormat::Raw && found == DiskFormat::Iso);
    if !compatible {
        return Err(Refusal::FormatMismatch { declared, found });
    }
    let virtual_size = match declared {
        DiskFormat::Raw | DiskFormat::Iso => Some(len),
        DiskFormat::Qcow2 => inspect_qcow2(&head)?,
        DiskFormat::Vmdk => vmdk::inspect(&mut file, &head)?,
        DiskFormat::Vdi => le64(&head, 0x170),
        // The footer: a copy at the start of dynamic disks, the only one at
        // the end of fixed ones.
        DiskFormat::Vpc => be64(
            if head.starts_with(b"conectix") {
                &head
            } else {
                &tail
            },
            0x30,
        ),
        DiskFormat::Vhdx => None,
    };
    if declared == DiskFormat::Qcow2 && len < 104 {
        return Err(Refusal::Corrupt("qcow2 header: truncated".into()));
    }
    Ok(Inspection {
        format: declared,
        virtual_size,
    })
}

fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    file.seek(SeekFrom::Start(0))?;
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// What `qemu-img info` said of an untrusted image, reduced to what the rules
/// look at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QemuView {
    pub format: String,
    pub virtual_size: u64,
    pub backing_filename: Option<String>,
    pub data_file: Option<String>,
    /// A VMDK's `create-type` and the file names of its extents.
    pub vmdk_create_type: Option<String>,
    pub vmdk_extents: Vec<String>,
}

/// Check qemu's own view of the image against the same rules: the format it
/// read is the declared one, nothing refers to another file.
pub fn check_qemu_view(view: &QemuView, declared: DiskFormat, path: &Path) -> Result<(), Refusal> {
    if view.format != declared.qemu_name() {
        return Err(Refusal::Unreadable(format!(
            "it read the image as {} instead of {}",
            view.format,
            declared.qemu_name()
        )));
    }
    if let Some(b) = &view.backing_filename {
        return Err(Refusal::BackingFile(b.clone()));
    }
    if view.data_file.is_some() {
        return Err(Refusal::DataFile);
    }
    if declared == DiskFormat::Vmdk {
        let kind = view.vmdk_create_type.clone().unwrap_or_default();
        if !vmdk::ACCEPTED.contains(&kind.as_str()) {
            return Err(Refusal::VmdkSubformat(kind));
        }
        let own = path.to_string_lossy();
        for extent in &view.vmdk_extents {
            if extent != own.as_ref() {
                return Err(Refusal::VmdkExtent(extent.clone()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
