use super::*;
use crate::analyze::analyze;

const MAP: &str = r#"
[sharding]
default_shard = "s0"
scatter_writes = "allow"

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
name = "shop.products"
global = true

[[tables]]
name = "shop.categories"
broadcast = true
"#;

fn map() -> ShardMap {
    ShardMap::from_toml(MAP, &["s0".into(), "s1".into()], Some("s0")).expect("map")
}

fn plan_of(map: &ShardMap, sql: &str) -> Result<ShardPlan, ShardPlanError> {
    let keys = MapKeys {
        map,
        schema: Some("shop"),
    };
    let a = analyze(sql, &keys).expect("analyze");
    shard_plan(&a, &keys, &|_| None)
}

/// A member id on each shard.
fn members(map: &ShardMap) -> (i64, i64) {
    let t = map.table(Some("shop"), "members").expect("rule");
    let mut on = [None, None];
    for k in 1..1000i64 {
        let s = map.shard_for(t, KeyValue::Int(k)).expect("shard").index();
        on[s].get_or_insert(k);
    }
    (on[0].expect("s0 key"), on[1].expect("s1 key"))
}

#[test]
fn key_equality_in_and_params_pick_shards() {
    let m = map();
    let (a, b) = members(&m);
    let one = |sql: &str| plan_of(&m, sql).expect("plan").shards;
    assert_eq!(
        one(&format!("SELECT * FROM members WHERE member_id = {a}")),
        Shards::One(ShardIdx(0))
    );
    assert_eq!(
        one(&format!("SELECT * FROM shop.members WHERE member_id = {b}")),
        Shards::One(ShardIdx(1))
    );
    assert_eq!(
        one(&format!(
            "SELECT * FROM orders WHERE member_id IN ({a}, {b})"
        )),
        Shards::Many(vec![ShardIdx(0), ShardIdx(1)])
    );
    assert_eq!(
        one(&format!(
            "SELECT * FROM orders WHERE member_id = {b} OR member_id = {b}"
        )),
        Shards::One(ShardIdx(1))
    );
    // No key: every shard.
    assert_eq!(
        one("SELECT * FROM orders ORDER BY created_at DESC LIMIT 20"),
        Shards::Many(vec![ShardIdx(0), ShardIdx(1)])
    );
    // Prepared: the parameter's value decides.
    let keys = MapKeys {
        map: &m,
        schema: Some("shop"),
    };
    let an = analyze("SELECT * FROM orders WHERE member_id = ?", &keys).expect("analyze");
    let p = shard_plan(&an, &keys, &|i| (i == 0).then_some(KeyValue::Int(b))).expect("plan");
    assert_eq!(p.shards, Shards::One(ShardIdx(1)));
    let p = shard_plan(&an, &keys, &|_| None).expect("plan");
    assert_eq!(p.shards, Shards::Many(vec![ShardIdx(0), ShardIdx(1)]));
}

#[test]
fn gene_ids_and_binding_tables_route_with_their_member() {
    let m = map();
    let (_, b) = members(&m);
    let orders = m.table(Some("shop"), "orders").expect("orders");
    let slot = m.gene_for(orders, KeyValue::Int(b)).expect("gene");
    let mut g = crate::gene::IdGenerator::new(1).expect("generator");
    let id = g.next_id(1_800_000_000_000, slot).expect("id");
    let p = plan_of(&m, &format!("SELECT * FROM orders WHERE id = {id}")).expect("plan");
    assert_eq!(p.shards, Shards::One(ShardIdx(1)));
    let p = plan_of(
        &m,
        &format!("SELECT * FROM order_items WHERE order_id = {id}"),
    )
    .expect("plan");
    assert_eq!(p.shards, Shards::One(ShardIdx(1)));
    let p = plan_of(
        &m,
        &format!("SELECT o.id, i.sku_id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE o.id = {id}"),
    )
    .expect("plan");
    assert_eq!(p.shards, Shards::One(ShardIdx(1)));
}

#[test]
fn joins_on_the_key_scatter_and_other_cross_shard_joins_are_refused() {
    let m = map();
    let p = plan_of(
        &m,
        "SELECT o.id, i.qty FROM orders o JOIN order_items i ON i.order_id = o.id",
    )
    .expect("plan");
    assert_eq!(p.shards, Shards::Many(vec![ShardIdx(0), ShardIdx(1)]));
    let p = plan_of(
        &m,
        "SELECT * FROM members m JOIN orders o ON o.member_id = m.member_id",
    )
    .expect("plan");
    assert_eq!(p.shards.list().len(), 2);
    let e = plan_of(
        &m,
        "SELECT * FROM members m JOIN orders o ON o.id = m.member_id",
    )
    .expect_err("refused");
    assert!(matches!(e, ShardPlanError::CrossShardJoin(..)), "{e}");
    let e = plan_of(
        &m,
        "SELECT * FROM orders o JOIN products p ON p.id = o.product_id",
    )
    .expect_err("refused");
    assert!(e.to_string().contains("products"), "{e}");
    // Broadcast tables join with anything.
    let (a, _) = members(&m);
    let p = plan_of(
        &m,
        &format!(
            "SELECT * FROM members m JOIN categories c ON c.id = m.tier WHERE m.member_id = {a}"
        ),
    )
    .expect("plan");
    assert_eq!(p.shards, Shards::One(ShardIdx(0)));
}

