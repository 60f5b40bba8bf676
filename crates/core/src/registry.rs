//! Things kept by name that an administrator adds and removes while the
//! server runs: the backends and their exporters ([`crate::Env`]).
//!
//! A reader takes an `Arc` of the entry, never a lock across an `await`: a
//! flow holding a backend keeps its driver alive even if the backend is
//! removed meanwhile (a removal is refused while anything uses the backend,
//! see [`crate::backends`], so that only happens to a step that is about to
//! find it gone).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

pub struct Registry<T> {
    map: RwLock<BTreeMap<String, Arc<T>>>,
}

impl<T> Registry<T> {
    pub fn new(map: BTreeMap<String, Arc<T>>) -> Registry<T> {
        Registry {
            map: RwLock::new(map),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<T>>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, name: &str) -> Option<Arc<T>> {
        self.read().get(name).cloned()
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Every entry now, by name.
    pub fn all(&self) -> Vec<(String, Arc<T>)> {
        self.read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Every entry now, in the order of their names.
    pub fn values(&self) -> Vec<Arc<T>> {
        self.read().values().cloned().collect()
    }

    /// Add an entry; `false` (nothing changed) when the name is taken.
    pub(crate) fn insert(&self, name: String, value: Arc<T>) -> bool {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.contains_key(&name) {
            return false;
        }
        map.insert(name, value);
        true
    }

    pub(crate) fn remove(&self, name: &str) -> Option<Arc<T>> {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
    }
}

impl<T> Default for Registry<T> {
    fn default() -> Registry<T> {
        Registry::new(BTreeMap::new())
    }
}

impl<T, const N: usize> From<[(String, Arc<T>); N]> for Registry<T> {
    fn from(entries: [(String, Arc<T>); N]) -> Registry<T> {
        Registry::new(entries.into())
    }
}

impl<T> std::fmt::Debug for Registry<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.read().keys()).finish()
    }
}
