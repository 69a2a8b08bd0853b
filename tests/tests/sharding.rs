//! Sharding through the proxy over the topology's two shards, checked against an oracle: the
//! same seeded random workload runs through PeakGate (members, orders and order_items sharded by
//! member_id, orders' ids generated with the member's shard bits) and directly on one unsharded
//! MariaDB database; every result must match (as sets where the SQL has no ORDER BY).
//!
//! The map is the topology's, moved to a database of the test's own.

use mysql_async::prelude::*;
use peakgate_tests::{
    S0_PRIMARY, S1_PRIMARY, ShardedScratch, TestProxy, direct, map_to_db, members_on_both_shards,
    unique_name,
};

/// A small deterministic generator (the seed is printed on failure).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            v.get(self.below(v.len() as u64) as usize)
        }
    }
}

type Rows = Vec<Vec<Option<String>>>;

async fn rows(c: &mut mysql_async::Conn, sql: &str) -> anyhow::Result<Rows> {
    let got: Vec<mysql_async::Row> = c.query(sql).await?;
    Ok(got
        .into_iter()
        .map(|r| {
            r.unwrap()
                .into_iter()
                .map(|v| match v {
                    mysql_async::Value::NULL => None,
                    mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                    other => Some(format!("{other:?}")),
                })
                .collect()
        })
        .collect())
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE members (member_id BIGINT PRIMARY KEY, name VARCHAR(32) NOT NULL, tier INT NOT NULL)",
    "CREATE TABLE orders (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, total DECIMAL(10,2) NOT NULL, \
     status VARCHAR(8) NOT NULL, KEY (member_id))",
    "CREATE TABLE order_items (id BIGINT PRIMARY KEY, order_id BIGINT NOT NULL, sku INT NOT NULL, \
     qty INT NOT NULL, KEY (order_id))",
];

