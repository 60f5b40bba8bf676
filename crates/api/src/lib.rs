//! The HTTP edge: Block Storage v3 at `/v3/…`, Identity v3 at `/identity/v3/…`,
//! Image v2 (the Glance subset) at `/image/v2/…`,
//! version documents at `/` and `/identity`.
//!
//! Handlers are thin: parse the request ([`path`], [`body`], [`query`]), get
//! the caller ([`auth::Auth`]), call one function of `scoria_core`, render the
//! result with Cinder's field names (each resource's views, such as
//! [`volume::view`], [`snapshot::view`]). Routes are one table ([`routes`]), and so are the actions
//! of each resource's `…/action` route ([`action`]). Only this crate knows JSON
//! shapes and status codes: a `scoria_core::Error` gets its status in
//! [`fault::status_of`] and becomes a Cinder fault body in [`fault`] (or
//! Keystone's error body in [`identity`]).
//! Every response carries a request id ([`request_id`]); Block Storage responses
//! carry the negotiated microversion ([`microversion`]).

use std::sync::Arc;

use axum::Router;
use scoria_core::App;

pub mod action;
pub mod attachments;
pub mod auth;
pub mod backends;
pub mod backup;
pub mod body;
#[cfg(feature = "failpoints")]
pub mod debug;
pub mod default_types;
pub mod fault;
pub mod filters;
pub mod glance;
pub mod groups;
pub mod hints;
pub mod identity;
pub mod manageable;
pub mod messages;
pub mod microversion;
pub mod misc;
pub mod operations;
pub mod path;
pub mod placement;
pub mod qos;
pub mod query;
pub mod quota;
pub mod repository;
pub mod request_id;
pub mod routes;
pub mod server;
pub mod services;
pub mod snapshot;
pub mod transfer;
pub mod types;
pub mod volume;

/// What every handler can reach.
#[derive(Clone)]
pub struct State {
    pub app: App,
    /// Base URL clients use to reach this server (links, catalog).
    pub public_url: Arc<str>,
}

/// Build the whole HTTP application.
pub fn router(app: App) -> Router {
    let public_url: Arc<str> = app.config.public_url.trim_end_matches('/').into();
    routes::build(State { app, public_url })
}

pub use server::{HttpLimits, serve};
