//! Micro-benchmark of exports: how long from `ensure` to an export a client can
//! open, and the sequential read throughput of a 256 MiB qcow2 image (all data)
//! through an export against bare `qemu-nbd` serving the same file over the same
//! transport, as a ratio. Figures only; nothing is asserted.
//!
//! ```text
//! cargo run --release -p scoria-storage --example bench_export -- [N] [DIR]
//! ```
//!
//! N rounds of each measurement (default 5); DIR (default: a temporary
//! directory under `$TMPDIR`) holds the image, the run directory and the copy.
//! The reader is `qemu-img convert -O raw` into a file in DIR, the same for every
//! server, so the ratio compares the servers; the image is in the page cache
//! after the first round, so the figures are of the NBD path, not the disk.
// The baselines (qemu-nbd) and the clients (qemu-img) are bare processes, which
// only this benchmark runs outside the qemu module.
#![allow(clippy::disallowed_methods)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use scoria_storage::export::{
    ConnectionInfo, ExportSpec, Exporter, FileExporter, NbdAddress, NbdConnection, Psk, Tls,
    Transport,
};
use scoria_storage::{Format, qemu};

const SIZE: u64 = 256 << 20;
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let parent = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&parent).context("creating the bench directory")?;
    let root = std::fs::canonicalize(tmp.path())?;
    let backend = root.join("backend");
    std::fs::create_dir(&backend)?;
    let image = backend.join("bench.qcow2");
    qemu::create(&image, Format::Qcow2, SIZE).await?;
    qemu::write_pattern(&image, Format::Qcow2, 0, SIZE, 0xab).await?;
    let exporter = FileExporter::new(&backend, &root.join("run")).await?;
    let key = Psk::generate("bench")?;
    let client_keys = root.join("client");
    std::fs::create_dir(&client_keys)?;
    std::fs::write(client_keys.join("keys.psk"), key.keys_file_line())?;
    println!(
        "{n} rounds, a {} MiB qcow2 image full of data, in {}",
        SIZE >> 20,
        root.display()
    );

    // Time to a readable export.
    println!();
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "ensure → readable", "median", "min", "max"
    );
    for (label, tls) in [("unix socket", false), ("TCP + TLS-PSK", true)] {
        let mut ensure_times = Vec::new();
        let mut readable_times = Vec::new();
        for i in 0..n {
            let spec = spec(&format!("start-{i}"), tls.then(|| key.clone()));
            let start = Instant::now();
            let info = exporter.ensure(&spec).await?;
            ensure_times.push(start.elapsed());
            let reader = Reader::of(&info, &client_keys);
            // A client's first successful open.
            loop {
                if reader.info_ok().await? {
                    break;
                }
                if start.elapsed() > Duration::from_secs(30) {
                    bail!("the export never became readable");
                }
            }
            readable_times.push(start.elapsed());
            exporter.remove(&spec.id).await?;
        }
        print_times(&format!("{label}: ensure returns"), &mut ensure_times);
        print_times(&format!("{label}: first open done"), &mut readable_times);
    }

    // Throughput.
    println!();
    println!(
        "{:<44} {:>10} {:>12}",
        "sequential read, 256 MiB", "median", "throughput"
    );
    let out = root.join("copy.raw");
    let local = Reader {
        object: None,
        opts: format!(
            "driver=qcow2,file.driver=file,file.filename={}",
            image.display()
        ),
    };
    let local_time = local.copy_times(n, &out).await?;
    print_rate("local file (no NBD)", local_time);
    for (label, tls) in [("unix socket", false), ("TCP + TLS-PSK", true)] {
        let spec = spec("bench", tls.then(|| key.clone()));
        let info = exporter.ensure(&spec).await?;
        let export = Reader::of(&info, &client_keys);
        let nbd = QemuNbd::start(&root, &image, tls).await?;
        let baseline = Reader::of(&nbd.info, &client_keys);
        // Rounds alternate between the two servers, so that both see the same
        // load on a shared machine.
        let (mut export_times, mut baseline_times) = (Vec::new(), Vec::new());
        for _ in 0..n {
            export_times.push(export.copy(&out).await?);
            baseline_times.push(baseline.copy(&out).await?);
        }
        drop(nbd);
        exporter.remove(&spec.id).await?;
        let (export_time, baseline_time) = (median(&mut export_times), median(&mut baseline_times));
        print_rate(
            &format!("{label}: export (qemu-storage-daemon)"),
            export_time,
        );
        print_rate(&format!("{label}: bare qemu-nbd"), baseline_time);
        println!(
            "{:<44} {:>10.2}x",
            format!("{label}: export throughput / qemu-nbd's"),
            baseline_time.as_secs_f64() / export_time.as_secs_f64()
        );
    }
    exporter.reconcile(&[]).await?;
    Ok(())
}

