//! Volumes and the image service, through the API on the real file backend:
//! a volume made from an image reads exactly as the image (compared by
//! qemu-img, independently of Scoria), is bootable and keeps the image's
//! metadata; the second volume from the same image is an overlay on the
//! backend's cached copy and survives the image's deletion; a volume
//! uploaded to an image gives back its data; and every hostile image is
//! refused with a clear 400 before anything exists (no volume, no file, the
//! quota and the image store unchanged).
// The test makes its images (honest and hostile) with qemu-img itself.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::{Path, PathBuf};

use scoria_storage::{Format, qemu};
use serde_json::{Value, json};
use support::{Reply, TestApp};

/// Guest data written into the source images: (offset, length, byte).
const PATTERN: &[(u64, u64, u8)] = &[(0, 1 << 20, 0xab), (40 << 20, 4096, 0xcd)];

struct World {
    t: TestApp,
    token: String,
    p: String,
    /// Where the test keeps the files it makes.
    scratch: tempfile::TempDir,
}

fn qemu_img(args: &[&str]) {
    let out = std::process::Command::new("qemu-img")
        .args(args)
        .output()
        .expect("run qemu-img");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl World {
    async fn new() -> World {
        Self::with_config(|_| {}).await
    }

    async fn with_config(change: impl FnOnce(&mut scoria_core::Config)) -> World {
        let t = TestApp::with_config(change).await;
        let (token, p) = t.admin().await;
        World {
            t,
            token,
            p,
            scratch: tempfile::tempdir().expect("scratch"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// A 64 MiB qcow2 holding [`PATTERN`].
    async fn honest_qcow2(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        qemu_img(&["create", "-q", "-f", "qcow2", path.to_str().unwrap(), "64M"]);
        for &(offset, len, byte) in PATTERN {
            qemu::write_pattern(&path, Format::Qcow2, offset, len, byte)
                .await
                .expect("write the pattern");
        }
        path
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.t.call(method, path, Some(&self.token), body).await
    }

    /// An `active` image of the image service with `file`'s bytes.
    async fn image(&self, file: &Path, disk_format: &str) -> String {
        let r = self
            .call(
                "POST",
                "/image/v2/images",
                Some(
                    json!({"name": "img", "disk_format": disk_format, "container_format": "bare"}),
                ),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let id = r.body["id"].as_str().expect("id").to_owned();
        let bytes = std::fs::read(file).expect("read the image");
        let r = self
            .t
            .raw(
                "PUT",
                &format!("/image/v2/images/{id}/file"),
                Some(&self.token),
                &[("content-type", "application/octet-stream")],
                Some(bytes),
            )
            .await;
        assert_eq!(r.status, 204, "{:?}", r.body);
        id
    }

    async fn create(&self, fields: Value) -> Reply {
        self.call(
            "POST",
            &format!("/v3/{}/volumes", self.p),
            Some(json!({ "volume": fields })),
        )
        .await
    }

    /// A volume made from `image`, once `available`.
    async fn volume_from_image(&self, image: &str, size: Option<i64>) -> String {
        let mut fields = json!({"imageRef": image, "name": "from-image"});
        if let Some(s) = size {
            fields["size"] = json!(s);
        }
        let r = self.create(fields).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        let id = r.body["volume"]["id"].as_str().expect("id").to_owned();
        self.t
            .wait_status(&self.token, &self.p, &id, "available")
            .await;
        id
    }

    async fn show(&self, id: &str) -> Value {
        let r = self
            .call("GET", &format!("/v3/{}/volumes/{id}", self.p), None)
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["volume"].clone()
    }

    async fn action(&self, id: &str, body: Value) -> Reply {
        self.call(
            "POST",
            &format!("/v3/{}/volumes/{id}/action", self.p),
            Some(body),
        )
        .await
    }

    /// Wait until the volume is deleted.
    async fn gone(&self, id: &str) {
        for _ in 0..2000 {
            let r = self
                .call("GET", &format!("/v3/{}/volumes/{id}", self.p), None)
                .await;
            if r.status == 404 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("volume {id} was never deleted");
    }

    /// The volume's active image file and its format.
    async fn file(&self, id: &str) -> (PathBuf, Format) {
        let mut conn = self.t.app.store().read().await.expect("read");
        let vol = scoria_store::volumes::volume_get(&mut conn, id.parse().expect("id"))
            .await
            .expect("read volume")
            .expect("the volume");
        let image = scoria_store::images::image_get(&mut conn, vol.image_id.expect("placed"))
            .await
            .expect("read image")
            .expect("the image");
        let format = image.format.as_str().parse::<Format>().expect("format");
        (self.t.dir.path().join("volumes").join(image.name), format)
    }

    /// The admin's chain of images under a volume, top first.
    async fn chain(&self, id: &str) -> Vec<Value> {
        let r = self
            .call(
                "GET",
                &format!("/v3/{}/scoria-volumes/{id}/tree", self.p),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["tree"]["chain"].as_array().expect("chain").clone()
    }

    /// Everything a refused create must leave as it was.
    async fn state(&self) -> Value {
        let listing = |dir: &str| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(self.t.dir.path().join(dir))
                .map(|d| {
                    d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names
        };
        let volumes = self
            .call("GET", &format!("/v3/{}/volumes", self.p), None)
            .await;
        let quota = self
            .call(
                "GET",
                &format!("/v3/{}/os-quota-sets/{}?usage=true", self.p, self.p),
                None,
            )
            .await;
        let images = self.call("GET", "/image/v2/images", None).await;
        let mut images: Vec<Value> = images.body["images"]
            .as_array()
            .expect("images")
            .iter()
            .map(|i| json!([i["id"], i["status"]]))
            .collect();
        images.sort_by_key(|v| v.to_string());
        json!({
            "backend": listing("volumes"),
            "image_store": listing("images"),
            "volumes": volumes.body["volumes"],
            "usage": quota.body["quota_set"]["volumes"],
            "gigabytes": quota.body["quota_set"]["gigabytes"],
            "images": images,
        })
    }
}

#[tokio::test]
async fn a_volume_from_an_image_reads_as_the_image_and_the_next_one_is_an_overlay_on_the_cache() {
    let w = World::new().await;
    let file = w.honest_qcow2("src.qcow2").await;
    let image = w.image(&file, "qcow2").await;

    // Without a size, the smallest volume that holds the image (1 GiB).
    let a = w.volume_from_image(&image, None).await;
    let shown = w.show(&a).await;
    assert_eq!(shown["size"], 1);
    assert_eq!(shown["bootable"], "true");
    let meta = &shown["volume_image_metadata"];
    assert_eq!(meta["image_id"], image.as_str(), "{shown}");
    assert_eq!(meta["disk_format"], "qcow2");
    assert_eq!(meta["container_format"], "bare");
    let (path, format) = w.file(&a).await;
    assert!(
        qemu::compare(&file, Format::Qcow2, &path, format)
            .await
            .expect("compare"),
        "the volume does not read as its image"
    );

    // The first volume filled the backend's cache: it stands on the cached
    // copy, and so does the second, in constant time.
    let chain_a = w.chain(&a).await;
    assert_eq!(chain_a.len(), 2, "{chain_a:?}");
    assert_eq!(chain_a[1]["cache_of"], image.as_str());
    assert_eq!(chain_a[1]["mutable"], false);
    let b = w.volume_from_image(&image, Some(2)).await;
    let chain_b = w.chain(&b).await;
    assert_eq!(chain_b.len(), 2, "{chain_b:?}");
    assert_eq!(chain_b[1]["id"], chain_a[1]["id"], "not the cached base");
    assert_eq!(w.show(&b).await["size"], 2);

    // Writes to one volume reach neither the cache nor the other volume.
    qemu::write_pattern(&path, format, 0, 1 << 20, 0x11)
        .await
        .expect("write a");
    let (path_b, format_b) = w.file(&b).await;
    assert!(
        qemu::compare(&file, Format::Qcow2, &path_b, format_b)
            .await
            .expect("compare")
    );

    // The image goes from the image service; the volumes keep their data.
    let r = w
        .call("DELETE", &format!("/image/v2/images/{image}"), None)
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert!(
        qemu::compare(&file, Format::Qcow2, &path_b, format_b)
            .await
            .expect("compare")
    );
    assert_eq!(w.chain(&b).await[1]["cache_of"], Value::Null);
    // And they can still be deleted, freeing the cached copy after them.
    for v in [&a, &b] {
        let r = w
            .call("DELETE", &format!("/v3/{}/volumes/{v}", w.p), None)
            .await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        w.gone(v).await;
    }
    // The reaper frees the cached copy once nothing stands on it (the
    // image is gone, so no cache row keeps it either).
    let mut left = Vec::new();
    for _ in 0..500 {
        left = std::fs::read_dir(w.t.dir.path().join("volumes"))
            .expect("backend dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(left.is_empty(), "files left on the backend: {left:?}");
}

/// The backend's cache entries: (service image id, overlays standing on it).
async fn cache(w: &World) -> Vec<(String, i64)> {
    let mut conn = w.t.app.store().read().await.expect("read");
    let mut out: Vec<(String, i64)> = scoria_store::volume_images::cache_list_all(&mut conn)
        .await
        .expect("cache")
        .into_iter()
        .map(|e| (e.glance_image_id.to_string(), e.overlays))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn the_cache_evicts_the_least_recently_used_copy_nothing_stands_on() {
    // Room for one copy, by count and then by bytes (each image is 64 MiB).
    evicts(|c| c.backends[0].image_cache_max_count = 1).await;
    evicts(|c| c.backends[0].image_cache_max_bytes = 64 << 20).await;
}

async fn evicts(limit: impl FnOnce(&mut scoria_core::Config)) {
    let w = World::with_config(limit).await;
    let a = w.image(&w.honest_qcow2("a.qcow2").await, "qcow2").await;
    let b = w.image(&w.honest_qcow2("b.qcow2").await, "qcow2").await;

    let va = w.volume_from_image(&a, Some(1)).await;
    assert_eq!(cache(&w).await, vec![(a.clone(), 1)]);
    let r = w
        .call("DELETE", &format!("/v3/{}/volumes/{va}", w.p), None)
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    w.gone(&va).await;
    // Once the reaper freed the volume's overlay, nothing stands on A's copy.
    for _ in 0..500 {
        if cache(&w).await == vec![(a.clone(), 0)] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(cache(&w).await, vec![(a.clone(), 0)]);

    // B's first volume makes room: A's unused copy is evicted.
    let vb = w.volume_from_image(&b, Some(1)).await;
    assert_eq!(cache(&w).await, vec![(b.clone(), 1)]);
    assert_eq!(w.chain(&vb).await[1]["cache_of"], b.as_str());

    // A again: B's copy has a volume on it and stays, over the limit.
    let va2 = w.volume_from_image(&a, Some(1)).await;
    let mut want = vec![(a.clone(), 1), (b.clone(), 1)];
    want.sort();
    assert_eq!(cache(&w).await, want);
    let (path, format) = w.file(&va2).await;
    assert!(
        qemu::compare(&w.path("a.qcow2"), Format::Qcow2, &path, format)
            .await
            .expect("compare")
    );
}

#[tokio::test]
async fn image_metadata_is_shown_set_and_unset() {
    let w = World::new().await;
    let file = w.honest_qcow2("src.qcow2").await;
    let image = w.image(&file, "qcow2").await;
    let v = w.volume_from_image(&image, Some(1)).await;
    let r = w
        .action(
            &v,
            json!({"os-set_image_metadata": {"metadata": {"os_distro": "busybox"}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["metadata"]["os_distro"], "busybox");
    assert_eq!(r.body["metadata"]["image_id"], image.as_str());
    let r = w.action(&v, json!({"os-show_image_metadata": {}})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["metadata"]["os_distro"], "busybox");
    let r = w
        .action(&v, json!({"os-unset_image_metadata": {"key": "os_distro"}}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        w.show(&v).await["volume_image_metadata"].get("os_distro"),
        None
    );
    let r = w
        .action(&v, json!({"os-unset_image_metadata": {"key": "os_distro"}}))
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    let r = w.action(&v, json!({"os-unset_image_metadata": {}})).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    // A blank volume shows none.
    let blank = w.t.volume(&w.token, &w.p).await;
    assert_eq!(w.show(&blank).await.get("volume_image_metadata"), None);
}

#[tokio::test]
async fn a_volume_uploaded_to_an_image_gives_back_its_data() {
    let w = World::new().await;
    let v = w.t.volume(&w.token, &w.p).await;
    let (path, format) = w.file(&v).await;
    for &(offset, len, byte) in PATTERN {
        qemu::write_pattern(&path, format, offset, len, byte)
            .await
            .expect("write");
    }
    for disk_format in ["raw", "qcow2"] {
        let r = w
            .action(
                &v,
                json!({"os-volume_upload_image": {"image_name": format!("up-{disk_format}"), "disk_format": disk_format}}),
            )
            .await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        let up = &r.body["os-volume_upload_image"];
        assert_eq!(up["status"], "uploading");
        assert_eq!(up["disk_format"], disk_format);
        let image = up["image_id"].as_str().expect("image id").to_owned();
        w.t.wait_status(&w.token, &w.p, &v, "available").await;
        let shown = w
            .call("GET", &format!("/image/v2/images/{image}"), None)
            .await;
        if shown.body["status"] != "active" {
            let v = w
                .call(
                    "GET",
                    &format!("/v3/{}/volumes/{v}?with_progress=true", w.p),
                    None,
                )
                .await;
            panic!(
                "image {:?}; volume {:?}",
                shown.body, v.body["volume"]["scoria:progress"]
            );
        }
        let stored = w.t.dir.path().join("images").join(&image);
        assert_eq!(
            shown.body["size"],
            std::fs::metadata(&stored).expect("stored").len()
        );
        assert!(
            qemu::compare(&path, format, &stored, disk_format.parse().expect("format"))
                .await
                .expect("compare"),
            "the {disk_format} image does not read as the volume"
        );
        // And a volume made from it reads the same again.
        let again = w.volume_from_image(&image, None).await;
        let (p2, f2) = w.file(&again).await;
        assert!(
            qemu::compare(&path, format, &p2, f2)
                .await
                .expect("compare")
        );
    }
    // Refused without change: an unknown format, a volume not available.
    let before = w.state().await;
    let r = w
        .action(
            &v,
            json!({"os-volume_upload_image": {"image_name": "x", "disk_format": "vmdk"}}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = w
        .action(
            &v,
            json!({"os-volume_upload_image": {"disk_format": "raw"}}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(w.state().await, before);
}

/// A hostile or wrong image, refused before anything exists.
struct Hostile {
    what: &'static str,
    file: PathBuf,
    disk_format: &'static str,
    size: Option<i64>,
    /// A fragment of the refusal.
    says: &'static str,
}

#[tokio::test]
async fn hostile_images_are_refused_and_leave_nothing_behind() {
    // Tight limits for qemu-img: the hungry image below is stopped by them.
    let w = World::with_config(|c| {
        c.image_service.inspect_limits.address_space = 64 << 20;
    })
    .await;
    let p = |n: &str| w.path(n);
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-u",
        "-b",
        "/etc/passwd",
        "-F",
        "raw",
        &s(&p("backing.qcow2")),
        "1M",
    ]);
    let data_opt = format!("data_file={}", s(&p("data.raw")));
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &data_opt,
        &s(&p("data.qcow2")),
        "1M",
    ]);
    std::fs::write(
        p("extents.vmdk"),
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n# Extent description\nRW 16 FLAT \"/etc/passwd\" 0\n",
    )
    .expect("write");
    qemu_img(&["create", "-q", "-f", "qcow2", &s(&p("honest.qcow2")), "1M"]);
    std::fs::write(p("raw.img"), vec![0u8; 1 << 20]).expect("write");
    qemu_img(&["create", "-q", "-f", "qcow2", &s(&p("big.qcow2")), "3G"]);
    let honest = std::fs::read(p("honest.qcow2")).expect("read");
    std::fs::write(p("truncated.qcow2"), &honest[..40]).expect("write");
    // A header asking for a 32 MiB L1 table of a 1 PiB disk.
    qemu_img(&["create", "-q", "-f", "qcow2", &s(&p("hungry.qcow2")), "1G"]);
    let mut hungry = std::fs::read(p("hungry.qcow2")).expect("read");
    hungry[36..40].copy_from_slice(&(4u32 << 20).to_be_bytes());
    hungry[24..32].copy_from_slice(&(1u64 << 50).to_be_bytes());
    std::fs::write(p("hungry.qcow2"), &hungry).expect("write");

    let cases = [
        Hostile {
            what: "backing file /etc/passwd",
            file: p("backing.qcow2"),
            disk_format: "qcow2",
            size: Some(1),
            says: "backing",
        },
        Hostile {
            what: "external data file",
            file: p("data.qcow2"),
            disk_format: "qcow2",
            size: Some(1),
            says: "data file",
        },
        Hostile {
            what: "VMDK extents naming host files",
            file: p("extents.vmdk"),
            disk_format: "vmdk",
            size: Some(1),
            says: "another file",
        },
        Hostile {
            what: "qcow2 declared raw",
            file: p("honest.qcow2"),
            disk_format: "raw",
            size: Some(1),
            says: "qcow2",
        },
        Hostile {
            what: "raw declared qcow2",
            file: p("raw.img"),
            disk_format: "qcow2",
            size: Some(1),
            says: "raw",
        },
        Hostile {
            what: "virtual size over the volume",
            file: p("big.qcow2"),
            disk_format: "qcow2",
            size: Some(1),
            says: "virtual size",
        },
        Hostile {
            what: "truncated qcow2",
            file: p("truncated.qcow2"),
            disk_format: "qcow2",
            size: Some(1),
            says: "refused",
        },
        Hostile {
            what: "qcow2 that makes qemu-img hungry",
            file: p("hungry.qcow2"),
            disk_format: "qcow2",
            size: Some(1),
            says: "refused",
        },
    ];
    let mut failures = Vec::new();
    for case in &cases {
        let image = w.image(&case.file, case.disk_format).await;
        let before = w.state().await;
        let mut fields = json!({"imageRef": image});
        if let Some(size) = case.size {
            fields["size"] = json!(size);
        }
        let r = w.create(fields).await;
        let message = r.body["badRequest"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if r.status != 400 || !message.to_lowercase().contains(case.says) {
            failures.push(format!("{}: {} {:?}", case.what, r.status, r.body));
        }
        let after = w.state().await;
        if after != before {
            failures.push(format!("{}: state changed:\n{before}\n{after}", case.what));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
