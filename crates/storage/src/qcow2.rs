//! Native qcow2: write a blank image or an empty overlay, and read a header,
//! without spawning qemu-img.
//!
//! Creating a volume is the most frequent storage operation, and spawning
//! `qemu-img create` costs milliseconds, most of it process start-up. A blank qcow2
//! image is a few fixed structures, so Scoria writes it itself, producing exactly
//! the bytes that `qemu-img create -f qcow2 <path> <size>` of qemu 10 writes with
//! its defaults (version 3 / compat 1.1, 64 KiB clusters, 16-bit refcounts, no lazy
//! refcounts, zlib compression, no extended L2 entries). The tests compare whole
//! files against the real qemu-img for a table of sizes, so a qemu release that
//! changes its defaults is noticed rather than silently diverged from.
//!
//! The layout of a blank image of virtual size `s`, in 64 KiB clusters:
//!
//! ```text
//!   cluster 0   header (112 bytes), feature-name table extension, end of extensions
//!   cluster 1   refcount table: one entry, the refcount block at cluster 2
//!   cluster 2   refcount block: refcount 1 for clusters 0 .. 3 + L1 clusters
//!   cluster 3.. L1 table, l1_size = ceil(s / 512 MiB) zero entries; the file ends
//!               right after it (at cluster 3 when s = 0, which has no L1 table)
//! ```
//!
//! An empty overlay ([`overlay_layout`], what `qemu-img create -f qcow2 -F <fmt>
//! -b <base> <path> <size>` writes) is the same image with two more things in
//! cluster 0: a backing-format extension before the feature table (so the base's
//! format is recorded, never probed) and the base's file name right after the
//! end-of-extensions marker, which the header's backing-file fields point to.
//! Nothing of the base is read, so an overlay takes the same constant time as a
//! blank image.
//!
//! Everything but the header, the refcount table entry and the refcounts is zero,
//! so the writer sets the file length and writes those three pieces; the rest is a
//! hole that reads as zeros (qemu writes the L1 zeros out, so its file has more
//! blocks allocated, but the same bytes).
//!
//! [`read_header`] is the other half: the virtual size, backing file and external
//! data file of any qcow2 image (version 2 or 3), from the first cluster only.
//! Reading a header is not format probing: the caller already knows the image is
//! meant to be qcow2 (its name says so) and only learns what it contains.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::{Result, SECTOR_SIZE, StorageError};

/// The qcow2 magic, `QFI\xfb`.
pub const MAGIC: u32 = 0x5146_49fb;

/// log2 of the cluster size qemu uses by default, and the only one written here.
const CLUSTER_BITS: u32 = 16;
const CLUSTER_SIZE: u64 = 1 << CLUSTER_BITS;
/// Bytes of guest data one L1 entry covers: one L2 table of 8-byte entries, each
/// mapping one cluster.
const BYTES_PER_L1_ENTRY: u64 = (CLUSTER_SIZE / 8) * CLUSTER_SIZE;
/// qemu limits the L1 table to 32 MiB (`QCOW_MAX_L1_SIZE`).
const MAX_L1_ENTRIES: u64 = (32 << 20) / 8;

/// The largest virtual size qemu accepts for a qcow2 image with 64 KiB clusters:
/// 2 PiB, a full L1 table.
pub const MAX_VIRTUAL_SIZE: u64 = MAX_L1_ENTRIES * BYTES_PER_L1_ENTRY;

/// Length of the version 3 header qemu writes: the 104 bytes of the standard
/// header, the compression type byte, and padding to a multiple of 8.
const HEADER_LENGTH_V3: u32 = 112;
/// Length of a version 2 header, which has no length field of its own.
const HEADER_LENGTH_V2: usize = 72;

const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_FEATURE_TABLE: u32 = 0x6803_f857;
const EXT_DATA_FILE: u32 = 0x4441_5441;

/// The incompatible-feature bit that says the guest data lives in another file.
const INCOMPAT_DATA_FILE: u64 = 1 << 2;

