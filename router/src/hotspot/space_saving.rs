//! Space-Saving (Metwally, Agrawal, El Abbadi 2005): the heaviest keys of a stream in `k`
//! counters, O(1) per observation, with no allocation after construction.
//!
//! # Guarantee
//! After `N` observations every key whose true count exceeds `N / k` is monitored, and a monitored
//! key's `count` overestimates its true count by at most its `error`, itself at most `N / k`:
//! `count - error <= true <= count`. An unmonitored key's true count is at most [`SpaceSaving::min_count`].
//!
//! # Layout (the "stream summary" in arrays)
//! The `k` counters sit in one array sorted by count, ascending, so position 0 always holds the
//! minimum. Counters of equal count form a contiguous run, a *bucket* (`start..=end`), and every
//! position knows its bucket. Incrementing the counter at `p` swaps it with the last counter of
//! its bucket and bumps that one: the array stays sorted, and the bumped counter either joins the
//! next bucket (if that one holds exactly one more) or opens a bucket of its own. Every step is
//! O(1). Unused counters are real counters with count 0 and no key, so a new key always takes
//! position 0 (an unused counter, or the minimum, which it evicts) and the code has one path.
//! A small open-addressing table (linear probing, backward-shift deletion) maps key -> position.

use crate::ring::fmix64;

/// One monitored key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    /// The key.
    pub key: u64,
    /// Observations counted for the key: an upper bound of its true count.
    pub count: u64,
    /// How much of `count` may belong to keys it evicted: `count - error` is a lower bound.
    pub error: u64,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    key: u64,
    count: u64,
    error: u64,
    used: bool,
}

const UNUSED: Slot = Slot {
    key: 0,
    count: 0,
    error: 0,
    used: false,
};

#[derive(Clone, Copy, Debug)]
struct Bucket {
    count: u64,
    start: u32,
    end: u32,
}

/// A Space-Saving summary with a fixed number of counters.
#[derive(Debug)]
pub struct SpaceSaving {
    /// Sorted by count, ascending.
    slots: Box<[Slot]>,
    /// The bucket of each position.
    bucket_of: Box<[u32]>,
    /// Bucket pool; at most `k` are live (each owns at least one position).
    buckets: Box<[Bucket]>,
    /// Free bucket ids (a stack), capacity `k`.
    free: Vec<u32>,
    index: KeyIndex,
    total: u64,
}

impl SpaceSaving {
    /// The largest number of counters accepted.
    pub const MAX_COUNTERS: usize = 1 << 20;

    /// A summary of `k` counters (clamped to `1..=MAX_COUNTERS`).
    pub fn new(k: usize) -> SpaceSaving {
        let k = k.clamp(1, Self::MAX_COUNTERS);
        let mut s = SpaceSaving {
            slots: vec![UNUSED; k].into_boxed_slice(),
            bucket_of: vec![0; k].into_boxed_slice(),
            buckets: vec![
                Bucket {
                    count: 0,
                    start: 0,
                    end: 0
                };
                k
            ]
            .into_boxed_slice(),
            free: Vec::with_capacity(k),
            index: KeyIndex::new(k),
            total: 0,
        };
        s.reset();
        s
    }

    /// Number of counters (`k`).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Keys currently monitored.
    pub fn len(&self) -> usize {
        self.index.len
    }

    /// Whether no key is monitored.
    pub fn is_empty(&self) -> bool {
        self.index.len == 0
    }

    /// Observations since construction or the last reset (`N`).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The smallest counter (0 while a counter is unused): the most an unmonitored key can have
    /// been observed.
    pub fn min_count(&self) -> u64 {
        self.slots[0].count
    }

