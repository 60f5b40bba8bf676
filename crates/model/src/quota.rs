//! Quota keys and the one rule that decides whether a request fits.
//!
//! Usage is never stored as a counter. The store derives it, inside the
//! transaction that would change it, from the records that exist: resources that
//! count (`in_use`) and reservations held by in-flight flows (`reserved`). This
//! module only holds the arithmetic, so that the rule can be tested on its own and
//! against a reference model.
//!
//! # Keys
//!
//! A limit applies to a [`QuotaKey`]: either a resource of the whole project
//! (`volumes`, `gigabytes`, …) or one of `volumes`, `gigabytes`, `snapshots`
//! counted for one volume type (Cinder's `volumes_<type>` keys). A per-type
//! key holds the type's *id*: a type's identity does not change when it is
//! renamed, so neither do its limits or the reservations that name it. The
//! API spells keys with the type's *name* ([`NamedKey`]); the application
//! layer translates between the two, in the transaction that uses them.
//!
//! A request is checked against every key it touches at once (a volume of
//! type `gold` touches `volumes`, `gigabytes`, `volumes_gold` and
//! `gigabytes_gold`), by [`check`], and either fits all of them or fails on
//! the first that it exceeds.

use std::collections::BTreeMap;

use crate::VolumeTypeId;
use crate::volume::string_enum;

string_enum!(
    /// A resource a project's quota limits, with Cinder's names.
    QuotaResource {
        Volumes = "volumes",
        Gigabytes = "gigabytes",
        Snapshots = "snapshots",
        PerVolumeGigabytes = "per_volume_gigabytes",
        Backups = "backups",
        BackupGigabytes = "backup_gigabytes",
        Groups = "groups",
    }
);

string_enum!(
    /// A resource that is also limited per volume type.
    TypedResource {
        Volumes = "volumes",
        Gigabytes = "gigabytes",
        Snapshots = "snapshots",
    }
);

/// `-1`: no limit.
pub const UNLIMITED: i64 = -1;

impl QuotaResource {
    /// Cinder's default limit for the resource (the `default` quota class).
    pub fn default_limit(self) -> i64 {
        match self {
            QuotaResource::Volumes => 10,
            QuotaResource::Gigabytes => 1000,
            QuotaResource::Snapshots => 10,
            QuotaResource::PerVolumeGigabytes => UNLIMITED,
            QuotaResource::Backups => 10,
            QuotaResource::BackupGigabytes => 1000,
            QuotaResource::Groups => 10,
        }
    }

    /// False for limits that bound one request rather than a sum
    /// (`per_volume_gigabytes`): they have no usage.
    pub fn has_usage(self) -> bool {
        self != QuotaResource::PerVolumeGigabytes
    }

    /// The name of Cinder's exception for this resource, used as the prefix of the
    /// over-quota message (operators grep for it).
    fn exception_name(self) -> &'static str {
        match self {
            QuotaResource::Volumes => "VolumeLimitExceeded",
            QuotaResource::Gigabytes => "VolumeSizeExceedsAvailableQuota",
            QuotaResource::Snapshots => "SnapshotLimitExceeded",
            QuotaResource::PerVolumeGigabytes => "VolumeSizeExceedsLimit",
            QuotaResource::Backups => "BackupLimitExceeded",
            QuotaResource::BackupGigabytes => "VolumeBackupSizeExceedsAvailableQuota",
            QuotaResource::Groups => "GroupLimitExceeded",
        }
    }
}

impl TypedResource {
    /// The project-wide resource this one refines.
    pub fn resource(self) -> QuotaResource {
        match self {
            TypedResource::Volumes => QuotaResource::Volumes,
            TypedResource::Gigabytes => QuotaResource::Gigabytes,
            TypedResource::Snapshots => QuotaResource::Snapshots,
        }
    }
}

/// What one limit applies to (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaKey {
    /// A resource of the whole project.
    Global(QuotaResource),
    /// A resource counted for the volumes (snapshots) of one type.
    PerType(TypedResource, VolumeTypeId),
}

impl From<QuotaResource> for QuotaKey {
    fn from(r: QuotaResource) -> Self {
        QuotaKey::Global(r)
    }
}

impl QuotaKey {
    /// The resource counted.
    pub fn resource(self) -> QuotaResource {
        match self {
            QuotaKey::Global(r) => r,
            QuotaKey::PerType(r, _) => r.resource(),
        }
    }

