//! Who is asking, and the one table that says who may do what.
//!
//! The HTTP layer builds a [`Context`] from a validated token; every operation
//! of the application layer starts with [`Context::authorize`] on its [`Op`].
//! The rules follow Cinder's current defaults (with `enforce_scope`): readers of
//! a project may read it, members may also change it, admins may do anything,
//! including the admin-only actions. Roles are hierarchical (admin ⊃ member ⊃
//! reader) and a token lists the implied roles, as Keystone does.
//!
//! A **system-scoped** token (`"scope": {"system": {"all": true}}`) carries
//! the roles its user holds on the system and no project of its own. On a
//! `/v3/{project_id}/…` route the URL's project is then a *target*, not a
//! scope (the API layer sets [`Context::project_id`] to it, the project must
//! exist): a system reader passes the read rules ([`Rule::ProjectReader`],
//! [`Rule::AdminOrSystemReader`]) of any project, a system admin also the
//! admin ones ([`Rule::Admin`]). On the routes without a project (3.67) a
//! system reader passes only the reads that name no project's resource
//! (`Op::reads_without_project`: the `all_tenants` lists, types, zones).
//! No system token passes [`Rule::ProjectMember`]:
//! resources belong to projects, and a system token creates or changes none of
//! them (403 naming the policy and the scope needed).
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
    /// The token is scoped to the system; `project_id` is then the URL's
    /// project (a target) or `None` (module doc).
    pub system: bool,
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
    /// The `admin` role (on a project or on the system).
    Admin,
    /// The `admin` role, or a system-scoped token with the `reader` role:
    /// the read side of the operator routes (Cinder's system reader).
    AdminOrSystemReader,
    /// The `admin` role, or the caller is the target's owner (their own user,
    /// project or token; the operation decides, see
    /// [`Context::authorize_owned`]). Scope does not matter.
    AdminOrOwner,
    /// Only the target's owner, whatever their roles (changing one's own
    /// password).
    Owner,
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
    VolumeListAllProjects => AdminOrSystemReader, "volume:get_all_tenants";
    VolumeUpdate => ProjectMember, "volume:update";
    VolumeDelete => ProjectMember, "volume:delete";
    VolumeExtend => ProjectMember, "volume:extend";
    VolumeSetBootable => ProjectMember, "volume:update_volume_bootable";
    VolumeUpdateReadonly => ProjectMember, "volume:update_readonly_flag";
    VolumeAttach => ProjectMember, "volume:attach";
    VolumeDetach => ProjectMember, "volume:detach";
    VolumeInitializeConnection => ProjectMember, "volume_extension:volume_actions:initialize_connection";
    VolumeTerminateConnection => ProjectMember, "volume_extension:volume_actions:terminate_connection";
    VolumeForceDetach => Admin, "volume_extension:volume_admin_actions:force_detach";
    AttachmentCreate => ProjectMember, "volume:attachment_create";
    AttachmentUpdate => ProjectMember, "volume:attachment_update";
    AttachmentComplete => ProjectMember, "volume:attachment_complete";
    AttachmentDelete => ProjectMember, "volume:attachment_delete";
    AttachmentGet => ProjectReader, "volume:attachment_get";
    VolumeMetadataGet => ProjectReader, "volume:get_volume_metadata";
    VolumeMetadataUpdate => ProjectMember, "volume:update_volume_metadata";
    VolumeMetadataDelete => ProjectMember, "volume:delete_volume_metadata";
    VolumeImageMetadataGet => ProjectReader, "volume_extension:volume_image_metadata:show";
    VolumeImageMetadataSet => ProjectMember, "volume_extension:volume_image_metadata:set";
    VolumeImageMetadataRemove => ProjectMember, "volume_extension:volume_image_metadata:remove";
    VolumeUploadImage => ProjectMember, "volume_extension:volume_actions:upload_image";
    VolumeUploadPublic => Admin, "volume_extension:volume_actions:upload_public";
    VolumeResetStatus => Admin, "volume_extension:volume_admin_actions:reset_status";
    VolumeForceDelete => Admin, "volume_extension:volume_admin_actions:force_delete";
    VolumeMigrate => Admin, "volume_extension:volume_admin_actions:migrate_volume";
    VolumeMigrateCompletion => Admin, "volume_extension:volume_admin_actions:migrate_volume_completion";
    VolumeManage => Admin, "volume_extension:volume_manage";
    VolumeUnmanage => Admin, "volume_extension:volume_unmanage";
    VolumeListManageable => Admin, "volume_extension:list_manageable";
    VolumeAdminFields => AdminOrSystemReader, "volume_extension:volume_host_attribute";
    TransferCreate => ProjectMember, "volume:create_transfer";
    TransferGet => ProjectReader, "volume:get_transfer";
    TransferList => ProjectReader, "volume:get_all_transfers";
    TransferDelete => ProjectMember, "volume:delete_transfer";
    TransferAccept => ProjectMember, "volume:accept_transfer";
    QuotaShowOwn => ProjectReader, "volume_extension:quotas:show";
    QuotaShowAny => AdminOrSystemReader, "volume_extension:quotas:show_any";
    QuotaUpdate => Admin, "volume_extension:quotas:update";
    QuotaDelete => Admin, "volume_extension:quotas:delete";
    QuotaClassShow => AdminOrSystemReader, "volume_extension:quota_classes";
    QuotaClassUpdate => Admin, "volume_extension:quota_classes:update";
    LimitsGet => ProjectReader, "limits_extension:used_limits";
    TypeList => ProjectReader, "volume_extension:type_get_all";
    TypeGet => ProjectReader, "volume_extension:type_get";
    TypeManage => Admin, "volume_extension:types_manage";
    DefaultTypeSet => Admin, "volume_extension:default_set_or_update";
    DefaultTypeGet => AdminOrSystemReader, "volume_extension:default_get";
    DefaultTypeList => AdminOrSystemReader, "volume_extension:default_get_all";
    DefaultTypeUnset => Admin, "volume_extension:default_unset";
    TypeExtraSpecsList => ProjectReader, "volume_extension:types_extra_specs:index";
    TypeExtraSpecsGet => ProjectReader, "volume_extension:types_extra_specs:show";
    TypeExtraSpecsCreate => Admin, "volume_extension:types_extra_specs:create";
    TypeExtraSpecsUpdate => Admin, "volume_extension:types_extra_specs:update";
    TypeExtraSpecsDelete => Admin, "volume_extension:types_extra_specs:delete";
    TypeExtraSpecsReadSensitive => AdminOrSystemReader, "volume_extension:types_extra_specs:read_sensitive";
    TypeQosSpecsIdRead => AdminOrSystemReader, "volume_extension:access_types_qos_specs_id";
    TypeAccessList => AdminOrSystemReader, "volume_extension:volume_type_access:get_all_for_type";
    TypeAccessAdd => Admin, "volume_extension:volume_type_access:addProjectAccess";
    TypeAccessRemove => Admin, "volume_extension:volume_type_access:removeProjectAccess";
    TypeEncryptionGet => AdminOrSystemReader, "volume_extension:volume_type_encryption:get";
    TypeEncryptionCreate => Admin, "volume_extension:volume_type_encryption:create";
    TypeEncryptionUpdate => Admin, "volume_extension:volume_type_encryption:update";
    TypeEncryptionDelete => Admin, "volume_extension:volume_type_encryption:delete";
    VolumeRetype => ProjectMember, "volume:retype";
    VolumeRevert => ProjectMember, "volume:revert_to_snapshot";
    BackupCreate => ProjectMember, "backup:create";
    BackupGet => ProjectReader, "backup:get";
    BackupList => ProjectReader, "backup:get_all";
    BackupListAllProjects => AdminOrSystemReader, "backup:backup_project_attribute";
    BackupDelete => ProjectMember, "backup:delete";
    BackupRestore => ProjectMember, "backup:restore";
    BackupUpdate => ProjectMember, "backup:update";
    BackupResetStatus => Admin, "volume_extension:backup_admin_actions:reset_status";
    BackupForceDelete => Admin, "volume_extension:backup_admin_actions:force_delete";
    BackupExportRecord => Admin, "backup:export-import";
    BackupImportRecord => Admin, "backup:backup-import";
    BackupVerify => Admin, "scoria:backup:verify";
    SnapshotCreate => ProjectMember, "volume:create_snapshot";
    SnapshotGet => ProjectReader, "volume:get_snapshot";
    SnapshotList => ProjectReader, "volume:get_all_snapshots";
    SnapshotListAllProjects => AdminOrSystemReader, "volume:get_all_snapshots:all_tenants";
    SnapshotUpdate => ProjectMember, "volume:update_snapshot";
    SnapshotDelete => ProjectMember, "volume:delete_snapshot";
    SnapshotMetadataGet => ProjectReader, "volume:get_snapshot_metadata";
    SnapshotMetadataUpdate => ProjectMember, "volume:update_snapshot_metadata";
    SnapshotMetadataDelete => ProjectMember, "volume:delete_snapshot_metadata";
    SnapshotResetStatus => Admin, "volume_extension:snapshot_admin_actions:reset_status";
    SnapshotForceDelete => Admin, "volume_extension:snapshot_admin_actions:force_delete";
    SnapshotManage => Admin, "snapshot_extension:snapshot_manage";
    SnapshotUnmanage => Admin, "snapshot_extension:snapshot_unmanage";
    SnapshotListManageable => Admin, "snapshot_extension:list_manageable";
    SnapshotUpdateStatus => ProjectMember, "snapshot_extension:snapshot_actions:update_snapshot_status";
    QosSpecsList => AdminOrSystemReader, "volume_extension:qos_specs_manage:get_all";
    QosSpecsGet => AdminOrSystemReader, "volume_extension:qos_specs_manage:get";
    QosSpecsCreate => Admin, "volume_extension:qos_specs_manage:create";
    QosSpecsUpdate => Admin, "volume_extension:qos_specs_manage:update";
    QosSpecsDelete => Admin, "volume_extension:qos_specs_manage:delete";
    ExtensionList => Authenticated, "extensions:list";
    AvailabilityZoneList => ProjectReader, "volume_extension:availability_zone_list";
    FlowListStuck => AdminOrSystemReader, "scoria:operations:list";
    RepositoryCheck => Admin, "scoria:repository:check";
    RepositoryFix => Admin, "scoria:repository:fix";
    BackendList => AdminOrSystemReader, "scoria:backends:list";
    BackendAdd => Admin, "scoria:backends:add";
    BackendUpdate => Admin, "scoria:backends:update";
    BackendRemove => Admin, "scoria:backends:remove";
    ServiceList => AdminOrSystemReader, "volume_extension:services:index";
    ServiceUpdate => Admin, "volume_extension:services:update";
    ServiceFreeze => Admin, "volume:freeze_host";
    ServiceThaw => Admin, "volume:thaw_host";
    HostList => AdminOrSystemReader, "volume_extension:hosts";
    PoolList => AdminOrSystemReader, "scheduler_extension:scheduler_stats:get_pools";
    CapabilitiesGet => AdminOrSystemReader, "volume_extension:capabilities";
    VolumePlacementGet => AdminOrSystemReader, "scoria:volume:placement";
    PlacementDryRun => AdminOrSystemReader, "scoria:scheduler:placement";
    MessageList => ProjectReader, "message:get_all";
    MessageGet => ProjectReader, "message:get";
    MessageDelete => ProjectMember, "message:delete";
    GroupTypeList => ProjectReader, "scoria:group_types:get_all";
    GroupTypeGet => ProjectReader, "scoria:group_types:get";
    GroupTypeManage => Admin, "group:group_types_manage";
    GroupTypeSpecsRead => AdminOrSystemReader, "group:access_group_types_specs";
    GroupTypeSpecs => Admin, "group:group_types_specs";
    GroupList => ProjectReader, "group:get_all";
    GroupGet => ProjectReader, "group:get";
    GroupCreate => ProjectMember, "group:create";
    GroupUpdate => ProjectMember, "group:update";
    GroupDelete => ProjectMember, "group:delete";
    GroupResetStatus => Admin, "group:reset_status";
    GroupProjectAttribute => AdminOrSystemReader, "group:group_project_attribute";
    IdentityTokenValidate => AdminOrOwner, "identity:validate_token";
    IdentityTokenCheck => AdminOrOwner, "identity:check_token";
    IdentityTokenRevoke => AdminOrOwner, "identity:revoke_token";
    IdentityAuthProjects => Authenticated, "identity:get_auth_projects";
    IdentityAuthCatalog => Authenticated, "identity:get_auth_catalog";
    IdentityDomainList => AdminOrSystemReader, "identity:list_domains";
    IdentityDomainGet => AdminOrOwner, "identity:get_domain";
    IdentityProjectList => AdminOrSystemReader, "identity:list_projects";
    IdentityProjectGet => AdminOrOwner, "identity:get_project";
    IdentityProjectCreate => Admin, "identity:create_project";
    IdentityProjectUpdate => Admin, "identity:update_project";
    IdentityProjectDelete => Admin, "identity:delete_project";
    IdentityUserList => AdminOrSystemReader, "identity:list_users";
    IdentityUserGet => AdminOrOwner, "identity:get_user";
    IdentityUserCreate => Admin, "identity:create_user";
    IdentityUserUpdate => Admin, "identity:update_user";
    IdentityUserDelete => Admin, "identity:delete_user";
    IdentityUserProjects => AdminOrOwner, "identity:list_user_projects";
    IdentityUserChangePassword => Owner, "identity:change_password";
    IdentityRoleList => AdminOrSystemReader, "identity:list_roles";
    IdentityRoleGet => AdminOrSystemReader, "identity:get_role";
    IdentityRoleInferenceList => AdminOrSystemReader, "identity:list_role_inference_rules";
    IdentityGrantCreate => Admin, "identity:create_grant";
    IdentityGrantCheck => AdminOrSystemReader, "identity:check_grant";
    IdentityGrantList => AdminOrSystemReader, "identity:list_grants";
    IdentityGrantRevoke => Admin, "identity:revoke_grant";
    IdentitySystemGrantCreate => Admin, "identity:create_system_grant_for_user";
    IdentitySystemGrantCheck => AdminOrSystemReader, "identity:check_system_grant_for_user";
    IdentitySystemGrantList => AdminOrSystemReader, "identity:list_system_grants_for_user";
    IdentitySystemGrantRevoke => Admin, "identity:revoke_system_grant_for_user";
    IdentityAssignmentList => AdminOrSystemReader, "identity:list_role_assignments";
    IdentityServiceList => AdminOrSystemReader, "identity:list_services";
    ImageCreate => ProjectMember, "add_image";
    ImageGet => ProjectReader, "get_image";
    ImageList => ProjectReader, "get_images";
    ImageUpdate => ProjectMember, "modify_image";
    ImageDelete => ProjectMember, "delete_image";
    ImageUpload => ProjectMember, "upload_image";
    ImageDownload => ProjectReader, "download_image";
    ImagePublicize => Admin, "publicize_image";
    ImageDeactivate => ProjectMember, "deactivate";
    ImageReactivate => ProjectMember, "reactivate";
    ImageMemberAdd => ProjectMember, "add_member";
    ImageMemberGet => ProjectReader, "get_member";
    ImageMemberList => ProjectReader, "get_members";
    ImageMemberUpdate => ProjectMember, "modify_member";
    ImageMemberDelete => ProjectMember, "delete_member";
    IdentityEndpointList => AdminOrSystemReader, "identity:list_endpoints";
}