struct World {
    members: Vec<i64>,
    orders: Vec<(i64, i64)>,
    next_item: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_workload_matches_an_unsharded_database() -> anyhow::Result<()> {
    let seed = std::env::var("SHARD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_nanos() as u64)
                | 1
        });
    let statements: usize = std::env::var("SHARD_STATEMENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2500);
    let db = unique_name("it_shard");
    let oracle_db = format!("{db}_oracle");
    let proxy = TestProxy::start_with(|cfg| {
        assert!(cfg.contains("name = \"shop.orders\""), "{cfg}");
        *cfg = map_to_db(cfg, &db);
        // Reads on the primaries: the oracle check is about sharding, not replica lag.
        *cfg = cfg.replace("[routing]", "[routing]\nreplica_reads = false");
    })
    .await?;
    let mut p = proxy.conn(None).await?;
    let mut o = direct(S0_PRIMARY, None).await?;
    p.query_drop(format!("CREATE DATABASE {db}")).await?;
    o.query_drop(format!("CREATE DATABASE {oracle_db}")).await?;
    let result = async {
        p.query_drop(format!("USE {db}")).await?;
        o.query_drop(format!("USE {oracle_db}")).await?;
        for ddl in SCHEMA {
            p.query_drop(*ddl).await?;
            o.query_drop(*ddl).await?;
        }
        run(&mut p, &mut o, seed, statements).await?;
        // Both shards hold part of the data: a map that sent everything to one shard would pass
        // the oracle but not this.
        for port in [S0_PRIMARY, S1_PRIMARY] {
            let mut d = direct(port, None).await?;
            let n: Option<i64> = d
                .query_first(format!("SELECT COUNT(*) FROM {db}.orders"))
                .await?;
            d.disconnect().await?;
            println!("orders on the primary at port {port}: {n:?}");
            anyhow::ensure!(n.unwrap_or(0) > 0, "no orders on the shard at port {port}");
        }
        anyhow::Ok(())
    }
    .await;
    let _ = p.query_drop(format!("DROP DATABASE IF EXISTS {db}")).await;
    let _ = o
        .query_drop(format!("DROP DATABASE IF EXISTS {oracle_db}"))
        .await;
    result.map_err(|e| anyhow::anyhow!("seed {seed}: {e}"))
}

async fn run(
    p: &mut mysql_async::Conn,
    o: &mut mysql_async::Conn,
    seed: u64,
    statements: usize,
) -> anyhow::Result<()> {
    let mut rng = Rng(seed);
    let mut w = World {
        members: Vec::new(),
        orders: Vec::new(),
        next_item: 1,
    };
    let statuses = ["new", "paid", "sent", "done"];
    let (mut reads, mut writes) = (0, 0);
    for step in 0..statements {
        let member = rng.pick(&w.members).copied();
        let order = rng.pick(&w.orders).copied();
        let status = statuses[rng.below(4) as usize];
        let kind = if w.members.len() < 10 {
            0
        } else {
            rng.below(22)
        };
        // Writes: the same SQL on both sides, except generated ids.
        let write: Option<String> = match kind {
            0 | 1 => {
                // Several members in one INSERT: split across shards.
                let n = 1 + rng.below(3);
                let mut vals = Vec::new();
                for _ in 0..n {
                    let id = 1 + (w.members.len() as i64) * 7 + rng.below(7) as i64;
                    if w.members.contains(&id) || vals.iter().any(|(i, _)| *i == id) {
                        continue;
                    }
                    vals.push((id, format!("({id}, 'm{id}', {})", rng.below(3))));
                }
                if vals.is_empty() {
                    None
                } else {
                    w.members.extend(vals.iter().map(|(i, _)| *i));
                    let v: Vec<String> = vals.into_iter().map(|(_, s)| s).collect();
                    Some(format!(
                        "INSERT INTO members (member_id, name, tier) VALUES {}",
                        v.join(", ")
                    ))
                }
            }
            2..=4 => {
                // An order without id: the proxy generates it; the oracle gets the same id.
                let Some(m) = member else { continue };
                let total = format!("{}.{:02}", rng.below(500), rng.below(100));
                p.query_drop(format!(
                    "INSERT INTO orders (member_id, total, status) VALUES ({m}, {total}, '{status}')"
                ))
                .await?;
                let id: i64 = p
                    .query_first("SELECT LAST_INSERT_ID()")
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("no LAST_INSERT_ID"))?;
                anyhow::ensure!(id > 0, "step {step}: no id generated");
                o.query_drop(format!(
                    "INSERT INTO orders (id, member_id, total, status) VALUES ({id}, {m}, {total}, '{status}')"
                ))
                .await?;
                w.orders.push((id, m));
                writes += 1;
                None
            }
            5 => {
                // Items of one order, several rows (all on the order's shard).
                let Some((oid, _)) = order else { continue };
                let n = 1 + rng.below(3);
                let mut v = Vec::new();
                for _ in 0..n {
                    v.push(format!(
                        "({}, {oid}, {}, {})",
                        w.next_item,
                        rng.below(50),
                        1 + rng.below(5)
                    ));
                    w.next_item += 1;
                }
                Some(format!(
                    "INSERT INTO order_items (id, order_id, sku, qty) VALUES {}",
                    v.join(", ")
                ))
            }
            6 => order
                .map(|(id, _)| format!("UPDATE orders SET status = '{status}' WHERE id = {id}")),
            7 => {
                member.map(|m| format!("UPDATE orders SET total = total + 1 WHERE member_id = {m}"))
            }
            8 => Some(format!(
                "UPDATE members SET tier = tier + 1 WHERE tier = {}",
                rng.below(3)
            )),
            9 if rng.below(3) == 0 => order.map(|(id, _)| {
                w.orders.retain(|(x, _)| *x != id);
                format!("DELETE FROM orders WHERE id = {id}")
            }),
            _ => None,
        };
        if let Some(sql) = write {
            p.query_drop(&sql)
                .await
                .map_err(|e| anyhow::anyhow!("step {step}: {sql}: {e}"))?;
            o.query_drop(&sql).await?;
            writes += 1;
            continue;
        }
        if kind < 10 {
            continue;
        }
        // Reads: (sql, ordered).
        let m = member.unwrap_or(1);
        let m2 = rng.pick(&w.members).copied().unwrap_or(1);
        let oid = order.map_or(0, |(id, _)| id);
        let limit = 1 + rng.below(8);
        let offset = rng.below(4);
        let (sql, ordered) = match kind {
            10 => (format!("SELECT member_id, name, tier FROM members WHERE member_id = {m}"), false),
            11 => (format!("SELECT id, member_id, total, status FROM orders WHERE id = {oid}"), false),
            12 => (format!("SELECT id, total FROM orders WHERE member_id IN ({m}, {m2})"), false),
            13 => (
                format!("SELECT id, member_id, total FROM orders ORDER BY total DESC, id LIMIT {limit} OFFSET {offset}"),
                true,
            ),
            14 => ("SELECT COUNT(*), SUM(total), MIN(total), MAX(total) FROM orders".to_string(), true),
            15 => ("SELECT status, COUNT(*), SUM(total), AVG(total) FROM orders GROUP BY status ORDER BY status".to_string(), true),
            16 => ("SELECT member_id, COUNT(*) AS n FROM orders GROUP BY member_id HAVING n > 1".to_string(), false),
            17 => (
                format!("SELECT o.id, i.sku, i.qty FROM orders o JOIN order_items i ON i.order_id = o.id WHERE o.id = {oid}"),
                false,
            ),
            18 => (
                "SELECT o.member_id, SUM(i.qty) FROM orders o JOIN order_items i ON i.order_id = o.id GROUP BY o.member_id ORDER BY o.member_id"
                    .to_string(),
                true,
            ),
            19 => ("SELECT DISTINCT status FROM orders".to_string(), false),
            20 => (format!("SELECT tier, COUNT(*) FROM members GROUP BY tier ORDER BY tier LIMIT {limit}"), true),
            _ => (format!("SELECT id, status FROM orders WHERE member_id = {m} ORDER BY id"), true),
        };
        let mut got = rows(p, &sql)
            .await
            .map_err(|e| anyhow::anyhow!("step {step}: {sql}: {e}"))?;
        let mut want = rows(o, &sql).await?;
        if !ordered {
            got.sort();
            want.sort();
        }
        anyhow::ensure!(
            got == want,
            "step {step}: {sql}\nthrough PeakGate: {got:?}\ndirect: {want:?}"
        );
        reads += 1;
    }
    println!(
        "seed {seed}: {reads} reads and {writes} writes matched; {} members, {} orders",
        w.members.len(),
        w.orders.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_keys_prepared_statements_and_refusals() -> anyhow::Result<()> {
    let db = unique_name("it_shard_rules");
    let proxy = TestProxy::start_with(|cfg| {
        *cfg = map_to_db(cfg, &db);
        *cfg = cfg.replace("[routing]", "[routing]\nreplica_reads = false");
    })
    .await?;
    let mut p = proxy.conn(None).await?;
    p.query_drop(format!("CREATE DATABASE {db}")).await?;
    let result = async {
        p.query_drop(format!("USE {db}")).await?;
        p.query_drop(SCHEMA[0]).await?;
        p.query_drop(SCHEMA[1]).await?;
        // DDL ran on both shards.
        for port in [S0_PRIMARY, S1_PRIMARY] {
            let mut d = direct(port, Some(&db)).await?;
            let t: Vec<String> = d.query("SHOW TABLES").await?;
            anyhow::ensure!(t.len() == 2, "tables on {port}: {t:?}");
            d.disconnect().await?;
        }
        // Members 1..=20 spread over both shards; find one per shard.
        let (a, b) = members_on_both_shards(&mut p, &db).await?;

        // Prepared statements route by their parameter.
        for m in [a, b] {
            let name: Option<String> = p
                .exec_first("SELECT name FROM members WHERE member_id = ?", (m,))
                .await?;
            anyhow::ensure!(name == Some(format!("m{m}")), "member {m}: {name:?}");
        }
        let n: Option<i64> = p.query_first("SELECT COUNT(*) FROM members").await?;
        anyhow::ensure!(n == Some(20), "count over both shards: {n:?}");

        // A transaction stays on the shard of its first statement.
        p.query_drop("BEGIN").await?;
        p.query_drop(format!("UPDATE members SET tier = 5 WHERE member_id = {a}"))
            .await?;
        let e = p
            .query_drop(format!("UPDATE members SET tier = 5 WHERE member_id = {b}"))
            .await
            .expect_err("cross-shard statement in a transaction");
        anyhow::ensure!(e.to_string().contains("1235"), "{e}");
        let e = p
            .query_drop("UPDATE members SET tier = 6")
            .await
            .expect_err("scatter write in a transaction");
        anyhow::ensure!(e.to_string().contains("several shards"), "{e}");
        p.query_drop("ROLLBACK").await?;
        let tiers: Vec<i64> = p
            .query(format!(
                "SELECT tier FROM members WHERE member_id IN ({a}, {b})"
            ))
            .await?;
        anyhow::ensure!(tiers == vec![0, 0], "rolled back: {tiers:?}");
        // BEGIN and COMMIT with nothing in between, and a committed transaction on shard b.
        p.query_drop("BEGIN").await?;
        p.query_drop("COMMIT").await?;
        p.query_drop("START TRANSACTION").await?;
        p.query_drop(format!("UPDATE members SET tier = 7 WHERE member_id = {b}"))
            .await?;
        p.query_drop("COMMIT").await?;
        let t: Option<i64> = p
            .query_first(format!("SELECT tier FROM members WHERE member_id = {b}"))
            .await?;
        anyhow::ensure!(t == Some(7), "committed on shard b: {t:?}");

        // Refusals with clear errors.
        for (sql, code, words) in [
            (
                "UPDATE members SET member_id = 99 WHERE member_id = 1".to_string(),
                "1235",
                "shard key",
            ),
            (
                "SELECT * FROM members m JOIN orders o ON o.id = m.member_id".to_string(),
                "1235",
                "members",
            ),
            (
                "INSERT INTO members (name, tier) VALUES ('x', 1)".to_string(),
                "1105",
                "member_id",
            ),
            (
                format!("SELECT * FROM members WHERE member_id = {a} LOCK IN SHARE MODE"),
                "1064",
                "sharded",
            ),
        ] {
            let e = p.query_drop(&sql).await.expect_err("refused");
            let text = e.to_string();
            anyhow::ensure!(text.contains(code) && text.contains(words), "{sql}: {text}");
        }
        // The session survives all of that.
        let one: Option<i64> = p.query_first("SELECT 1").await?;
        anyhow::ensure!(one == Some(1));
        anyhow::Ok(())
    }
    .await;
    let _ = p.query_drop(format!("DROP DATABASE IF EXISTS {db}")).await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_the_map_for_open_sessions_and_refuses_a_bad_one() -> anyhow::Result<()> {
    let db = unique_name("it_shard_reload");
    let path = peakgate_tests::repo_root().join(format!("target/{db}.toml"));
    let topo = std::fs::read_to_string(peakgate_tests::ensure_topology()?)?;
    let base = map_to_db(&topo, &db)
        .replace("mysql = \"127.0.0.1:6033\"", "mysql = \"127.0.0.1:0\"")
        .replace("admin = \"127.0.0.1:6080\"", "admin = \"127.0.0.1:0\"")
        .replace("[routing]", "[routing]\nreplica_reads = false");
    anyhow::ensure!(
        base.contains(&format!("name = \"{db}.products\"\nglobal = true")),
        "{base}"
    );
    std::fs::write(&path, &base)?;
    let proxy = TestProxy::start_text(&base).await?;
    proxy.shared.set_config_path(path.clone());
    let mut p = proxy.conn(None).await?;
    p.query_drop(format!("CREATE DATABASE {db}")).await?;
    let result = async {
        p.query_drop(format!("USE {db}")).await?;
        // Global: created and written on the default shard only.
        p.query_drop("CREATE TABLE products (id INT PRIMARY KEY, name VARCHAR(20))").await?;
        let on_s1 = |sql: &'static str| {
            let db = db.clone();
            async move {
                let mut d = direct(S1_PRIMARY, Some(&db)).await?;
                let r: Option<i64> = d.query_first(sql).await?;
                d.disconnect().await?;
                anyhow::Ok(r)
            }
        };
        anyhow::ensure!(
            on_s1("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'products' AND TABLE_SCHEMA = DATABASE()")
                .await?
                == Some(0)
        );
        // The DBA makes products broadcast and reloads; the open session follows.
        std::fs::write(
            &path,
            base.replace(
                &format!("name = \"{db}.products\"\nglobal = true"),
                &format!("name = \"{db}.products\"\nbroadcast = true"),
            ),
        )?;
        let (code, body) = proxy.admin_request("POST", "/reload").await?;
        anyhow::ensure!(code == 200, "{code} {body}");
        anyhow::ensure!(body.contains("products: broadcast"), "{body}");
        p.query_drop("CREATE TABLE IF NOT EXISTS products (id INT PRIMARY KEY, name VARCHAR(20))")
            .await?;
        p.query_drop("INSERT INTO products (id, name) VALUES (1, 'tea')").await?;
        anyhow::ensure!(on_s1("SELECT COUNT(*) FROM products").await? == Some(1));
        // A bad map is refused with its errors; the old one stays.
        std::fs::write(
            &path,
            format!("{base}\n[[tables]]\nname = \"{db}.products\"\nglobal = true\n"),
        )?;
        let (code, body) = proxy.admin_request("POST", "/reload").await?;
        anyhow::ensure!(code == 422, "{code} {body}");
        anyhow::ensure!(
            body.contains("products") && body.contains("line"),
            "the refusal names the table and the line: {body}"
        );
        p.query_drop("INSERT INTO products (id, name) VALUES (2, 'rice')").await?;
        anyhow::ensure!(on_s1("SELECT COUNT(*) FROM products").await? == Some(2));
        anyhow::Ok(())
    }
    .await;
    let _ = p.query_drop(format!("DROP DATABASE IF EXISTS {db}")).await;
    let _ = std::fs::remove_file(&path);
    result
}

/// Prepared statements that need several shards (scatter reads, a multi-row INSERT split per
/// shard, generated ids) answer as their text form does; scatter reads answer in the binary
/// protocol, checked value by value against the same prepared statement on an unsharded copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_scatter_like_an_unsharded_database() -> anyhow::Result<()> {
    let db = unique_name("it_shard_ps");
    let oracle = format!("{db}_oracle");
    let proxy = TestProxy::start_with(|cfg| {
        *cfg = map_to_db(cfg, &db);
        *cfg = cfg.replace("[routing]", "[routing]\nreplica_reads = false");
        cfg.push_str(&format!(
            "\n[[tables]]\nname = \"{db}.typed\"\nshard_key = \"member_id\"\n\
             algorithm = \"consistent_hash\"\nshards = [\"s0\", \"s1\"]\n"
        ));
    })
    .await?;
    let mut p = proxy.conn(None).await?;
    let mut o = direct(S0_PRIMARY, None).await?;
    p.query_drop(format!("CREATE DATABASE {db}")).await?;
    o.query_drop(format!("CREATE DATABASE {oracle}")).await?;
    let typed = "CREATE TABLE typed (member_id BIGINT PRIMARY KEY, i TINYINT NOT NULL, \
                 u INT UNSIGNED, d DECIMAL(10,2), f DOUBLE, dt DATETIME(6), dd DATE, t TIME(6), \
                 s VARCHAR(20), n INT NULL)";
    let result = async {
        p.query_drop(format!("USE {db}")).await?;
        o.query_drop(format!("USE {oracle}")).await?;
        for ddl in [typed, SCHEMA[1]] {
            p.query_drop(ddl).await?;
            o.query_drop(ddl).await?;
        }
        // One prepared multi-row INSERT whose rows land on both shards.
        let insert = "INSERT INTO typed (member_id, i, u, d, f, dt, dd, t, s, n) VALUES \
                      (?, ?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        for k in 0..10i64 {
            let row = |m: i64| -> Vec<mysql_async::Value> {
                vec![
                    m.into(),
                    (m % 7 - 3).into(),
                    (m as u64 * 1000).into(),
                    format!("{}.{:02}", m * 3, m % 100).into(),
                    (m as f64 / 8.0).into(),
                    format!("2026-11-{:02} 10:{:02}:30.{:06}", 1 + m % 28, m % 60, m * 7).into(),
                    format!("2026-{:02}-01", 1 + m % 12).into(),
                    format!("-{}:05:0{}.5", m + 20, m % 10).into(),
                    format!("名字 {m} 'q'").into(),
                    if m % 3 == 0 {
                        mysql_async::Value::NULL
                    } else {
                        m.into()
                    },
                ]
            };
            let mut params = row(2 * k + 1);
            params.extend(row(2 * k + 2));
            p.exec_drop(insert, params.clone()).await?;
            o.exec_drop(insert, params).await?;
        }
        for port in [S0_PRIMARY, S1_PRIMARY] {
            let mut d = direct(port, Some(&db)).await?;
            let n: Option<i64> = d.query_first("SELECT COUNT(*) FROM typed").await?;
            d.disconnect().await?;
            anyhow::ensure!(n.unwrap_or(0) > 0, "no rows on the shard at {port}");
        }
        // Scatter reads as prepared statements: binary rows equal to the unsharded copy's.
        for (sql, params) in [
            (
                "SELECT member_id, i, u, d, f, dt, dd, t, s, n FROM typed WHERE i >= ? ORDER BY member_id",
                vec![mysql_async::Value::from(-1)],
            ),
            (
                "SELECT member_id, s, dt FROM typed WHERE s LIKE ? ORDER BY dt DESC LIMIT 5 OFFSET 2",
                vec!["名字%".into()],
            ),
            (
                "SELECT COUNT(*), SUM(u), MIN(d), MAX(dt), MIN(t), AVG(i) FROM typed WHERE f > ?",
                vec![0.2f64.into()],
            ),
            (
                "SELECT i, COUNT(*), SUM(d) FROM typed WHERE dt >= ? GROUP BY i ORDER BY i",
                vec!["2026-11-05 00:00:00".into()],
            ),
        ] {
            let got: Vec<mysql_async::Row> = p.exec(sql, params.clone()).await?;
            let want: Vec<mysql_async::Row> = o.exec(sql, params).await?;
            let values = |rows: Vec<mysql_async::Row>| -> Vec<Vec<mysql_async::Value>> {
                rows.into_iter().map(mysql_async::Row::unwrap).collect()
            };
            let (got, want) = (values(got), values(want));
            anyhow::ensure!(!want.is_empty(), "{sql}: the oracle has no rows");
            anyhow::ensure!(got == want, "{sql}:\nproxy  {got:?}\noracle {want:?}");
        }
        // A prepared INSERT that leaves the id out gets a generated id, as text does.
        let res = p
            .exec_iter(
                "INSERT INTO orders (member_id, total, status) VALUES (?, ?, ?)",
                (3, "9.99", "new"),
            )
            .await?;
        let id = res.last_insert_id();
        drop(res);
        let got: Option<u64> = p
            .exec_first("SELECT id FROM orders WHERE member_id = ?", (3,))
            .await?;
        anyhow::ensure!(id.is_some() && got == id, "generated id {id:?}, stored {got:?}");
        anyhow::Ok(())
    }
    .await;
    let _ = p.query_drop(format!("DROP DATABASE IF EXISTS {db}")).await;
    let _ = o
        .query_drop(format!("DROP DATABASE IF EXISTS {oracle}"))
        .await;
    result
}

