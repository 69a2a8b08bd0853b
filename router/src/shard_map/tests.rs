//! Shard map validation (one test per error class, lines asserted) and lookups.

use super::*;

fn shards() -> Vec<String> {
    vec!["s0".into(), "s1".into()]
}

/// The shop's map, as `scripts/topology` writes it (with the proxy's keys around it).
const SHOP: &str = r#"
[listen]
mysql = "127.0.0.1:6033"

[sharding]
node_id = 1
scatter_writes = "reject"

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
binding = "orders"
binding_key = "order_id"

[[tables]]
name = "shop.products"
global = true

[[tables]]
name = "categories"
broadcast = true

[[tables]]
name = "shop.events"
shard_key = "day"
algorithm = "range"
ranges = [{ shard = "s0", to = 100 }, { shard = "s1", from = 100 }]
"#;

fn shop() -> ShardMap {
    ShardMap::from_toml(SHOP, &shards(), Some("s0")).unwrap()
}

/// Every error of `text` as one string per error.
fn errors(text: &str) -> Vec<String> {
    match ShardMap::from_toml(text, &shards(), None) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

/// Asserts that exactly one error was reported and that it is `expected`.
fn assert_error(text: &str, expected: &str) {
    let errs = errors(text);
    assert_eq!(errs, vec![expected.to_string()], "for:\n{text}");
}

#[test]
fn shop_map_resolves() {
    let map = shop();
    assert_eq!(map.node_id(), 1);
    assert_eq!(map.scatter_writes(), ScatterWrites::Reject);
    assert_eq!(
        map.cross_shard_transactions(),
        CrossShardTransactions::Error
    );
    assert_eq!(map.default_shard(), Some(ShardIdx(0)));
    assert_eq!(map.tables().len(), 6);
    let items = map.table(Some("shop"), "order_items").unwrap();
    match items.kind() {
        TableKind::Binding(b) => {
            assert_eq!(b.parent, "shop.orders");
            assert_eq!(b.binding_key, "order_id");
        }
        other => panic!("{other:?}"),
    }
    let text = map.to_string();
    assert!(text.contains("shop.orders: sharded by member_id (integer), consistent_hash over s0, s1, 160 virtual nodes each"), "{text}");
    assert!(text.contains("shop.products: global, on s0"), "{text}");
    assert!(
        text.contains("shop.order_items: bound to shop.orders by order_id (holds shop.orders.id values, which carry the shard)"),
        "{text}"
    );
    assert!(
        text.contains("; gene column id: its values carry the shard"),
        "{text}"
    );
    assert!(text.contains("*.categories: broadcast"), "{text}");
    assert!(
        text.contains(
            "shop.events: sharded by day (integer), range: [.., 100) -> s0, [100, ..) -> s1"
        ),
        "{text}"
    );
}

#[test]
fn table_lookup_is_case_insensitive_and_schema_aware() {
    let map = shop();
    assert_eq!(
        map.table(Some("SHOP"), "Members").unwrap().name(),
        "members"
    );
    assert!(map.table(Some("other"), "members").is_none());
    assert!(map.table(None, "members").is_none());
    // A rule without schema matches any schema, and no schema.
    assert!(
        map.table(Some("other"), "CATEGORIES")
            .unwrap()
            .is_broadcast()
    );
    assert!(map.table(None, "categories").is_some());
    assert!(map.table(Some("shop"), "nope").is_none());
}

#[test]
fn schema_rule_beats_schemaless_rule() {
    let text = r#"
[[tables]]
name = "t"
global = true
[[tables]]
name = "a.t"
broadcast = true
"#;
    let map = ShardMap::from_toml(text, &shards(), None).unwrap();
    assert!(map.table(Some("a"), "t").unwrap().is_broadcast());
    assert!(map.table(Some("b"), "t").unwrap().is_global());
}

#[test]
fn lookups_route_keys_ids_and_bindings_together() {
    let map = shop();
    let members = map.table(Some("shop"), "members").unwrap();
    let orders = map.table(Some("shop"), "orders").unwrap();
    let items = map.table(Some("shop"), "order_items").unwrap();
    let mut generator = crate::gene::IdGenerator::new(map.node_id()).unwrap();
    for member in [0i64, 1, 2, 3, 42, -1, i64::MAX, i64::MIN, 1_000_003] {
        let key = KeyValue::Int(member);
        let shard = map.shard_for(members, key).unwrap();
        assert_eq!(map.shard_for(orders, key).unwrap(), shard);
        let gene = map.gene_for(orders, key).unwrap();
        let id = generator.next_id(crate::gene::EPOCH_MS + 5, gene).unwrap();
        assert_eq!(map.shard_of_gene_id(orders, id).unwrap(), shard);
        assert_eq!(map.shard_of_gene_id(items, id).unwrap(), shard);
        let id_key = KeyValue::UInt(id);
        assert_eq!(map.shard_for(items, id_key).unwrap(), shard);
        assert_eq!(
            map.shard_for_column(orders, "ID", id_key).unwrap(),
            Some(shard)
        );
        assert_eq!(
            map.shard_for_column(orders, "member_id", key).unwrap(),
            Some(shard)
        );
        assert_eq!(
            map.shard_for_column(items, "order_id", id_key).unwrap(),
            Some(shard)
        );
        assert_eq!(map.shard_for_column(orders, "status", key).unwrap(), None);
    }
    let products = map.table(Some("shop"), "products").unwrap();
    assert_eq!(
        map.shard_for(products, KeyValue::Int(1)).unwrap(),
        ShardIdx(0)
    );
    let categories = map.table(Some("shop"), "categories").unwrap();
    assert!(matches!(
        map.shard_for(categories, KeyValue::Int(1)),
        Err(Error::BroadcastTable)
    ));
    assert!(matches!(
        map.gene_for(members, KeyValue::Int(1)),
        Err(Error::NoGeneColumn)
    ));
    assert!(matches!(
        map.shard_of_gene_id(members, 1),
        Err(Error::NoGeneColumn)
    ));
    assert!(matches!(
        map.shard_for(items, KeyValue::Int(-5)),
        Err(Error::NegativeId)
    ));
    assert!(matches!(
        map.shard_for(members, KeyValue::Bytes(b"abc")),
        Err(Error::KeyNotInteger)
    ));
    let events = map.table(Some("shop"), "events").unwrap();
    assert_eq!(
        map.shard_for(events, KeyValue::Int(i64::MIN)).unwrap(),
        ShardIdx(0)
    );
    assert_eq!(
        map.shard_for(events, KeyValue::Bytes(b"100")).unwrap(),
        ShardIdx(1)
    );
}

#[test]
fn empty_map_is_valid() {
    let map = ShardMap::from_toml("[listen]\nmysql = \"x\"\n", &shards(), Some("s1")).unwrap();
    assert!(map.is_empty());
    assert_eq!(map.default_shard(), Some(ShardIdx(1)));
    assert!(map.to_string().contains("no [[tables]]"));
}

#[test]
fn unknown_shard_names_are_reported() {
    assert_error(
        "[[tables]]\nname = \"t\"\nshard_key = \"k\"\nalgorithm = \"modulo\"\nshards = [\"s0\", \"s7\"]\n",
        "tables[0].shards[1]: shard \"s7\" is not defined in [[shards]] (defined: s0, s1) (line 5)",
    );
    assert_error(
        "[sharding]\ndefault_shard = \"s9\"\n",
        "sharding.default_shard: shard \"s9\" is not defined in [[shards]] (defined: s0, s1) (line 2)",
    );
}

#[test]
fn default_shard_must_agree_with_the_proxy() {
    let errs = ShardMap::from_toml(
        "[sharding]\ndefault_shard = \"s1\"\n",
        &shards(),
        Some("s0"),
    )
    .unwrap_err();
    assert_eq!(errs[0].path, "sharding.default_shard");
    assert_eq!(errs[0].line, Some(2));
    assert!(
        errs[0].message.contains("routing.default_shard \"s0\""),
        "{}",
        errs[0]
    );
    let map = ShardMap::from_toml("[sharding]\ndefault_shard = \"s1\"\n", &shards(), None).unwrap();
    assert_eq!(map.default_shard(), Some(ShardIdx(1)));
}

#[test]
fn range_gaps_overlaps_and_empty_ranges_are_reported() {
    let table = |ranges: &str| {
        format!(
            "[[tables]]\nname = \"t\"\nshard_key = \"k\"\nalgorithm = \"range\"\nranges = [\n{ranges}]\n"
        )
    };
    assert_error(
        &table("{ shard = \"s0\", from = 0, to = 10 },\n{ shard = \"s1\", from = 20 },\n"),
        "tables[0].ranges[1].from: gap: keys in [10, 20) have no shard; ranges[0] ends at 10, start this range there (line 7)",
    );
    assert_error(
        &table("{ shard = \"s0\", from = 0, to = 10 },\n{ shard = \"s1\", from = 5 },\n"),
        "tables[0].ranges[1].from: overlap: 5 is inside ranges[0], which ends at 10; list ranges in ascending order, each from equal to the previous to (line 7)",
    );
    assert_error(
        &table("{ shard = \"s0\", from = 10, to = 10 },\n"),
        "tables[0].ranges[0].to: empty range [10, 10): to must be above from (line 6)",
    );
    assert_error(
        &table("{ shard = \"s0\", from = 0 },\n{ shard = \"s1\", from = 10 },\n"),
        "tables[0].ranges[0].to: missing: only the last range may leave out to (unbounded above) (line 6)",
    );
    assert_error(
        &table("{ shard = \"s0\", to = 10 },\n{ shard = \"s1\" },\n"),
        "tables[0].ranges[1].from: missing: only the first range may leave out from (unbounded below) (line 7)",
    );
    assert_error(
        &table("{ shard = \"s0\", to = 10 },\n{ shard = \"s5\", from = 10 },\n"),
        "tables[0].ranges[1].shard: shard \"s5\" is not defined in [[shards]] (defined: s0, s1) (line 7)",
    );
    assert_error(
        "[[tables]]\nname = \"t\"\nshard_key = \"k\"\nalgorithm = \"range\"\n",
        "tables[0].ranges: missing: a range table needs ranges = [{ shard = \"s0\", from = 0, to = 1000 }, ...] (line 2)",
    );
}

#[test]
fn duplicate_tables_are_reported() {
    let text = "[[tables]]\nname = \"shop.t\"\nglobal = true\n\n[[tables]]\nname = \"SHOP.T\"\nbroadcast = true\n";
    assert_error(
        text,
        "tables[1].name: \"SHOP.T\" is already mapped by tables[0] on line 2 (line 6)",
    );
}

#[test]
fn bindings_must_follow_a_known_sharded_table() {
    let base = "[[tables]]\nname = \"g\"\nglobal = true\n\n[[tables]]\nname = \"items\"\nbinding_key = \"order_id\"\n";
    assert_error(
        &format!("{base}binding = \"orders\"\n"),
        "tables[1].binding: no [[tables]] entry for \"orders\"; a binding table follows a sharded table (line 8)",
    );
    assert_error(
        &format!("{base}binding = \"g\"\n"),
        "tables[1].binding: \"g\" is a global table, which is not sharded (line 8)",
    );
    assert_error(
        &format!("{base}binding = \"items\"\n"),
        "tables[1].binding: \"items\" is itself a binding table; bind to the table it follows (line 8)",
    );
    assert_error(
        "[[tables]]\nname = \"items\"\nbinding = \"orders\"\n",
        "tables[0].binding_key: missing: the column holding orders's ids (or shard keys) (line 2)",
    );
    assert_error(
        "[[tables]]\nname = \"items\"\nbinding = \"orders\"\nbinding_key = \"order_id\"\nshard_key = \"x\"\n",
        "tables[0].shard_key: not used by a binding table; remove it (line 5)",
    );
}

#[test]
fn global_and_broadcast_exclude_each_other() {
    assert_error(
        "[[tables]]\nname = \"t\"\nglobal = true\nbroadcast = true\n",
        "tables[0].broadcast: a table is one of global (default shard only), broadcast (a copy on every shard), binding (follows a sharded table) or sharded, not several (line 4)",
    );
    assert_error(
        "[[tables]]\nname = \"t\"\nglobal = true\nalgorithm = \"modulo\"\n",
        "tables[0].algorithm: not used by a global table; remove it (line 4)",
    );
}

#[test]
fn sharded_tables_need_key_and_algorithm() {
    assert_error(
        "\n[[tables]]\nname = \"shop.members\"\nalgorithm = \"modulo\"\n",
        "tables[0].shard_key: missing: a sharded table needs the column that picks its shard (or set global, broadcast or binding) (line 3)",
    );
    assert_error(
        "[[tables]]\nname = \"t\"\nshard_key = \"k\"\n",
        "tables[0].algorithm: missing; expected \"consistent_hash\", \"range\" or \"modulo\" (line 2)",
    );
    assert_error(
        "[[tables]]\nname = \"t\"\nshard_key = \"k\"\nalgorithm = \"ring\"\n",
        "tables[0].algorithm: unknown algorithm \"ring\"; expected \"consistent_hash\", \"range\" or \"modulo\" (line 4)",
    );
    assert_error(
        "[[tables]]\nname = \"t\"\nshard_key = \"k\"\nkey_type = \"uuid\"\nalgorithm = \"modulo\"\n",
        "tables[0].key_type: unknown key type \"uuid\"; expected \"integer\" or \"string\" (line 4)",
    );
    assert_error(
        "[[tables]]\nname = \"a.b.c\"\nglobal = true\n",
        "tables[0].name: \"a.b.c\" is not a table name: expected schema.table or table (line 2)",
    );
}

#[test]
fn zero_shards_are_reported() {
    assert_error(
        "[[tables]]\nname = \"t\"\nshard_key = \"k\"\nalgorithm = \"modulo\"\nshards = []\n",
        "tables[0].shards: zero shards; list at least one, or leave the key out for all of them (line 5)",
    );
    let errs = ShardMap::from_toml(
        "[[tables]]\nname = \"t\"\nshard_key = \"k\"\nalgorithm = \"consistent_hash\"\n",
        &[],
        None,
    )
    .unwrap_err();
    assert_eq!(
        errs[0].to_string(),
        "tables[0].shards: no shards to spread the table over: [[shards]] is empty (line 2)"
    );
}

#[test]
fn algorithm_specific_keys_are_checked() {
    assert_error(
        "[[tables]]\nname = \"t\"\nshard_key = \"k\"\nalgorithm = \"modulo\"\ngene_column = \"id\"\n",
        "tables[0].gene_column: needs algorithm = \"consistent_hash\": an id carries its key's slot, and only consistent_hash maps slots to shards (line 5)",
    );
    assert_error(
        "[[tables]]\nname = \"t\"\nshard_key = \"k\"\nalgorithm = \"consistent_hash\"\nvirtual_nodes = 0\n",
        "tables[0].virtual_nodes: 0 is out of range 1..=4096 (line 5)",
    );
    assert_error(
        "[[tables]]\nname = \"t\"\nshard_key = \"k\"\nalgorithm = \"consistent_hash\"\ngene_column = \"K\"\n",
        "tables[0].gene_column: is the shard key itself; name the id column that carries the key's shard (line 5)",
    );
    assert_error(
        "[[tables]]\nname = \"t\"\nshard_key = \"k\"\nalgorithm = \"modulo\"\nshards = [\"s0\", \"s0\"]\n",
        "tables[0].shards[1]: shard \"s0\" is listed twice (line 5)",
    );
}

#[test]
fn sharding_section_values_are_checked() {
    assert_error(
        "[sharding]\nnode_id = 1024\n",
        "sharding.node_id: 1024 is out of range 0..=1023; give each proxy instance its own (line 2)",
    );
    assert_error(
        "[sharding]\nnode_id = -1\n",
        "sharding.node_id: -1 is out of range 0..=1023; give each proxy instance its own (line 2)",
    );
    let errs =
        errors("[sharding]\nscatter_writes = \"maybe\"\ncross_shard_transactions = \"2pc\"\n");
    assert_eq!(
        errs,
        vec![
            "sharding.scatter_writes: unknown value \"maybe\"; expected \"allow\" or \"reject\" (line 2)",
            "sharding.cross_shard_transactions: unknown value \"2pc\"; expected \"error\" or \"xa\" (line 3)",
        ]
    );
}

#[test]
fn unknown_keys_and_bad_types_name_their_line() {
    let errs = errors("[[tables]]\nname = \"t\"\nshardkey = \"k\"\n");
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("shard map: unknown field `shardkey`"),
        "{}",
        errs[0]
    );
    assert!(errs[0].ends_with("(line 3)"), "{}", errs[0]);
}

