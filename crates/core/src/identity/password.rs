//! Passwords: Argon2id hashes in PHC strings, made and checked off the async
//! runtime.
//!
//! Hashing is slow and memory-hungry by design (the crate's defaults: 19 MiB,
//! two passes), so it runs on the blocking pool, and at most a few at a time:
//! a storm of logins queues here instead of taking every core and a gigabyte
//! of memory. A log-in attempt for a user that does not exist still checks a
//! password against a dummy hash, so that the answer takes as long as for a
//! user that does.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;
use rand::distributions::Alphanumeric;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// Longest password accepted (Keystone's default `max_password_length`).
pub const MAX_PASSWORD_LEN: usize = 4096;
/// Length of generated passwords (about 190 bits).
pub const GENERATED_LEN: usize = 32;

/// How passwords are hashed. The production cost is the `argon2` crate's
/// default; tests of other crates may lower it with [`Hasher::with_params`].
#[derive(Debug)]
pub struct Hasher {
    params: Params,
    permits: Semaphore,
    dummy: OnceLock<String>,
}

impl Default for Hasher {
    fn default() -> Self {
        Self::with_params(Params::default())
    }
}

impl Hasher {
    pub fn with_params(params: Params) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hasher {
            params,
            permits: Semaphore::new(cores.max(2)),
            dummy: OnceLock::new(),
        }
    }

    /// The cheapest parameters Argon2 allows: for tests only.
    pub fn cheap() -> Self {
        Self::with_params(
            Params::new(Params::MIN_M_COST, 1, 1, None).unwrap_or_else(|_| Params::default()),
        )
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Hash a password into a PHC string.
    pub async fn hash(self: &Arc<Self>, password: String) -> Result<String> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| Error::internal("the password hasher is shut down", e))?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.hash_now(&password))
            .await
            .map_err(|e| Error::internal("password hashing failed", e))?
    }

    fn hash_now(&self, password: &str) -> Result<String> {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        self.argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal {
                message: format!("password hashing failed: {e}"),
                source: None,
            })
    }

    /// Check a password against a PHC string (`None`: against a dummy hash,
    /// always false, taking as long as a real check).
    pub async fn verify(self: &Arc<Self>, password: String, phc: Option<String>) -> Result<bool> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| Error::internal("the password hasher is shut down", e))?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let (phc, real) = match phc {
                Some(p) => (p, true),
                None => (me.dummy()?, false),
            };
            let parsed = PasswordHash::new(&phc).map_err(|e| Error::Internal {
                message: format!("a stored password hash is corrupt: {e}"),
                source: None,
            })?;
            // The parameters are read from the hash, not from `self`.
            let ok = Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            Ok(ok && real)
        })
        .await
        .map_err(|e| Error::internal("password check failed", e))?
    }

    fn dummy(&self) -> Result<String> {
        if let Some(d) = self.dummy.get() {
            return Ok(d.clone());
        }
        let d = self.hash_now(&generate())?;
        Ok(self.dummy.get_or_init(|| d).clone())
    }
}

/// A fresh random password of letters and digits.
pub fn generate() -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(GENERATED_LEN)
        .map(char::from)
        .collect()
}

/// Refuse passwords that are empty or absurdly long.
pub fn validate(password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(Error::Invalid("The password must not be empty.".into()));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(Error::Invalid(format!(
            "The password is longer than {MAX_PASSWORD_LEN} bytes."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let h = Arc::new(Hasher::cheap());
        let phc = h.hash("s3cret".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$"));
        // (password, stored, expected)
        let cases = [
            ("s3cret", Some(phc.clone()), true),
            ("S3cret", Some(phc.clone()), false),
            ("", Some(phc.clone()), false),
            ("s3cret", None, false),
        ];
        for (pw, stored, want) in cases {
            assert_eq!(h.verify(pw.into(), stored).await.unwrap(), want, "{pw}");
        }
        assert!(h.verify("x".into(), Some("garbage".into())).await.is_err());
    }

    /// What one hash and one check cost at the production parameters
    /// (`cargo nextest run --release -p scoria-core password_cost
    /// --run-ignored only --no-capture`).
    #[tokio::test]
    #[ignore = "a measurement, not a check"]
    async fn password_cost() {
        let h = Arc::new(Hasher::default());
        let t = std::time::Instant::now();
        let phc = h.hash("s3cret".into()).await.unwrap();
        let hashed = t.elapsed();
        let t = std::time::Instant::now();
        assert!(h.verify("s3cret".into(), Some(phc)).await.unwrap());
        eprintln!(
            "argon2id default: hash {hashed:?}, verify {:?}",
            t.elapsed()
        );
    }

    #[test]
    fn production_cost_is_the_crate_default() {
        let h = Hasher::default();
        assert_eq!(h.params.m_cost(), Params::DEFAULT_M_COST);
        assert_eq!(h.params.t_cost(), Params::DEFAULT_T_COST);
    }

    #[test]
    fn generated_passwords_are_long_and_alphanumeric() {
        let a = generate();
        assert_eq!(a.len(), GENERATED_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, generate());
        assert!(validate("").is_err());
        assert!(validate(&"x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
        assert!(validate("ok").is_ok());
    }
}
