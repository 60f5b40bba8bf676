//! Volume transfers: a project offers a volume, a member of any project who
//! holds the transfer's id and auth key takes it over.
//!
//! ```text
//!               offer (create)                    accept (id + auth key,
//!   available ──────────────────► awaiting-transfer ─── any project) ──► available,
//!       ▲                           │        │                           owned by the
//!       └────── withdraw (delete) ──┘        │                           accepting
//!                                            │ admin force-delete        project
//!                                            ▼ (voids the offer)
//!                                         deleting
//! ```
//!
//! `awaiting-transfer` is not a transitional status: no flow owns the volume,
//! the offer may wait for days. While it waits the volume cannot be deleted,
//! extended, attached or offered again (400); its owner's usage still counts
//! it. A transfer row exists exactly while its volume awaits it: every change
//! writes both in one transaction.
//!
//! # Why accepting is one transaction, not a flow
//!
//! Every effect of an accept is in the database: the volume's images stay where
//! they are (a backend file is named by its image's id, not by a project), and
//! quota usage is derived from `volumes.project_id` and
//! `snapshots.project_id`. A volume's snapshots go with it (Cinder's default);
//! an offer `no_snapshots` of a volume that has snapshots is refused, because a
//! snapshot always lives in its volume's project. So one write transaction
//! (`BEGIN IMMEDIATE`: writers queue, nothing can change between the check and
//! the write) does all of it: find the transfer, check the key, check the
//! recipient's quota with the same arithmetic as every reservation
//! (`quota_check` → `scoria_model::quota::check`; overall and for the
//! volume's type), move the volume
//! (`… WHERE status = 'awaiting-transfer'`) and delete the transfer. The
//! donor's usage drops and the recipient's rises in the same commit; there is
//! no reservation to commit or to leak, and no intermediate state for a crash
//! to leave behind. Of concurrent accepts of one transfer exactly one finds it;
//! the others find nothing (404), as in Cinder. A flow would only add crash
//! points where there is nothing to undo.
//!
//! # Auth keys
//!
//! A key is 128 random bits shown once, as 32 hex digits, in the answer to the
//! offer. The store keeps a random salt and SHA-256(salt ‖ key); an accept
//! recomputes it and compares in constant time. A slow password hash would
//! add nothing: the key is random, not chosen by a person.

use rand::RngCore;
use scoria_model::quota;
use scoria_model::volume::{MAX_NAME_LEN, VolumeStatus};
use scoria_model::{TransferId, VolumeId};
pub use scoria_store::transfers::Transfer;
use scoria_store::transfers::{self as store, TransferQuery};
use scoria_store::volumes::{self as volume_store, Volume};
use scoria_store::{Conn, StoreError, flows as flow_store, quotas};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};

/// A new offer and its auth key, which is shown this once.
#[derive(Clone, Debug)]
pub struct Offer {
    pub transfer: Transfer,
    pub auth_key: String,
}

/// List filters and paging, as parsed from the API.
#[derive(Clone, Debug, Default)]
pub struct ListRequest {
    /// Admins only: every project's transfers.
    pub all_projects: bool,
    pub name: Option<String>,
    pub limit: Option<i64>,
    pub marker: Option<TransferId>,
}

/// `"Transfer <id> could not be found."`, Cinder's wording.
fn not_found(id: impl std::fmt::Display) -> Error {
    Error::NotFound(format!("Transfer {id} could not be found."))
}

/// Parse a transfer id from a URL segment: anything that is not a UUID names
/// no transfer (404).
pub fn parse_id(s: &str) -> Result<TransferId> {
    s.parse::<TransferId>().map_err(|_| not_found(s))
}

/// Cinder's rule for a transfer's name: surrounding spaces are dropped, and
/// what is left must be neither empty nor longer than 255 characters.
fn normalize_name(name: Option<String>) -> Result<Option<String>> {
    let Some(name) = name else { return Ok(None) };
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::Invalid(
            "Invalid name: The 'name' can not be empty.".into(),
        ));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(Error::Invalid(format!(
            "Invalid input received: The 'name' can not be greater than {MAX_NAME_LEN} characters."
        )));
    }
    Ok(Some(name.to_owned()))
}

fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn crypt_hash(salt: &str, auth_key: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(auth_key.as_bytes());
    hex::encode(h.finalize())
}

/// Whether `auth_key` is the key of `t`, compared in constant time.
fn key_matches(t: &Transfer, auth_key: &str) -> bool {
    let given = crypt_hash(&t.salt, auth_key);
    bool::from(t.crypt_hash.as_bytes().ct_eq(given.as_bytes()))
}

/// Whether the caller may see a transfer: its project's, or any for an admin.
fn may_see(ctx: &Context, t: &Transfer) -> bool {
    ctx.is_admin()
        || ctx
            .project_id
            .as_ref()
            .is_some_and(|p| p.0 == t.source_project_id)
}