    /// The limit when none is set: Cinder's default for a project-wide
    /// resource, none for a per-type one.
    pub fn default_limit(self) -> i64 {
        match self {
            QuotaKey::Global(r) => r.default_limit(),
            QuotaKey::PerType(..) => UNLIMITED,
        }
    }

    /// See [`QuotaResource::has_usage`].
    pub fn has_usage(self) -> bool {
        self.resource().has_usage()
    }

    /// The three per-type keys of a type.
    pub fn of_type(t: VolumeTypeId) -> [QuotaKey; 3] {
        [
            TypedResource::Volumes,
            TypedResource::Gigabytes,
            TypedResource::Snapshots,
        ]
        .map(|r| QuotaKey::PerType(r, t))
    }

    /// How the store spells the key: `volumes`, or `volumes_<type id>`.
    pub fn stored(self) -> String {
        match self {
            QuotaKey::Global(r) => r.as_str().to_owned(),
            QuotaKey::PerType(r, t) => format!("{r}_{t}"),
        }
    }

    /// The inverse of [`QuotaKey::stored`]; `None` for what this version does
    /// not know.
    pub fn parse_stored(s: &str) -> Option<QuotaKey> {
        if let Ok(r) = s.parse::<QuotaResource>() {
            return Some(QuotaKey::Global(r));
        }
        let (r, t) = split_typed(s)?;
        Some(QuotaKey::PerType(r, t.parse().ok()?))
    }

    /// The key as the API names it, given the name of its type.
    pub fn named(self, type_name: &str) -> NamedKey {
        match self {
            QuotaKey::Global(r) => NamedKey::Global(r),
            QuotaKey::PerType(r, _) => NamedKey::PerType(r, type_name.to_owned()),
        }
    }
}

/// `volumes_x` → (`volumes`, `x`), for the three typed resources. No
/// project-wide resource starts with one of their names and `_`, so the split
/// is unambiguous whatever the type is called.
fn split_typed(s: &str) -> Option<(TypedResource, &str)> {
    TypedResource::ALL.iter().find_map(|r| {
        let rest = s.strip_prefix(r.as_str())?.strip_prefix('_')?;
        (!rest.is_empty()).then_some((*r, rest))
    })
}

/// A quota key as the API spells it: `volumes`, or `volumes_<type name>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NamedKey {
    Global(QuotaResource),
    PerType(TypedResource, String),
}

impl From<QuotaResource> for NamedKey {
    fn from(r: QuotaResource) -> Self {
        NamedKey::Global(r)
    }
}

impl std::fmt::Display for NamedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NamedKey::Global(r) => f.write_str(r.as_str()),
            NamedKey::PerType(r, name) => write!(f, "{r}_{name}"),
        }
    }
}

impl std::str::FromStr for NamedKey {
    type Err = crate::volume::UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(r) = s.parse::<QuotaResource>() {
            return Ok(NamedKey::Global(r));
        }
        split_typed(s)
            .map(|(r, name)| NamedKey::PerType(r, name.to_owned()))
            .ok_or_else(|| crate::volume::UnknownValue {
                kind: "quota key",
                value: s.to_owned(),
            })
    }
}

/// How much of a resource a project uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Held by resources that exist.
    pub in_use: i64,
    /// Held by reservations of flows that have not finished.
    pub reserved: i64,
}

/// A request that does not fit. It names the key, the limit, what is used
/// and what was asked for; it becomes HTTP 413 at the edge.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct QuotaExceeded {
    pub key: QuotaKey,
    /// The name of a per-type key's type, filled in by whoever can look it up
    /// (the id is shown when it is missing).
    pub type_name: Option<String>,
    pub limit: i64,
    pub in_use: i64,
    pub reserved: i64,
    pub requested: i64,
}

impl QuotaExceeded {
    /// The resource counted.
    pub fn resource(&self) -> QuotaResource {
        self.key.resource()
    }

    /// The key as the API names it: `gigabytes`, `volumes_gold`.
    pub fn key_name(&self) -> String {
        match (self.key, &self.type_name) {
            (QuotaKey::PerType(_, t), None) => self.key.named(&t.to_string()).to_string(),
            (_, Some(name)) => self.key.named(name).to_string(),
            (QuotaKey::Global(r), None) => r.as_str().to_owned(),
        }
    }

