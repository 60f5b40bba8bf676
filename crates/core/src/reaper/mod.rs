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
//! Which images a pass looks at depends on why it runs. The routine pass, a
//! quarter of a second after flows of this process end (a burst of ends
//! costs one pass: one pass per flow cost creates two thirds of their
//! throughput, 218/s against 78/s in `bench_lifecycle` on a loaded machine),
//! reads only the *candidates* ([`Scan::Candidates`]): the images that
//! triggers recorded as possibly unused in the transaction that made them or
//! dropped a reference to them (migration 0022). Its cost is proportional to
//! what changed since the last pass, so the control plane costs the same per
//! operation with 100 or 100,000 images (issue 14); a full scan there ran
//! every image through four subqueries several times a second under load. Each
//! pass ends by pruning the candidates that are used or gone, in one
//! statement on what is committed then, so a candidate that lost its last
//! user meanwhile stays for the next pass.
//!
//! The full scan ([`Scan::Full`]) runs when the application opens and on a
//! timer, at least every `every` even under a steady stream of flow ends: for
//! flows of other processes, for retries after a backend refused a delete
//! (those images stay candidates, too), and as the safety net for an image
//! whose candidate row is missing for any reason. Failpoints: `reaper.marked`
//! (after the mark commits), `reaper.freed` (after the data is gone, before
//! the record goes).

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

/// Which images a pass considers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// Only the candidates: images that are new or lost a user since the last
    /// prune (the routine pass).
    Candidates,
    /// Every image (at open, on the timer; the safety net).
    Full,
}

/// Free every image nothing uses, chains included, scanning every image.
pub async fn reap(env: &Env) -> Result<Reaped> {
    reap_with(env, Scan::Full).await
}

/// Free every unused image among the candidates, chains included (a freed
/// overlay makes its base a candidate), then prune the candidates.
pub async fn reap_changed(env: &Env) -> Result<Reaped> {
    reap_with(env, Scan::Candidates).await
}

/// One pass: free what `scan` finds unused, again until a round frees
/// nothing, then prune the candidates that are used or gone.
pub async fn reap_with(env: &Env, scan: Scan) -> Result<Reaped> {
    let done = free_unused(env, scan).await?;
    let pruned = {
        let mut tx = env.store.begin().await?;
        let pruned = images::image_unref_prune(&mut tx).await?;
        tx.commit().await.map_err(scoria_store::StoreError::from)?;
        pruned
    };
    tracing::debug!(
        ?scan,
        freed = done.freed,
        failed = done.failed,
        pruned,
        "reaper pass"
    );
    Ok(done)
}

async fn free_unused(env: &Env, scan: Scan) -> Result<Reaped> {
    let mut done = Reaped::default();
    loop {
        let garbage = {
            let mut conn = env.store.read().await?;
            match scan {
                Scan::Candidates => images::image_list_unused_candidates(&mut conn).await?,
                Scan::Full => images::image_list_unused(&mut conn).await?,
            }
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

/// Reap now (a full scan), then over the candidates whenever `ended` changes
/// (a flow ended; after [`SETTLE`]), and with a full scan once `every` passed
/// since the last one, until the task is aborted (the application does at
/// shutdown).
pub fn spawn(
    env: std::sync::Arc<Env>,
    mut ended: tokio::sync::watch::Receiver<u64>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut scan = Scan::Full;
        // A deadline, not a sleep restarted after each pass: flows ending more
        // often than `every` must not postpone the safety net for ever.
        let mut full_at = tokio::time::Instant::now();
        loop {
            if scan == Scan::Full {
                full_at = tokio::time::Instant::now() + every;
            }
            if let Err(e) = reap_with(&env, scan).await {
                tracing::warn!(error = %e.chain(), "reaping unused images failed; trying again later");
            }
            ended.borrow_and_update();
            scan = tokio::select! {
                changed = ended.changed() => {
                    if changed.is_err() {
                        // The engine is gone.
                        return;
                    }
                    tokio::time::sleep(SETTLE).await;
                    if tokio::time::Instant::now() >= full_at {
                        Scan::Full
                    } else {
                        Scan::Candidates
                    }
                }
                _ = tokio::time::sleep_until(full_at) => Scan::Full,
            };
        }
    })
}

#[cfg(all(test, feature = "failpoints"))]
mod tests;