/// Scatter reads run on each shard's replica (under the lag and read-your-writes rules) like
/// single-shard reads: a session sees its own fresh writes at once, and rows that exist only on
/// the replicas (written there directly, outside replication) show that the replicas answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scatter_reads_run_on_the_replicas_and_see_the_sessions_writes() -> anyhow::Result<()> {
    const REPLICAS: [u16; 2] = [3312, 3322];
    let db = unique_name("it_shard_replica");
    let proxy = TestProxy::start_with(|cfg| {
        *cfg = map_to_db(cfg, &db);
    })
    .await?;
    let mut p = proxy.conn(None).await?;
    p.query_drop(format!("CREATE DATABASE {db}")).await?;
    let result = async {
        p.query_drop(format!("USE {db}")).await?;
        p.query_drop(SCHEMA[0]).await?;
        // The s1 replica cannot apply the inserts yet: a transaction there holds a gap lock on
        // the (replicated, still empty) table, so its SQL thread waits while the proxy reads.
        let s1_replica = REPLICAS[1];
        let mut blocker = direct(s1_replica, None).await?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while blocker
            .query_first::<String, _>(format!(
                "SELECT table_name FROM information_schema.tables \
                 WHERE table_schema = '{db}' AND table_name = 'members'"
            ))
            .await?
            .is_none()
        {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "members never reached {s1_replica}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        blocker.query_drop("BEGIN").await?;
        blocker
            .query_drop(format!("SELECT * FROM {db}.members FOR UPDATE"))
            .await?;
        let seen = async {
            let (_, on_s1) = members_on_both_shards(&mut p, &db).await?;
            let n: Option<i64> = p.query_first("SELECT COUNT(*) FROM members").await?;
            // A single-shard read on s1 (not the default shard) sees the write too.
            let one: Option<String> = p
                .query_first(format!(
                    "SELECT name FROM members WHERE member_id = {on_s1}"
                ))
                .await?;
            anyhow::Ok((n, one, on_s1))
        }
        .await;
        blocker.query_drop("ROLLBACK").await?;
        blocker.disconnect().await?;
        let (n, one, on_s1) = seen?;
        anyhow::ensure!(n == Some(20), "the session's own writes, at once: {n:?}");
        anyhow::ensure!(
            one.as_deref() == Some(format!("m{on_s1}").as_str()),
            "member {on_s1} read on s1 at once: {one:?}"
        );
        // Rows only on the replicas (binary log off: replication never sees them).
        for port in REPLICAS {
            let mut r = direct(port, Some(&db)).await?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let got: Option<i64> = r.query_first("SELECT COUNT(*) FROM members").await?;
                let want: Option<i64> = {
                    let primary = if port == 3312 { S0_PRIMARY } else { S1_PRIMARY };
                    let mut d = direct(primary, Some(&db)).await?;
                    let v = d.query_first("SELECT COUNT(*) FROM members").await?;
                    d.disconnect().await?;
                    v
                };
                if got == want {
                    break;
                }
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "replica {port} behind"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            r.query_drop("SET SESSION sql_log_bin = 0").await?;
            r.query_drop(format!(
                "INSERT INTO members (member_id, name, tier) VALUES ({}, 'replica only', 0)",
                100_000 + i64::from(port)
            ))
            .await?;
            r.disconnect().await?;
        }
        // A session without writes reads the replicas (once the lag monitor has measured them).
        let mut q = proxy.conn(Some(&db)).await?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let n: Option<i64> = q.query_first("SELECT COUNT(*) FROM members").await?;
            let names: Vec<String> = q
                .query("SELECT name FROM members WHERE name = 'replica only' ORDER BY member_id")
                .await?;
            if n == Some(22) && names.len() == 2 {
                break;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "scatter reads never reached both replicas: count {n:?}, {names:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        anyhow::Ok(())
    }
    .await;
    let _ = p.query_drop(format!("DROP DATABASE IF EXISTS {db}")).await;
    result
}

/// A proxy with the topology's map moved to a new database (reads on the primaries), a client
/// in that database with `members` created and members 1..=20 inserted, and the members that
/// live on s0 and on s1. The scratch drops the database.
async fn members_proxy(
    prefix: &str,
) -> anyhow::Result<(
    String,
    ShardedScratch,
    TestProxy,
    mysql_async::Conn,
    (i64, i64),
)> {
    let db = unique_name(prefix);
    let scratch = ShardedScratch(db.clone());
    let proxy = TestProxy::start_with(|cfg| {
        *cfg = map_to_db(cfg, &db);
        *cfg = cfg.replace("[routing]", "[routing]\nreplica_reads = false");
    })
    .await?;
    let mut p = proxy.conn(None).await?;
    p.query_drop(format!("CREATE DATABASE {db}")).await?;
    p.query_drop(format!("USE {db}")).await?;
    p.query_drop(SCHEMA[0]).await?;
    let members = members_on_both_shards(&mut p, &db).await?;
    Ok((db, scratch, proxy, p, members))
}

/// A prepared statement's unqualified tables are the ones of the database it was prepared in,
/// also after the session changed database (MariaDB resolves them at prepare time): single-shard
/// reads and writes and a scatter read route by that database's map.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_route_in_their_database_after_use() -> anyhow::Result<()> {
    let (db, _scratch, _proxy, mut p, (a, b)) = members_proxy("it_shard_ps_db").await?;
    let select = p
        .prep("SELECT name FROM members WHERE member_id = ?")
        .await?;
    let insert = p
        .prep("INSERT INTO members (member_id, name, tier) VALUES (?, ?, 1)")
        .await?;
    let count = p
        .prep("SELECT COUNT(*) FROM members WHERE tier >= ?")
        .await?;
    p.query_drop("USE information_schema").await?;
    for m in [a, b] {
        let name: Option<String> = p.exec_first(&select, (m,)).await?;
        anyhow::ensure!(name == Some(format!("m{m}")), "member {m}: {name:?}");
    }
    let n: Option<i64> = p.exec_first(&count, (0,)).await?;
    anyhow::ensure!(n == Some(20), "count over both shards after USE: {n:?}");
    // New members land on their own shard: each shows up on exactly one primary, and both
    // primaries get some.
    let mut shards_hit = [0, 0];
    for m in 101..=110i64 {
        p.exec_drop(&insert, (m, format!("n{m}"))).await?;
        let mut on = Vec::new();
        for (i, port) in [S0_PRIMARY, S1_PRIMARY].into_iter().enumerate() {
            let mut d = direct(port, Some(&db)).await?;
            let found: Option<i64> = d
                .exec_first("SELECT COUNT(*) FROM members WHERE member_id = ?", (m,))
                .await?;
            d.disconnect().await?;
            if found == Some(1) {
                on.push(i);
                shards_hit[i] += 1;
            }
        }
        anyhow::ensure!(on.len() == 1, "member {m} stored on shards {on:?}");
        let name: Option<String> = p.exec_first(&select, (m,)).await?;
        anyhow::ensure!(
            name == Some(format!("n{m}")),
            "member {m} read back: {name:?}"
        );
    }
    anyhow::ensure!(
        shards_hit[0] > 0 && shards_hit[1] > 0,
        "the new members landed on one shard only: {shards_hit:?}"
    );
    // A prepared statement runs in the database it was prepared in, as on the server:
    // DATABASE() in it answers that one, whatever the session's current database.
    let now = p.prep("SELECT DATABASE()").await?;
    p.query_drop(format!("USE {db}")).await?;
    let d: Option<String> = p.exec_first(&now, ()).await?;
    anyhow::ensure!(
        d.as_deref() == Some("information_schema"),
        "DATABASE(): {d:?}"
    );
    let d: Option<String> = p.query_first("SELECT DATABASE()").await?;
    anyhow::ensure!(
        d.as_deref() == Some(db.as_str()),
        "DATABASE() as text: {d:?}"
    );
    Ok(())
}

