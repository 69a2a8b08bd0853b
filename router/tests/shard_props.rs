//! Property tests of placement: the ring spreads keys evenly, adding a shard moves only the keys
//! the new shard takes (about 1/n of them), and a generated id always routes where its key does.

use peakgate_router::gene::{EPOCH_MS, IdGenerator, IdParts};
use peakgate_router::ring::{ConsistentHash, Key, ShardIdx, Slot};
use peakgate_router::{KeyValue, ShardMap};
use proptest::prelude::*;

const SHOP: &str = r#"
[[tables]]
name = "shop.members"
shard_key = "member_id"
algorithm = "consistent_hash"

[[tables]]
name = "shop.orders"
shard_key = "member_id"
algorithm = "consistent_hash"
gene_column = "id"

[[tables]]
name = "shop.order_items"
binding = "shop.orders"
binding_key = "order_id"

[[tables]]
name = "shop.coupons"
shard_key = "code"
key_type = "string"
algorithm = "consistent_hash"
gene_column = "id"
"#;

fn shop() -> ShardMap {
    ShardMap::from_toml(SHOP, &["s0".into(), "s1".into()], Some("s0"))
        .expect("the shop map is valid")
}

fn ring(names: &[&str], virtual_nodes: u32) -> ConsistentHash {
    let shards: Vec<(ShardIdx, &str)> = names
        .iter()
        .enumerate()
        .map(|(i, &n)| (ShardIdx(i as u16), n))
        .collect();
    ConsistentHash::new(&shards, virtual_nodes).expect("a ring with shards")
}

fn shard_of_int(ch: &ConsistentHash, key: i64) -> ShardIdx {
    ch.shard_of_slot(Key::Int(i128::from(key)).slot())
}

/// Share of the first of two shards over `keys`.
fn share(ch: &ConsistentHash, keys: impl Iterator<Item = i64>) -> f64 {
    let (mut first, mut all) = (0u32, 0u32);
    for key in keys {
        all += 1;
        first += u32::from(shard_of_int(ch, key) == ShardIdx(0));
    }
    f64::from(first) / f64::from(all)
}

#[test]
fn two_shards_share_sequential_keys_evenly() {
    let ch = ring(&["s0", "s1"], 160);
    let s = share(&ch, 0..100_000);
    assert!(
        (0.4..=0.6).contains(&s),
        "s0 takes {s:.3} of sequential keys"
    );
    let slots = ch.slot_table().count(ShardIdx(0));
    assert!(
        (410..=614).contains(&slots),
        "s0 owns {slots} of 1024 slots"
    );
}

