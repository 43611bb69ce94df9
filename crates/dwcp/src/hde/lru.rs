//! A small least-recently-used map shared by the encoders and the content stores.
//!
//! Recency is a tick per entry, ordered in a `BTreeMap`, so touching, inserting and evicting
//! are `O(log n)` and the map needs no unsafe linked list.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// A map that remembers the order in which its keys were last used.
#[derive(Debug, Clone)]
pub(crate) struct Lru<K, V> {
    entries: HashMap<K, (V, u64)>,
    order: BTreeMap<u64, K>,
    tick: u64,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    /// An empty map.
    pub(crate) fn new() -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether `key` is present, without touching it.
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// The value of `key`, without touching it.
    pub(crate) fn peek(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(value, _)| value)
    }

    /// Marks `key` as the most recently used; returns whether it was present.
    pub(crate) fn touch(&mut self, key: &K) -> bool {
        self.tick += 1;
        let tick = self.tick;
        match self.entries.get_mut(key) {
            Some((_, old)) => {
                self.order.remove(old);
                *old = tick;
                self.order.insert(tick, key.clone());
                true
            }
            None => false,
        }
    }

    /// The value of `key`, marking it most recently used.
    pub(crate) fn get(&mut self, key: &K) -> Option<&V> {
        if self.touch(key) {
            self.peek(key)
        } else {
            None
        }
    }

    /// Inserts or replaces `key` as the most recently used; returns the old value.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        self.order.insert(tick, key.clone());
        let old = self.entries.insert(key, (value, tick));
        old.map(|(value, old_tick)| {
            self.order.remove(&old_tick);
            value
        })
    }

    /// Removes `key`; returns its value.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let (value, tick) = self.entries.remove(key)?;
        self.order.remove(&tick);
        Some(value)
    }

    /// Removes and returns the least recently used entry.
    pub(crate) fn pop_oldest(&mut self) -> Option<(K, V)> {
        let (_, key) = self.order.pop_first()?;
        let (value, _) = self.entries.remove(&key)?;
        Some((key, value))
    }
}