#[test]
fn every_error_is_reported_at_once() {
    let text = r#"
[sharding]
node_id = 5000

[[tables]]
name = "a"
shard_key = "k"
algorithm = "modulo"
shards = ["s9"]

[[tables]]
name = "b"
global = true
broadcast = true
"#;
    let errs = errors(text);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(errs[0].ends_with("(line 3)"));
    assert!(errs[1].ends_with("(line 9)"));
    assert!(errs[2].ends_with("(line 14)"));
}

#[test]
fn explain_spells_out_each_kind() {
    let map = shop();
    let orders = map.table(Some("shop"), "orders").unwrap();
    let by_key = map.explain(orders, None, KeyValue::Int(42)).unwrap();
    assert_eq!(
        by_key.shard,
        Some(map.shard_for(orders, KeyValue::Int(42)).unwrap())
    );
    assert!(
        by_key
            .how
            .starts_with("consistent_hash over 2 shards: the integer key hashes to slot "),
        "{}",
        by_key.how
    );
    assert!(
        by_key
            .how
            .contains("id values generated for this key carry gene"),
        "{}",
        by_key.how
    );
    let gene = map.gene_for(orders, KeyValue::Int(42)).unwrap();
    let id = crate::gene::IdParts {
        unix_ms: crate::gene::EPOCH_MS,
        node_id: 1,
        sequence: 0,
        gene,
    }
    .encode()
    .unwrap();
    let by_id = map.explain(orders, Some("ID"), KeyValue::UInt(id)).unwrap();
    assert_eq!(by_id.shard, by_key.shard);
    assert!(
        by_id
            .how
            .contains(&format!("carries gene {} (id & 1023)", gene.get())),
        "{}",
        by_id.how
    );
    let items = map.table(Some("shop"), "order_items").unwrap();
    let via_binding = map.explain(items, None, KeyValue::UInt(id)).unwrap();
    assert_eq!(via_binding.shard, by_key.shard);
    assert!(
        via_binding.how.starts_with(
            "shop.order_items follows shop.orders: order_id holds shop.orders.id values."
        ),
        "{}",
        via_binding.how
    );
    let other = map
        .explain(orders, Some("status"), KeyValue::Int(1))
        .unwrap();
    assert_eq!(other.shard, None);
    let categories = map.table(Some("shop"), "categories").unwrap();
    assert_eq!(
        map.explain(categories, None, KeyValue::Int(1))
            .unwrap()
            .shard,
        None
    );
    let events = map.table(Some("shop"), "events").unwrap();
    let range = map.explain(events, None, KeyValue::Int(5)).unwrap();
    assert_eq!(range.how, "range: the key is in [.., 100), which is s0's");
    let range = map.explain(events, None, KeyValue::Bytes(b"150")).unwrap();
    assert_eq!(range.how, "range: the key is in [100, ..), which is s1's");
}
