//! The control plane as users drive it, at scale: a fresh `scoria serve` (the
//! release binary beside this example, a temporary data directory, the real
//! file backend with a large over-subscription ratio, `durability = full`) driven over HTTP by this load generator
//! (Keystone token, Block Storage v3 JSON, statuses polled right away and
//! then every millisecond). Measures create and delete throughput and
//! latency (request → `available`, request → 404) at concurrency 1, 8 and 32;
//! create and delete throughput with N volumes already in the project; one
//! `GET /volumes/detail?limit=1000` with them present; the `GET /volumes/{id}`
//! rate; cold start to the first authenticated request; the server's CPU per
//! create; its RSS idle, after the volumes, and after many logins. Prints one
//! table, then the same figures as JSON. Asserts nothing.
//!
//! ```text
//! scripts/bench [--present 0,10000,100000] [--logins 1000]
//! ```
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};

mod serve_bench;

use serve_bench::{Client, Server, create_delete, login, pct, run};

fn main() -> anyhow::Result<()> {
    let mut present: Vec<usize> = vec![0, 10_000];
    let mut logins = 1000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--present" => {
                present = args
                    .next()
                    .context("--present N,N,…")?
                    .split(',')
                    .map(|s| s.trim().parse())
                    .collect::<Result<_, _>>()?;
                present.sort_unstable();
            }
            "--logins" => logins = args.next().context("--logins N")?.parse()?,
            other => bail!("unknown argument {other:?} (--present N,N,… --logins N)"),
        }
    }
    let bin = serve_bench::scoria_bin()?;
    let tmp = tempfile::tempdir_in(std::env::current_dir()?)?;
    let mut report = serde_json::Map::new();
    let mut table: Vec<(String, String)> = Vec::new();

    let config = tmp.path().join("scoria.toml");
    std::fs::write(&config, serve_bench::ONE_BACKEND)?;
    // Cold start: from spawning the process to the first authenticated answer.
    let t0 = Instant::now();
    let server = Server::start(&bin, &config, &tmp.path().join("data"))?;
    let agent = serve_bench::agent();
    let (client, project) = Client::admin(&agent, &server.url)?;
    let (code, _) = client.call("GET", "/volumes?limit=1", None)?;
    ensure!(code == 200, "first request: {code}");
    let cold = t0.elapsed().as_secs_f64() * 1000.0;
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle = server.mem_mib("VmRSS");
    table.push((
        "cold start → first authenticated request".into(),
        format!("{cold:.0} ms"),
    ));
    table.push(("RSS idle".into(), format!("{rss_idle:.1} MiB")));
    report.insert("cold_start_ms".into(), json!(cold));
    report.insert("rss_idle_mib".into(), json!(rss_idle));

    client.unlimited_quota(&project)?;

    // Throughput and latency by concurrency, on an empty project.
    let mut by_c = Vec::new();
    for (c, n) in [(1usize, 100usize), (8, 400), (32, 800)] {
        let (cr, de, cpu) = create_delete(&server, &client, c, n)?;
        table.push((
            format!("concurrency {c:>2}: creates/s · create→available p50/p99"),
            format!("{:.0} · {:.1}/{:.1} ms", cr.rate, cr.p50, cr.p99),
        ));
        table.push((
            format!("concurrency {c:>2}: deletes/s · delete→gone p50/p99"),
            format!("{:.0} · {:.1}/{:.1} ms", de.rate, de.p50, de.p99),
        ));
        by_c.push(json!({"concurrency": c, "volumes": n,
            "creates_per_s": cr.rate, "create_p50_ms": cr.p50, "create_p99_ms": cr.p99,
            "deletes_per_s": de.rate, "delete_p50_ms": de.p50, "delete_p99_ms": de.p99,
            "server_cpu_ms_per_create": cpu}));
    }
    report.insert("by_concurrency".into(), json!(by_c));

    // With many volumes present in the project: populate (at concurrency 32,
    // each to available), then 400 creates and their deletes at 8.
    let mut have = 0usize;
    let mut by_n = Vec::new();
    let mut sample: Vec<String> = Vec::new();
    for &want in &present {
        if want > have {
            let t = Instant::now();
            let (made, _) = run(32, want - have, |_| client.create())?;
            if sample.len() < 1000 {
                sample.extend(made.into_iter().map(|(_, id)| id).take(1000));
            }
            eprintln!(
                "populated {have} → {want} volumes in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            have = want;
        }
        let (cr, de, cpu) = create_delete(&server, &client, 8, 400)?;
        table.push((
            format!("{want:>6} present: creates/s · deletes/s (c 8) · server CPU/create"),
            format!("{:.0} · {:.0} · {cpu:.2} ms", cr.rate, de.rate),
        ));
        by_n.push(json!({"present": want, "creates_per_s": cr.rate,
            "create_p50_ms": cr.p50, "create_p99_ms": cr.p99,
            "deletes_per_s": de.rate, "server_cpu_ms_per_create": cpu}));
    }
    report.insert("by_present".into(), json!(by_n));
    let rss_volumes = server.mem_mib("VmRSS");

    // One page of 1000 with them present.
    if have >= 1000 {
        let mut lat = Vec::new();
        for _ in 0..30 {
            let (took, v) = client.get_timed("/volumes/detail?limit=1000")?;
            ensure!(
                v["volumes"].as_array().map_or(0, Vec::len) == 1000,
                "list length"
            );
            lat.push(took);
        }
        let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
        table.push((
            format!("GET /volumes/detail?limit=1000 with {have} present p50/p99"),
            format!("{p50:.1}/{p99:.1} ms"),
        ));
        report.insert(
            "list_detail_1000".into(),
            json!({"present": have, "p50_ms": p50, "p99_ms": p99}),
        );
    }

    // GET /volumes/{id}, 8 clients, about 3 s.
    if sample.is_empty() {
        let (_, id) = client.create()?;
        sample.push(id);
    }
    let n = 6000;
    let (_, wall) = run(8, n, |i| {
        let (code, _) = client.call(
            "GET",
            &format!("/volumes/{}", sample[i % sample.len()]),
            None,
        )?;
        ensure!(code == 200, "show: {code}");
        Ok(())
    })?;
    let show_rate = n as f64 / wall.as_secs_f64();
    table.push((
        "GET /volumes/{id} per second (c 8)".into(),
        format!("{show_rate:.0}"),
    ));
    report.insert("show_per_s".into(), json!(show_rate));

    // Logins, 8 at a time.
    let t = Instant::now();
    run(8, logins, |_| login(&agent, &server.url))?;
    let login_rate = logins as f64 / t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let (rss_after, hwm) = (server.mem_mib("VmRSS"), server.mem_mib("VmHWM"));
    table.push((
        format!("logins/s ({logins}, c 8)"),
        format!("{login_rate:.1}"),
    ));
    table.push((
        format!("RSS with {have} volumes · after {logins} logins · peak"),
        format!("{rss_volumes:.1} · {rss_after:.1} · {hwm:.1} MiB"),
    ));
    report.insert("logins".into(), json!(logins));
    report.insert("logins_per_s".into(), json!(login_rate));
    report.insert("rss_with_volumes_mib".into(), json!(rss_volumes));
    report.insert("rss_after_logins_mib".into(), json!(rss_after));
    report.insert("rss_peak_mib".into(), json!(hwm));

    let w = table
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    println!(
        "{:<w$}  figure",
        "scoria serve, over HTTP, durability = full"
    );
    println!("{}", "-".repeat(w + 24));
    for (k, v) in &table {
        println!("{k:<w$}  {v}");
    }
    println!("{}", serde_json::to_string(&Value::Object(report))?);
    drop(server);
    Ok(())
}
