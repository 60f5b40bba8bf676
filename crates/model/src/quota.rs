//! Quota resources and the one rule that decides whether a request fits.
//!
//! Usage is never stored as a counter. The store derives it, inside the
//! transaction that would change it, from the records that exist: resources that
//! count (`in_use`) and reservations held by in-flight flows (`reserved`). This
//! module only holds the arithmetic, so that the rule can be tested on its own and
//! against a reference model.

use std::collections::BTreeMap;

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

/// How much of a resource a project uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Held by resources that exist.
    pub in_use: i64,
    /// Held by reservations of flows that have not finished.
    pub reserved: i64,
}

/// A request that does not fit. It names the resource, the limit, what is used
/// and what was asked for; it becomes HTTP 413 at the edge.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct QuotaExceeded {
    pub resource: QuotaResource,
    pub limit: i64,
    pub in_use: i64,
    pub reserved: i64,
    pub requested: i64,
}

impl QuotaExceeded {
    /// The user-facing message.
    pub fn message(&self) -> String {
        let name = self.resource.exception_name();
        let consumed = self.in_use + self.reserved;
        match self.resource {
            QuotaResource::PerVolumeGigabytes => format!(
                "{name}: Requested volume size {}G is larger than the maximum of {}G allowed for one volume.",
                self.requested, self.limit
            ),
            QuotaResource::Gigabytes | QuotaResource::BackupGigabytes => format!(
                "{name}: Requested {}G exceeds the {} quota: the limit is {}G and {}G is already consumed ({}G in use, {}G reserved).",
                self.requested, self.resource, self.limit, consumed, self.in_use, self.reserved
            ),
            _ => format!(
                "{name}: Maximum number of {res} allowed ({limit}) exceeded for quota '{res}': requested {req}, {consumed} already consumed ({in_use} in use, {reserved} reserved).",
                res = self.resource,
                limit = self.limit,
                req = self.requested,
                in_use = self.in_use,
                reserved = self.reserved,
            ),
        }
    }
}

/// Decide whether adding `deltas` to `usage` stays within `limits`.
///
/// Only positive deltas are checked (giving back never fails). A missing limit
/// means the class default. `per_volume_gigabytes` is checked against
/// `single_size` (the size of the one volume being made or grown), when given.
pub fn check(
    limits: &BTreeMap<QuotaResource, i64>,
    usage: &BTreeMap<QuotaResource, Usage>,
    deltas: &[(QuotaResource, i64)],
    single_size: Option<i64>,
) -> Result<(), QuotaExceeded> {
    let limit_of = |r: QuotaResource| limits.get(&r).copied().unwrap_or(r.default_limit());
    if let Some(size) = single_size {
        let limit = limit_of(QuotaResource::PerVolumeGigabytes);
        if limit >= 0 && size > limit {
            return Err(QuotaExceeded {
                resource: QuotaResource::PerVolumeGigabytes,
                limit,
                in_use: 0,
                reserved: 0,
                requested: size,
            });
        }
    }
    for &(resource, delta) in deltas {
        if delta <= 0 || !resource.has_usage() {
            continue;
        }
        let limit = limit_of(resource);
        if limit < 0 {
            continue;
        }
        let u = usage.get(&resource).copied().unwrap_or_default();
        if u.in_use + u.reserved + delta > limit {
            return Err(QuotaExceeded {
                resource,
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

    fn check_case(
        limits: &[(QuotaResource, i64)],
        usage: &[(QuotaResource, i64, i64)],
        deltas: &[(QuotaResource, i64)],
        single: Option<i64>,
        expect: Option<QuotaResource>,
    ) {
        let limits = limits.iter().copied().collect();
        let usage = usage
            .iter()
            .map(|&(r, in_use, reserved)| (r, Usage { in_use, reserved }))
            .collect();
        let got = check(&limits, &usage, deltas, single)
            .err()
            .map(|e| e.resource);
        assert_eq!(
            got, expect,
            "limits {limits:?} usage {usage:?} deltas {deltas:?}"
        );
    }

    #[test]
    fn the_rule() {
        // Fits exactly.
        check_case(
            &[(Volumes, 2)],
            &[(Volumes, 1, 0)],
            &[(Volumes, 1)],
            None,
            None,
        );
        // Reservations count.
        check_case(
            &[(Volumes, 2)],
            &[(Volumes, 1, 1)],
            &[(Volumes, 1)],
            None,
            Some(Volumes),
        );
        // Unlimited.
        check_case(
            &[(Volumes, -1)],
            &[(Volumes, 99, 99)],
            &[(Volumes, 1)],
            None,
            None,
        );
        // Defaults apply when no limit is given: 10 volumes.
        check_case(
            &[],
            &[(Volumes, 10, 0)],
            &[(Volumes, 1)],
            None,
            Some(Volumes),
        );
        // Gigabytes checked after volumes, in the order given.
        check_case(
            &[(Gigabytes, 5)],
            &[(Gigabytes, 4, 0)],
            &[(Volumes, 1), (Gigabytes, 2)],
            None,
            Some(Gigabytes),
        );
        // Per-volume limit.
        check_case(
            &[(PerVolumeGigabytes, 3)],
            &[],
            &[(Gigabytes, 4)],
            Some(4),
            Some(PerVolumeGigabytes),
        );
        check_case(
            &[(PerVolumeGigabytes, 3)],
            &[],
            &[(Gigabytes, 3)],
            Some(3),
            None,
        );
        // Giving back never fails, even when already over (limit lowered below usage).
        check_case(
            &[(Volumes, 1)],
            &[(Volumes, 5, 0)],
            &[(Volumes, -1)],
            None,
            None,
        );
        // Zero limit refuses any positive request.
        check_case(
            &[(Snapshots, 0)],
            &[],
            &[(Snapshots, 1)],
            None,
            Some(Snapshots),
        );
    }

    #[test]
    fn messages_name_resource_limit_usage_and_request() {
        let e = QuotaExceeded {
            resource: Gigabytes,
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
            resource: Volumes,
            limit: 10,
            in_use: 9,
            reserved: 1,
            requested: 1,
        };
        assert!(e.message().contains("allowed (10)"), "{}", e.message());
    }

    #[test]
    fn defaults_are_cinders() {
        let d: Vec<i64> = QuotaResource::ALL
            .iter()
            .map(|r| r.default_limit())
            .collect();
        assert_eq!(d, vec![10, 1000, 10, -1, 10, 1000, 10]);
    }
}
