//! The built-in Identity service (Keystone v3 subset). Placeholder until the
//! identity work lands: only the bootstrap hook exists.

use crate::{App, Result};

/// Create the admin account on first start.
pub async fn bootstrap(_app: &App) -> Result<()> {
    Ok(())
}