impl Op {
    /// Reads a system-scoped token may make on the routes without a project
    /// (3.67): the lists that take `all_tenants` (a list of "its own"
    /// project still needs one: `Context::project` refuses it) and the
    /// public catalogue of types and zones.
    fn reads_without_project(self) -> bool {
        matches!(
            self,
            Op::VolumeList
                | Op::SnapshotList
                | Op::TypeList
                | Op::TypeGet
                | Op::AvailabilityZoneList
        )
    }
}

impl Context {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains(role)
    }

    pub fn is_admin(&self) -> bool {
        self.has_role("admin")
    }

    fn is_reader(&self) -> bool {
        self.has_role("reader") || self.has_role("member") || self.is_admin()
    }

    /// Check the policy table. An unscoped token only passes `Authenticated`
    /// rules (and admin ones: an admin acts on any project).
    pub fn authorize(&self, op: Op) -> Result<()> {
        let ok = match op.rule() {
            Rule::Authenticated => true,
            Rule::ProjectReader => {
                (self.project_id.is_some() || (self.system && op.reads_without_project()))
                    && self.is_reader()
            }
            Rule::ProjectMember if self.system => {
                return Err(Error::Forbidden(format!(
                    "Policy doesn't allow {} to be performed with a system-scoped token: \
                     it needs a token scoped to the project.",
                    op.name()
                )));
            }
            Rule::ProjectMember => {
                self.project_id.is_some() && (self.has_role("member") || self.is_admin())
            }
            Rule::Admin | Rule::AdminOrOwner => self.is_admin(),
            Rule::AdminOrSystemReader => self.is_admin() || (self.system && self.is_reader()),
            Rule::Owner => false,
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

    /// Check the policy table for an operation on a target the caller may own
    /// (`is_owner`: it is their own user, project, token…). Owner rules pass
    /// for the owner; every other rule is checked as by [`Context::authorize`].
    pub fn authorize_owned(&self, op: Op, is_owner: bool) -> Result<()> {
        match op.rule() {
            Rule::AdminOrOwner | Rule::Owner if is_owner => Ok(()),
            _ => self.authorize(op),
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
            system: false,
        }
    }

    /// A system-scoped caller with `roles`, targeting a project.
    fn sys(roles: &[&str]) -> Context {
        Context {
            system: true,
            ..ctx(roles, true)
        }
    }

    #[test]
    fn each_rule_admits_exactly_the_roles_it_should() {
        // (rule, [none, reader, member, admin, unscoped admin, unscoped member,
        //         system reader, system admin])
        let table: &[(Rule, [bool; 8])] = &[
            (
                Rule::Authenticated,
                [true, true, true, true, true, true, true, true],
            ),
            (
                Rule::ProjectReader,
                [false, true, true, true, false, false, true, true],
            ),
            (
                Rule::ProjectMember,
                [false, false, true, true, false, false, false, false],
            ),
            (
                Rule::Admin,
                [false, false, false, true, true, false, false, true],
            ),
            (
                Rule::AdminOrSystemReader,
                [false, false, false, true, true, false, true, true],
            ),
            (
                Rule::AdminOrOwner,
                [false, false, false, true, true, false, false, true],
            ),
            (
                Rule::Owner,
                [false, false, false, false, false, false, false, false],
            ),
        ];
        let callers = [
            ctx(&[], true),
            ctx(&["reader"], true),
            ctx(&["member", "reader"], true),
            ctx(&["admin", "member", "reader"], true),
            ctx(&["admin", "member", "reader"], false),
            ctx(&["member", "reader"], false),
            sys(&["reader"]),
            sys(&["admin", "member", "reader"]),
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
    fn system_tokens_without_a_project_read_only_the_cross_project_lists() {
        let reader = Context {
            project_id: None,
            ..sys(&["reader"])
        };
        assert!(reader.authorize(Op::VolumeList).is_ok());
        assert!(reader.authorize(Op::SnapshotList).is_ok());
        assert!(reader.authorize(Op::ServiceList).is_ok());
        // Nothing that reads one project's resources without naming it.
        assert!(reader.authorize(Op::VolumeGet).is_err());
        assert!(reader.authorize(Op::ImageList).is_err());
        assert!(reader.authorize(Op::MessageList).is_err());
        assert!(reader.project().is_err());
    }

    #[test]
    fn owners_pass_owner_rules_only() {
        let member = ctx(&["member", "reader"], true);
        let admin = ctx(&["admin", "member", "reader"], true);
        // (op, owner?, [member, admin])
        let table: &[(Op, bool, [bool; 2])] = &[
            (Op::IdentityUserGet, true, [true, true]),
            (Op::IdentityUserGet, false, [false, true]),
            (Op::IdentityUserChangePassword, true, [true, true]),
            (Op::IdentityUserChangePassword, false, [false, false]),
            (Op::IdentityProjectCreate, true, [false, true]),
            (Op::VolumeCreate, true, [true, true]),
        ];
        for (op, owner, [m, a]) in table {
            assert_eq!(member.authorize_owned(*op, *owner).is_ok(), *m, "{op:?}");
            assert_eq!(admin.authorize_owned(*op, *owner).is_ok(), *a, "{op:?}");
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
        let e = sys(&["admin", "member", "reader"])
            .authorize(Op::VolumeCreate)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Policy doesn't allow volume:create to be performed with a system-scoped token: \
             it needs a token scoped to the project."
        );
    }
}
