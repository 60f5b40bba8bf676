//! Identity v3 (the Keystone subset) at `/identity`: version documents at
//! `/identity` and `/identity/v3`, every route of [`IDENTITY`] under it.
//!
//! Clients find it as `OS_AUTH_URL=http://HOST:PORT/identity/v3` (or without
//! `/v3`: keystoneauth reads the version list) and in the catalog as the
//! `identity` service. Errors carry Keystone's body
//! (`{"error": {"code", "title", "message"}}`, [`error`]), not Cinder's, and
//! every 401 a `WWW-Authenticate: Keystone uri=…` header.

use axum::extract::State as AxState;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, head, patch, post, put};
use axum::{Json, Router, middleware};
use serde_json::{Value, json};

use crate::State;

pub mod error;
pub mod resources;
pub mod system;
pub mod tokens;
pub mod views;

use error::IdError;

macro_rules! table {
    ($($method:ident $path:literal => $handler:path;)+) => {
        /// (method, path) of every Identity route, relative to `/identity`.
        /// The version documents (`/identity`, `/identity/v3`) are not in it:
        /// they need no token.
        pub const IDENTITY: &[(&str, &str)] = &[$((stringify!($method), $path)),+];

        fn v3() -> Router<State> {
            Router::new()
                $(.route($path, $method($handler)))+
        }
    };
}

table! {
    post "/v3/auth/tokens" => tokens::issue;
    get "/v3/auth/tokens" => tokens::show;
    head "/v3/auth/tokens" => tokens::check;
    delete "/v3/auth/tokens" => tokens::revoke;
    get "/v3/auth/projects" => tokens::projects;
    get "/v3/auth/catalog" => tokens::catalog;
    get "/v3/domains" => resources::domain_list;
    get "/v3/domains/{domain_id}" => resources::domain_show;
    get "/v3/projects" => resources::project_list;
    post "/v3/projects" => resources::project_create;
    get "/v3/projects/{project_id}" => resources::project_show;
    patch "/v3/projects/{project_id}" => resources::project_update;
    delete "/v3/projects/{project_id}" => resources::project_delete;
    get "/v3/projects/{project_id}/users/{user_id}/roles" => resources::grant_list;
    put "/v3/projects/{project_id}/users/{user_id}/roles/{role_id}" => resources::grant_create;
    head "/v3/projects/{project_id}/users/{user_id}/roles/{role_id}" => resources::grant_check;
    delete "/v3/projects/{project_id}/users/{user_id}/roles/{role_id}" => resources::grant_revoke;
    get "/v3/users" => resources::user_list;
    post "/v3/users" => resources::user_create;
    get "/v3/users/{user_id}" => resources::user_show;
    patch "/v3/users/{user_id}" => resources::user_update;
    delete "/v3/users/{user_id}" => resources::user_delete;
    post "/v3/users/{user_id}/password" => resources::user_change_password;
    get "/v3/users/{user_id}/projects" => resources::user_projects;
    get "/v3/roles" => resources::role_list;
    get "/v3/roles/{role_id}" => resources::role_show;
    get "/v3/role_inferences" => resources::role_inferences;
    get "/v3/role_assignments" => resources::assignment_list;
    get "/v3/system/users/{user_id}/roles" => system::grant_list;
    put "/v3/system/users/{user_id}/roles/{role_id}" => system::grant_create;
    head "/v3/system/users/{user_id}/roles/{role_id}" => system::grant_check;
    delete "/v3/system/users/{user_id}/roles/{role_id}" => system::grant_revoke;
    get "/v3/services" => resources::service_list;
    get "/v3/endpoints" => resources::endpoint_list;
}

/// Identity's router, with its paths under `/identity` (merge it at the root).
pub fn routes(state: &State) -> Router<State> {
    let inner = v3()
        .route("/", get(versions))
        .route("/v3", get(version))
        .route("/v3/", get(version))
        .fallback(not_found)
        .method_not_allowed_fallback(bad_method);
    Router::new()
        .nest("/identity", inner)
        // Nesting maps the inner "/" to "/identity" only.
        .route("/identity/", get(versions))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            error::www_authenticate,
        ))
}

/// `{public_url}/identity/v3`: the base of every link.
pub(crate) fn base(state: &State) -> views::Base {
    views::Base(format!("{}/identity/v3", state.public_url))
}

/// The link to the request itself, query included.
pub(crate) fn self_link(state: &State, uri: &axum::extract::OriginalUri) -> String {
    let pq = uri.0.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    format!("{}{pq}", state.public_url)
}

fn version_doc(state: &State) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/identity/v3/", state.public_url)}],
        "media-types": [
            {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
        ],
    })
}

/// `GET /identity`: the versions served (300, as Keystone answers).
pub async fn versions(AxState(state): AxState<State>) -> Response {
    let mut r = (
        StatusCode::MULTIPLE_CHOICES,
        Json(json!({"versions": {"values": [version_doc(&state)]}})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{}/identity/v3/", state.public_url)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// `GET /identity/v3`: the v3 version document.
pub async fn version(AxState(state): AxState<State>) -> Json<Value> {
    Json(json!({"version": version_doc(&state)}))
}

async fn not_found() -> IdError {
    IdError::new(StatusCode::NOT_FOUND, "The resource could not be found.")
}

async fn bad_method() -> IdError {
    IdError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "The method is not allowed for the requested URL.",
    )
}