/// A parameter sent with COM_STMT_SEND_LONG_DATA has no bytes in the COM_STMT_EXECUTE packet:
/// the shard key after it is read correctly (it was misread, and the statement refused), and the
/// long data counts as the parameter's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_data_parameter_before_the_shard_key() -> anyhow::Result<()> {
    use peakgate_tests::raw::{Answer, COM_STMT_EXECUTE, RawConn};
    let (db, _scratch, proxy, _p, (a, b)) = members_proxy("it_shard_long").await?;
    let mut c = RawConn::login(proxy.mysql, "shop", "shop", Some(&db)).await?;
    let st = c
        .prepare("SELECT member_id FROM members WHERE name = ? AND member_id = ?")
        .await?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    for m in [a, b] {
        // Parameter 0 (the name) as long data, in two pieces.
        let name = format!("m{m}");
        let (first, rest) = name.split_at(1);
        for piece in [first, rest] {
            let mut ld = vec![0x18];
            ld.extend_from_slice(&st.id.to_le_bytes());
            ld.extend_from_slice(&0u16.to_le_bytes());
            ld.extend_from_slice(piece.as_bytes());
            c.write_packet(0, &ld).await?;
        }
        let mut ex = vec![COM_STMT_EXECUTE];
        ex.extend_from_slice(&st.id.to_le_bytes());
        ex.push(0);
        ex.extend_from_slice(&1u32.to_le_bytes());
        ex.push(0); // NULL bitmap
        ex.push(1); // types follow
        ex.extend_from_slice(&[0xfe, 0, 0x08, 0]);
        ex.extend_from_slice(&m.to_le_bytes()); // only parameter 1 has bytes here
        match c.command(&ex).await? {
            Answer::Rows(rows) => {
                // Binary row: 0x00, a one-byte NULL bitmap, the BIGINT.
                let [row] = rows.as_slice() else {
                    anyhow::bail!("member {m}: rows {rows:02x?}")
                };
                anyhow::ensure!(
                    row.get(2..10) == Some(&m.to_le_bytes()[..]),
                    "member {m}: row {row:02x?}"
                );
            }
            other => anyhow::bail!("member {m}: {other:?}"),
        }
    }
    c.quit().await?;
    Ok(())
}