    /// Heap bytes held; fixed at construction.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.slots.len() * size_of::<Slot>()
            + self.bucket_of.len() * size_of::<u32>()
            + self.buckets.len() * size_of::<Bucket>()
            + self.free.capacity() * size_of::<u32>()
            + self.index.heap_bytes()
    }

    /// Counts one observation of `key`.
    pub fn observe(&mut self, key: u64) {
        self.total += 1;
        let pos = match self.index.get(key) {
            Some(pos) => pos,
            None => {
                // Take the minimum (position 0): an unused counter, or the key to evict.
                let old = self.slots[0];
                if old.used {
                    self.index.remove(old.key);
                }
                self.slots[0] = Slot {
                    key,
                    count: old.count,
                    error: old.count,
                    used: true,
                };
                self.index.insert(key, 0);
                0
            }
        };
        self.increment(pos);
    }

    /// The counter of `key`, if monitored.
    pub fn get(&self, key: u64) -> Option<Counter> {
        self.index.get(key).map(|pos| counter(&self.slots[pos]))
    }

    /// The monitored keys, in ascending count order.
    pub fn counters(&self) -> impl Iterator<Item = Counter> + '_ {
        self.slots.iter().filter(|s| s.used).map(counter)
    }

    /// Forgets every key and the total.
    pub fn reset(&mut self) {
        let k = self.slots.len();
        self.slots.fill(UNUSED);
        self.bucket_of.fill(0);
        self.buckets[0] = Bucket {
            count: 0,
            start: 0,
            end: pos_u32(k - 1),
        };
        self.free.clear();
        self.free.extend((1..pos_u32(k)).rev());
        self.index.clear();
        self.total = 0;
    }

    fn increment(&mut self, pos: usize) {
        let b = self.bucket_of[pos] as usize;
        let Bucket { count, start, end } = self.buckets[b];
        let end = end as usize;
        if pos != end {
            self.slots.swap(pos, end);
            for p in [pos, end] {
                if self.slots[p].used {
                    self.index.insert(self.slots[p].key, p);
                }
            }
        }
        let bumped = count + 1;
        self.slots[end].count = bumped;
        if start as usize == end {
            self.free.push(pos_u32(b));
        } else {
            self.buckets[b].end = pos_u32(end - 1);
        }
        let next = end + 1;
        if next < self.slots.len() && self.buckets[self.bucket_of[next] as usize].count == bumped {
            let nb = self.bucket_of[next];
            self.buckets[nb as usize].start = pos_u32(end);
            self.bucket_of[end] = nb;
        } else {
            let nb = self
                .free
                .pop()
                .expect("k positions hold at most k buckets, and one was freed or shared");
            self.buckets[nb as usize] = Bucket {
                count: bumped,
                start: pos_u32(end),
                end: pos_u32(end),
            };
            self.bucket_of[end] = nb;
        }
    }

    /// Checks the internal invariants (tests only).
    #[cfg(test)]
    fn check(&self) {
        let k = self.slots.len();
        for p in 1..k {
            assert!(
                self.slots[p - 1].count <= self.slots[p].count,
                "sorted at {p}"
            );
        }
        for p in 0..k {
            let b = self.buckets[self.bucket_of[p] as usize];
            assert_eq!(b.count, self.slots[p].count, "bucket count at {p}");
            assert!(
                b.start as usize <= p && p <= b.end as usize,
                "bucket span at {p}"
            );
            if self.slots[p].used {
                assert_eq!(self.index.get(self.slots[p].key), Some(p));
            }
        }
        let live = (0..k)
            .filter(|&p| p == 0 || self.bucket_of[p] != self.bucket_of[p - 1])
            .count();
        assert_eq!(live + self.free.len(), k, "bucket pool");
        assert_eq!(self.index.len, self.slots.iter().filter(|s| s.used).count());
    }
}

fn counter(s: &Slot) -> Counter {
    Counter {
        key: s.key,
        count: s.count,
        error: s.error,
    }
}

/// Positions fit in u32: `k <= MAX_COUNTERS`.
fn pos_u32(p: usize) -> u32 {
    u32::try_from(p).expect("positions are below MAX_COUNTERS")
}

/// key -> position, open addressing with linear probing; at least twice as many entries as keys.
#[derive(Debug)]
struct KeyIndex {
    /// (key, position); position `EMPTY` marks a free entry.
    entries: Box<[(u64, u32)]>,
    mask: usize,
    len: usize,
}

const EMPTY: u32 = u32::MAX;

impl KeyIndex {
    fn new(keys: usize) -> KeyIndex {
        let size = (keys * 2).next_power_of_two().max(2);
        KeyIndex {
            entries: vec![(0, EMPTY); size].into_boxed_slice(),
            mask: size - 1,
            len: 0,
        }
    }

    fn heap_bytes(&self) -> usize {
        self.entries.len() * std::mem::size_of::<(u64, u32)>()
    }

    fn home(&self, key: u64) -> usize {
        // Truncation keeps the low bits, which the mask selects anyway.
        (fmix64(key) as usize) & self.mask
    }

