//! Per-digest statement statistics in bounded memory: how often each statement shape ran, how long
//! it took, how many rows and errors it produced. `/status/digests` shows the top of it, sorted;
//! this is how a DBA finds the statement to throttle with a `[[limits.rules]]` `digest` rule.
//!
//! # Bounded top-N (Space-Saving)
//! At most `capacity` digests are kept. When a new digest arrives and its shard is full, the entry
//! with the smallest count is replaced, and the newcomer starts at that count plus one, with
//! `count_error` set to the inherited part (the Space-Saving algorithm of Metwally et al.). So a
//! flood of one-off statements cannot push out a frequent digest: newcomers climb over each other
//! before they reach it. Any digest whose true count exceeds the smallest kept count is in the
//! table; in particular one that makes up more than 1/(capacity per shard) of its shard's
//! statements. `count` is an upper bound of the true count and
//! `count - count_error` a lower bound; latency, rows and errors cover the executions since the
//! digest last entered the table, which number `count - count_error`.
//!
//! # Cost and threads
//! [`DigestStats::record`] locks one of [`SHARDS`] mutexes (picked by the digest) for a hash
//! lookup and a few additions; the digest text is copied only when a digest enters the table.
//! A full shard finds its smallest entry by a scan of at most `capacity / SHARDS` entries, only
//! when a new digest arrives, which once the workload's shapes are known is rare: O(1) per
//! statement, bounded by the shard size. Plain mutexes rather than a lock-free map: the critical
//! section is tens of nanoseconds, shards spread different digests over different locks, and a
//! lock-free table with eviction would cost far more code for no measurable gain on two cores.
//! Shards make the top-N approximate across shards (each keeps its own top); with the default
//! capacity that matters only for digests near the cut.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Serialize, Serializer};

/// Digests kept by default.
pub const DEFAULT_CAPACITY: usize = 1024;
/// Mutex-protected shards.
pub const SHARDS: usize = 8;
/// Longest digest text kept, in bytes (cut at a character boundary).
pub const MAX_TEXT_LEN: usize = 1024;

/// Gauge: digests in the table.
pub const DIGESTS_TRACKED: &str = "peakgate_digests_tracked";
/// Counter: digests pushed out of the table by new ones (a steady rise means the capacity is too
/// small for the workload's statement shapes).
pub const DIGESTS_EVICTED: &str = "peakgate_digests_evicted_total";

/// Statistics of the statement digests seen, bounded. Shared by every session.
#[derive(Debug)]
pub struct DigestStats {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    evicted: AtomicU64,
}

/// The digest is already a 64-bit hash: the table uses it as is rather than hashing it again.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; this path is for completeness.
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Debug, Default)]
struct Shard {
    /// Digest -> position in `entries`.
    index: HashMap<u64, usize, BuildHasherDefault<DigestHasher>>,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    digest: u64,
    text: Box<str>,
    count: u64,
    count_error: u64,
    total_us: u64,
    max_us: u64,
    rows: u64,
    errors: u64,
}

/// One digest as `/status/digests` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DigestStat {
    /// The digest, shown as 16 hex digits (what a `digest` rule takes).
    #[serde(serialize_with = "hex")]
    pub digest: u64,
    /// The normalised text as first seen (cut at [`MAX_TEXT_LEN`] bytes).
    pub text: String,
    /// Executions counted; at most `count_error` too high (see the module doc).
    pub count: u64,
    /// How much of `count` was inherited from an evicted digest.
    pub count_error: u64,
    /// Latency of the observed executions, microseconds.
    pub total_us: u64,
    /// Slowest observed execution, microseconds.
    pub max_us: u64,
    /// `total_us` over the observed executions.
    pub avg_us: u64,
    /// Rows returned or affected.
    pub rows: u64,
    /// Executions that ended in an error.
    pub errors: u64,
}

fn hex<S: Serializer>(digest: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{digest:016x}"))
}

/// The order of [`DigestStats::snapshot`], largest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DigestSort {
    /// Executions.
    #[default]
    Count,
    /// Total latency: where the database time goes.
    Total,
    /// Slowest single execution.
    Max,
    /// Errors.
    Errors,
    /// Rows.
    Rows,
}

impl DigestSort {
    /// Parses a `sort=` value: count, total, max, errors, rows.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "count" => Self::Count,
            "total" => Self::Total,
            "max" => Self::Max,
            "errors" => Self::Errors,
            "rows" => Self::Rows,
            _ => return None,
        })
    }

    fn key(self, s: &DigestStat) -> u64 {
        match self {
            Self::Count => s.count,
            Self::Total => s.total_us,
            Self::Max => s.max_us,
            Self::Errors => s.errors,
            Self::Rows => s.rows,
        }
    }
}

