//! Cinder's list of manageable volumes (admins, 3.8 on): the files of a
//! backend that Scoria did not make, each with its size, whether
//! `os-volume-manage` would take it and, if not, why — and what the file is
//! to the others (Kimchi's discovery): its format, its backing chain, the
//! files that use it as their backing file.
//!
//! The files are found by the repository check (`crate::repository`, a quick
//! one: headers only, nothing changed), which already tells Scoria's files
//! from foreign ones. Whether a file is safe to manage follows the same rules
//! as the manage itself (`manage.rs`): a self-contained qcow2 or raw file
//! whose name says its format, that no other file stands on. The manage
//! still checks the file again (the list may be stale by then).

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};
use crate::repository::{self, CheckOptions, Foreign};
use scoria_model::volume::GIB;

/// One foreign file as `GET /manageable_volumes` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manageable {
    /// The file's name: the `source-name` a manage takes.
    pub source_name: String,
    /// GiB, rounded up (what the volume would be); 0 when unreadable.
    pub size: i64,
    /// Whether `os-volume-manage` would take it as it is now.
    pub safe_to_manage: bool,
    /// Why not, when not.
    pub reason_not_safe: Option<String>,
    /// The format its bytes show (`qcow2`, `raw`, `vmdk`…, `unknown`).
    pub format: String,
    /// Its backing chain below itself, nearest first, as far as it stays
    /// in the backend's directory.
    pub backing_chain: Vec<String>,
    /// The files of the backend whose backing file it is.
    pub referenced_by: Vec<String>,
}

impl Manageable {
    /// Cinder's `extra_info`, a line for people: format, chain, users.
    pub fn extra_info(&self) -> String {
        let mut out = format!("format {}", self.format);
        if !self.backing_chain.is_empty() {
            out.push_str(&format!(
                "; backing chain {}",
                self.backing_chain.join(" <- ")
            ));
        }
        if !self.referenced_by.is_empty() {
            out.push_str(&format!(
                "; backing file of {} file(s): {}",
                self.referenced_by.len(),
                self.referenced_by.join(", ")
            ));
        }
        out
    }
}

/// The foreign files of the backend `host` names (`scoria@<backend>`), in
/// the order the check found them (the API sorts).
pub async fn manageable(app: &App, ctx: &Context, host: &str) -> Result<Vec<Manageable>> {
    ctx.authorize(Op::VolumeListManageable)?;
    let Some(backend) = crate::rules::hosts::backend_of_host(&app.env, host) else {
        return Err(Error::NotFound(format!(
            "Service {host} could not be found: name a backend of this Scoria (scoria@<backend>)."
        )));
    };
    let report = repository::check(
        app.store(),
        &app.env.staging_dir,
        &app.config.backends,
        Some(backend),
        CheckOptions {
            quick: true,
            ..Default::default()
        },
    )
    .await?;
    if report
        .backends
        .iter()
        .any(|b| b.name == backend && b.state == "down")
    {
        return Err(Error::Invalid(format!(
            "Invalid input received: backend {backend} is down: its directory is missing."
        )));
    }
    Ok(report.foreign.iter().map(entry).collect())
}

fn entry(f: &Foreign) -> Manageable {
    let reason = why_not(f);
    Manageable {
        source_name: f.file.clone(),
        size: f.virtual_size.map_or(0, |s| s.div_ceil(GIB).max(1) as i64),
        safe_to_manage: reason.is_none(),
        reason_not_safe: reason,
        format: f.format.clone(),
        backing_chain: f.chain.iter().skip(1).cloned().collect(),
        referenced_by: f.referenced_by.clone(),
    }
}

/// Why `os-volume-manage` would refuse the file, in its words; `None` when
/// it would take it.
fn why_not(f: &Foreign) -> Option<String> {
    if let Some(p) = &f.problem {
        return Some(format!("Not an image Scoria can read: {p}."));
    }
    if let Some(base) = f.chain.get(1) {
        return Some(format!(
            "Layered on {base}: only a self-contained file can be managed."
        ));
    }
    if !f.referenced_by.is_empty() {
        return Some(format!(
            "The backing file of {}: writing to it would change them.",
            f.referenced_by.join(", ")
        ));
    }
    match scoria_storage::format_of_name(&f.file) {
        Err(_) => Some(format!(
            "Its name does not end in .qcow2 or .raw; found format {}.",
            f.format
        )),
        Ok(named) if named.as_str() != f.format => Some(format!(
            "Named {} but its bytes are {}.",
            named.as_str(),
            f.format
        )),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn foreign(file: &str, format: &str) -> Foreign {
        Foreign {
            backend: "file".into(),
            file: file.into(),
            path: PathBuf::from(file),
            format: format.into(),
            virtual_size: Some(GIB + 1),
            allocated: 0,
            chain: vec![file.into()],
            references: 0,
            referenced_by: Vec::new(),
            problem: None,
        }
    }

    #[test]
    fn only_self_contained_files_named_for_their_format_are_safe() {
        let ok = entry(&foreign("disk.qcow2", "qcow2"));
        assert!(ok.safe_to_manage, "{ok:?}");
        assert_eq!(ok.size, 2, "1 GiB and a byte rounds up to 2");
        assert_eq!(ok.extra_info(), "format qcow2");

        let mut top = foreign("top.qcow2", "qcow2");
        top.chain.push("base.qcow2".into());
        let top = entry(&top);
        assert!(!top.safe_to_manage);
        assert!(top.reason_not_safe.unwrap().contains("base.qcow2"));
        assert_eq!(top.backing_chain, vec!["base.qcow2".to_owned()]);

        let mut base = foreign("base.qcow2", "qcow2");
        base.referenced_by = vec!["a.qcow2".into(), "b.qcow2".into()];
        base.references = 2;
        let base = entry(&base);
        assert!(!base.safe_to_manage);
        assert!(base.extra_info().contains("backing file of 2 file(s)"));

        let lying = entry(&foreign("disk.raw", "qcow2"));
        assert_eq!(
            lying.reason_not_safe.as_deref(),
            Some("Named raw but its bytes are qcow2.")
        );
        assert!(!entry(&foreign("disk.vmdk", "vmdk")).safe_to_manage);

        let mut broken = foreign("gone.qcow2", "qcow2");
        broken.problem = Some("its backing file x.qcow2 is missing".into());
        assert!(!entry(&broken).safe_to_manage);
    }
}