/// The feature-name table qemu 10 writes into every new image: (feature type,
/// bit, name). Types are 0 incompatible, 1 compatible, 2 autoclear.
const FEATURE_NAMES: &[(u8, u8, &str)] = &[
    (0, 0, "dirty bit"),
    (0, 1, "corrupt bit"),
    (0, 2, "external data file"),
    (0, 3, "compression type"),
    (0, 4, "extended L2 entries"),
    (1, 0, "lazy refcounts"),
    (2, 0, "bitmaps"),
    (2, 1, "raw external data"),
];
/// Each feature-name entry is a type byte, a bit byte and a 46-byte name.
const FEATURE_ENTRY_LEN: usize = 48;

/// A blank image, planned: a file of `len` bytes that reads as zeros except for
/// `extents`, (offset, bytes) pairs in increasing order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlankLayout {
    pub len: u64,
    pub extents: Vec<(u64, Vec<u8>)>,
}

/// Plan a blank qcow2 image of `size` bytes, as `qemu-img create -f qcow2` would.
///
/// Fails with [`StorageError::InvalidSize`] when `size` is not a multiple of 512 or
/// exceeds [`MAX_VIRTUAL_SIZE`].
pub fn blank_layout(size: u64) -> Result<BlankLayout> {
    layout(size, None)
}

/// Plan an empty copy-on-write overlay of `size` bytes on the image
/// `backing_file` of format `backing_format`, as `qemu-img create -f qcow2 -F
/// <backing_format> -b <backing_file> <path> <size>` would: a blank image whose
/// header also names its backing file and pins that file's format (the
/// backing-format header extension), so that qemu never probes it.
///
/// The name is stored as given; qemu resolves a relative name against the
/// overlay's own directory. Fails with [`StorageError::InvalidSize`] as
/// [`blank_layout`] does, and with [`StorageError::InvalidName`] for a name that
/// does not fit in the header (more than 1023 bytes).
pub fn overlay_layout(
    size: u64,
    backing_file: &str,
    backing_format: crate::Format,
) -> Result<BlankLayout> {
    layout(size, Some((backing_file, Some(backing_format.as_str()))))
}

/// The longest backing file name qemu accepts in a header.
const MAX_BACKING_NAME: usize = 1023;