/// Offer `volume` (already loaded in the caller's write transaction): move it
/// `available` → `awaiting-transfer` and record the transfer, both in `conn`'s
/// transaction. A volume being copied for a clone is not offered until the
/// clone is made.
pub(crate) async fn offer(
    conn: &mut Conn,
    volume: &Volume,
    user_id: &str,
    name: Option<String>,
    no_snapshots: bool,
) -> Result<Offer> {
    if volume.status != VolumeStatus::Available {
        return Err(Error::InvalidState(format!(
            "Invalid volume: status must be available to be transferred, but volume {} is {}.",
            volume.id, volume.status
        )));
    }
    if no_snapshots
        && !scoria_store::snapshots::snapshot_list_for_volume(conn, volume.id)
            .await?
            .is_empty()
    {
        // A snapshot stays with its volume's project: Scoria moves them
        // together, or not at all.
        return Err(Error::Invalid(format!(
            "Invalid input received: volume {} has snapshots, which are transferred with it; offer it without no_snapshots, or delete them first.",
            volume.id
        )));
    }
    if let Some(g) = volume.group_id {
        // It would leave its group's project: remove it from the group first.
        return Err(Error::InvalidState(format!(
            "Invalid volume: volume {} belongs to group {g}; remove it from the group before transferring it.",
            volume.id
        )));
    }
    if !flow_store::flow_list_unsettled_for(conn, &volume.id.to_string())
        .await?
        .is_empty()
    {
        return Err(Error::InvalidState(format!(
            "Invalid volume: an operation on volume {} has not ended; it cannot be transferred now.",
            volume.id
        )));
    }
    if !volume_store::volume_set_status(
        conn,
        volume.id,
        &[VolumeStatus::Available],
        VolumeStatus::AwaitingTransfer,
    )
    .await?
    {
        return Err(Error::InvalidState(format!(
            "Invalid volume: volume {} changed status.",
            volume.id
        )));
    }
    crate::rules::volumes::assert_not_held(conn, volume.id, "transferred").await?;
    let auth_key = random_hex();
    let salt = random_hex();
    let transfer = Transfer {
        id: TransferId::new(),
        volume_id: volume.id,
        source_project_id: volume.project_id.clone(),
        user_id: user_id.to_owned(),
        name,
        crypt_hash: crypt_hash(&salt, &auth_key),
        salt,
        no_snapshots,
        created_at: scoria_store::now(),
    };
    store::transfer_create(conn, &transfer).await?;
    Ok(Offer { transfer, auth_key })
}

/// Offer a volume for transfer (`POST /os-volume-transfer`). Returns the
/// transfer and its auth key.
pub async fn create(
    app: &App,
    ctx: &Context,
    volume_id: VolumeId,
    name: Option<String>,
    no_snapshots: bool,
) -> Result<Offer> {
    crate::rules::volumes::authorize_on(app.store(), ctx, volume_id, Op::TransferCreate).await?;
    let name = normalize_name(name)?;
    let mut tx = app.store().begin().await?;
    let volume = crate::rules::volumes::visible(&mut tx, ctx, volume_id).await?;
    let offer = offer(&mut tx, &volume, &ctx.user_id.0, name, no_snapshots).await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(transfer = %offer.transfer.id, volume = %volume_id, "volume offered for transfer");
    Ok(offer)
}

/// One transfer the caller may see.
pub async fn get(app: &App, ctx: &Context, id: TransferId) -> Result<Transfer> {
    let mut conn = app.store().read().await?;
    let t = match store::transfer_get(&mut conn, id).await? {
        Some(t) if may_see(ctx, &t) => t,
        _ => return Err(not_found(id)),
    };
    ctx.authorize(Op::TransferGet)?;
    Ok(t)
}

/// The caller's project's transfers (every project's for an admin who asks).
pub async fn list(app: &App, ctx: &Context, req: ListRequest) -> Result<Vec<Transfer>> {
    ctx.authorize(Op::TransferList)?;
    let project_id = if req.all_projects && ctx.is_admin() {
        None
    } else {
        Some(ctx.project()?.0.clone())
    };
    let q = TransferQuery {
        project_id,
        name: req.name,
        limit: req.limit,
        marker: req.marker,
    };
    let mut conn = app.store().read().await?;
    Ok(store::transfer_list(&mut conn, &q).await?)
}

