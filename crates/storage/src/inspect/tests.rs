//! Hostile and honest images, made by qemu-img or by hand, through the
//! inspector and through `qemu-img info` under limits.

use std::path::{Path, PathBuf};

use super::*;
use crate::qemu::qemu_img_for_tests;
use crate::qemu::untrusted::{Limits, info_untrusted};

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().expect("tempdir"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    /// `qemu-img create <args> <dir>/<name> <size>`.
    async fn create(&self, args: &[&str], name: &str, size: &str) -> PathBuf {
        let out = self.path(name);
        let mut full: Vec<String> = ["create", "-q"].iter().map(|s| s.to_string()).collect();
        full.extend(args.iter().map(|s| s.to_string()));
        full.push(out.to_string_lossy().into_owned());
        full.push(size.into());
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        qemu_img_for_tests(&refs).await.expect("qemu-img create");
        out
    }
}

fn refused(r: Result<Inspection, Refusal>) -> Refusal {
    match r {
        Err(e) => e,
        Ok(i) => panic!("accepted: {i:?}"),
    }
}

async fn qemu_view(path: &Path, format: DiskFormat) -> QemuView {
    info_untrusted(path, format, Limits::default())
        .await
        .expect("qemu-img info")
}

#[tokio::test]
async fn honest_images_are_recognised_with_their_sizes() {
    let d = Dir::new();
    let cases: &[(&str, DiskFormat, &[&str])] = &[
        ("a.qcow2", DiskFormat::Qcow2, &["-f", "qcow2"]),
        (
            "a.vmdk",
            DiskFormat::Vmdk,
            &["-f", "vmdk", "-o", "subformat=monolithicSparse"],
        ),
        (
            "s.vmdk",
            DiskFormat::Vmdk,
            &["-f", "vmdk", "-o", "subformat=streamOptimized"],
        ),
        ("a.vdi", DiskFormat::Vdi, &["-f", "vdi"]),
        ("a.vhdx", DiskFormat::Vhdx, &["-f", "vhdx"]),
        (
            "a.vhd",
            DiskFormat::Vpc,
            &["-f", "vpc", "-o", "force_size=on"],
        ),
        ("a.raw", DiskFormat::Raw, &["-f", "raw"]),
    ];
    for (name, format, args) in cases {
        let path = d.create(args, name, "64M").await;
        let got = inspect(&path, *format).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.format, *format, "{name}");
        if let Some(size) = got.virtual_size {
            assert_eq!(size, 64 << 20, "{name}");
        }
        let view = qemu_view(&path, *format).await;
        check_qemu_view(&view, *format, &path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(view.virtual_size, 64 << 20, "{name}");
    }
    // An ISO 9660 image: CD001 in the volume descriptor at sector 16.
    let iso = d.path("a.iso");
    let mut bytes = vec![0u8; 0x9000];
    bytes[0x8000] = 1;
    bytes[0x8001..0x8006].copy_from_slice(b"CD001");
    std::fs::write(&iso, &bytes).expect("write");
    assert_eq!(
        inspect(&iso, DiskFormat::Iso).expect("iso").format,
        DiskFormat::Iso
    );
    // An ISO is raw bytes too: declared raw it is accepted as raw.
    assert_eq!(
        inspect(&iso, DiskFormat::Raw).expect("raw").format,
        DiskFormat::Raw
    );
}