    /// The user-facing message.
    pub fn message(&self) -> String {
        let resource = self.resource();
        let name = resource.exception_name();
        let key = self.key_name();
        let consumed = self.in_use + self.reserved;
        match resource {
            QuotaResource::PerVolumeGigabytes => format!(
                "{name}: Requested volume size {}G is larger than the maximum of {}G allowed for one volume.",
                self.requested, self.limit
            ),
            QuotaResource::Gigabytes | QuotaResource::BackupGigabytes => format!(
                "{name}: Requested {}G exceeds the {key} quota: the limit is {}G and {}G is already consumed ({}G in use, {}G reserved).",
                self.requested, self.limit, consumed, self.in_use, self.reserved
            ),
            _ => format!(
                "{name}: Maximum number of {resource} allowed ({limit}) exceeded for quota '{key}': requested {req}, {consumed} already consumed ({in_use} in use, {reserved} reserved).",
                limit = self.limit,
                req = self.requested,
                in_use = self.in_use,
                reserved = self.reserved,
            ),
        }
    }
}

/// What a volume of `size` GiB and type `volume_type` adds to its project's
/// usage: one volume and its gigabytes, overall and for its type. Checked in
/// this order, so the first key exceeded is the one reported.
pub fn volume_deltas(volume_type: VolumeTypeId, size: i64) -> [(QuotaKey, i64); 4] {
    [
        (QuotaResource::Volumes.into(), 1),
        (QuotaResource::Gigabytes.into(), size),
        (QuotaKey::PerType(TypedResource::Volumes, volume_type), 1),
        (
            QuotaKey::PerType(TypedResource::Gigabytes, volume_type),
            size,
        ),
    ]
}

/// What a snapshot of `size` GiB of a volume of type `volume_type` adds to its
/// project's usage: one snapshot and its gigabytes (Cinder counts snapshots
/// against `gigabytes` unless `no_snapshot_gb_quota` is set; Scoria follows the
/// default), overall and for the type.
pub fn snapshot_deltas(volume_type: VolumeTypeId, size: i64) -> [(QuotaKey, i64); 4] {
    [
        (QuotaResource::Snapshots.into(), 1),
        (QuotaResource::Gigabytes.into(), size),
        (QuotaKey::PerType(TypedResource::Snapshots, volume_type), 1),
        (
            QuotaKey::PerType(TypedResource::Gigabytes, volume_type),
            size,
        ),
    ]
}

/// What a backup of a volume of `size` GiB counts against (Cinder's
/// `backups` and `backup_gigabytes`).
pub fn backup_deltas(size: i64) -> [(QuotaKey, i64); 2] {
    [
        (QuotaResource::Backups.into(), 1),
        (QuotaResource::BackupGigabytes.into(), size),
    ]
}

