//! [`ShardedCounter`]: Space-Saving summaries that many sessions feed at once, merged on a tick.
//!
//! # Contention
//! One summary behind one lock would serialise every session on every statement. Instead there
//! are [`SHARDS`] summaries, each behind its own mutex on its own cache lines. A thread takes a
//! home shard the first time it observes (round-robin over threads), so the proxy's few runtime
//! worker threads each own a shard and their locks are uncontended: an uncontended mutex is one
//! atomic compare-exchange on a line that thread already holds. If the home shard is busy (the
//! tick is draining it, or more threads than shards) the thread tries the next shard with
//! `try_lock` and moves home there; it only blocks when every shard is busy.
//!
//! # Merging
//! Each shard is a Space-Saving summary of its share of the stream. For a key, summing `count`
//! over the shards that monitor it and adding [`SpaceSaving::min_count`] of the others gives an
//! upper bound of its true count; summing `count - error` over the monitoring shards gives a
//! lower bound. Both are within `N / k` of the truth (each shard errs by at most `N_s / k`), and a
//! key above `N / k` in total is above `N_s / k` in some shard, so it is in the merge: the merged
//! summary keeps Space-Saving's guarantee.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use super::space_saving::SpaceSaving;

/// Number of counting shards: a power of two above the worker threads of a small proxy host.
pub const SHARDS: usize = 8;

/// A key's merged count over all shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// The key.
    pub key: u64,
    /// At most its true count.
    pub lower: u64,
    /// At least its true count.
    pub upper: u64,
}

/// Keeps the mutex off its neighbours' cache lines (two lines: adjacent-line prefetch).
#[repr(align(128))]
#[derive(Debug)]
struct Padded(Mutex<SpaceSaving>);

/// [`SHARDS`] Space-Saving summaries of `k` counters each.
#[derive(Debug)]
pub struct ShardedCounter {
    shards: Box<[Padded]>,
}

static NEXT_HOME: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static HOME: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn home() -> usize {
    HOME.with(|h| {
        let v = h.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT_HOME.fetch_add(1, Ordering::Relaxed) % SHARDS;
        h.set(v);
        v
    })
}

fn lock(m: &Mutex<SpaceSaving>) -> MutexGuard<'_, SpaceSaving> {
    // A panic while holding the lock cannot leave a summary unusable (at worst one count is
    // lost), so a poisoned lock is simply taken.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ShardedCounter {
    /// [`SHARDS`] summaries of `k` counters each.
    pub fn new(k: usize) -> ShardedCounter {
        ShardedCounter {
            shards: (0..SHARDS)
                .map(|_| Padded(Mutex::new(SpaceSaving::new(k))))
                .collect(),
        }
    }

    /// Counts one observation of `key`. O(1); never allocates.
    #[inline]
    pub fn observe(&self, key: u64) {
        let start = home();
        for i in 0..SHARDS {
            let at = (start + i) % SHARDS;
            let mut guard = match self.shards[at].0.try_lock() {
                Ok(g) => g,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => continue,
            };
            guard.observe(key);
            if i != 0 {
                HOME.with(|h| h.set(at));
            }
            return;
        }
        lock(&self.shards[start].0).observe(key);
    }

    /// Heap bytes held by all shards; fixed at construction.
    pub fn heap_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| lock(&s.0).heap_bytes())
            .sum::<usize>()
            + self.shards.len() * std::mem::size_of::<Padded>()
    }

    /// Merges and resets every shard: the keys seen since the last drain with their bounds, and
    /// the total number of observations. `merged` is cleared first and reused.
    pub fn drain(&self, merged: &mut HashMap<u64, Estimate>) -> u64 {
        merged.clear();
        let mut total = 0;
        let mut mins = [0u64; SHARDS];
        // Per key, which shards monitor it, to add the other shards' minimums afterwards.
        let mut monitored: HashMap<u64, u16> = HashMap::new();
        for (i, shard) in self.shards.iter().enumerate() {
            let mut s = lock(&shard.0);
            total += s.total();
            mins[i] = s.min_count();
            for c in s.counters() {
                let e = merged.entry(c.key).or_insert(Estimate {
                    key: c.key,
                    lower: 0,
                    upper: 0,
                });
                e.lower += c.count - c.error;
                e.upper += c.count;
                *monitored.entry(c.key).or_default() |= 1 << i;
            }
            s.reset();
        }
        for (key, mask) in monitored {
            if let Some(e) = merged.get_mut(&key) {
                e.upper += (0..SHARDS)
                    .filter(|i| mask & (1 << i) == 0)
                    .map(|i| mins[i])
                    .sum::<u64>();
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_spread_over_shards_and_merge_exactly_when_small() {
        let counter = ShardedCounter::new(8);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let counter = &counter;
                s.spawn(move || {
                    for i in 0..1000u64 {
                        counter.observe(if i % 2 == 0 { 42 } else { t });
                    }
                });
            }
        });
        let mut merged = HashMap::new();
        assert_eq!(counter.drain(&mut merged), 4000);
        let hot = merged[&42];
        assert_eq!((hot.lower, hot.upper), (2000, 2000));
        for t in 0..4 {
            assert_eq!(merged[&t].lower, 500);
        }
        assert_eq!(counter.drain(&mut merged), 0, "drain resets");
        assert!(merged.is_empty());
    }
}