impl Default for DigestStats {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl DigestStats {
    /// A table of at most `capacity` digests (at least one per shard).
    pub fn new(capacity: usize) -> Self {
        Self::with_shards(capacity, SHARDS)
    }

    fn with_shards(capacity: usize, shards: usize) -> Self {
        let shards = shards.clamp(1, capacity.max(1));
        let per_shard = (capacity / shards).max(1);
        Self {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            per_shard,
            evicted: AtomicU64::new(0),
        }
    }

    /// Most digests kept.
    pub fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    fn shard(&self, digest: u64) -> std::sync::MutexGuard<'_, Shard> {
        // Fibonacci hashing spreads any digest bits over the shards.
        let n = self.shards.len() as u64;
        let i = (digest.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % n;
        self.shards[i as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one execution of the statement with `digest` (text `text`, copied only when the
    /// digest enters the table): its latency, the rows it returned or changed, whether it failed.
    pub fn record(&self, digest: u64, text: &str, latency_us: u64, rows: u64, failed: bool) {
        let mut shard = self.shard(digest);
        let at = match shard.index.get(&digest) {
            Some(&at) => at,
            None => {
                let at = self.admit(&mut shard, digest, text);
                shard.index.insert(digest, at);
                at
            }
        };
        let e = &mut shard.entries[at];
        e.count += 1;
        e.total_us = e.total_us.saturating_add(latency_us);
        e.max_us = e.max_us.max(latency_us);
        e.rows = e.rows.saturating_add(rows);
        e.errors += u64::from(failed);
    }

    /// Makes room for `digest` and returns its position, with its count at the inherited minimum.
    fn admit(&self, shard: &mut Shard, digest: u64, text: &str) -> usize {
        let fresh = |inherited: u64| Entry {
            digest,
            text: cut(text).into(),
            count: inherited,
            count_error: inherited,
            total_us: 0,
            max_us: 0,
            rows: 0,
            errors: 0,
        };
        if shard.entries.len() < self.per_shard {
            shard.entries.push(fresh(0));
            return shard.entries.len() - 1;
        }
        let (at, min) = shard
            .entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.count)
            .map(|(i, e)| (i, e.count))
            .unwrap_or_default();
        let old = std::mem::replace(&mut shard.entries[at], fresh(min));
        shard.index.remove(&old.digest);
        self.evicted.fetch_add(1, Ordering::Relaxed);
        at
    }

    /// Digests in the table now.
    pub fn len(&self) -> usize {
        (0..self.shards.len())
            .map(|i| {
                self.shards[i]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entries
                    .len()
            })
            .sum()
    }

    /// Whether no statement was recorded (since the last reset).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Digests pushed out so far (metric [`DIGESTS_EVICTED`]).
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Forgets every digest.
    pub fn reset(&self) {
        for shard in &*self.shards {
            *shard.lock().unwrap_or_else(|e| e.into_inner()) = Shard::default();
        }
    }

    /// The top `limit` digests by `sort_by`, largest first (ties by count, then digest, so the
    /// order is stable). Locks one shard at a time.
    pub fn snapshot(&self, sort_by: DigestSort, limit: usize) -> Vec<DigestStat> {
        let mut all = Vec::new();
        for shard in &*self.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            all.extend(shard.entries.iter().map(|e| {
                let observed = e.count - e.count_error;
                DigestStat {
                    digest: e.digest,
                    text: e.text.to_string(),
                    count: e.count,
                    count_error: e.count_error,
                    total_us: e.total_us,
                    max_us: e.max_us,
                    avg_us: e.total_us.checked_div(observed).unwrap_or(0),
                    rows: e.rows,
                    errors: e.errors,
                }
            }));
        }
        all.sort_unstable_by(|a, b| {
            (sort_by.key(b), b.count, a.digest).cmp(&(sort_by.key(a), a.count, b.digest))
        });
        all.truncate(limit);
        all
    }
}

/// `text` cut to at most [`MAX_TEXT_LEN`] bytes at a character boundary.
fn cut(text: &str) -> &str {
    if text.len() <= MAX_TEXT_LEN {
        return text;
    }
    let mut end = MAX_TEXT_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(s: &DigestStats) -> Vec<(u64, u64, u64)> {
        let mut v: Vec<_> = s
            .snapshot(DigestSort::Count, usize::MAX)
            .iter()
            .map(|d| (d.digest, d.count, d.count_error))
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn records_counts_latency_rows_errors_and_first_text() {
        let s = DigestStats::new(64);
        s.record(7, "select ?", 100, 1, false);
        s.record(7, "other text", 300, 2, true);
        s.record(9, "update t set a = ?", 50, 0, false);
        let top = s.snapshot(DigestSort::Count, 10);
        assert_eq!(
            top[0],
            DigestStat {
                digest: 7,
                text: "select ?".into(),
                count: 2,
                count_error: 0,
                total_us: 400,
                max_us: 300,
                avg_us: 200,
                rows: 3,
                errors: 1,
            }
        );
        assert_eq!(top.len(), 2);
        let json = serde_json::to_value(&top[0]).unwrap();
        assert_eq!(json["digest"], "0000000000000007");
        s.reset();
        assert!(s.is_empty());
    }

    #[test]
    fn memory_is_bounded() {
        let s = DigestStats::new(100);
        assert!(s.capacity() <= 100);
        for d in 0..10_000u64 {
            s.record(d.wrapping_mul(0x2545_F491_4F6C_DD1D), "q", 1, 0, false);
        }
        assert_eq!(s.len(), s.capacity());
        assert_eq!(s.evicted(), 10_000 - s.capacity() as u64);
        assert_eq!(
            s.snapshot(DigestSort::Count, usize::MAX).len(),
            s.capacity()
        );
    }

    #[test]
    fn the_smallest_count_is_evicted_and_inherited() {
        let s = DigestStats::with_shards(2, 1);
        for _ in 0..3 {
            s.record(1, "a", 1, 0, false);
        }
        s.record(2, "b", 1, 0, false);
        s.record(3, "c", 5, 0, false);
        // b (count 1) made room for c, which starts at 1 + 1 with an error of 1.
        assert_eq!(counts(&s), [(1, 3, 0), (3, 2, 1)]);
        let c = &s.snapshot(DigestSort::Max, 1)[0];
        assert_eq!((c.digest, c.total_us, c.avg_us), (3, 5, 5));
    }

    #[test]
    fn a_frequent_digest_survives_a_flood_of_one_offs() {
        // 1 in 6 statements is the hot one: more than 1/capacity of the stream, which is what
        // Space-Saving guarantees to keep.
        let s = DigestStats::with_shards(8, 1);
        for i in 0..2_000u64 {
            if i % 5 == 0 {
                s.record(42, "hot", 1, 0, false);
            }
            s.record(1_000 + i, "one-off", 1, 0, false);
        }
        let top = s.snapshot(DigestSort::Count, 1);
        assert_eq!(top[0].digest, 42);
        // The true count (400) lies within [count - error, count].
        assert!(top[0].count - top[0].count_error <= 400 && 400 <= top[0].count);
    }

    #[test]
    fn a_late_frequent_digest_gets_in() {
        let s = DigestStats::with_shards(4, 1);
        for i in 0..1_000u64 {
            s.record(i, "one-off", 1, 0, false);
        }
        for _ in 0..50 {
            s.record(77, "late", 1, 0, false);
        }
        assert!(counts(&s).iter().any(|&(d, ..)| d == 77));
    }

    #[test]
    fn sorting_and_limit() {
        let s = DigestStats::new(64);
        // digest: (executions, latency each, rows each, failing)
        for (digest, n, us, rows, failed) in [
            (1, 10, 10, 1, false),
            (2, 2, 1_000, 0, true),
            (3, 5, 100, 50, false),
        ] {
            for _ in 0..n {
                s.record(digest, "q", us, rows, failed);
            }
        }
        s.record(3, "q", 5_000, 0, false);
        let order = |by| -> Vec<u64> { s.snapshot(by, 10).iter().map(|d| d.digest).collect() };
        assert_eq!(order(DigestSort::Count), [1, 3, 2]);
        assert_eq!(order(DigestSort::Total), [3, 2, 1]);
        assert_eq!(order(DigestSort::Max), [3, 2, 1]);
        assert_eq!(order(DigestSort::Errors), [2, 1, 3]);
        assert_eq!(order(DigestSort::Rows), [3, 1, 2]);
        assert_eq!(s.snapshot(DigestSort::Total, 2).len(), 2);
        assert_eq!(DigestSort::parse("errors"), Some(DigestSort::Errors));
        assert_eq!(DigestSort::parse("latency"), None);
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        let s = DigestStats::new(8);
        let text = format!("select '{}'", "é".repeat(MAX_TEXT_LEN));
        s.record(1, &text, 1, 0, false);
        let kept = &s.snapshot(DigestSort::Count, 1)[0].text;
        assert!(kept.len() <= MAX_TEXT_LEN && text.starts_with(kept.as_str()));
        assert!(kept.len() > MAX_TEXT_LEN - 2);
    }

    #[test]
    fn threads_count_every_statement() {
        let s = std::sync::Arc::new(DigestStats::new(1024));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000u64 {
                        s.record(i % 16, "q", t, 1, false);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let top = s.snapshot(DigestSort::Count, usize::MAX);
        assert_eq!(top.len(), 16);
        assert_eq!(top.iter().map(|d| d.count).sum::<u64>(), 20_000);
        assert_eq!(top.iter().map(|d| d.rows).sum::<u64>(), 20_000);
    }
}
