//! [`HotSet`]: one immutable set of hot SKUs, the snapshot readers load per statement.
//!
//! An open-addressing table (linear probing, at most half full) of indexes into the entries,
//! which are sorted by SKU. A lookup hashes once and probes a few `u32`s: O(1), no allocation.
//! The set never changes once built; a change builds a new one. Only the per-entry hit counters
//! move: the proxy counts observations of hot SKUs there, exactly, for demotion and `/status`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::ring::fmix64;

/// Why a SKU is hot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Listed in `[hotspot] skus`: hot from start, never demoted by detection.
    Configured,
    /// Added through the admin API: never demoted by detection.
    Manual,
    /// Promoted by detection: demoted when it cools.
    Detected,
}

impl Origin {
    /// The origin's snake_case name, as `/status` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Configured => "configured",
            Origin::Manual => "manual",
            Origin::Detected => "detected",
        }
    }
}

/// Which hot instance serves a hot SKU: an index into the proxy's hot instances. Today there is
/// one, `[hotspot] instance`, index 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct HotInstance(pub u16);

/// What a lookup of a hot SKU answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HotEntry {
    /// Why it is hot.
    pub origin: Origin,
    /// Where its row lives.
    pub instance: HotInstance,
}

/// One hot SKU in a [`HotSet`].
#[derive(Debug)]
pub struct HotSku {
    /// The SKU id.
    pub sku: u64,
    /// Why and where.
    pub entry: HotEntry,
    /// Observations since the last tick (exact; taken and reset by the tick).
    hits: AtomicU64,
}

impl HotSku {
    /// A hot SKU with no hits yet.
    pub fn new(sku: u64, origin: Origin, instance: HotInstance) -> HotSku {
        HotSku {
            sku,
            entry: HotEntry { origin, instance },
            hits: AtomicU64::new(0),
        }
    }

    /// Observations counted since the last tick.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub(super) fn add_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the hits counted so far, leaving 0.
    pub(super) fn take_hits(&self) -> u64 {
        self.hits.swap(0, Ordering::Relaxed)
    }

    pub(super) fn with_hits(self, hits: u64) -> HotSku {
        self.hits.store(hits, Ordering::Relaxed);
        self
    }
}

const EMPTY: u32 = u32::MAX;

/// An immutable set of hot SKUs.
#[derive(Debug)]
pub struct HotSet {
    /// Sorted by SKU, unique.
    skus: Box<[HotSku]>,
    /// Indexes into `skus`; `EMPTY` marks a free entry.
    table: Box<[u32]>,
    mask: usize,
}

impl Default for HotSet {
    fn default() -> HotSet {
        HotSet::new(Vec::new())
    }
}

impl HotSet {
    /// The most SKUs one set holds (far above any flash sale).
    pub const MAX_SKUS: usize = 1 << 24;

    /// A set of `skus`; of two entries for one SKU the first is kept. At most [`Self::MAX_SKUS`]
    /// are kept.
    pub fn new(mut skus: Vec<HotSku>) -> HotSet {
        skus.truncate(Self::MAX_SKUS);
        skus.sort_by_key(|s| s.sku);
        skus.dedup_by_key(|s| s.sku);
        let size = (skus.len() * 2).next_power_of_two().max(2);
        let mask = size - 1;
        let mut table = vec![EMPTY; size].into_boxed_slice();
        for (i, s) in skus.iter().enumerate() {
            let mut at = home(s.sku, mask);
            while table[at] != EMPTY {
                at = (at + 1) & mask;
            }
            table[at] = u32::try_from(i).expect("at most MAX_SKUS entries");
        }
        HotSet {
            skus: skus.into_boxed_slice(),
            table,
            mask,
        }
    }

    /// The hot SKU `sku`, if hot.
    #[inline]
    pub fn get(&self, sku: u64) -> Option<&HotSku> {
        if self.skus.is_empty() {
            return None;
        }
        let mut at = home(sku, self.mask);
        loop {
            let i = self.table[at];
            if i == EMPTY {
                return None;
            }
            let s = &self.skus[i as usize];
            if s.sku == sku {
                return Some(s);
            }
            at = (at + 1) & self.mask;
        }
    }

    /// Whether `sku` is hot.
    #[inline]
    pub fn contains(&self, sku: u64) -> bool {
        self.get(sku).is_some()
    }

    /// The hot SKUs, ascending.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &HotSku> {
        self.skus.iter()
    }

    /// Number of hot SKUs.
    pub fn len(&self) -> usize {
        self.skus.len()
    }

    /// Whether no SKU is hot.
    pub fn is_empty(&self) -> bool {
        self.skus.is_empty()
    }
}

#[inline]
fn home(sku: u64, mask: usize) -> usize {
    // Truncation keeps the low bits, which the mask selects anyway.
    (fmix64(sku) as usize) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(skus: &[u64]) -> HotSet {
        HotSet::new(
            skus.iter()
                .map(|&s| HotSku::new(s, Origin::Configured, HotInstance(0)))
                .collect(),
        )
    }

    #[test]
    fn finds_members_only() {
        let s = set(&[1001, 1002, 7, u64::MAX, 0]);
        for sku in [1001, 1002, 7, u64::MAX, 0] {
            assert!(s.contains(sku), "{sku}");
        }
        for sku in [1, 1003, 8, u64::MAX - 1] {
            assert!(!s.contains(sku), "{sku}");
        }
        let order: Vec<u64> = s.iter().map(|h| h.sku).collect();
        assert_eq!(order, [0, 7, 1001, 1002, u64::MAX]);
    }

    #[test]
    fn empty_set_has_nothing() {
        let s = HotSet::default();
        assert!(s.is_empty());
        assert!(!s.contains(0));
    }

    #[test]
    fn duplicates_keep_the_first() {
        let s = HotSet::new(vec![
            HotSku::new(5, Origin::Manual, HotInstance(0)),
            HotSku::new(5, Origin::Detected, HotInstance(0)),
        ]);
        assert_eq!(s.len(), 1);
        assert_eq!(s.get(5).map(|h| h.entry.origin), Some(Origin::Manual));
    }

    #[test]
    fn large_sets_stay_exact() {
        let skus: Vec<u64> = (0..5000u64).map(|i| i * 7919).collect();
        let s = set(&skus);
        assert_eq!(s.len(), 5000);
        for i in 0..40_000u64 {
            assert_eq!(s.contains(i), i % 7919 == 0 && i / 7919 < 5000, "{i}");
        }
    }

    #[test]
    fn hits_are_taken_once() {
        let s = set(&[9]);
        let h = s.get(9).expect("hot");
        h.add_hit();
        h.add_hit();
        assert_eq!(h.hits(), 2);
        assert_eq!(h.take_hits(), 2);
        assert_eq!(h.hits(), 0);
    }
}
