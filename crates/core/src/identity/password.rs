//! Passwords: Argon2id hashes in PHC strings, made and checked off the async
//! runtime.
//!
//! Hashing is slow and memory-hungry by design (the crate's defaults: 19 MiB,
//! two passes), so it runs on the blocking pool, and at most a few at a time
//! (one per core, at least two): a storm of logins queues here instead of
//! taking every core and a gigabyte of memory. Each of those few runs in a
//! working memory the hasher keeps and hands to the next one, never more
//! memories than hashes at once: left to the allocator, each of the blocking
//! pool's threads kept its own 19 MiB (RSS grew past 250 MB with logins). A
//! log-in attempt for a user that does not exist still checks a
//! password against a dummy hash, so that the answer takes as long as for a
//! user that does.

use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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
    /// How many permits there are.
    slots: usize,
    /// Working memories of finished hashes, for the next ones (at most one
    /// per permit), while hashes keep coming; freed when the last running
    /// hash ends ([`Hasher::release_if_idle`]).
    memories: Mutex<Vec<Vec<Block>>>,
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
            slots: cores.max(2),
            memories: Mutex::new(Vec::new()),
            dummy: OnceLock::new(),
        }
    }

    /// The cheapest parameters Argon2 allows: for tests only.
    pub fn cheap() -> Self {
        Self::with_params(
            Params::new(Params::MIN_M_COST, 1, 1, None).unwrap_or_else(|_| Params::default()),
        )
    }

    /// Run Argon2 with `params` into `out`, in a kept working memory (made
    /// when none is free; returned afterwards). Called under a permit.
    fn compute(
        &self,
        algorithm: Algorithm,
        version: Version,
        params: Params,
        password: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> Result<()> {
        let blocks = params.block_count();
        let mut memory = self
            .memories
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        let done = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
            password,
            salt,
            out,
            &mut memory[..blocks],
        );
        self.memories
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(memory);
        done.map_err(|e| Error::Internal {
            message: format!("password hashing failed: {e}"),
            source: None,
        })
    }

    /// Free the kept working memories when no other hash is running (the
    /// caller still holds its permit): a burst of logins reuses them, and an
    /// idle server does not keep 19 MiB per permit. mimalloc, the binary's
    /// allocator, gives memory this large back to the system when it is
    /// freed.
    fn release_if_idle(&self) {
        if self.permits.available_permits() + 1 >= self.slots {
            self.memories
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
    }

    /// Hash a password into a PHC string.
    pub async fn hash(self: &Arc<Self>, password: String) -> Result<String> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| Error::internal("the password hasher is shut down", e))?;
        let me = self.clone();
        let done = tokio::task::spawn_blocking(move || me.hash_now(&password))
            .await
            .map_err(|e| Error::internal("password hashing failed", e))?;
        self.release_if_idle();
        done
    }

    fn hash_now(&self, password: &str) -> Result<String> {
        let phc_error = |e: argon2::password_hash::Error| Error::Internal {
            message: format!("password hashing failed: {e}"),
            source: None,
        };
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let mut raw_salt = [0u8; 64];
        let raw_salt = salt.decode_b64(&mut raw_salt).map_err(phc_error)?;
        let mut out = vec![
            0u8;
            self.params
                .output_len()
                .unwrap_or(Params::DEFAULT_OUTPUT_LEN)
        ];
        self.compute(
            Algorithm::Argon2id,
            Version::V0x13,
            self.params.clone(),
            password.as_bytes(),
            raw_salt,
            &mut out,
        )?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params).map_err(phc_error)?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(phc_error)?),
        };
        Ok(phc.to_string())
    }

    /// Whether `password` hashes to `phc` (its algorithm, version, parameters
    /// and salt are read from it, not from `self`).
    fn matches(&self, password: &str, phc: &str) -> Result<bool> {
        let corrupt = |e: &dyn std::fmt::Display| Error::Internal {
            message: format!("a stored password hash is corrupt: {e}"),
            source: None,
        };
        let parsed = PasswordHash::new(phc).map_err(|e| corrupt(&e))?;
        let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| corrupt(&e))?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).map_err(|e| corrupt(&e))?,
            None => Version::default(),
        };
        let params = Params::try_from(&parsed).map_err(|e| corrupt(&e))?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Err(corrupt(&"no salt or no hash"));
        };
        let mut raw_salt = [0u8; 64];
        let raw_salt = salt.decode_b64(&mut raw_salt).map_err(|e| corrupt(&e))?;
        let mut out = vec![0u8; expected.len()];
        self.compute(
            algorithm,
            version,
            params,
            password.as_bytes(),
            raw_salt,
            &mut out,
        )?;
        // `Output`'s equality is constant-time.
        Ok(Output::new(&out).map_err(|e| corrupt(&e))? == expected)
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
        let done = tokio::task::spawn_blocking(move || {
            let (phc, real) = match phc {
                Some(p) => (p, true),
                None => (me.dummy()?, false),
            };
            let ok = me.matches(&password, &phc)?;
            Ok(ok && real)
        })
        .await
        .map_err(|e| Error::internal("password check failed", e))?;
        self.release_if_idle();
        done
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

    /// A hash made by the argon2 crate's own PHC path checks here, and one
    /// made here checks there: the stored hashes stay what they were.
    #[tokio::test]
    async fn hashes_are_the_crates_phc_strings() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let h = Arc::new(Hasher::cheap());
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, h.params.clone())
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert!(h.verify("pw".into(), Some(theirs.clone())).await.unwrap());
        assert!(!h.verify("pv".into(), Some(theirs)).await.unwrap());
        let ours = h.hash("pw".into()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"pw", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"pv", &parsed).is_err());
    }

    /// Many concurrent checks share the permits' working memories: no more
    /// are ever kept than hashes may run at once, and none once the last
    /// check ended.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn working_memories_are_reused_then_freed() {
        let h = Arc::new(Hasher::cheap());
        let phc = h.hash("pw".into()).await.unwrap();
        assert_eq!(h.memories.lock().unwrap().len(), 0, "idle after one hash");
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let checks: Vec<_> = (0..64)
            .map(|_| {
                let (h, phc, most) = (h.clone(), phc.clone(), most.clone());
                tokio::spawn(async move {
                    let ok = h.verify("pw".into(), Some(phc)).await;
                    let kept = h.memories.lock().unwrap().len();
                    most.fetch_max(kept, std::sync::atomic::Ordering::Relaxed);
                    ok
                })
            })
            .collect();
        for c in checks {
            assert!(c.await.unwrap().unwrap());
        }
        let most = most.load(std::sync::atomic::Ordering::Relaxed);
        assert!(most >= 1 && most <= h.slots, "{most} kept at most");
        assert_eq!(h.memories.lock().unwrap().len(), 0, "idle: all freed");
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
