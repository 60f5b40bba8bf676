//! Scoria's domain vocabulary, shared by every layer: typed ids, the statuses of
//! each resource and the transitions between them, quota resources and the quota
//! arithmetic. Pure data and pure functions: nothing here does I/O, so everything
//! here is unit-tested without a database or a disk.

pub mod attachment;
pub mod backup;
pub mod flow;
pub mod glance;
pub mod group;
pub mod ids;
pub mod image;
pub mod quota;
pub mod snapshot;
pub mod volume;

pub use ids::*;