/// A blank image, or an overlay on `backing` (its file name and, if any, the
/// format recorded for it). Tests craft overlays without a recorded format with
/// `Some((name, None))`, which qemu-img refuses to make.
pub(crate) fn layout(size: u64, backing: Option<(&str, Option<&str>)>) -> Result<BlankLayout> {
    crate::validate_size(crate::Format::Qcow2, size)?;
    debug_assert_eq!(size % SECTOR_SIZE, 0);
    if let Some((file, _)) = backing
        && (file.is_empty() || file.len() > MAX_BACKING_NAME)
    {
        return Err(StorageError::InvalidName(file.to_owned()));
    }

    let l1_entries = size.div_ceil(BYTES_PER_L1_ENTRY);
    let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER_SIZE);
    let refcount_table_offset = CLUSTER_SIZE;
    let refcount_block_offset = 2 * CLUSTER_SIZE;
    // qemu leaves the L1 offset at zero when the table is empty.
    let l1_offset = if l1_entries == 0 { 0 } else { 3 * CLUSTER_SIZE };

    let mut header = Vec::with_capacity(1024);
    header.extend_from_slice(&MAGIC.to_be_bytes());
    header.extend_from_slice(&3u32.to_be_bytes()); // version
    // backing_file_offset and backing_file_size, patched below for an overlay.
    header.extend_from_slice(&0u64.to_be_bytes());
    header.extend_from_slice(&0u32.to_be_bytes());
    header.extend_from_slice(&CLUSTER_BITS.to_be_bytes());
    header.extend_from_slice(&size.to_be_bytes());
    header.extend_from_slice(&0u32.to_be_bytes()); // crypt_method
    // The limit above keeps the entry count within 2^22.
    header.extend_from_slice(&(l1_entries as u32).to_be_bytes());
    header.extend_from_slice(&l1_offset.to_be_bytes());
    header.extend_from_slice(&refcount_table_offset.to_be_bytes());
    header.extend_from_slice(&1u32.to_be_bytes()); // refcount_table_clusters
    header.extend_from_slice(&0u32.to_be_bytes()); // nb_snapshots
    header.extend_from_slice(&0u64.to_be_bytes()); // snapshots_offset
    header.extend_from_slice(&0u64.to_be_bytes()); // incompatible_features
    header.extend_from_slice(&0u64.to_be_bytes()); // compatible_features
    header.extend_from_slice(&0u64.to_be_bytes()); // autoclear_features
    header.extend_from_slice(&4u32.to_be_bytes()); // refcount_order: 16-bit refcounts
    header.extend_from_slice(&HEADER_LENGTH_V3.to_be_bytes());
    header.push(0); // compression_type: zlib
    header.resize(HEADER_LENGTH_V3 as usize, 0);

    // qemu writes the extensions in this order: backing format, feature table,
    // end marker; the backing file name follows the end marker.
    if let Some((_, Some(format))) = backing {
        header.extend_from_slice(&EXT_BACKING_FORMAT.to_be_bytes());
        header.extend_from_slice(&(format.len() as u32).to_be_bytes());
        header.extend_from_slice(format.as_bytes());
        header.resize(header.len().next_multiple_of(8), 0);
    }

    header.extend_from_slice(&EXT_FEATURE_TABLE.to_be_bytes());
    let table_len = FEATURE_NAMES.len() * FEATURE_ENTRY_LEN;
    header.extend_from_slice(&(table_len as u32).to_be_bytes());
    for &(kind, bit, name) in FEATURE_NAMES {
        let mut entry = [0u8; FEATURE_ENTRY_LEN];
        entry[0] = kind;
        entry[1] = bit;
        entry[2..2 + name.len()].copy_from_slice(name.as_bytes());
        header.extend_from_slice(&entry);
    }
    // The end-of-extensions marker (type 0, length 0) is zeros, like the rest of
    // the cluster, but it is part of the header and written as such.
    header.extend_from_slice(&EXT_END.to_be_bytes());
    header.extend_from_slice(&0u32.to_be_bytes());

    if let Some((file, _)) = backing {
        let offset = header.len() as u64;
        header[8..16].copy_from_slice(&offset.to_be_bytes());
        header[16..20].copy_from_slice(&(file.len() as u32).to_be_bytes());
        header.extend_from_slice(file.as_bytes());
    }

    let refcount_table = refcount_block_offset.to_be_bytes().to_vec();

    let used_clusters = 3 + l1_clusters;
    let refcounts: Vec<u8> = (0..used_clusters)
        .flat_map(|_| 1u16.to_be_bytes())
        .collect();

    Ok(BlankLayout {
        len: 3 * CLUSTER_SIZE + l1_entries * 8,
        extents: vec![
            (0, header),
            (refcount_table_offset, refcount_table),
            (refcount_block_offset, refcounts),
        ],
    })
}

impl BlankLayout {
    /// The whole file as bytes, holes included. For tests and small sizes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; self.len as usize];
        for (offset, data) in &self.extents {
            let start = *offset as usize;
            bytes[start..start + data.len()].copy_from_slice(data);
        }
        bytes
    }

    /// Write the layout into `file`, which must be empty: set its length, then
    /// write the extents. Does not sync.
    pub fn write_to(&self, file: &File) -> std::io::Result<()> {
        file.set_len(self.len)?;
        for (offset, data) in &self.extents {
            file.write_all_at(data, *offset)?;
        }
        Ok(())
    }
}

/// Write a blank qcow2 image of `size` bytes into the empty `file` (blocking; does
/// not sync).
pub fn write_blank(file: &File, size: u64) -> Result<()> {
    write_layout(file, &blank_layout(size)?)
}

/// Write an empty overlay (see [`overlay_layout`]) into the empty `file`
/// (blocking; does not sync). Constant time: nothing of the backing image is read.
pub fn write_overlay(
    file: &File,
    size: u64,
    backing_file: &str,
    backing_format: crate::Format,
) -> Result<()> {
    write_layout(file, &overlay_layout(size, backing_file, backing_format)?)
}

fn write_layout(file: &File, layout: &BlankLayout) -> Result<()> {
    layout
        .write_to(file)
        .map_err(|e| crate::io_error("writing a qcow2 image", e))
}

/// What the header of a qcow2 image says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// 2 (compat 0.10) or 3 (compat 1.1).
    pub version: u32,
    pub cluster_bits: u32,
    /// Virtual size in bytes.
    pub virtual_size: u64,
    pub backing_file: Option<String>,
    /// The backing file's format, from the backing-format header extension.
    pub backing_format: Option<String>,
    /// The external data file. `Some("")` when the incompatible feature bit says
    /// there is one but no header extension names it (qemu then needs it given at
    /// open time).
    pub data_file: Option<String>,
    pub incompatible_features: u64,
    pub compatible_features: u64,
    pub autoclear_features: u64,
}

