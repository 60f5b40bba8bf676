//! Create throughput with three backends against one, over HTTP as users
//! drive it. In one run, two fresh `scoria serve` processes in turn (the
//! release binary beside this example, each with a data directory of its own,
//! `durability = full`, fsync on): (a) one file backend, the configuration of
//! `bench_control`; (b) three file backends `a`, `b`, `c` on the same file
//! system, `a` and `b` in zone `az1`, `c` in `az2`, with different
//! `capabilities`. Both have an over-subscription ratio large enough that
//! capacity never limits. For each, at concurrency 1, 8 and 32: creates of
//! 1 GiB volumes (request → `available`, polled right away and then every
//! millisecond), the server's CPU per create, where the volumes went (the
//! admin detail list with `all_tenants`: `os-vol-host-attr:host` and the
//! volume's zone; no zone is requested), then their deletes (request → 404).
//! With `--rounds R` the pair runs R times, one configuration after the
//! other (fresh servers each time), and each figure is the median of its R
//! values: on a machine shared with other work, load drifts between two runs
//! a minute apart, and alternating spreads the drift over both. Prints one
//! table with both configurations side by side and the ratio three/one of
//! each figure, then the same as JSON (medians and every round). Asserts
//! nothing, but any HTTP failure ends the run with an error.
//!
//! ```text
//! scripts/bench-backends [--counts 100,400,800] [--rounds 1]
//! ```
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};

mod serve_bench;

use serve_bench::{Client, Phase, Server, creates, deletes};

/// Three backends: two zones, different capabilities, never full.
const THREE_BACKENDS: &str = r#"[[backend]]
name = "a"
driver = "file"
availability_zone = "az1"
max_over_subscription_ratio = 1000000.0
capabilities = { tier = "ssd" }

[[backend]]
name = "b"
driver = "file"
availability_zone = "az1"
max_over_subscription_ratio = 1000000.0
capabilities = { tier = "hdd" }

[[backend]]
name = "c"
driver = "file"
availability_zone = "az2"
max_over_subscription_ratio = 1000000.0
capabilities = { tier = "ssd", rack = "r2" }
"#;

const CONCURRENCY: [usize; 3] = [1, 8, 32];

