//! Every route, in one table.
//!
//! [`BLOCK_STORAGE`] lists the Block Storage routes (relative to
//! `/v3/{project_id}`, and from microversion 3.67 on also to `/v3`); the
//! route-by-route policy test walks this list, so a route added here without a
//! row in that test fails the build of the test suite. [`IDENTITY`] does the
//! same for the Identity routes (relative to `/identity`), [`IMAGE`] for the
//! image service's (relative to `/image`).

use axum::Router;
use axum::middleware;
use axum::routing::{delete, get, post, put};

use crate::fault::ApiError;
use crate::{
    State, attachments, backends, backup, default_types, filters, groups, identity, messages,
    microversion, misc, operations, placement, qos, quota, repository, request_id, services,
    snapshot, transfer, types, volume,
};

pub use crate::glance::IMAGE;
pub use crate::identity::IDENTITY;

macro_rules! table {
    ($($method:ident $path:literal => $handler:path;)+) => {
        /// (method, path) of every Block Storage route under `/v3/{project_id}`.
        pub const BLOCK_STORAGE: &[(&str, &str)] = &[$((stringify!($method), $path)),+];

        fn block_storage() -> Router<State> {
            Router::new()
                $(.route($path, $method($handler)))+
        }
    };
}

table! {
    get "/volumes" => volume::list;
    post "/volumes" => volume::create;
    get "/volumes/detail" => volume::list_detail;
    get "/volumes/summary" => volume::summary;
    get "/volumes/{id}" => volume::show;
    put "/volumes/{id}" => volume::update;
    delete "/volumes/{id}" => volume::delete;
    post "/volumes/{id}/action" => volume::actions::dispatch;
    get "/volumes/{id}/placement" => placement::show;
    get "/volumes/{id}/metadata" => volume::metadata_show;
    post "/volumes/{id}/metadata" => volume::metadata_merge;
    put "/volumes/{id}/metadata" => volume::metadata_replace;
    get "/volumes/{id}/metadata/{key}" => volume::metadata_key_show;
    put "/volumes/{id}/metadata/{key}" => volume::metadata_key_set;
    delete "/volumes/{id}/metadata/{key}" => volume::metadata_key_delete;
    get "/backups" => backup::list;
    post "/backups" => backup::create;
    get "/backups/detail" => backup::list_detail;
    post "/backups/import_record" => backup::actions::import_record;
    get "/backups/{id}" => backup::show;
    put "/backups/{id}" => backup::update;
    delete "/backups/{id}" => backup::delete;
    post "/backups/{id}/restore" => backup::restore;
    post "/backups/{id}/action" => backup::actions::dispatch;
    get "/backups/{id}/export_record" => backup::actions::export_record;
    get "/snapshots" => snapshot::list;
    post "/snapshots" => snapshot::create;
    get "/snapshots/detail" => snapshot::list_detail;
    get "/snapshots/{id}" => snapshot::show;
    put "/snapshots/{id}" => snapshot::update;
    delete "/snapshots/{id}" => snapshot::delete;
    post "/snapshots/{id}/action" => snapshot::actions::dispatch;
    get "/snapshots/{id}/metadata" => snapshot::metadata_show;
    post "/snapshots/{id}/metadata" => snapshot::metadata_merge;
    put "/snapshots/{id}/metadata" => snapshot::metadata_replace;
    get "/snapshots/{id}/metadata/{key}" => snapshot::metadata_key_show;
    put "/snapshots/{id}/metadata/{key}" => snapshot::metadata_key_set;
    delete "/snapshots/{id}/metadata/{key}" => snapshot::metadata_key_delete;
    get "/scoria-volumes/{id}/tree" => volume::tree::show;
    post "/attachments" => attachments::create;
    get "/attachments" => attachments::list;
    get "/attachments/detail" => attachments::list_detail;
    get "/attachments/{id}" => attachments::show;
    put "/attachments/{id}" => attachments::update;
    delete "/attachments/{id}" => attachments::delete;
    post "/attachments/{id}/action" => attachments::dispatch;
    get "/os-quota-sets/{target}" => quota::show;
    put "/os-quota-sets/{target}" => quota::update;
    delete "/os-quota-sets/{target}" => quota::delete;
    get "/os-quota-sets/{target}/defaults" => quota::defaults;
    get "/os-quota-class-sets/{target}" => quota::class_show;
    put "/os-quota-class-sets/{target}" => quota::class_update;
    get "/limits" => quota::limits;
    get "/extensions" => misc::extensions;
    get "/os-availability-zone" => misc::availability_zones;
    get "/resource_filters" => filters::list;
    get "/default-types" => default_types::list;
    get "/default-types/{target}" => default_types::show;
    put "/default-types/{target}" => default_types::set;
    delete "/default-types/{target}" => default_types::unset;
    get "/types" => types::list;
    post "/types" => types::create;
    get "/types/{id}" => types::show;
    put "/types/{id}" => types::update;
    delete "/types/{id}" => types::delete;
    post "/types/{id}/action" => types::action;
    get "/types/{id}/os-volume-type-access" => types::access_list;
    get "/types/{id}/extra_specs" => types::extra_specs_list;
    post "/types/{id}/extra_specs" => types::extra_specs_create;
    get "/types/{id}/extra_specs/{key}" => types::extra_spec_show;
    put "/types/{id}/extra_specs/{key}" => types::extra_spec_update;
    delete "/types/{id}/extra_specs/{key}" => types::extra_spec_delete;
    get "/types/{id}/encryption" => types::encryption_show;
    post "/types/{id}/encryption" => types::encryption_create;
    get "/types/{id}/encryption/{key}" => types::encryption_item;
    put "/types/{id}/encryption/{key}" => types::encryption_update;
    delete "/types/{id}/encryption/{key}" => types::encryption_delete;
    get "/qos-specs" => qos::list;
    post "/qos-specs" => qos::create;
    get "/qos-specs/{id}" => qos::show;
    put "/qos-specs/{id}" => qos::update;
    delete "/qos-specs/{id}" => qos::delete;
    put "/qos-specs/{id}/delete_keys" => qos::delete_keys;
    get "/qos-specs/{id}/associate" => qos::associate;
    get "/qos-specs/{id}/disassociate" => qos::disassociate;
    get "/qos-specs/{id}/disassociate_all" => qos::disassociate_all;
    get "/qos-specs/{id}/associations" => qos::associations;
    get "/scoria-operations" => operations::list;
    get "/scoria-operations/{id}" => operations::show;
    post "/scoria-repository/checks" => repository::start_check;
    get "/scoria-repository/checks/{id}" => repository::show_check;
    post "/scoria-repository/fixes" => repository::start_fix;
    get "/scoria-repository/fixes/{id}" => repository::show_fix;
    get "/scoria-backends" => backends::list;
    post "/scoria-backends" => backends::add;
    get "/scoria-backends/{name}" => backends::show;
    delete "/scoria-backends/{name}" => backends::remove;
    post "/scoria-backends/{name}/action" => backends::action;
    post "/os-volume-transfer" => transfer::create;
    get "/os-volume-transfer" => transfer::list;
    get "/os-volume-transfer/detail" => transfer::list_detail;
    get "/os-volume-transfer/{id}" => transfer::show;
    delete "/os-volume-transfer/{id}" => transfer::delete;
    post "/os-volume-transfer/{id}/accept" => transfer::accept;
    post "/volume-transfers" => transfer::create;
    get "/volume-transfers" => transfer::list;
    get "/volume-transfers/detail" => transfer::list_detail;
    get "/volume-transfers/{id}" => transfer::show;
    delete "/volume-transfers/{id}" => transfer::delete;
    post "/volume-transfers/{id}/accept" => transfer::accept;
    get "/os-services" => services::list;
    put "/os-services/{action}" => services::update;
    get "/os-hosts" => services::hosts;
    get "/os-hosts/{host}" => services::host_show;
    get "/scheduler-stats/get_pools" => services::pools;
    post "/scheduler-stats/placement" => placement::dry_run;
    post "/os-volume-manage" => volume::manage::os_volume_manage;
    post "/manageable_volumes" => volume::manage::manageable_volumes;
    get "/manageable_volumes" => volume::manage::list_manageable;
    get "/manageable_volumes/detail" => volume::manage::list_manageable_detail;
    post "/os-snapshot-manage" => snapshot::manage::os_snapshot_manage;
    post "/manageable_snapshots" => snapshot::manage::manageable_snapshots;
    get "/manageable_snapshots" => snapshot::manage::list_manageable;
    get "/manageable_snapshots/detail" => snapshot::manage::list_manageable_detail;
    get "/capabilities/{host}" => services::capabilities;
    get "/messages" => messages::list;
    get "/messages/{id}" => messages::show;
    delete "/messages/{id}" => messages::delete;
    get "/group_types" => groups::type_list;
    post "/group_types" => groups::type_create;
    get "/group_types/{id}" => groups::type_show;
    put "/group_types/{id}" => groups::type_update;
    delete "/group_types/{id}" => groups::type_delete;
    get "/group_types/{id}/group_specs" => groups::specs_list;
    post "/group_types/{id}/group_specs" => groups::specs_create;
    get "/group_types/{id}/group_specs/{key}" => groups::spec_show;
    put "/group_types/{id}/group_specs/{key}" => groups::spec_update;
    delete "/group_types/{id}/group_specs/{key}" => groups::spec_delete;
    get "/groups" => groups::list;
    post "/groups" => groups::create;
    get "/groups/detail" => groups::list_detail;
    post "/groups/action" => groups::create_from_source;
    get "/groups/{id}" => groups::show;
    put "/groups/{id}" => groups::update;
    post "/groups/{id}/action" => groups::action;
}

async fn not_found() -> ApiError {
    ApiError::not_found("The resource could not be found.")
}

/// A known path with a method it does not serve. Cinder answers 404 here (its
/// router matches method and path together), and clients and tempest rely on
/// it (`DELETE /volumes` without an id is a 404), so Scoria does too.
async fn bad_method() -> ApiError {
    ApiError::not_found("The resource could not be found.")
}

/// The whole application: Block Storage, Identity, version documents.
pub fn build(state: State) -> Router {
    let bs = block_storage();
    let v3 = Router::new()
        .nest("/v3/{project_id}", bs.clone())
        .nest("/v3", bs)
        .route("/v3", get(misc::v3))
        .route("/v3/", get(misc::v3))
        .route("/", get(misc::root))
        .layer(middleware::from_fn(microversion::layer));
    let router = Router::new().merge(v3);
    #[cfg(feature = "failpoints")]
    let router = router.route("/debug/failpoints", put(crate::debug::failpoints));
    router
        .merge(identity::routes(&state))
        .merge(crate::glance::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(bad_method)
        .layer(middleware::from_fn(request_id::layer))
        .with_state(state)
}