impl Header {
    /// The image was not closed cleanly (lazy refcounts in use).
    pub fn is_dirty(&self) -> bool {
        self.incompatible_features & 1 != 0
    }

    /// qemu found the image corrupt and marked it so.
    pub fn is_marked_corrupt(&self) -> bool {
        self.incompatible_features & 2 != 0
    }
}

/// Why a header could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("reading the qcow2 header failed")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

/// Read the header of the qcow2 image at `path` (blocking).
pub fn read_header(path: &Path) -> std::result::Result<Header, HeaderError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    // Cluster 0 holds the header, its extensions and the backing file name. Read
    // the default cluster size first, and the rest of a larger cluster if needed.
    let mut buf = read_prefix(&file, len.min(CLUSTER_SIZE))?;
    if buf.len() >= 24 {
        let cluster_bits = be32(&buf, 20);
        if (17..=21).contains(&cluster_bits) {
            buf = read_prefix(&file, len.min(1 << cluster_bits))?;
        }
    }
    parse_header(&buf)
}

fn read_prefix(file: &File, len: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    (u64::from(be32(b, at)) << 32) | u64::from(be32(b, at + 4))
}

/// Parse a qcow2 header from the start of an image (at least its first cluster,
/// or the whole file if shorter).
pub fn parse_header(buf: &[u8]) -> std::result::Result<Header, HeaderError> {
    let invalid = |s: &str| Err(HeaderError::Invalid(s.to_owned()));
    if buf.len() < 4 || be32(buf, 0) != MAGIC {
        return invalid("no qcow2 magic");
    }
    if buf.len() < HEADER_LENGTH_V2 {
        return invalid("truncated header");
    }
    let version = be32(buf, 4);
    let cluster_bits = be32(buf, 20);
    if !(9..=21).contains(&cluster_bits) {
        return invalid("cluster size out of range");
    }
    let cluster_size = 1usize << cluster_bits;
    let (header_length, incompatible, compatible, autoclear) = match version {
        2 => (HEADER_LENGTH_V2, 0, 0, 0),
        3 => {
            if buf.len() < 104 {
                return invalid("truncated version 3 header");
            }
            let header_length = be32(buf, 100) as usize;
            if header_length < 104 || header_length > cluster_size.min(buf.len()) {
                return invalid("header length out of range");
            }
            (header_length, be64(buf, 72), be64(buf, 80), be64(buf, 88))
        }
        _ => return invalid("unsupported qcow2 version"),
    };
    // Everything the header points to must lie in the first cluster, as qemu
    // requires; past the end of the buffer means a truncated file.
    let end = cluster_size.min(buf.len());

    let backing_offset = be64(buf, 8);
    let backing_size = be32(buf, 16) as usize;
    let backing_file = if backing_offset == 0 {
        None
    } else {
        if backing_size > 1023 {
            return invalid("backing file name too long");
        }
        let start = usize::try_from(backing_offset).unwrap_or(usize::MAX);
        if start.checked_add(backing_size).is_none_or(|e| e > end) {
            return invalid("backing file name outside the first cluster");
        }
        Some(String::from_utf8_lossy(&buf[start..start + backing_size]).into_owned())
    };

    let mut backing_format = None;
    let mut data_file = None;
    let mut at = header_length;
    loop {
        if at + 8 > end {
            // A version 2 header may end the extensions with the cluster.
            break;
        }
        let kind = be32(buf, at);
        let len = be32(buf, at + 4) as usize;
        at += 8;
        if kind == EXT_END {
            break;
        }
        if at.checked_add(len).is_none_or(|e| e > end) {
            return invalid("header extension outside the first cluster");
        }
        let data = &buf[at..at + len];
        match kind {
            EXT_BACKING_FORMAT => {
                backing_format = Some(String::from_utf8_lossy(data).into_owned());
            }
            EXT_DATA_FILE => data_file = Some(String::from_utf8_lossy(data).into_owned()),
            _ => {}
        }
        at += len.next_multiple_of(8);
    }
    if incompatible & INCOMPAT_DATA_FILE != 0 && data_file.is_none() {
        data_file = Some(String::new());
    }

    Ok(Header {
        version,
        cluster_bits,
        virtual_size: be64(buf, 24),
        backing_file,
        backing_format,
        data_file,
        incompatible_features: incompatible,
        compatible_features: compatible,
        autoclear_features: autoclear,
    })
}