#[test]
fn unmapped_global_and_broadcast_tables() {
    let m = map();
    assert_eq!(
        plan_of(&m, "SELECT 1").expect("plan").shards,
        Shards::One(ShardIdx(0))
    );
    assert_eq!(
        plan_of(&m, "SELECT * FROM other WHERE id = 1")
            .expect("plan")
            .shards,
        Shards::One(ShardIdx(0))
    );
    assert_eq!(
        plan_of(&m, "SELECT * FROM products WHERE id = 1")
            .expect("plan")
            .shards,
        Shards::One(ShardIdx(0))
    );
    assert_eq!(
        plan_of(&m, "SELECT * FROM categories")
            .expect("plan")
            .shards,
        Shards::One(ShardIdx(0))
    );
    let p = plan_of(&m, "UPDATE categories SET name = 'x' WHERE id = 1").expect("plan");
    assert!(p.write_all);
    assert_eq!(p.shards.list().len(), 2);
    let p = plan_of(&m, "INSERT INTO categories (id, name) VALUES (1, 'a')").expect("plan");
    assert!(p.write_all);
}

#[test]
fn writes() {
    let m = map();
    let (a, b) = members(&m);
    let p = plan_of(
        &m,
        &format!("UPDATE orders SET status = 'paid' WHERE member_id = {b}"),
    )
    .expect("plan");
    assert_eq!((p.shards, p.write_all), (Shards::One(ShardIdx(1)), false));
    let p = plan_of(&m, "DELETE FROM orders WHERE status = 'old'").expect("plan");
    assert!(p.write_all);
    let e = plan_of(
        &m,
        &format!("UPDATE orders SET member_id = {a} WHERE member_id = {b}"),
    )
    .expect_err("refused");
    assert!(matches!(e, ShardPlanError::UpdatesShardKey(_)), "{e}");
    // Multi-row INSERT split per shard, ids generated when left out.
    let p = plan_of(
        &m,
        &format!("INSERT INTO orders (member_id, total) VALUES ({a}, 1), ({b}, 2), ({a}, 3)"),
    )
    .expect("plan");
    assert!(p.generate_ids);
    assert_eq!(
        p.split_rows,
        Some(vec![(ShardIdx(0), vec![0, 2]), (ShardIdx(1), vec![1])])
    );
    let p = plan_of(
        &m,
        &format!("INSERT INTO members (member_id, name) VALUES ({b}, 'x')"),
    )
    .expect("plan");
    assert_eq!(
        (p.shards, p.split_rows, p.generate_ids),
        (Shards::One(ShardIdx(1)), None, false)
    );
    let e = plan_of(&m, "INSERT INTO members (name) VALUES ('x')").expect_err("refused");
    assert!(e.to_string().contains("member_id"), "{e}");
    let e = plan_of(&m, "INSERT INTO members (member_id) SELECT 1").expect_err("refused");
    assert!(matches!(e, ShardPlanError::InsertSelect(_)), "{e}");
    // A scatter write refused by the map.
    let strict = ShardMap::from_toml(
        &MAP.replace("scatter_writes = \"allow\"", "scatter_writes = \"reject\""),
        &["s0".into(), "s1".into()],
        Some("s0"),
    )
    .expect("map");
    let e = plan_of(&strict, "DELETE FROM orders WHERE status = 'old'").expect_err("refused");
    assert!(matches!(e, ShardPlanError::ScatterWriteRefused(_)), "{e}");
}

#[test]
fn ddl_runs_everywhere_for_mapped_tables_and_databases() {
    let m = map();
    for sql in [
        "CREATE DATABASE shop",
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, member_id BIGINT)",
        "ALTER TABLE members ADD COLUMN x INT",
        "TRUNCATE TABLE order_items",
        "DROP TABLE categories",
    ] {
        let p = plan_of(&m, sql).expect("plan");
        assert!(p.write_all, "{sql}");
        assert_eq!(p.shards.list().len(), 2, "{sql}");
    }
    let p = plan_of(&m, "CREATE TABLE products (id INT PRIMARY KEY)").expect("plan");
    assert_eq!(p.shards, Shards::One(ShardIdx(0)));
    let p = plan_of(&m, "CREATE TABLE misc (id INT)").expect("plan");
    assert_eq!((p.shards, p.write_all), (Shards::One(ShardIdx(0)), false));
}
