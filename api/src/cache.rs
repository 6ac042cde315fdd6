//! A small time-bounded cache for hot, rarely changing rows, bounded in entries and in bytes
//! (its keys come from requests: a key longer than `max_key` is never stored).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct TtlCache<V> {
    ttl: Duration,
    max_entries: usize,
    max_bytes: usize,
    max_key: usize,
    weigh: fn(&V) -> usize,
    inner: Mutex<Inner<V>>,
}

struct Inner<V> {
    entries: HashMap<String, (Instant, V, usize)>,
    bytes: usize,
}

/// What a cache holds now, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSize {
    pub entries: usize,
    pub bytes: usize,
}

/// Bookkeeping per entry besides its key and value (map slot, timestamp).
const OVERHEAD: usize = 64;

impl<V: Clone> TtlCache<V> {
    pub fn new(
        ttl: Duration,
        max_entries: usize,
        max_bytes: usize,
        max_key: usize,
        weigh: fn(&V) -> usize,
    ) -> Self {
        Self {
            ttl,
            max_entries,
            max_bytes,
            max_key,
            weigh,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                bytes: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<V> {
        self.lock()
            .entries
            .get(key)
            .filter(|(at, _, _)| at.elapsed() < self.ttl)
            .map(|(_, v, _)| v.clone())
    }

    /// The entry for `key`, removed (a value meant to be used once).
    pub fn take(&self, key: &str) -> Option<V> {
        let mut inner = self.lock();
        let (at, v, size) = inner.entries.remove(key)?;
        inner.bytes -= size;
        (at.elapsed() < self.ttl).then_some(v)
    }

    pub fn put(&self, key: &str, value: V) {
        if key.len() > self.max_key {
            return;
        }
        let size = key.len() + (self.weigh)(&value) + OVERHEAD;
        if size > self.max_bytes {
            return;
        }
        let mut inner = self.lock();
        if let Some((_, _, old)) = inner.entries.remove(key) {
            inner.bytes -= old;
        }
        if inner.entries.len() >= self.max_entries || inner.bytes + size > self.max_bytes {
            let ttl = self.ttl;
            inner.entries.retain(|_, (at, _, _)| at.elapsed() < ttl);
            inner.bytes = inner.entries.values().map(|(_, _, s)| s).sum();
            if inner.entries.len() >= self.max_entries || inner.bytes + size > self.max_bytes {
                inner.entries.clear();
                inner.bytes = 0;
            }
        }
        inner.bytes += size;
        inner
            .entries
            .insert(key.to_owned(), (Instant::now(), value, size));
    }

    pub fn size(&self) -> CacheSize {
        let inner = self.lock();
        CacheSize {
            entries: inner.entries.len(),
            bytes: inner.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::ptr_arg)] // the cache's weigh function takes `&V`
    fn len(v: &String) -> usize {
        v.len()
    }

    #[test]
    fn expires_and_bounds_entries() {
        let c = TtlCache::new(Duration::from_millis(30), 2, 1 << 20, 256, len);
        c.put("a", "1".to_owned());
        assert_eq!(c.get("a").as_deref(), Some("1"));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.get("a"), None);
        c.put("a", "1".to_owned());
        c.put("b", "2".to_owned());
        c.put("c", "3".to_owned());
        assert_eq!(c.get("c").as_deref(), Some("3"));
        assert!(c.size().entries <= 2);
    }

    #[test]
    fn bounds_bytes_and_refuses_long_keys() {
        let c = TtlCache::new(Duration::from_secs(60), 1_000, 1_000, 256, len);
        c.put(&"k".repeat(257), "v".to_owned());
        assert_eq!(
            c.size(),
            CacheSize {
                entries: 0,
                bytes: 0
            }
        );
        for i in 0..100 {
            c.put(&format!("key-{i}"), "x".repeat(100));
            assert!(c.size().bytes <= 1_000, "{:?}", c.size());
        }
        // A value larger than the whole cache is not kept.
        c.put("huge", "x".repeat(2_000));
        assert_eq!(c.get("huge"), None);
        // Replacing an entry does not count it twice.
        let c = TtlCache::new(Duration::from_secs(60), 10, 10_000, 256, len);
        c.put("a", "x".repeat(10));
        c.put("a", "x".repeat(10));
        assert_eq!(c.size().entries, 1);
        assert_eq!(c.size().bytes, 1 + 10 + OVERHEAD);
    }
}
