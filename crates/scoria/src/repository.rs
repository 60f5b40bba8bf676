//! `scoria check` and `scoria fix`: the repository check on the command
//! line (see `scoria_core::repository`).
//!
//! `check` opens the database read-only and reads the backend directories,
//! so it runs beside a running server as well as on a stopped one. `fix`
//! changes files and records, so it takes the data directory's lock, as
//! `scoria serve` does: it runs only while no server does.

use std::path::Path;

use anyhow::{Context as _, Result};
use scoria_core::repository::{self, CheckOptions, FixKind, Report};

use crate::config::Resolved;

/// `scoria check`: prints the report; `true` when it has no fix.
pub async fn check(
    r: &Resolved,
    backend: Option<&str>,
    json: bool,
    options: CheckOptions,
) -> Result<bool> {
    let report = repository::check_data_dir(&r.core, backend, options)
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(report.fixes.is_empty())
}

fn print_report(report: &Report) {
    for f in &report.fixes {
        let mut line = format!(
            "{}  {:<8} {}  {}: {}",
            f.id,
            f.kind.as_str(),
            f.backend,
            f.target.path().display(),
            f.reason
        );
        if f.effect.bytes_freed > 0 {
            line.push_str(&format!("; frees {} bytes", f.effect.bytes_freed));
        }
        if f.effect.layers_removed > 0 {
            let n = f.effect.layers_removed;
            line.push_str(&format!(
                "; removes {n} layer{}",
                if n == 1 { "" } else { "s" }
            ));
        }
        if !f.in_use.is_empty() {
            line.push_str(&format!("; in use by {}", f.in_use.join(", ")));
        }
        println!("{line}");
    }
    for f in &report.foreign {
        println!(
            "foreign  {}  {} ({}, chain {}, used as backing file by {}){}",
            f.backend,
            f.path.display(),
            f.format,
            f.chain.join(" → "),
            f.references,
            f.problem
                .as_deref()
                .map(|p| format!(": {p}"))
                .unwrap_or_default()
        );
    }
    for b in &report.broken {
        println!("broken   {}  image {}: {}", b.backend, b.image_id, b.reason);
    }
    for b in &report.backends {
        for s in &b.skipped {
            println!("skipped  {}  {s}", b.name);
        }
    }
    let checked: Vec<String> = report
        .backends
        .iter()
        .map(|b| {
            format!(
                "{} ({}, {} images, {} files)",
                b.name, b.state, b.images, b.files
            )
        })
        .collect();
    println!(
        "{} fixes, {} foreign files, {} broken images; backends: {}",
        report.fixes.len(),
        report.foreign.len(),
        report.broken.len(),
        checked.join(", ")
    );
}

/// `scoria fix`: applies the fixes named (or all of the kinds given, or all
/// that can be applied when neither is), each after checking again; prints
/// what each did. `true` when every chosen fix was applied.
pub async fn fix(r: &Resolved, kinds: &[FixKind], ids: &[String], json: bool) -> Result<bool> {
    let db = r.core.data_dir.join("scoria.db");
    anyhow::ensure!(db.is_file(), "no database at {}", db.display());
    let _lock = lock_data_dir(&r.core.data_dir)?;
    let selection = repository::fixes::Selection {
        kinds: kinds.to_vec(),
        ids: ids.to_vec(),
        offline: true,
    };
    let fp = crate::failpoints_from_env()?;
    let outcome = repository::fixes::apply_data_dir(&r.core, fp, &selection)
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        for a in &outcome.applied {
            println!("{}  {}: {}", a.id, a.outcome, a.detail);
        }
        for id in &outcome.unknown {
            println!("{id}  not found: no such fix in a new check");
        }
    }
    Ok(outcome.all_applied())
}

/// The data directory's lock, as `scoria serve` takes it: a fix must not run
/// beside a server.
pub fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File> {
    let lock_path = data_dir.join("scoria.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    if let Err(e) = lock.try_lock() {
        anyhow::bail!(
            "a scoria serve runs on {} ({e}); stop it first",
            data_dir.display()
        );
    }
    Ok(lock)
}
