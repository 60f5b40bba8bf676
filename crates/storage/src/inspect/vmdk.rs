//! VMDK: only one self-contained file is accepted — a sparse extent with its
//! descriptor embedded (`KDMV`), of subformat `monolithicSparse` or
//! `streamOptimized`, whose descriptor lists exactly one `SPARSE` extent (the
//! file itself). A text descriptor (`# Disk DescriptorFile`, the shape of
//! OSSA-2023-002) is refused outright: its extents name other files, which
//! qemu would open.

use std::io::{Read, Seek, SeekFrom};

use super::Refusal;

/// The subformats whose data is all in the one file.
pub(super) const ACCEPTED: &[&str] = &["monolithicSparse", "streamOptimized"];

/// Largest embedded descriptor read (VMware writes 10 KiB; 1 MiB is ample).
const MAX_DESCRIPTOR: u64 = 1 << 20;

fn le32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).map(|s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}

/// Check a VMDK's header and embedded descriptor; returns its virtual size.
pub(super) fn inspect(file: &mut std::fs::File, head: &[u8]) -> Result<Option<u64>, Refusal> {
    if head.starts_with(b"# Disk DescriptorFile") {
        let text = String::from_utf8_lossy(head);
        let kind = create_type(&text).unwrap_or_else(|| "(none)".into());
        if let Some(extent) = extents(&text).into_iter().next() {
            return Err(Refusal::VmdkExtent(extent));
        }
        return Err(Refusal::VmdkSubformat(kind));
    }
    if !head.starts_with(b"KDMV") {
        // `COWD` (VMware's old sparse format) is not accepted either.
        return Err(Refusal::VmdkSubformat(
            "a hosted sparse (COWD) extent".into(),
        ));
    }
    let corrupt = |what: &str| Refusal::Corrupt(format!("VMDK header: {what}"));
    let capacity = le64(head, 12).ok_or_else(|| corrupt("too short"))?;
    let offset = le64(head, 28).ok_or_else(|| corrupt("too short"))?;
    let size = le64(head, 36).ok_or_else(|| corrupt("too short"))?;
    let _version = le32(head, 4).ok_or_else(|| corrupt("too short"))?;
    if offset == 0 || size == 0 {
        // A sparse extent without a descriptor cannot say what it belongs to.
        return Err(Refusal::VmdkSubformat("(no embedded descriptor)".into()));
    }
    let bytes = size
        .checked_mul(512)
        .filter(|b| *b <= MAX_DESCRIPTOR)
        .ok_or_else(|| corrupt("descriptor too large"))?;
    let mut descriptor = vec![0u8; bytes as usize];
    file.seek(SeekFrom::Start(offset.saturating_mul(512)))
        .and_then(|_| file.read_exact(&mut descriptor))
        .map_err(|_| corrupt("descriptor beyond the end of the file"))?;
    let text = String::from_utf8_lossy(&descriptor);
    let text = text.trim_end_matches('\0');
    let kind = create_type(text).unwrap_or_default();
    if !ACCEPTED.contains(&kind.as_str()) {
        return Err(Refusal::VmdkSubformat(kind));
    }
    let lines = extent_lines(text);
    if lines.len() != 1 {
        return Err(Refusal::VmdkExtent(format!(
            "{} extents in one file",
            lines.len()
        )));
    }
    let (kind_of_extent, name) = &lines[0];
    if kind_of_extent != "SPARSE" {
        return Err(Refusal::VmdkExtent(name.clone()));
    }
    Ok(capacity.checked_mul(512))
}

/// `createType="…"` of a descriptor.
fn create_type(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let l = l.trim();
        let rest = l
            .strip_prefix("createType")?
            .trim_start()
            .strip_prefix('=')?;
        Some(rest.trim().trim_matches('"').to_owned())
    })
}

/// The extent lines of a descriptor: (type, file name), e.g.
/// `RW 2048 SPARSE "disk.vmdk"` → ("SPARSE", "disk.vmdk").
fn extent_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let mut words = l.split_whitespace();
            let access = words.next()?;
            if !matches!(access, "RW" | "RDONLY" | "NOACCESS") {
                return None;
            }
            let _sectors = words.next()?;
            let kind = words.next()?.to_owned();
            let name = l
                .split_once('"')
                .and_then(|(_, r)| r.split_once('"'))
                .map(|(n, _)| n.to_owned())
                .unwrap_or_default();
            Some((kind, name))
        })
        .collect()
}

fn extents(text: &str) -> Vec<String> {
    extent_lines(text).into_iter().map(|(_, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_read_as_vmware_writes_them() {
        let text = "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicSparse\"\n\n# Extent description\nRW 2048 SPARSE \"disk.vmdk\"\n";
        assert_eq!(create_type(text).as_deref(), Some("monolithicSparse"));
        assert_eq!(
            extent_lines(text),
            [("SPARSE".to_string(), "disk.vmdk".to_string())]
        );
        let flat = "createType = \"monolithicFlat\"\nRW 2048 FLAT \"/etc/passwd\" 0\nRW 10 ZERO\n";
        assert_eq!(create_type(flat).as_deref(), Some("monolithicFlat"));
        assert_eq!(extents(flat), ["/etc/passwd", ""]);
    }
}