/// A [`HeaderError`] as a [`StorageError`] about the image `name`.
pub(crate) fn header_error(name: &str, e: HeaderError) -> StorageError {
    match e {
        HeaderError::Io(source) => crate::io_error(format!("reading the header of {name}"), source),
        HeaderError::Invalid(detail) => StorageError::BadImage {
            name: name.to_owned(),
            detail,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::qemu;

    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    const TIB: u64 = 1 << 40;

    /// Native and `qemu-img create` images of `size` bytes are byte-identical,
    /// and qemu-img finds the native one clean and of the right size.
    async fn check(size: u64) {
        let dir = tempfile::tempdir().expect("temp dir");
        let native = dir.path().join("native.qcow2");
        let by_qemu = dir.path().join("qemu.qcow2");

        let file = File::create_new(&native).expect("create native");
        write_blank(&file, size).expect("write native");
        drop(file);
        qemu::create(&by_qemu, crate::Format::Qcow2, size)
            .await
            .expect("qemu-img create");

        let (a, b) = (read(&native), read(&by_qemu));
        assert_eq!(a.len(), b.len(), "size {size}: file lengths differ");
        if let Some(at) = a.iter().zip(&b).position(|(x, y)| x != y) {
            panic!("size {size}: first difference at byte {at:#x}");
        }
        assert_eq!(a.len() as u64, blank_layout(size).expect("layout").len);

        let report = qemu::check(&native, crate::Format::Qcow2)
            .await
            .expect("qemu-img check");
        assert!(report.is_clean(), "size {size}: {report:?}");
        let info = qemu::info(&native, crate::Format::Qcow2)
            .await
            .expect("qemu-img info");
        assert_eq!(info.virtual_size, size);
        assert!(!info.refers_to_other_files());

        let header = read_header(&by_qemu).expect("read header");
        assert_eq!(header.virtual_size, size);
        assert_eq!((header.version, header.cluster_bits), (3, 16));
        assert_eq!((header.backing_file, header.data_file), (None, None));
    }

    /// Native overlays and `qemu-img create -F <fmt> -b <base>` overlays of
    /// `size` bytes are byte-identical, and the header reads back the base's
    /// name and format.
    async fn check_overlay(size: u64, base_format: crate::Format) {
        let dir = tempfile::tempdir().expect("temp dir");
        let base_name = format!("base-image.{base_format}");
        let base = dir.path().join(&base_name);
        qemu::create(&base, base_format, MIB).await.expect("base");
        let native = dir.path().join("native.qcow2");
        let by_qemu = dir.path().join("qemu.qcow2");
        let file = File::create_new(&native).expect("create native");
        write_overlay(&file, size, &base_name, base_format).expect("write native");
        drop(file);
        qemu::create_overlay(&by_qemu, size, &base_name, base_format)
            .await
            .expect("qemu-img create -b");
        let (a, b) = (read(&native), read(&by_qemu));
        assert_eq!(a.len(), b.len(), "size {size}: file lengths differ");
        if let Some(at) = a.iter().zip(&b).position(|(x, y)| x != y) {
            panic!("size {size} on {base_format}: first difference at byte {at:#x}");
        }
        let header = read_header(&native).expect("read header");
        assert_eq!(header.backing_file.as_deref(), Some(base_name.as_str()));
        assert_eq!(header.backing_format.as_deref(), Some(base_format.as_str()));
        assert_eq!((header.virtual_size, header.data_file), (size, None));
        let report = qemu::check(&native, crate::Format::Qcow2)
            .await
            .expect("qemu-img check");
        assert!(report.is_clean(), "size {size}: {report:?}");
    }

    #[tokio::test]
    async fn native_overlays_are_byte_identical_to_qemu_img() {
        for size in [MIB, GIB + 512, 100 * GIB, 64 * TIB] {
            for base_format in [crate::Format::Qcow2, crate::Format::Raw] {
                check_overlay(size, base_format).await;
            }
        }
        let too_long = "a".repeat(1024);
        let err = overlay_layout(MIB, &too_long, crate::Format::Raw);
        assert!(matches!(err, Err(StorageError::InvalidName(_))), "{err:?}");
    }

    fn read(path: &PathBuf) -> Vec<u8> {
        std::fs::read(path).expect("read image")
    }

    #[tokio::test]
    async fn native_images_are_byte_identical_to_qemu_img() {
        for size in [
            0,
            512,
            64 * KIB,
            MIB,
            512 * MIB,
            512 * MIB + 512,
            GIB,
            GIB + 512,
            10 * GIB,
            TIB,
            4 * TIB,
            4 * TIB + 512,
            16 * TIB,
            64 * TIB,
            MAX_VIRTUAL_SIZE,
        ] {
            check(size).await;
        }
    }

    #[tokio::test]
    async fn sizes_qemu_would_round_or_refuse_are_rejected() {
        for size in [1, 511, GIB + 1, MAX_VIRTUAL_SIZE + 512, u64::MAX] {
            assert!(
                matches!(blank_layout(size), Err(StorageError::InvalidSize { .. })),
                "size {size}"
            );
        }
        // qemu agrees about the largest size.
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("too-big.qcow2");
        let err = qemu::create(&path, crate::Format::Qcow2, MAX_VIRTUAL_SIZE + 512).await;
        assert!(matches!(err, Err(StorageError::Qemu { .. })), "{err:?}");
    }

    #[tokio::test]
    async fn header_reports_backing_and_data_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = dir.path().join("base.qcow2");
        let overlay = dir.path().join("overlay.qcow2");
        let external = dir.path().join("external.qcow2");
        let data = dir.path().join("data.raw");
        qemu::create(&base, crate::Format::Qcow2, MIB)
            .await
            .expect("create base");
        let (base_s, overlay_s) = (
            base.to_str().expect("utf-8"),
            overlay.to_str().expect("utf-8"),
        );
        qemu::qemu_img_for_tests(&[
            "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base_s, overlay_s,
        ])
        .await
        .expect("create overlay");
        let data_opt = format!("data_file={}", data.to_str().expect("utf-8"));
        let external_s = external.to_str().expect("utf-8");
        qemu::qemu_img_for_tests(&[
            "create", "-q", "-f", "qcow2", "-o", &data_opt, external_s, "1M",
        ])
        .await
        .expect("create with data file");

        let h = read_header(&overlay).expect("overlay header");
        assert_eq!(h.backing_file.as_deref(), Some(base_s));
        assert_eq!(h.backing_format.as_deref(), Some("qcow2"));
        assert_eq!(h.data_file, None);

        let h = read_header(&external).expect("external header");
        assert_eq!(h.backing_file, None);
        assert_eq!(h.data_file.as_deref(), data.to_str());

        // qemu-img agrees.
        let info = qemu::info(&overlay, crate::Format::Qcow2)
            .await
            .expect("info");
        assert_eq!(info.backing_file.as_deref(), Some(base_s));
        let info = qemu::info(&external, crate::Format::Qcow2)
            .await
            .expect("info");
        assert_eq!(info.data_file.as_deref(), data.to_str());
        assert!(info.refers_to_other_files());
    }

    #[test]
    fn garbage_is_not_a_header() {
        let good = blank_layout(GIB).expect("layout").to_bytes();
        assert_eq!(parse_header(&good).expect("parse").virtual_size, GIB);
        for (what, bytes) in [
            ("empty", Vec::new()),
            ("raw zeros", vec![0u8; 4096]),
            ("truncated", good[..80].to_vec()),
            ("bad cluster bits", patched(&good, 20, &40u32.to_be_bytes())),
            ("bad version", patched(&good, 4, &7u32.to_be_bytes())),
            (
                "backing name past the cluster",
                patched(&good, 8, &(70_000u64).to_be_bytes()),
            ),
            (
                "extension past the cluster",
                patched(&good, 116, &(u32::MAX).to_be_bytes()),
            ),
        ] {
            let bytes = if what == "backing name past the cluster" {
                patched(&bytes, 16, &8u32.to_be_bytes())
            } else {
                bytes
            };
            assert!(
                matches!(parse_header(&bytes), Err(HeaderError::Invalid(_))),
                "{what}"
            );
        }
    }

    fn patched(bytes: &[u8], at: usize, with: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        out[at..at + with.len()].copy_from_slice(with);
        out
    }
}
