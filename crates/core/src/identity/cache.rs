//! The token cache: resolved tokens by the SHA-256 of the token, for a few
//! seconds.
//!
//! Every identity change in this process (revocation, role granted or taken,
//! user or project changed or deleted) calls [`TokenCache::invalidate`] after
//! its commit. Invalidation bumps a generation counter; an entry is used only
//! if it was resolved under the current generation, so a validation that read
//! the store before a change can never put a stale answer back after it.
//! Changes made by other nodes on a shared database are seen when entries
//! age out ([`DEFAULT_TTL`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::tokens::TokenInfo;

/// How long a resolved token is trusted without reading the store again.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);
/// Entries kept at most; when full, the cache starts over.
pub const DEFAULT_CAPACITY: usize = 10_000;

pub type Digest = [u8; 32];

#[derive(Debug)]
struct Entry {
    info: Arc<TokenInfo>,
    generation: u64,
    fresh_until: Instant,
}

#[derive(Debug)]
pub struct TokenCache {
    ttl: Duration,
    capacity: usize,
    generation: AtomicU64,
    map: Mutex<HashMap<Digest, Entry>>,
}

impl TokenCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        TokenCache {
            ttl,
            capacity,
            generation: AtomicU64::new(0),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The generation to pass to [`TokenCache::put`]: read it *before*
    /// reading the store.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A token resolved under the current generation, still fresh and not
    /// expired.
    pub fn get(&self, key: &Digest) -> Option<Arc<TokenInfo>> {
        let generation = self.generation();
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.get(key)?;
        (e.generation == generation
            && e.fresh_until > Instant::now()
            && e.info.expires_at > chrono::Utc::now())
        .then(|| e.info.clone())
    }

    pub fn put(&self, key: Digest, info: Arc<TokenInfo>, generation: u64) {
        if generation != self.generation() || self.ttl.is_zero() {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(
            key,
            Entry {
                info,
                generation,
                fresh_until: Instant::now() + self.ttl,
            },
        );
    }

    /// Forget everything (after a committed identity change).
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.map.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::tokens::{Named, TokenInfo};
    use scoria_model::{DomainId, UserId};

    fn info(expires_in: i64) -> Arc<TokenInfo> {
        let now = chrono::Utc::now();
        Arc::new(TokenInfo {
            user: Named {
                id: UserId::from("u"),
                name: "u".into(),
                domain_id: DomainId::from("default"),
                domain_name: "Default".into(),
            },
            project: None,
            system: false,
            roles: vec![],
            methods: vec!["password".into()],
            audit_ids: vec!["a".into()],
            issued_at: now,
            expires_at: now + chrono::Duration::seconds(expires_in),
        })
    }

    #[test]
    fn entries_live_until_invalidated_aged_or_expired() {
        let c = TokenCache::new(Duration::from_secs(60), 2);
        let g = c.generation();
        c.put([1; 32], info(60), g);
        assert!(c.get(&[1; 32]).is_some());
        assert!(c.get(&[2; 32]).is_none());
        // An expired token is never served from the cache.
        c.put([3; 32], info(-1), g);
        assert!(c.get(&[3; 32]).is_none());
        // Full: starts over.
        c.put([4; 32], info(60), g);
        assert_eq!(c.len(), 1);
        c.invalidate();
        assert!(c.get(&[4; 32]).is_none());
        // A value resolved before the invalidation is not put back.
        c.put([5; 32], info(60), g);
        assert!(c.get(&[5; 32]).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn entries_age_out() {
        let c = TokenCache::new(Duration::from_millis(20), 10);
        c.put([1; 32], info(60), c.generation());
        assert!(c.get(&[1; 32]).is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(c.get(&[1; 32]).is_none());
        let off = TokenCache::new(Duration::ZERO, 10);
        off.put([1; 32], info(60), off.generation());
        assert!(off.get(&[1; 32]).is_none());
    }
}