fn spec(id: &str, psk: Option<Psk>) -> ExportSpec {
    ExportSpec {
        id: id.into(),
        image: "bench.qcow2".into(),
        read_only: true,
        transport: match psk {
            None => Transport::Unix,
            Some(psk) => Transport::Tcp {
                host: LOCALHOST,
                port: free_port(),
                tls: Tls::Psk(psk),
            },
        },
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind((LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(10809)
}

/// A `qemu-img` client of one image, as `--image-opts`.
struct Reader {
    object: Option<String>,
    opts: String,
}

impl Reader {
    fn of(info: &ConnectionInfo, client_keys: &Path) -> Self {
        let ConnectionInfo::Nbd(nbd) = info else {
            unreachable!("the file exporter hands out NBD")
        };
        let mut opts = format!("driver=raw,file.driver=nbd,file.export={}", nbd.export_name);
        match &nbd.address {
            NbdAddress::Unix { path } => opts.push_str(&format!(
                ",file.server.type=unix,file.server.path={}",
                path.display()
            )),
            NbdAddress::Tcp { host, port } => opts.push_str(&format!(
                ",file.server.type=inet,file.server.host={host},file.server.port={port}"
            )),
        }
        let object = nbd.tls_identity.as_ref().map(|identity| {
            opts.push_str(",file.tls-creds=tls0");
            format!(
                "tls-creds-psk,id=tls0,endpoint=client,dir={},username={identity}",
                client_keys.display()
            )
        });
        Self { object, opts }
    }

    fn command(&self, subcommand: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(qemu::QEMU_IMG);
        cmd.arg(subcommand);
        if let Some(object) = &self.object {
            cmd.arg("--object").arg(object);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    async fn info_ok(&self) -> anyhow::Result<bool> {
        let status = self
            .command("info")
            .arg("--image-opts")
            .arg(&self.opts)
            .status()
            .await?;
        Ok(status.success())
    }

    /// The median time of `n` copies into `out`.
    async fn copy_times(&self, n: usize, out: &Path) -> anyhow::Result<Duration> {
        let mut times = Vec::new();
        for _ in 0..n.max(1) {
            times.push(self.copy(out).await?);
        }
        Ok(median(&mut times))
    }

    /// The time of one copy of the whole image into `out` (removed after).
    async fn copy(&self, out: &Path) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let status = self
            .command("convert")
            .args(["--image-opts", &self.opts, "-O", "raw"])
            .arg(out)
            .status()
            .await?;
        let time = start.elapsed();
        if !status.success() {
            bail!("qemu-img convert failed: {status}");
        }
        std::fs::remove_file(out)?;
        Ok(time)
    }
}

/// A bare `qemu-nbd` serving the image read-only; killed on drop.
struct QemuNbd {
    _child: tokio::process::Child,
    info: ConnectionInfo,
}

impl QemuNbd {
    async fn start(root: &Path, image: &Path, tls: bool) -> anyhow::Result<Self> {
        let mut cmd = tokio::process::Command::new("qemu-nbd");
        cmd.args([
            "-r",
            "-f",
            "qcow2",
            "-x",
            "bench",
            "--persistent",
            "--shared=8",
        ]);
        let (address, tls_identity) = if tls {
            let port = free_port();
            cmd.args(["-b", "127.0.0.1", "-p", &port.to_string()])
                .arg("--object")
                .arg(format!(
                    "tls-creds-psk,id=tls0,endpoint=server,dir={}",
                    root.join("client").display()
                ))
                .arg("--tls-creds=tls0");
            (
                NbdAddress::Tcp {
                    host: LOCALHOST,
                    port,
                },
                Some("bench".to_owned()),
            )
        } else {
            let path = root.join("qemu-nbd.sock");
            cmd.arg("-k").arg(&path);
            (NbdAddress::Unix { path }, None)
        };
        let child = cmd
            .arg(image)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting qemu-nbd")?;
        let info = ConnectionInfo::Nbd(NbdConnection {
            address,
            export_name: "bench".into(),
            format: Format::Raw,
            read_only: true,
            tls_identity,
        });
        let server = Self {
            _child: child,
            info,
        };
        let reader = Reader::of(&server.info, &root.join("client"));
        let start = Instant::now();
        while !reader.info_ok().await? {
            if start.elapsed() > Duration::from_secs(30) {
                bail!("qemu-nbd never became readable");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(server)
    }
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

fn print_times(label: &str, times: &mut [Duration]) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label:<44} {:>7.1} ms {:>7.1} ms {:>7.1} ms",
        ms(median(times)),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
}

fn print_rate(label: &str, time: Duration) {
    println!(
        "{label:<44} {:>7.1} ms {:>7.0} MiB/s",
        time.as_secs_f64() * 1e3,
        (SIZE >> 20) as f64 / time.as_secs_f64()
    );
}
