//! Property tests of hot SKU detection: Space-Saving's guarantee (every key above N/k is found,
//! counts within N/k), alone and merged over threads' shards; memory that stays fixed over
//! millions of distinct keys; and promotion/demotion over a simulated clock against a reference
//! model of the hysteresis.

use std::collections::HashMap;

use peakgate_router::hotspot::{
    AutoDetect, HotEvent, HotRegistry, HotspotSettings, ShardedCounter, SpaceSaving,
};
use proptest::prelude::*;

/// A skewed stream: keys drawn from `0..distinct`, a few of them (those below `heavy`) far more
/// often, shuffled by `seed`.
fn stream(len: usize, distinct: u64, heavy: u64, seed: u64) -> Vec<u64> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..len)
        .map(|_| {
            let r = next();
            if heavy > 0 && r % 3 == 0 {
                (r >> 8) % heavy
            } else {
                (r >> 8) % distinct
            }
        })
        .collect()
}

fn truth(keys: &[u64]) -> HashMap<u64, u64> {
    let mut t = HashMap::new();
    for &k in keys {
        *t.entry(k).or_insert(0) += 1;
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn space_saving_finds_every_key_above_n_over_k(
        k in 1usize..48,
        len in 0usize..4000,
        distinct in 1u64..2000,
        heavy in 0u64..6,
        seed: u64,
    ) {
        let keys = stream(len, distinct, heavy, seed);
        let mut s = SpaceSaving::new(k);
        for &key in &keys {
            s.observe(key);
        }
        let n = keys.len() as u64;
        let bound = n / k as u64;
        prop_assert!(s.len() <= k);
        prop_assert_eq!(s.total(), n);
        prop_assert_eq!(s.counters().map(|c| c.count).sum::<u64>(), n, "counts sum to N");
        prop_assert!(s.min_count() <= bound);
        for (key, f) in truth(&keys) {
            match s.get(key) {
                Some(c) => {
                    prop_assert!(c.count - c.error <= f && f <= c.count, "{:?} true {}", c, f);
                    prop_assert!(c.error <= bound, "{:?} error above N/k = {}", c, bound);
                }
                None => {
                    prop_assert!(f * k as u64 <= n, "key {} seen {} times of {} is missing", key, f, n);
                    prop_assert!(f <= s.min_count());
                }
            }
        }
    }

    #[test]
    fn sharded_counts_keep_the_guarantee_when_merged(
        k in 1usize..32,
        threads in 1usize..6,
        len in 0usize..6000,
        distinct in 1u64..1500,
        heavy in 0u64..5,
        seed: u64,
    ) {
        let keys = stream(len, distinct, heavy, seed);
        let counter = ShardedCounter::new(k);
        std::thread::scope(|s| {
            for chunk in keys.chunks(keys.len().div_ceil(threads).max(1)) {
                let counter = &counter;
                s.spawn(move || chunk.iter().for_each(|&key| counter.observe(key)));
            }
        });
        let mut merged = HashMap::new();
        let n = counter.drain(&mut merged);
        prop_assert_eq!(n, keys.len() as u64);
        let bound = n / k as u64;
        for (key, f) in truth(&keys) {
            match merged.get(&key) {
                Some(e) => {
                    prop_assert!(e.lower <= f && f <= e.upper, "{:?} true {}", e, f);
                    prop_assert!(f - e.lower <= bound && e.upper - f <= bound, "{:?} true {} N/k {}", e, f, bound);
                }
                None => prop_assert!(f * k as u64 <= n, "key {} seen {} times of {} is missing", key, f, n),
            }
        }
    }

    /// A SKU at twice `min_qps` among background traffic of up to (k - 2) * min_qps statements is
    /// promoted at the first full tick, and nothing whose true rate is below `min_qps` ever is.
    #[test]
    fn a_sku_at_twice_min_qps_is_promoted_at_the_first_tick(
        background in 0usize..7000,
        distinct in 20u64..5000,
        seed: u64,
    ) {
        let r = registry(&[], 500, 30_000);
        r.tick(0);
        let mut keys = stream(background, distinct, 0, seed);
        keys.extend(std::iter::repeat_n(1_000_000, 1000));
        shuffle(&mut keys, seed);
        for &key in &keys {
            r.observe(key);
        }
        let events = r.tick(1000);
        let t = truth(&keys);
        prop_assert!(events.iter().any(|e| e.sku() == 1_000_000), "{:?}", events);
        for e in &events {
            prop_assert!(matches!(e, HotEvent::Promote { .. }), "{:?}", e);
            prop_assert!(t[&e.sku()] >= 500, "{:?} promoted at a true {}", e, t[&e.sku()]);
        }
    }

    /// One SKU's per-second load follows `rates`; the registry's events match a reference model of
    /// the hysteresis exactly, and a configured SKU under the same load never gets an event.
    #[test]
    fn promotion_and_demotion_follow_the_hysteresis_model(
        rates in prop::collection::vec(
            prop::sample::select(vec![0u64, 100, 249, 250, 300, 499, 500, 700, 1000]),
            1..80,
        ),
        cool_secs in 0u64..5,
    ) {
        let (min_qps, sku, configured) = (500, 42, 1001);
        let r = registry(&[configured], min_qps, cool_secs * 1000);
        r.tick(0);
        let mut hot = false;
        let mut cool = 0;
        for (i, &n) in rates.iter().enumerate() {
            for _ in 0..n {
                r.observe(sku);
                r.observe(configured);
            }
            let now = (i as u64 + 1) * 1000;
            let events = r.tick(now);
            // The model: promote on a second at min_qps or more; demote after `cool_secs` seconds
            // in a row below min_qps * 0.5 (at least one: a hot SKU is judged on a window first).
            let expected = if !hot {
                (n >= min_qps).then_some(HotEvent::Promote { sku, qps: n })
            } else {
                cool = if n * 2 < min_qps { cool + 1 } else { 0 };
                (cool >= cool_secs.max(1)).then_some(HotEvent::Demote { sku, qps: n })
            };
            prop_assert_eq!(events.as_slice(), expected.as_slice(), "second {} at {}", i + 1, n);
            for e in &events {
                prop_assert!(r.apply(e));
                hot = matches!(e, HotEvent::Promote { .. });
                cool = 0;
            }
            prop_assert!(r.is_hot("sku_stock", configured));
        }
    }
}

#[test]
fn memory_stays_fixed_over_millions_of_distinct_keys() {
    let mut s = SpaceSaving::new(16);
    let before = s.heap_bytes();
    for key in 0..3_000_000u64 {
        s.observe(key.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
    assert_eq!(s.heap_bytes(), before);
    assert_eq!(s.len(), 16);

    let r = registry(&[1001], 500, 30_000);
    let before = r.counter_heap_bytes();
    assert!(before > 0 && before < 64 * 1024, "{before} bytes");
    r.tick(0);
    for key in 0..3_000_000u64 {
        r.observe(key + 10_000_000);
    }
    assert_eq!(r.counter_heap_bytes(), before);
    assert!(r.tick(1000).is_empty(), "no key was repeated");
}

fn registry(skus: &[u64], min_qps: u64, cool_down_ms: u64) -> HotRegistry {
    let mut s = HotspotSettings::new("127.0.0.1:3331");
    s.skus = skus.to_vec();
    s.auto_detect = Some(AutoDetect {
        min_qps,
        cool_down_ms,
        ..AutoDetect::default()
    });
    HotRegistry::new(s).expect("valid settings")
}

fn shuffle(keys: &mut [u64], seed: u64) {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for i in (1..keys.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        keys.swap(i, (x % (i as u64 + 1)) as usize);
    }
}
