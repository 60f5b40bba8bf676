//! Identity v3 routes (Keystone subset). Placeholder until identity lands.

use axum::Router;

use crate::State;

pub fn routes() -> Router<State> {
    Router::new()
}
