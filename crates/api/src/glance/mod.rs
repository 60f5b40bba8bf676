//! Image v2 (the Glance subset) at `/image`: the version documents at
//! `/image` and `/image/versions`, every route of [`IMAGE`] under it.
//!
//! Clients find it in the catalog as the `image` service (`glance`), at
//! `{public_url}/image`, and discover `v2` from the version document, as for
//! a real Glance. Errors carry Glance's bodies ([`error`]), rendered for the
//! request's `Accept`; a 401 is the token middleware's.

use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router, middleware};
use serde_json::{Value, json};

use crate::State;

pub mod data;
pub mod error;
pub mod images;
pub mod members;
pub mod views;

use error::GlanceError;

macro_rules! table {
    ($($method:ident $path:literal => $handler:path;)+) => {
        /// (method, path) of every image route, relative to `/image`. The
        /// version documents are not in it: they need no token.
        pub const IMAGE: &[(&str, &str)] = &[$((stringify!($method), $path)),+];

        fn v2() -> Router<State> {
            Router::new()
                $(.route($path, $method($handler)))+
        }
    };
}

table! {
    get "/v2/images" => images::list;
    post "/v2/images" => images::create;
    get "/v2/images/{image_id}" => images::show;
    patch "/v2/images/{image_id}" => images::update;
    delete "/v2/images/{image_id}" => images::delete;
    put "/v2/images/{image_id}/file" => data::upload;
    get "/v2/images/{image_id}/file" => data::download;
    post "/v2/images/{image_id}/actions/deactivate" => images::deactivate;
    post "/v2/images/{image_id}/actions/reactivate" => images::reactivate;
    put "/v2/images/{image_id}/tags/{tag}" => images::tag_add;
    delete "/v2/images/{image_id}/tags/{tag}" => images::tag_delete;
    get "/v2/images/{image_id}/members" => members::list;
    post "/v2/images/{image_id}/members" => members::create;
    get "/v2/images/{image_id}/members/{member_id}" => members::show;
    put "/v2/images/{image_id}/members/{member_id}" => members::update;
    delete "/v2/images/{image_id}/members/{member_id}" => members::delete;
    get "/v2/schemas/image" => images::schema_image;
    get "/v2/schemas/images" => images::schema_images;
    get "/v2/schemas/member" => images::schema_member;
    get "/v2/schemas/members" => images::schema_members;
}

/// The image router, with its paths under `/image` (merge it at the root).
pub fn routes() -> Router<State> {
    let inner = v2()
        .route("/", get(versions_root))
        .route("/versions", get(versions))
        .route("/v2", get(versions))
        .route("/v2/", get(versions))
        .fallback(not_found)
        .method_not_allowed_fallback(bad_method);
    Router::new()
        .nest("/image", inner)
        // Nesting maps the inner "/" to "/image" only.
        .route("/image/", get(versions_root))
        .layer(middleware::from_fn(error::negotiate))
}

/// The versions served: v2.7 (hidden images, multihash) and the ones it
/// includes. Later ones add what Scoria does not have (stores, import).
fn version_doc(state: &State) -> Value {
    let href = format!("{}/image/v2/", state.public_url);
    let mut versions = vec![json!({
        "id": "v2.7",
        "status": "CURRENT",
        "links": [{"rel": "self", "href": href}],
    })];
    for minor in (0..7).rev() {
        versions.push(json!({
            "id": format!("v2.{minor}"),
            "status": "SUPPORTED",
            "links": [{"rel": "self", "href": href}],
        }));
    }
    json!({"versions": versions})
}

/// `GET /image`: the versions (300, as Glance answers at its root).
async fn versions_root(AxState(state): AxState<State>) -> Response {
    (StatusCode::MULTIPLE_CHOICES, Json(version_doc(&state))).into_response()
}

/// `GET /image/versions`.
async fn versions(AxState(state): AxState<State>) -> Json<Value> {
    Json(version_doc(&state))
}

async fn not_found() -> GlanceError {
    GlanceError::not_found("The resource could not be found.")
}

async fn bad_method() -> GlanceError {
    GlanceError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "The method is not allowed for this resource.",
    )
}