/// A row of the table: its name, how to read it from a round, and how many
/// decimals to print.
type Figure = (&'static str, fn(&Round) -> f64, usize);

const FIGURES: &[Figure] = &[
    ("creates/s", |r| r.create.rate, 0),
    ("create→available p50 ms", |r| r.create.p50, 1),
    ("create→available p99 ms", |r| r.create.p99, 1),
    ("server CPU ms per create", |r| r.cpu_ms_per_create, 2),
    ("deletes/s", |r| r.delete.rate, 0),
    ("delete→gone p50 ms", |r| r.delete.p50, 1),
    ("delete→gone p99 ms", |r| r.delete.p99, 1),
];

/// One concurrency's figures for one configuration.
struct Round {
    concurrency: usize,
    volumes: usize,
    create: Phase,
    delete: Phase,
    cpu_ms_per_create: f64,
    /// Volumes per `os-vol-host-attr:host`.
    hosts: BTreeMap<String, usize>,
    /// Volumes per availability zone.
    zones: BTreeMap<String, usize>,
}

/// Count this round's volumes by host and by zone, from the admin's detail
/// list of every project, page by page.
fn spread(
    client: &Client,
    ids: &[String],
) -> anyhow::Result<(BTreeMap<String, usize>, BTreeMap<String, usize>)> {
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let (mut hosts, mut zones) = (BTreeMap::new(), BTreeMap::new());
    let mut seen = 0usize;
    let mut marker: Option<String> = None;
    loop {
        let path = match &marker {
            Some(m) => format!("/volumes/detail?all_tenants=1&limit=1000&marker={m}"),
            None => "/volumes/detail?all_tenants=1&limit=1000".to_owned(),
        };
        let (code, v) = client.call("GET", &path, None)?;
        ensure!(code == 200, "GET {path}: {code} {v}");
        let page = v["volumes"].as_array().context("volumes")?;
        for vol in page {
            if !wanted.contains(vol["id"].as_str().unwrap_or_default()) {
                continue;
            }
            seen += 1;
            let host = vol["os-vol-host-attr:host"]
                .as_str()
                .context("os-vol-host-attr:host (is the client an admin?)")?;
            *hosts.entry(host.to_owned()).or_insert(0) += 1;
            let zone = vol["availability_zone"].as_str().unwrap_or("(none)");
            *zones.entry(zone.to_owned()).or_insert(0) += 1;
        }
        match page.last() {
            Some(last) if page.len() == 1000 => {
                marker = Some(last["id"].as_str().context("id")?.to_owned());
            }
            _ => break,
        }
    }
    ensure!(
        seen == ids.len(),
        "the detail list shows {seen} of the {} volumes made",
        ids.len()
    );
    Ok((hosts, zones))
}

/// Start a server with `config` in `dir` and run every concurrency's creates,
/// spread and deletes.
fn measure(bin: &Path, dir: &Path, config: &str, counts: &[usize]) -> anyhow::Result<Vec<Round>> {
    std::fs::create_dir_all(dir)?;
    let config_file = dir.join("scoria.toml");
    std::fs::write(&config_file, config)?;
    let server = Server::start(bin, &config_file, &dir.join("data"))?;
    let agent = serve_bench::agent();
    let (client, project) = Client::admin(&agent, &server.url)?;
    client.unlimited_quota(&project)?;
    let mut rounds = Vec::new();
    for (&c, &n) in CONCURRENCY.iter().zip(counts) {
        let (create, cpu_ms_per_create, ids) = creates(&server, &client, c, n)?;
        let (hosts, zones) = spread(&client, &ids)?;
        let delete = deletes(&client, c, &ids)?;
        eprintln!(
            "c {c:>2}: {n} volumes, {:.0} creates/s, {:.0} deletes/s, on {hosts:?}",
            create.rate, delete.rate
        );
        rounds.push(Round {
            concurrency: c,
            volumes: n,
            create,
            delete,
            cpu_ms_per_create,
            hosts,
            zones,
        });
    }
    Ok(rounds)
}

/// `name count · name count …`.
fn counts_text(m: &BTreeMap<String, usize>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(" · ")
}

fn round_json(r: &Round) -> Value {
    json!({"concurrency": r.concurrency, "volumes": r.volumes,
        "creates_per_s": r.create.rate, "create_p50_ms": r.create.p50, "create_p99_ms": r.create.p99,
        "deletes_per_s": r.delete.rate, "delete_p50_ms": r.delete.p50, "delete_p99_ms": r.delete.p99,
        "server_cpu_ms_per_create": r.cpu_ms_per_create,
        "volumes_by_host": r.hosts, "volumes_by_zone": r.zones})
}

/// The median of `f` over the rounds.
fn median(rounds: &[Vec<Round>], i: usize, f: fn(&Round) -> f64) -> f64 {
    let mut v: Vec<f64> = rounds.iter().map(|r| f(&r[i])).collect();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Volumes per host (or zone) over every round.
fn summed(
    rounds: &[Vec<Round>],
    i: usize,
    f: fn(&Round) -> &BTreeMap<String, usize>,
) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in rounds {
        for (k, v) in f(&r[i]) {
            *out.entry(k.clone()).or_insert(0) += v;
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    let mut counts = vec![100usize, 400, 800];
    let mut repeat = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--counts" => {
                counts = args
                    .next()
                    .context("--counts N,N,N")?
                    .split(',')
                    .map(|s| s.trim().parse())
                    .collect::<Result<_, _>>()?;
                ensure!(
                    counts.len() == CONCURRENCY.len() && counts.iter().all(|&n| n > 0),
                    "--counts takes three positive numbers, for concurrency 1, 8 and 32"
                );
            }
            "--rounds" => {
                repeat = args.next().context("--rounds N")?.parse()?;
                ensure!(repeat > 0, "--rounds takes a positive number");
            }
            other => bail!("unknown argument {other:?} (--counts N,N,N --rounds N)"),
        }
    }
    let bin = serve_bench::scoria_bin()?;
    let tmp = tempfile::tempdir_in(std::env::current_dir()?)?;
    let (mut one, mut three) = (Vec::new(), Vec::new());
    for r in 0..repeat {
        eprintln!("round {}/{repeat}: one backend", r + 1);
        let dir = tmp.path().join(format!("one-{r}"));
        one.push(measure(&bin, &dir, serve_bench::ONE_BACKEND, &counts)?);
        eprintln!("round {}/{repeat}: three backends", r + 1);
        let dir = tmp.path().join(format!("three-{r}"));
        three.push(measure(&bin, &dir, THREE_BACKENDS, &counts)?);
    }

    // Rows: a label, the figure in each configuration, and how to print it.
    let mut rows: Vec<(String, f64, f64, usize)> = Vec::new();
    for (i, (&c, &n)) in CONCURRENCY.iter().zip(&counts).enumerate() {
        for &(name, f, digits) in FIGURES {
            rows.push((
                format!("c {c:>2} ({n} volumes): {name}"),
                median(&one, i, f),
                median(&three, i, f),
                digits,
            ));
        }
    }
    let w = rows
        .iter()
        .map(|(k, ..)| k.chars().count())
        .max()
        .unwrap_or(0);
    println!(
        "scoria serve over HTTP, durability = full, fsync on; 1 GiB qcow2 volumes, no zone asked; \
         medians of {repeat} round(s)"
    );
    println!(
        "{:<w$}  {:>10}  {:>10}  {:>6}",
        "", "1 backend", "3 backends", "3/1"
    );
    println!("{}", "-".repeat(w + 34));
    for (k, o, t, d) in &rows {
        println!("{k:<w$}  {o:>10.d$}  {t:>10.d$}  {:>6.2}", t / o);
    }
    println!();
    for (i, c) in CONCURRENCY.iter().enumerate() {
        println!(
            "3 backends, c {c:>2}, {repeat} round(s): by host {}; by zone {}",
            counts_text(&summed(&three, i, |r| &r.hosts)),
            counts_text(&summed(&three, i, |r| &r.zones))
        );
    }
    let ratio: Vec<Value> = rows
        .iter()
        .map(|(k, o, t, _)| json!({"figure": k, "one": o, "three": t, "ratio": t / o}))
        .collect();
    let all = |rounds: &[Vec<Round>]| -> Vec<Vec<Value>> {
        rounds
            .iter()
            .map(|r| r.iter().map(round_json).collect())
            .collect()
    };
    let report = json!({
        "counts": counts,
        "rounds": repeat,
        "medians": ratio,
        "one_backend": all(&one),
        "three_backends": all(&three),
    });
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