/// A statement that leaves warnings keeps its connection for the next statement only (for SHOW
/// WARNINGS); that binds the session to no shard. The next statement for the other shard, for
/// both shards, or a transaction on the other shard runs (each was refused as cross-shard, which
/// broke re-running the shop's `migrate`: CREATE TABLE IF NOT EXISTS leaves a note).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_on_one_shard_binds_the_session_to_no_shard() -> anyhow::Result<()> {
    let (db, _scratch, _proxy, mut p, (a, b)) = members_proxy("it_shard_warn").await?;
    // INSERT IGNORE of an existing member warns (duplicate entry) on a's shard; a write's
    // warnings keep its connection (a read's do not: it can run again for SHOW WARNINGS).
    let warn_on_a =
        format!("INSERT IGNORE INTO members (member_id, name, tier) VALUES ({a}, 'dup', 0)");
    p.query_drop(&warn_on_a).await?;
    let warnings: Vec<(String, u32, String)> = p.query("SHOW WARNINGS").await?;
    anyhow::ensure!(
        warnings.iter().any(|w| w.1 == 1062),
        "SHOW WARNINGS after the warning: {warnings:?}"
    );
    p.query_drop(&warn_on_a).await?;
    let name: Option<String> = p
        .query_first(format!("SELECT name FROM members WHERE member_id = {b}"))
        .await?;
    anyhow::ensure!(name == Some(format!("m{b}")), "the other shard: {name:?}");
    p.query_drop(&warn_on_a).await?;
    let n: Option<i64> = p.query_first("SELECT COUNT(*) FROM members").await?;
    anyhow::ensure!(n == Some(20), "both shards: {n:?}");
    // DDL on both shards, twice: the second leaves a note (table exists) on each shard.
    for _ in 0..2 {
        p.query_drop(
            "CREATE TABLE IF NOT EXISTS orders (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, \
             total DECIMAL(10,2) NOT NULL, status VARCHAR(8) NOT NULL, KEY (member_id))",
        )
        .await?;
    }
    p.query_drop(&warn_on_a).await?;
    p.query_drop("BEGIN").await?;
    p.query_drop(format!(
        "UPDATE members SET name = 'in txn' WHERE member_id = {b}"
    ))
    .await?;
    p.query_drop("COMMIT").await?;
    // b is the first member on s1 (`members_on_both_shards`).
    let mut d = direct(S1_PRIMARY, Some(&db)).await?;
    let name: Option<String> = d
        .query_first(format!("SELECT name FROM members WHERE member_id = {b}"))
        .await?;
    d.disconnect().await?;
    anyhow::ensure!(
        name.as_deref() == Some("in txn"),
        "committed on s1: {name:?}"
    );
    Ok(())
}
