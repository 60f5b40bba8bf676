//! The built-in Identity service (Keystone v3 subset). Placeholder until the
//! identity work lands: the interface the HTTP layer relies on.

use crate::{App, Context, Error, Result};

/// Create the admin account on first start.
pub async fn bootstrap(_app: &App) -> Result<()> {
    Ok(())
}

/// The caller behind a token (`X-Auth-Token`), or `Unauthorized`.
pub async fn validate_token(_app: &App, _token: &str, _request_id: &str) -> Result<Context> {
    Err(Error::Unauthorized(
        "The request you have made requires authentication.".into(),
    ))
}