/// Withdraw an offer: the transfer goes and the volume is `available` again.
pub async fn delete(app: &App, ctx: &Context, id: TransferId) -> Result<()> {
    let mut tx = app.store().begin().await?;
    let t = match store::transfer_get(&mut tx, id).await? {
        Some(t) if may_see(ctx, &t) => t,
        _ => return Err(not_found(id)),
    };
    ctx.authorize(Op::TransferDelete)?;
    store::transfer_delete(&mut tx, id).await?;
    if !volume_store::volume_set_status(
        &mut tx,
        t.volume_id,
        &[VolumeStatus::AwaitingTransfer],
        VolumeStatus::Available,
    )
    .await?
    {
        // Every change of a waiting volume's status removes its transfer in
        // the same transaction, so this is a broken promise, not a race.
        tracing::error!(transfer = %id, volume = %t.volume_id, "transfer's volume was not awaiting it");
    }
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(transfer = %id, volume = %t.volume_id, "transfer withdrawn");
    Ok(())
}

/// Accept a transfer into the caller's project (see the module doc). Returns
/// the transfer as it was.
pub async fn accept(app: &App, ctx: &Context, id: TransferId, auth_key: &str) -> Result<Transfer> {
    ctx.authorize(Op::TransferAccept)?;
    let project = ctx.project()?.0.clone();
    let mut tx = app.store().begin().await?;
    // Any project's transfer: holding its id and key is the permission.
    let t = store::transfer_get(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if !key_matches(&t, auth_key) {
        tracing::warn!(transfer = %id, project = %project, "transfer accept with a wrong auth key");
        return Err(Error::Invalid(format!(
            "Invalid auth key: Attempt to transfer {id} with invalid auth key."
        )));
    }
    let v = volume_store::volume_get(&mut tx, t.volume_id)
        .await?
        .ok_or_else(|| Error::volume_not_found(t.volume_id))?;
    let snaps = scoria_store::snapshots::snapshot_list_for_volume(&mut tx, v.id).await?;
    if v.project_id != project {
        // The volume (and its snapshots, which go with it) enter the
        // recipient's usage in this very transaction, so the check is all
        // there is: nothing is reserved, nothing can leak.
        let mut deltas = quota::volume_deltas(v.volume_type_id, v.size).to_vec();
        for s in &snaps {
            deltas.extend(quota::snapshot_deltas(s.volume_type_id, s.size));
        }
        quotas::quota_check(&mut tx, &project, &deltas, Some(v.size)).await?;
    }
    if !volume_store::volume_accept_transfer(&mut tx, v.id, &project, &ctx.user_id.0).await? {
        return Err(Error::InvalidState(format!(
            "Invalid volume: volume {} is {}, not awaiting a transfer.",
            v.id, v.status
        )));
    }
    scoria_store::snapshots::snapshot_move_with_volume(&mut tx, v.id, &project, &ctx.user_id.0)
        .await?;
    store::transfer_delete(&mut tx, id).await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(transfer = %id, volume = %v.id, snapshots = snaps.len(), from = %v.project_id, to = %project, "volume transferred");
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        let cases: &[(Option<&str>, Option<Option<&str>>)] = &[
            (None, Some(None)),
            (Some("t"), Some(Some("t"))),
            (Some("  t  "), Some(Some("t"))),
            (Some(""), None),
            (Some("   "), None),
            (Some(&"x".repeat(255)), Some(Some(&"x".repeat(255)))),
            (
                Some(&format!(" {} ", "x".repeat(255))),
                Some(Some(&"x".repeat(255))),
            ),
            (Some(&"x".repeat(256)), None),
        ];
        for (input, expect) in cases {
            let got = normalize_name(input.map(str::to_owned)).ok();
            let expect = expect.map(|e| e.map(str::to_owned));
            assert_eq!(got, expect, "{input:?}");
        }
    }

    #[test]
    fn keys_are_random_and_only_their_own_key_matches() {
        let key = random_hex();
        assert_eq!(key.len(), 32);
        assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(key, random_hex());
        let salt = random_hex();
        let t = Transfer {
            id: TransferId::new(),
            volume_id: VolumeId::new(),
            source_project_id: "p".into(),
            user_id: "u".into(),
            name: None,
            crypt_hash: crypt_hash(&salt, &key),
            salt: salt.clone(),
            no_snapshots: false,
            created_at: scoria_store::now(),
        };
        assert!(!t.crypt_hash.contains(&key), "the key is not kept");
        assert!(key_matches(&t, &key));
        for wrong in [
            "",
            &key[..31],
            &format!("{key}0"),
            &format!(" {key}"),
            &random_hex(),
        ] {
            assert!(!key_matches(&t, wrong), "{wrong:?}");
        }
        // Same key, another salt: another hash.
        assert_ne!(crypt_hash(&random_hex(), &key), t.crypt_hash);
        // A corrupt stored hash matches nothing.
        let broken = Transfer {
            crypt_hash: "zz".into(),
            ..t
        };
        assert!(!key_matches(&broken, &key));
    }
}
