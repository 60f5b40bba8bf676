//! The reaper: frees the data of images nothing uses any more.
//!
//! Who uses an image is the set of rows that refer to it (see
//! `scoria_store::images`). Flows only ever *drop* references — a snapshot
//! deleted, a volume reverted onto a new overlay, a volume deleted whose
//! chain stood on older images — and never have to work out, in the middle of
//! an operation, whether some image deep in a chain just lost its last user.
//! The reaper finds those images afterwards and frees them, so a chain is
//! freed top down as each layer's last user goes:
//!
//! ```text
//!   for each image that is ready or deleting and that no row refers to:
//!     mark it deleting   (one transaction, only while still unused)
//!     delete its data    (the driver; already gone is success)
//!     remove its record  (one transaction, only while still unused)
//!   again, until a pass finds nothing (a freed overlay may leave its base unused)
//! ```
//!
//! An image that lost its last user never gains one again (new uses are only
//! ever made from images that are in use), so freeing it is safe at any time.
//! Every step is idempotent: a crash between them leaves the image `deleting`
//! and the next pass finishes it. An image still `creating` belongs to the
//! flow making it, whose undo removes it; the reaper never touches one.
//!
//! It runs when the application opens, a quarter of a second after flows of
//! this process end (a burst of ends costs one pass: one pass per flow cost
//! creates two thirds of their throughput, 218/s against 78/s in
//! `bench_lifecycle` on a loaded machine),
//! and on a timer (for flows of other processes and for retries after a
//! backend refused a delete). Failpoints: `reaper.marked` (after the mark
//! commits), `reaper.freed` (after the data is gone, before the record goes).

use std::time::Duration;

use scoria_store::images;

use crate::Env;
use crate::error::Result;

/// What one call of [`reap`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Images whose data and record are gone.
    pub freed: usize,
    /// Images whose data the backend would not delete (left `deleting`, tried
    /// again next time).
    pub failed: usize,
}

/// Free every image nothing uses, chains included.
pub async fn reap(env: &Env) -> Result<Reaped> {
    let mut done = Reaped::default();
    loop {
        let garbage = {
            let mut conn = env.store.read().await?;
            images::image_list_unused(&mut conn).await?
        };
        let mut progressed = false;
        for image in garbage {
            let marked = {
                let mut tx = env.store.begin().await?;
                let marked = images::image_mark_garbage(&mut tx, image.id).await?;
                tx.commit().await.map_err(scoria_store::StoreError::from)?;
                marked
            };
            if !marked {
                continue;
            }
            env.fp.hit("reaper.marked").map_err(crash)?;
            let backend = env.backend(&image.backend)?;
            if let Err(e) = backend.driver.delete(&image.name).await {
                if e.is_crash() {
                    return Err(crate::Error::internal("the reaper crashed", e));
                }
                tracing::warn!(image = %image.id, name = %image.name, error = %e, "the backend did not free an unused image; trying again later");
                done.failed += 1;
                continue;
            }
            env.fp.hit("reaper.freed").map_err(crash)?;
            let mut tx = env.store.begin().await?;
            if images::image_delete(&mut tx, image.id).await? {
                done.freed += 1;
                progressed = true;
                tracing::info!(image = %image.id, name = %image.name, backend = %image.backend, "freed an image nothing used");
            }
            tx.commit().await.map_err(scoria_store::StoreError::from)?;
            crate::capacity::refresh(env, &image.backend).await;
        }
        if !progressed {
            return Ok(done);
        }
    }
}

fn crash(f: scoria_failpoints::Fault) -> crate::Error {
    crate::Error::internal("the reaper hit a failpoint", f)
}

/// How long the reaper lets flow ends gather before it looks: a burst of
/// deletes costs one pass, not one per flow.
const SETTLE: Duration = Duration::from_millis(250);

/// Reap now, then whenever `ended` changes (a flow ended; after [`SETTLE`]) or
/// `every` passed, until the task is aborted (the application does at
/// shutdown).
pub fn spawn(
    env: std::sync::Arc<Env>,
    mut ended: tokio::sync::watch::Receiver<u64>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = reap(&env).await {
                tracing::warn!(error = %e.chain(), "reaping unused images failed; trying again later");
            }
            ended.borrow_and_update();
            tokio::select! {
                changed = ended.changed() => {
                    if changed.is_err() {
                        // The engine is gone.
                        return;
                    }
                    tokio::time::sleep(SETTLE).await;
                }
                _ = tokio::time::sleep(every) => {}
            }
        }
    })
}

#[cfg(all(test, feature = "failpoints"))]
mod tests;
