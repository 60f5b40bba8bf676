//! A snapshot as the caller may see it: their project's, or any for an
//! admin; another project's snapshot does not exist (404).

use scoria_model::SnapshotId;
use scoria_store::Conn;
use scoria_store::snapshots::{self as store, Snapshot};

use crate::context::{Context, Op};
use crate::error::{Error, Result};

/// Cinder's 404 for a snapshot.
pub fn not_found(id: impl std::fmt::Display) -> Error {
    Error::NotFound(format!("Snapshot {id} could not be found."))
}

/// Parse a snapshot id from a URL segment or a body: anything that is not a
/// UUID names no snapshot (404).
pub fn parse_id(s: &str) -> Result<SnapshotId> {
    s.parse::<SnapshotId>().map_err(|_| not_found(s))
}

/// Load a snapshot the caller may see.
pub(crate) async fn visible(conn: &mut Conn, ctx: &Context, id: SnapshotId) -> Result<Snapshot> {
    match store::snapshot_get(conn, id).await? {
        Some(s)
            if ctx.is_admin() || ctx.project_id.as_ref().is_some_and(|p| p.0 == s.project_id) =>
        {
            Ok(s)
        }
        _ => Err(not_found(id)),
    }
}

/// Cinder's precedence on a route that names a snapshot: looked up first
/// (404 whoever asks), then `op` checked (see
/// [`super::volumes::authorize_on`]).
pub(crate) async fn authorize_on(
    store: &scoria_store::Store,
    ctx: &Context,
    id: SnapshotId,
    op: Op,
) -> Result<()> {
    let mut conn = store.read().await?;
    visible(&mut conn, ctx, id).await?;
    ctx.authorize(op)
}
