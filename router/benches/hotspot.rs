//! Hot-path benchmarks for the hot SKU registry: what a statement on the hot table costs the
//! proxy. `is_hot` on a hit and a miss (configured SKUs plus the detection limit's worth of hot
//! ones), and `observe` of a hot SKU (exact atomic counter) and of cold SKUs (Space-Saving shard),
//! over a skewed key stream so that evictions happen as they would in a shop.
//!
//! Run: `cargo bench -p peakgate-router --bench hotspot -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use peakgate_router::hotspot::{AutoDetect, HotRegistry, HotspotSettings};

fn registry() -> HotRegistry {
    let mut s = HotspotSettings::new("127.0.0.1:3331");
    s.skus = (1001..=1010).collect();
    s.auto_detect = Some(AutoDetect::default());
    let r = HotRegistry::new(s).expect("valid settings");
    for sku in 0..16 {
        r.add(50_000 + sku * 7);
    }
    r
}

/// A cheap deterministic stream of cold SKUs: a few thousand distinct, some far more often.
fn cold_keys() -> Vec<u64> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Squaring a uniform value skews it towards small SKUs.
            let u = (x >> 40) % 4096;
            100_000 + u * u / 4096
        })
        .collect()
}

fn is_hot(c: &mut Criterion) {
    let r = registry();
    let mut group = c.benchmark_group("hotspot_is_hot");
    group.bench_function("hit", |b| {
        b.iter(|| r.is_hot(black_box("sku_stock"), black_box(1005)))
    });
    group.bench_function("miss", |b| {
        b.iter(|| r.is_hot(black_box("sku_stock"), black_box(123_456)))
    });
    group.bench_function("other_table", |b| {
        b.iter(|| r.is_hot(black_box("orders"), black_box(1005)))
    });
    group.finish();
}

fn observe(c: &mut Criterion) {
    let r = registry();
    let keys = cold_keys();
    let mut group = c.benchmark_group("hotspot_observe");
    group.bench_function("hot_sku", |b| b.iter(|| r.observe(black_box(1005))));
    let mut i = 0;
    group.bench_function("cold_skus", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            r.observe(black_box(keys[i]))
        })
    });
    group.finish();
    // Keep the window from growing: the tick drains the shards (about once a second in the proxy).
    black_box(r.tick(0));
}

criterion_group!(benches, is_hot, observe);
criterion_main!(benches);
