//! Shared rules: the checks, lookups and error messages that both the
//! resource modules (`volumes`, `groups`, `transfers`, …) and the flows need.
//!
//! They live here, below both, so that dependencies inside the crate point one
//! way: resource modules start flows, flows apply rules, and nothing in
//! `rules` imports a resource module or a flow.
//!
//! ```text
//!   volumes  groups  transfers  volume_types  services   (resources: authorize, validate, start flows)
//!        \      |        |          |           /
//!         flows/* (volume_create, volume_delete, …)
//!                 \      |       /
//!                   rules/* · scheduler · messages       (shared rules, pure placement, user messages)
//!                          |
//!                   context · error · store · storage
//! ```
//!
//! - [`validate`]: Cinder's limits on names, descriptions, metadata, sizes
//!   and spec keys.
//! - [`volumes`]: a volume as the caller may see it, and the holds that keep
//!   a volume readable while it is copied.
//! - [`attachments`]: attachments as the caller may see them, the volume
//!   status they imply, and the hold they put on their volume.
//! - [`types`]: volume types as the caller may use them.
//! - [`groups`]: a group as the caller may see it, and a volume joining one.
//! - [`images`]: the names and formats the application gives images.
//! - [`snapshots`]: a snapshot as the caller may see it.
//! - [`progress`]: the last flow's progress, as views show it.
//! - [`hosts`]: the service hosts of this process and the state
//!   administrators set on them (disabled, frozen).
//! - [`affinity`]: the `same_host`/`different_host` scheduler hints.

pub mod affinity;
pub mod attachments;
pub mod backups;
pub mod groups;
pub mod hosts;
pub mod images;
pub mod progress;
pub mod snapshots;
pub mod types;
pub mod validate;
pub mod volumes;