/// Decide whether adding `deltas` to `usage` stays within `limits`.
///
/// Only positive deltas are checked (giving back never fails). A missing limit
/// means the key's default ([`QuotaKey::default_limit`]). `per_volume_gigabytes`
/// is checked against `single_size` (the size of the one volume being made or
/// grown), when given.
pub fn check(
    limits: &BTreeMap<QuotaKey, i64>,
    usage: &BTreeMap<QuotaKey, Usage>,
    deltas: &[(QuotaKey, i64)],
    single_size: Option<i64>,
) -> Result<(), QuotaExceeded> {
    let limit_of = |k: QuotaKey| limits.get(&k).copied().unwrap_or(k.default_limit());
    if let Some(size) = single_size {
        let key = QuotaKey::Global(QuotaResource::PerVolumeGigabytes);
        let limit = limit_of(key);
        if limit >= 0 && size > limit {
            return Err(QuotaExceeded {
                key,
                type_name: None,
                limit,
                in_use: 0,
                reserved: 0,
                requested: size,
            });
        }
    }
    for &(key, delta) in deltas {
        if delta <= 0 || !key.has_usage() {
            continue;
        }
        let limit = limit_of(key);
        if limit < 0 {
            continue;
        }
        let u = usage.get(&key).copied().unwrap_or_default();
        if u.in_use + u.reserved + delta > limit {
            return Err(QuotaExceeded {
                key,
                type_name: None,
                limit,
                in_use: u.in_use,
                reserved: u.reserved,
                requested: delta,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use QuotaResource::*;

    fn gold() -> VolumeTypeId {
        "00000000-0000-4000-8000-00000000601d".parse().unwrap()
    }
    fn silver() -> VolumeTypeId {
        "00000000-0000-4000-8000-0000005117e7".parse().unwrap()
    }
    fn t(r: TypedResource, ty: VolumeTypeId) -> QuotaKey {
        QuotaKey::PerType(r, ty)
    }
    fn g(r: QuotaResource) -> QuotaKey {
        QuotaKey::Global(r)
    }

    fn check_case(
        limits: &[(QuotaKey, i64)],
        usage: &[(QuotaKey, i64, i64)],
        deltas: &[(QuotaKey, i64)],
        single: Option<i64>,
        expect: Option<QuotaKey>,
    ) {
        let limits = limits.iter().copied().collect();
        let usage = usage
            .iter()
            .map(|&(r, in_use, reserved)| (r, Usage { in_use, reserved }))
            .collect();
        let got = check(&limits, &usage, deltas, single).err().map(|e| e.key);
        assert_eq!(
            got, expect,
            "limits {limits:?} usage {usage:?} deltas {deltas:?}"
        );
    }

    #[test]
    fn the_rule() {
        // Fits exactly.
        check_case(
            &[(g(Volumes), 2)],
            &[(g(Volumes), 1, 0)],
            &[(g(Volumes), 1)],
            None,
            None,
        );
        // Reservations count.
        check_case(
            &[(g(Volumes), 2)],
            &[(g(Volumes), 1, 1)],
            &[(g(Volumes), 1)],
            None,
            Some(g(Volumes)),
        );
        // Unlimited.
        check_case(
            &[(g(Volumes), -1)],
            &[(g(Volumes), 99, 99)],
            &[(g(Volumes), 1)],
            None,
            None,
        );
        // Defaults apply when no limit is given: 10 volumes.
        check_case(
            &[],
            &[(g(Volumes), 10, 0)],
            &[(g(Volumes), 1)],
            None,
            Some(g(Volumes)),
        );
        // Gigabytes checked after volumes, in the order given.
        check_case(
            &[(g(Gigabytes), 5)],
            &[(g(Gigabytes), 4, 0)],
            &[(g(Volumes), 1), (g(Gigabytes), 2)],
            None,
            Some(g(Gigabytes)),
        );
        // Per-volume limit.
        check_case(
            &[(g(PerVolumeGigabytes), 3)],
            &[],
            &[(g(Gigabytes), 4)],
            Some(4),
            Some(g(PerVolumeGigabytes)),
        );
        check_case(
            &[(g(PerVolumeGigabytes), 3)],
            &[],
            &[(g(Gigabytes), 3)],
            Some(3),
            None,
        );
        // Giving back never fails, even when already over (limit lowered below usage).
        check_case(
            &[(g(Volumes), 1)],
            &[(g(Volumes), 5, 0)],
            &[(g(Volumes), -1)],
            None,
            None,
        );
        // Zero limit refuses any positive request.
        check_case(
            &[(g(Snapshots), 0)],
            &[],
            &[(g(Snapshots), 1)],
            None,
            Some(g(Snapshots)),
        );
    }

    #[test]
    fn the_rule_per_type() {
        use TypedResource as T;
        let gold_volume = |size| volume_deltas(gold(), size);
        // Per-type keys are unlimited unless set.
        check_case(
            &[],
            &[(t(T::Volumes, gold()), 9, 0)],
            &gold_volume(1),
            None,
            None,
        );
        // A per-type limit binds its type only.
        check_case(
            &[(t(T::Volumes, gold()), 1)],
            &[(g(Volumes), 1, 0), (t(T::Volumes, gold()), 1, 0)],
            &gold_volume(1),
            None,
            Some(t(T::Volumes, gold())),
        );
        check_case(
            &[(t(T::Volumes, gold()), 1)],
            &[(g(Volumes), 1, 0), (t(T::Volumes, gold()), 1, 0)],
            &volume_deltas(silver(), 1),
            None,
            None,
        );
        // Per-type reservations count against the type.
        check_case(
            &[(t(T::Gigabytes, gold()), 5)],
            &[(t(T::Gigabytes, gold()), 2, 2)],
            &gold_volume(2),
            None,
            Some(t(T::Gigabytes, gold())),
        );
        // The project-wide limits are checked first: both exceeded names the
        // project-wide key.
        check_case(
            &[(g(Volumes), 1), (t(T::Volumes, gold()), 1)],
            &[(g(Volumes), 1, 0), (t(T::Volumes, gold()), 1, 0)],
            &gold_volume(1),
            None,
            Some(g(Volumes)),
        );
        // A type's own limit can be stricter or looser than the project's: the
        // stricter one binds.
        check_case(
            &[(g(Gigabytes), 3), (t(T::Gigabytes, gold()), 100)],
            &[],
            &gold_volume(4),
            None,
            Some(g(Gigabytes)),
        );
        // Zero for a type refuses that type entirely.
        check_case(
            &[(t(T::Volumes, gold()), 0)],
            &[],
            &gold_volume(1),
            None,
            Some(t(T::Volumes, gold())),
        );
        // A retype adds to the destination's keys only.
        check_case(
            &[(t(T::Volumes, silver()), 1)],
            &[(t(T::Volumes, silver()), 1, 0)],
            &[(t(T::Volumes, silver()), 1), (t(T::Gigabytes, silver()), 1)],
            None,
            Some(t(T::Volumes, silver())),
        );
    }

    #[test]
    fn messages_name_key_limit_usage_and_request() {
        let e = QuotaExceeded {
            key: g(Gigabytes),
            type_name: None,
            limit: 1,
            in_use: 1,
            reserved: 0,
            requested: 2,
        };
        let m = e.message();
        assert!(m.starts_with("VolumeSizeExceedsAvailableQuota: "), "{m}");
        for part in ["gigabytes", "2G", "1G"] {
            assert!(m.contains(part), "{m} lacks {part}");
        }
        let e = QuotaExceeded {
            key: g(Volumes),
            type_name: None,
            limit: 10,
            in_use: 9,
            reserved: 1,
            requested: 1,
        };
        assert!(e.message().contains("allowed (10)"), "{}", e.message());
        let e = QuotaExceeded {
            key: t(TypedResource::Volumes, gold()),
            type_name: Some("gold".into()),
            limit: 1,
            in_use: 1,
            reserved: 0,
            requested: 1,
        };
        assert_eq!(
            e.message(),
            "VolumeLimitExceeded: Maximum number of volumes allowed (1) exceeded for quota 'volumes_gold': requested 1, 1 already consumed (1 in use, 0 reserved)."
        );
        let e = QuotaExceeded {
            key: t(TypedResource::Gigabytes, gold()),
            type_name: None,
            limit: 1,
            in_use: 0,
            reserved: 0,
            requested: 2,
        };
        assert!(
            e.message()
                .contains(&format!("the gigabytes_{} quota", gold())),
            "{}",
            e.message()
        );
    }

    #[test]
    fn defaults_are_cinders() {
        let d: Vec<i64> = QuotaResource::ALL
            .iter()
            .map(|r| r.default_limit())
            .collect();
        assert_eq!(d, vec![10, 1000, 10, -1, 10, 1000, 10]);
        assert_eq!(t(TypedResource::Snapshots, gold()).default_limit(), -1);
    }

    #[test]
    fn keys_as_stored_and_as_named() {
        use TypedResource as T;
        // (text, as stored, as the API names it)
        let gold_id = gold().to_string();
        let cases: Vec<(String, Option<QuotaKey>, Option<NamedKey>)> = vec![
            ("volumes".into(), Some(g(Volumes)), Some(Volumes.into())),
            (
                "per_volume_gigabytes".into(),
                Some(g(PerVolumeGigabytes)),
                Some(PerVolumeGigabytes.into()),
            ),
            (
                "backup_gigabytes".into(),
                Some(g(BackupGigabytes)),
                Some(BackupGigabytes.into()),
            ),
            (
                format!("volumes_{gold_id}"),
                Some(t(T::Volumes, gold())),
                Some(NamedKey::PerType(T::Volumes, gold_id.clone())),
            ),
            (
                format!("snapshots_{gold_id}"),
                Some(t(T::Snapshots, gold())),
                Some(NamedKey::PerType(T::Snapshots, gold_id.clone())),
            ),
            (
                "gigabytes_gold".into(),
                None,
                Some(NamedKey::PerType(T::Gigabytes, "gold".into())),
            ),
            // Type names may hold underscores, or look like a resource.
            (
                "volumes___DEFAULT__".into(),
                None,
                Some(NamedKey::PerType(T::Volumes, "__DEFAULT__".into())),
            ),
            (
                "volumes_gigabytes".into(),
                None,
                Some(NamedKey::PerType(T::Volumes, "gigabytes".into())),
            ),
            ("volumes_".into(), None, None),
            ("backups_gold".into(), None, None),
            ("groups_gold".into(), None, None),
            ("volcanoes".into(), None, None),
            ("".into(), None, None),
        ];
        for (text, stored, named) in cases {
            assert_eq!(QuotaKey::parse_stored(&text), stored, "{text}");
            if let Some(k) = stored {
                assert_eq!(k.stored(), text);
            }
            let got = text.parse::<NamedKey>().ok();
            assert_eq!(got, named, "{text}");
            if let Some(n) = got {
                assert_eq!(n.to_string(), text);
            }
        }
        assert_eq!(
            t(T::Gigabytes, gold()).named("gold").to_string(),
            "gigabytes_gold"
        );
    }
}