#[tokio::test]
async fn references_to_other_files_are_refused_before_qemu_reads_them() {
    let d = Dir::new();
    // -u: qemu-img does not open the backing file to make the image.
    let backing = d
        .create(
            &["-f", "qcow2", "-u", "-b", "/etc/passwd", "-F", "raw"],
            "b.qcow2",
            "1M",
        )
        .await;
    assert!(matches!(
        refused(inspect(&backing, DiskFormat::Qcow2)),
        Refusal::BackingFile(f) if f == "/etc/passwd"
    ));
    let view = qemu_view(&backing, DiskFormat::Qcow2).await;
    assert!(matches!(
        check_qemu_view(&view, DiskFormat::Qcow2, &backing),
        Err(Refusal::BackingFile(_))
    ));

    let data_file = format!("data_file={}", d.path("data.raw").display());
    let with_data = d
        .create(&["-f", "qcow2", "-o", &data_file], "d.qcow2", "1M")
        .await;
    assert_eq!(
        refused(inspect(&with_data, DiskFormat::Qcow2)),
        Refusal::DataFile
    );
    let view = qemu_view(&with_data, DiskFormat::Qcow2).await;
    assert_eq!(
        check_qemu_view(&view, DiskFormat::Qcow2, &with_data),
        Err(Refusal::DataFile)
    );

    // OSSA-2023-002's shape: a VMDK text descriptor naming a host file.
    let descriptor = d.path("evil.vmdk");
    std::fs::write(
        &descriptor,
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n# Extent description\nRW 16 FLAT \"/etc/passwd\" 0\n",
    )
    .expect("write");
    assert!(matches!(
        refused(inspect(&descriptor, DiskFormat::Vmdk)),
        Refusal::VmdkExtent(e) if e == "/etc/passwd"
    ));
    // A split sparse VMDK is a descriptor plus extent files: refused too.
    let split = d
        .create(
            &["-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse"],
            "split.vmdk",
            "1M",
        )
        .await;
    assert!(matches!(
        refused(inspect(&split, DiskFormat::Vmdk)),
        Refusal::VmdkExtent(_) | Refusal::VmdkSubformat(_)
    ));
}

#[tokio::test]
async fn the_bytes_must_be_what_the_owner_declared() {
    let d = Dir::new();
    let q = d.create(&["-f", "qcow2"], "q.img", "1M").await;
    assert_eq!(
        refused(inspect(&q, DiskFormat::Raw)),
        Refusal::FormatMismatch {
            declared: DiskFormat::Raw,
            found: DiskFormat::Qcow2
        }
    );
    let raw = d.path("r.img");
    std::fs::write(&raw, vec![0u8; 1 << 20]).expect("write");
    assert_eq!(
        refused(inspect(&raw, DiskFormat::Qcow2)),
        Refusal::FormatMismatch {
            declared: DiskFormat::Qcow2,
            found: DiskFormat::Raw
        }
    );
    // A truncated qcow2: the magic alone.
    let cut = d.path("cut.qcow2");
    std::fs::write(&cut, &std::fs::read(&q).expect("read")[..40]).expect("write");
    assert!(matches!(
        refused(inspect(&cut, DiskFormat::Qcow2)),
        Refusal::Corrupt(_)
    ));
    assert!(
        info_untrusted(&cut, DiskFormat::Qcow2, Limits::default())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn qemu_img_runs_under_its_limits() {
    let d = Dir::new();
    let ok = d.create(&["-f", "qcow2"], "ok.qcow2", "1G").await;
    // A qcow2 whose header asks for a 32 MiB L1 table (a 1 PiB disk): qemu
    // allocates it on open. Within 64 MiB of address space an honest image is
    // read and this one is stopped.
    let hungry = d.path("hungry.qcow2");
    let mut bytes = std::fs::read(&ok).expect("read");
    bytes[36..40].copy_from_slice(&(4u32 << 20).to_be_bytes());
    bytes[24..32].copy_from_slice(&(1u64 << 50).to_be_bytes());
    std::fs::write(&hungry, &bytes).expect("write");
    let tight = Limits {
        cpu_seconds: 10,
        address_space: 64 << 20,
    };
    let view = info_untrusted(&ok, DiskFormat::Qcow2, tight)
        .await
        .expect("an honest image fits the limits");
    assert_eq!(view.virtual_size, 1 << 30);
    let err = info_untrusted(&hungry, DiskFormat::Qcow2, tight)
        .await
        .expect_err("the hungry image is stopped");
    assert!(
        matches!(&err, Refusal::Unreadable(m) if m.contains("limits")),
        "{err}"
    );
    // The inspector already sees the absurd size, before qemu runs at all.
    assert_eq!(
        inspect(&hungry, DiskFormat::Qcow2)
            .expect("inspect")
            .virtual_size,
        Some(1 << 50)
    );
    // A relative path is never handed to qemu (it could be a protocol).
    assert!(
        info_untrusted(Path::new("ok.qcow2"), DiskFormat::Qcow2, tight)
            .await
            .is_err()
    );
}
