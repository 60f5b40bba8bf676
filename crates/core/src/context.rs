//! Who is asking, and the one table that says who may do what.
//!
//! The HTTP layer builds a [`Context`] from a validated token; every operation
//! of the application layer starts with [`Context::authorize`] on its [`Op`].
//! The rules follow Cinder's current defaults (with `enforce_scope`): readers of
//! a project may read it, members may also change it, admins may do anything,
//! including the admin-only actions. Roles are hierarchical (admin ⊃ member ⊃
//! reader) and a token lists the implied roles, as Keystone does.
//!
//! A resource of another project is reported as absent (404), never as
//! forbidden: callers must not learn that it exists. That check lives with each
//! resource's lookup (`volumes::get_visible`), not here.

use std::collections::BTreeSet;

use scoria_model::{ProjectId, UserId};

use crate::error::{Error, Result};

/// The authenticated caller of one request.
#[derive(Clone, Debug)]
pub struct Context {
    pub request_id: String,
    pub user_id: UserId,
    pub user_name: String,
    /// The project the token is scoped to (None: unscoped token).
    pub project_id: Option<ProjectId>,
    pub project_name: Option<String>,
    /// Role names, implied ones included.
    pub roles: BTreeSet<String>,
}

/// What a rule requires of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Any valid token, scoped or not.
    Authenticated,
    /// A token scoped to a project with at least the `reader` role.
    ProjectReader,
    /// A token scoped to a project with at least the `member` role.
    ProjectMember,
    /// The `admin` role.
    Admin,
}

macro_rules! ops {
    ($($op:ident => $rule:ident, $name:literal;)+) => {
        /// Every operation that is authorized, with its policy name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Op { $($op),+ }

        impl Op {
            pub const ALL: &'static [Op] = &[$(Op::$op),+];

            /// The rule for the operation: the policy table.
            pub fn rule(self) -> Rule {
                match self { $(Op::$op => Rule::$rule),+ }
            }

            /// Cinder's policy name, quoted in 403 messages.
            pub fn name(self) -> &'static str {
                match self { $(Op::$op => $name),+ }
            }
        }
    };
}

ops! {
    VolumeCreate => ProjectMember, "volume:create";
    VolumeGet => ProjectReader, "volume:get";
    VolumeList => ProjectReader, "volume:get_all";
    VolumeListAllProjects => Admin, "volume:get_all_tenants";
    VolumeUpdate => ProjectMember, "volume:update";
    VolumeDelete => ProjectMember, "volume:delete";
    VolumeExtend => ProjectMember, "volume:extend";
    VolumeSetBootable => ProjectMember, "volume:update_volume_bootable";
    VolumeUpdateReadonly => ProjectMember, "volume:update_readonly_flag";
    VolumeAttach => ProjectMember, "volume:attach";
    VolumeMetadataGet => ProjectReader, "volume:get_volume_metadata";
    VolumeMetadataUpdate => ProjectMember, "volume:update_volume_metadata";
    VolumeMetadataDelete => ProjectMember, "volume:delete_volume_metadata";
    VolumeResetStatus => Admin, "volume_extension:volume_admin_actions:reset_status";
    VolumeForceDelete => Admin, "volume_extension:volume_admin_actions:force_delete";
    VolumeAdminFields => Admin, "volume_extension:volume_host_attribute";
    QuotaShowOwn => ProjectReader, "volume_extension:quotas:show";
    QuotaShowAny => Admin, "volume_extension:quotas:show_any";
    QuotaUpdate => Admin, "volume_extension:quotas:update";
    QuotaDelete => Admin, "volume_extension:quotas:delete";
    QuotaClassShow => Admin, "volume_extension:quota_classes";
    QuotaClassUpdate => Admin, "volume_extension:quota_classes:update";
    LimitsGet => ProjectReader, "limits_extension:used_limits";
    TypeList => ProjectReader, "volume_extension:type_get_all";
    TypeGet => ProjectReader, "volume_extension:type_get";
    TypeManage => Admin, "volume_extension:types_manage";
    ExtensionList => Authenticated, "extensions:list";
    AvailabilityZoneList => ProjectReader, "volume_extension:availability_zone_list";
    FlowListStuck => Admin, "scoria:flows:list";
    IdentityAdmin => Admin, "identity:admin";
    IdentityProjectGet => Authenticated, "identity:get_project";
}

impl Context {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains(role)
    }

    pub fn is_admin(&self) -> bool {
        self.has_role("admin")
    }

    /// Check the policy table. An unscoped token only passes `Authenticated`
    /// rules (and admin ones: an admin acts on any project).
    pub fn authorize(&self, op: Op) -> Result<()> {
        let ok = match op.rule() {
            Rule::Authenticated => true,
            Rule::ProjectReader => {
                self.project_id.is_some()
                    && (self.has_role("reader") || self.has_role("member") || self.is_admin())
            }
            Rule::ProjectMember => {
                self.project_id.is_some() && (self.has_role("member") || self.is_admin())
            }
            Rule::Admin => self.is_admin(),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "Policy doesn't allow {} to be performed.",
                op.name()
            )))
        }
    }

    /// The project the caller acts in; an unscoped token has none.
    pub fn project(&self) -> Result<&ProjectId> {
        self.project_id
            .as_ref()
            .ok_or_else(|| Error::Forbidden("A project-scoped token is required.".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(roles: &[&str], scoped: bool) -> Context {
        Context {
            request_id: "req-test".into(),
            user_id: UserId::new(),
            user_name: "u".into(),
            project_id: scoped.then(ProjectId::new),
            project_name: None,
            roles: roles.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn each_rule_admits_exactly_the_roles_it_should() {
        // (rule, [none, reader, member, admin, unscoped admin, unscoped member])
        let table: &[(Rule, [bool; 6])] = &[
            (Rule::Authenticated, [true, true, true, true, true, true]),
            (Rule::ProjectReader, [false, true, true, true, false, false]),
            (
                Rule::ProjectMember,
                [false, false, true, true, false, false],
            ),
            (Rule::Admin, [false, false, false, true, true, false]),
        ];
        let callers = [
            ctx(&[], true),
            ctx(&["reader"], true),
            ctx(&["member", "reader"], true),
            ctx(&["admin", "member", "reader"], true),
            ctx(&["admin", "member", "reader"], false),
            ctx(&["member", "reader"], false),
        ];
        for (rule, expect) in table {
            let op = Op::ALL.iter().copied().find(|o| o.rule() == *rule).unwrap();
            for (c, want) in callers.iter().zip(expect) {
                assert_eq!(
                    c.authorize(op).is_ok(),
                    *want,
                    "{rule:?} for roles {:?} scoped {}",
                    c.roles,
                    c.project_id.is_some()
                );
            }
        }
    }

    #[test]
    fn forbidden_names_the_policy() {
        let e = ctx(&["reader"], true)
            .authorize(Op::VolumeCreate)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Policy doesn't allow volume:create to be performed."
        );
    }
}