#[test]
fn adding_a_shard_moves_about_a_third_for_the_shop_names() {
    let before = ring(&["s0", "s1"], 160);
    let after = ring(&["s0", "s1", "s2"], 160);
    let moved = (0..100_000)
        .filter(|&k| shard_of_int(&before, k) != shard_of_int(&after, k))
        .count();
    let fraction = moved as f64 / 100_000.0;
    assert!(
        (0.33 * 0.8..=0.33 * 1.2).contains(&fraction),
        "{fraction:.3} of keys moved"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// 100k random keys over the shop's two-shard ring: each shard within 20% of half.
    #[test]
    fn random_keys_are_balanced(seed in any::<u64>()) {
        let ch = ring(&["s0", "s1"], 160);
        let keys = (0..100_000u64).map(|i| {
            // splitmix64 of seed + i: a cheap stream of arbitrary keys.
            let mut z = seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as i64
        });
        let s = share(&ch, keys);
        prop_assert!((0.4..=0.6).contains(&s), "s0 takes {:.3}", s);
    }

    /// Adding a shard only moves slots to the new shard, never between old ones, and moves about
    /// 1/n of them, whatever the shard names.
    #[test]
    fn adding_a_shard_moves_only_to_the_new_one(
        names in prop::collection::btree_set("[a-z][a-z0-9_]{0,11}", 3..6),
    ) {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let n = names.len();
        let before = ring(&names[..n - 1], 160);
        let after = ring(&names, 160);
        let new = ShardIdx((n - 1) as u16);
        let mut moved = 0;
        for slot in (0..Slot::COUNT as u16).filter_map(Slot::new) {
            let (b, a) = (before.shard_of_slot(slot), after.shard_of_slot(slot));
            if a != b {
                prop_assert_eq!(a, new, "slot {} moved from {:?} to an old shard", slot.get(), b);
                moved += 1;
            }
        }
        let expected = Slot::COUNT as f64 / n as f64;
        prop_assert!(
            (moved as f64) > expected * 0.5 && (moved as f64) < expected * 1.5,
            "{} of 1024 slots moved, expected about {:.0}", moved, expected
        );
    }

    /// An order id generated for a member routes to the member's shard, for orders, for the
    /// binding table order_items, and through `shard_for_column`; the id decodes to its parts.
    #[test]
    fn gene_ids_route_with_their_key(
        member in any::<i64>(),
        offset_ms in 0u64..(1 << 41),
        node in 0u16..1024,
        burst in 1usize..6,
    ) {
        let map = shop();
        let members = map.table(Some("shop"), "members").unwrap();
        let orders = map.table(Some("shop"), "orders").unwrap();
        let items = map.table(Some("shop"), "order_items").unwrap();
        let key = KeyValue::Int(member);
        let shard = map.shard_for(members, key).unwrap();
        prop_assert_eq!(map.shard_for(orders, key).unwrap(), shard);
        let gene = map.gene_for(orders, key).unwrap();
        let mut generator = IdGenerator::new(node).unwrap();
        let now = EPOCH_MS + offset_ms;
        let mut last = None;
        for _ in 0..burst {
            let id = match generator.next_id(now, gene) {
                Ok(id) => id,
                // A fifth id in one millisecond for one gene waits; past the layout's end none come.
                Err(_) => break,
            };
            prop_assert!(id <= i64::MAX as u64);
            prop_assert!(last.is_none_or(|l| id > l));
            last = Some(id);
            let parts = IdParts::decode(id);
            prop_assert_eq!(parts.unix_ms, now);
            prop_assert_eq!(parts.node_id, node);
            prop_assert_eq!(parts.gene, gene);
            prop_assert_eq!(parts.encode().unwrap(), id);
            prop_assert_eq!(map.shard_of_gene_id(orders, id).unwrap(), shard);
            prop_assert_eq!(map.shard_for(items, KeyValue::UInt(id)).unwrap(), shard);
            prop_assert_eq!(map.shard_for_column(orders, "id", KeyValue::UInt(id)).unwrap(), Some(shard));
        }
    }

    /// The same for a string shard key, given as bytes.
    #[test]
    fn gene_ids_route_with_string_keys(code in ".{0,40}", offset_ms in 0u64..1_000_000) {
        let map = shop();
        let coupons = map.table(Some("shop"), "coupons").unwrap();
        let key = KeyValue::Bytes(code.as_bytes());
        let shard = map.shard_for(coupons, key).unwrap();
        let mut generator = IdGenerator::new(3).unwrap();
        let id = generator.next_id(EPOCH_MS + offset_ms, map.gene_for(coupons, key).unwrap()).unwrap();
        prop_assert_eq!(map.shard_of_gene_id(coupons, id).unwrap(), shard);
    }

    /// Ids of one generator are unique and never go down, whatever the clock does.
    #[test]
    fn ids_are_unique_and_ordered(
        steps in prop::collection::vec((-2i64..3, 0u16..4), 1..200),
    ) {
        let mut generator = IdGenerator::new(9).unwrap();
        let mut now = EPOCH_MS + 10;
        let mut seen = std::collections::HashSet::new();
        let mut max_ms = 0;
        for (step, gene) in steps {
            now = now.saturating_add_signed(step);
            let gene = Slot::new(gene).unwrap();
            if let Ok(id) = generator.next_id(now, gene) {
                prop_assert!(seen.insert(id), "duplicate id {}", id);
                let ms = IdParts::decode(id).unix_ms;
                prop_assert!(ms >= max_ms, "id went back in time");
                max_ms = ms;
            }
        }
    }
}
