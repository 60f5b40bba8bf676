//! Scheduler hints `same_host` and `different_host` (Cinder's affinity
//! filters, `OS-SCH-HNT:scheduler_hints` on a create): the new volume goes to
//! a backend that holds one of the named volumes, or to one that holds none
//! of them.
//!
//! The named volumes are looked up as the caller sees them when the request
//! arrives: one the caller may not see (another project's, or none at all)
//! counts as absent, so a hint never tells who has what where. An absent
//! volume matches no backend, as in Cinder: `same_host` naming only absent
//! volumes leaves no backend (the volume ends `error`, saying so), and
//! `different_host` naming only absent volumes restricts nothing. The
//! backends are read again at each placement attempt (a named volume may have
//! moved or gone since).

use std::collections::BTreeSet;

use scoria_model::VolumeId;
use scoria_store::Conn;
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::error::Result;
use crate::scheduler::Request;

/// The affinity hints of a create: `None` where the hint was not given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_host: Option<Vec<VolumeId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub different_host: Option<Vec<VolumeId>>,
}

impl Hints {
    pub fn is_empty(&self) -> bool {
        self.same_host.is_none() && self.different_host.is_none()
    }
}

/// `hints` with only the volumes `ctx` may see (their project's, or any for
/// an admin); a hint given stays given, if empty.
pub(crate) async fn visible(conn: &mut Conn, ctx: &Context, hints: Hints) -> Result<Hints> {
    Ok(Hints {
        same_host: visible_ids(conn, ctx, hints.same_host).await?,
        different_host: visible_ids(conn, ctx, hints.different_host).await?,
    })
}

async fn visible_ids(
    conn: &mut Conn,
    ctx: &Context,
    ids: Option<Vec<VolumeId>>,
) -> Result<Option<Vec<VolumeId>>> {
    let Some(ids) = ids else { return Ok(None) };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match crate::rules::volumes::visible(conn, ctx, id).await {
            Ok(_) => out.push(id),
            Err(crate::error::Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(out))
}

/// Put the backends the hinted volumes are on now into `req`, for the
/// SameBackend and DifferentBackend filters.
pub(crate) async fn apply(conn: &mut Conn, hints: &Hints, req: &mut Request) -> Result<()> {
    req.same_backend = match &hints.same_host {
        Some(ids) => Some(backends_of(conn, ids).await?),
        None => None,
    };
    req.different_backend = match &hints.different_host {
        Some(ids) => Some(backends_of(conn, ids).await?),
        None => None,
    };
    Ok(())
}

/// The backends holding `ids` (volumes not yet placed, or gone, hold none).
async fn backends_of(conn: &mut Conn, ids: &[VolumeId]) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for id in ids {
        if let Some(v) = scoria_store::volumes::volume_get(conn, *id).await?
            && let Some(b) = v.backend
        {
            out.insert(b);
        }
    }
    Ok(out)
}
