//! What a check finds that no record names: files Scoria did not make
//! (foreign files, with their chains and who stands on them: Kimchi's
//! discovery) and migrations' staging files whose flow is over.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use scoria_storage::file::survey::{self, Entry};
use scoria_store::{Store, flows};

use super::{Effect, Fix, FixKind, Foreign, Problem, Report, Target, fix_id};
use crate::error::Result;

/// A foreign file with its chain, as far as it stays in the directory, and
/// who uses it.
pub(super) fn foreign(
    backend: &str,
    e: &Entry,
    files: &BTreeMap<&str, &Entry>,
    referenced: &BTreeMap<&str, Vec<String>>,
) -> Foreign {
    let mut chain = vec![e.file_name.clone()];
    let mut problem = None;
    if !e.regular {
        problem = Some("not a regular file".to_owned());
    } else if e.head.is_none() {
        problem = Some("it cannot be read".to_owned());
    }
    let mut at = e;
    while let Some(reference) = at.head.as_ref().and_then(|h| h.backing_file.clone()) {
        match files.get(reference.as_str()) {
            _ if reference.contains('/') || reference.contains(':') => {
                problem = Some(format!("its chain leaves the backend at {reference:?}"));
                break;
            }
            Some(next) if !chain.contains(&next.file_name) => {
                chain.push(next.file_name.clone());
                at = next;
            }
            Some(_) => {
                problem = Some(format!("its chain loops at {reference}"));
                break;
            }
            None => {
                problem = Some(format!("its backing file {reference} is missing"));
                break;
            }
        }
    }
    let referenced_by = referenced
        .get(e.file_name.as_str())
        .cloned()
        .unwrap_or_default();
    Foreign {
        backend: backend.to_owned(),
        file: e.file_name.clone(),
        path: e.path.clone(),
        format: e
            .head
            .as_ref()
            .map_or("unknown", |h| h.detected.glance_name())
            .to_owned(),
        virtual_size: e.head.as_ref().map(|h| h.virtual_size),
        allocated: e.allocated,
        chain,
        references: referenced_by.len(),
        referenced_by,
        problem,
    }
}

/// Migration staging files (`<data_dir>/staging/migrate-<flow id>.<ext>`)
/// whose flow is no longer running or unwinding.
pub(super) async fn staging(store: &Store, dir: &Path, report: &mut Report) -> Result<()> {
    let Some(entries) = survey::survey(dir)
        .await
        .map_err(|e| super::storage_err("reading the staging directory".into(), e))?
    else {
        return Ok(());
    };
    let active: BTreeSet<String> = {
        let mut conn = store.read().await?;
        flows::flow_list_active(&mut conn)
            .await?
            .into_iter()
            .map(|f| f.id.to_string())
            .collect()
    };
    for e in entries {
        let Some(flow) = staging_flow(&e.file_name) else {
            continue;
        };
        if active.contains(flow) || !e.regular {
            continue;
        }
        let target = Target::File {
            path: e.path.clone(),
        };
        report.fixes.push(Fix {
            id: fix_id(FixKind::Clean, Problem::StagingFile, "staging", &target),
            kind: FixKind::Clean,
            problem: Problem::StagingFile,
            backend: "staging".into(),
            target,
            reason: format!("the staging file of migration flow {flow}, which is over"),
            effect: Effect {
                bytes_freed: e.allocated,
                layers_removed: 0,
            },
            in_use: Vec::new(),
        });
    }
    Ok(())
}

/// The flow id of a staging file's name, if it is one.
pub(super) fn staging_flow(file_name: &str) -> Option<&str> {
    let (stem, ext) = file_name.rsplit_once('.')?;
    let flow = stem.strip_prefix("migrate-")?;
    (matches!(ext, "qcow2" | "raw") && flow.parse::<scoria_model::FlowId>().is_ok()).then_some(flow)
}