    fn find(&self, key: u64) -> Result<usize, usize> {
        let mut i = self.home(key);
        loop {
            let (k, p) = self.entries[i];
            if p == EMPTY {
                return Err(i);
            }
            if k == key {
                return Ok(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    fn get(&self, key: u64) -> Option<usize> {
        self.find(key).ok().map(|i| self.entries[i].1 as usize)
    }

    /// Inserts or updates.
    fn insert(&mut self, key: u64, pos: usize) {
        match self.find(key) {
            Ok(i) => self.entries[i].1 = pos_u32(pos),
            Err(i) => {
                self.entries[i] = (key, pos_u32(pos));
                self.len += 1;
            }
        }
    }

    fn remove(&mut self, key: u64) {
        let Ok(mut hole) = self.find(key) else {
            return;
        };
        self.len -= 1;
        // Backward shift: pull later entries of the probe run into the hole when their home
        // allows it, so lookups never need tombstones.
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let (k, p) = self.entries[j];
            if p == EMPTY {
                break;
            }
            let home = self.home(k);
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(hole) & self.mask) {
                self.entries[hole] = (k, p);
                hole = j;
            }
        }
        self.entries[hole] = (0, EMPTY);
    }

    fn clear(&mut self) {
        self.entries.fill((0, EMPTY));
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn counts_exactly_while_keys_fit() {
        let mut s = SpaceSaving::new(4);
        for key in [7, 7, 9, 7, 3, 9] {
            s.observe(key);
            s.check();
        }
        assert_eq!(s.len(), 3);
        assert_eq!(s.total(), 6);
        assert_eq!(s.min_count(), 0, "one counter still unused");
        let c = s.get(7).expect("monitored");
        assert_eq!((c.count, c.error), (3, 0));
        assert_eq!(s.get(9).map(|c| c.count), Some(2));
        assert_eq!(s.get(4), None);
        let order: Vec<u64> = s.counters().map(|c| c.key).collect();
        assert_eq!(order, [3, 9, 7]);
    }

    #[test]
    fn evicts_the_minimum_and_records_its_count_as_error() {
        let mut s = SpaceSaving::new(2);
        for key in [1, 1, 1, 2, 3] {
            s.observe(key);
            s.check();
        }
        // 3 evicted 2 (count 1), so 3 has count 2 of which 1 may be 2's.
        assert_eq!(s.get(2), None);
        let c = s.get(3).expect("monitored");
        assert_eq!((c.count, c.error), (2, 1));
        assert_eq!(s.get(1).map(|c| c.count), Some(3));
    }

    #[test]
    fn one_counter_holds_the_latest_key() {
        let mut s = SpaceSaving::new(1);
        for key in 0..100 {
            s.observe(key);
            s.check();
        }
        let c = s.get(99).expect("monitored");
        assert_eq!((c.count, c.error), (100, 99));
    }

    #[test]
    fn reset_forgets_everything() {
        let mut s = SpaceSaving::new(8);
        for key in 0..1000u64 {
            s.observe(key % 13);
        }
        s.reset();
        s.check();
        assert!(s.is_empty());
        assert_eq!((s.total(), s.min_count()), (0, 0));
        s.observe(5);
        assert_eq!(s.get(5).map(|c| (c.count, c.error)), Some((1, 0)));
    }

    #[test]
    fn invariants_hold_over_a_mixed_stream() {
        let mut s = SpaceSaving::new(16);
        let mut truth: HashMap<u64, u64> = HashMap::new();
        let mut x: u64 = 1;
        for i in 0..20_000u64 {
            // A skewed stream: key i % 5 often, a pseudo-random key otherwise.
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = if i % 3 == 0 { i % 5 } else { (x >> 33) % 500 };
            s.observe(key);
            *truth.entry(key).or_default() += 1;
            if i % 97 == 0 {
                s.check();
            }
        }
        s.check();
        for c in s.counters() {
            let t = truth[&c.key];
            assert!(c.count - c.error <= t && t <= c.count, "{c:?} true {t}");
        }
    }

    #[test]
    fn index_survives_heavy_churn() {
        let mut idx = KeyIndex::new(8);
        let mut live = Vec::new();
        for key in 0..10_000u64 {
            idx.insert(key, (key % 8) as usize);
            live.push(key);
            if live.len() > 8 {
                let gone = live.remove((key as usize * 7) % live.len());
                idx.remove(gone);
                assert_eq!(idx.get(gone), None);
            }
            for &k in &live {
                assert_eq!(idx.get(k), Some((k % 8) as usize));
            }
        }
        assert_eq!(idx.len, live.len());
    }
}
