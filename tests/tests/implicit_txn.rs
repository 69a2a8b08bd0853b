//! `autocommit = 0` sessions over the topology's two shards: statements the proxy runs itself
//! (INSERTs whose id it generates, writes to several shards) never escape the session's implicit
//! transaction. A generated-id INSERT runs on the transaction's connection (ROLLBACK leaves no row,
//! COMMIT keeps it, and no backend connection is left with a transaction open, not even by a read
//! over both shards); a write that needs several shards gets ERR 1235 and changes nothing.
//! Also: commands after BEGIN that are no statements (a prepare, COM_INIT_DB) do not open the
//! held-back transaction on the default shard.
//!
//! The map is the topology's, moved to a database of the test's own.

use mysql_async::prelude::*;
use peakgate_tests::{
    S0_PRIMARY, S1_PRIMARY, ShardedScratch, TestProxy, direct, map_to_db, members_on_both_shards,
    unique_name,
};

const MEMBERS: &str = "CREATE TABLE members (member_id BIGINT PRIMARY KEY, name VARCHAR(32) NOT NULL, tier INT NOT NULL)";
const ORDERS: &str = "CREATE TABLE orders (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, \
     total DECIMAL(10,2) NOT NULL, status VARCHAR(8) NOT NULL, KEY (member_id))";

/// `SELECT COUNT(*) ...` of `sql` directly on the primary at `port`.
async fn count(port: u16, db: &str, sql: &str) -> anyhow::Result<i64> {
    let mut d = direct(port, Some(db)).await?;
    let n: Option<i64> = d.query_first(sql).await?;
    d.disconnect().await?;
    Ok(n.unwrap_or(-1))
}

/// Committed orders on both shards.
async fn orders(db: &str) -> anyhow::Result<i64> {
    let mut n = 0;
    for port in [S0_PRIMARY, S1_PRIMARY] {
        n += count(port, db, "SELECT COUNT(*) FROM orders").await?;
    }
    Ok(n)
}

/// Server transactions open on both primaries in connections whose database is `db`.
async fn open_transactions(db: &str) -> anyhow::Result<i64> {
    let mut n = 0;
    for port in [S0_PRIMARY, S1_PRIMARY] {
        n += count(
            port,
            db,
            &format!(
                "SELECT COUNT(*) FROM information_schema.INNODB_TRX x \
                 JOIN information_schema.PROCESSLIST p ON p.ID = x.trx_mysql_thread_id WHERE p.DB = '{db}'"
            ),
        )
        .await?;
    }
    Ok(n)
}

/// A proxy with the map moved to `db` (reads on the primaries), a session in `db` with members
/// 1..=20 and no orders; also a member on s0 and one on s1.
async fn start(db: &str) -> anyhow::Result<(TestProxy, mysql_async::Conn, i64, i64)> {
    let proxy = TestProxy::start_with(|cfg| {
        *cfg = map_to_db(cfg, db).replace("[routing]", "[routing]\nreplica_reads = false")
    })
    .await?;
    let mut p = proxy.conn(None).await?;
    p.query_drop(format!("CREATE DATABASE {db}")).await?;
    p.query_drop(format!("USE {db}")).await?;
    p.query_drop(MEMBERS).await?;
    p.query_drop(ORDERS).await?;
    let (a, b) = members_on_both_shards(&mut p, db).await?;
    Ok((proxy, p, a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autocommit_off_statements_stay_in_the_session_transaction() -> anyhow::Result<()> {
    let db = unique_name("it_ac0");
    let _drop = ShardedScratch(db.clone());
    let (_proxy, mut p, a, b) = start(&db).await?;

    // Generated ids, rolled back: no row, and no connection left holding one.
    p.query_drop("SET autocommit = 0").await?;
    for _ in 0..2 {
        p.query_drop(format!(
            "INSERT INTO orders (member_id, total, status) VALUES ({a}, 1.00, 'new')"
        ))
        .await?;
    }
    let id: Option<u64> = p.query_first("SELECT LAST_INSERT_ID()").await?;
    assert!(id.is_some_and(|i| i > 0), "a generated id: {id:?}");
    let inside: Option<i64> = p
        .query_first(format!("SELECT COUNT(*) FROM orders WHERE member_id = {a}"))
        .await?;
    assert_eq!(inside, Some(2), "the transaction sees its own rows");
    assert_eq!(orders(&db).await?, 0, "nothing committed before COMMIT");
    p.query_drop("ROLLBACK").await?;
    // A read over both shards runs outside the transaction and leaves none open either.
    let all: Option<i64> = p.query_first("SELECT COUNT(*) FROM members").await?;
    assert_eq!(all, Some(20));
    assert_eq!(
        open_transactions(&db).await?,
        0,
        "a backend connection still holds a transaction after ROLLBACK"
    );
    // Connections given back to the pool and used again with autocommit on would commit what
    // they held.
    p.query_drop("SET autocommit = 1").await?;
    for _ in 0..5 {
        p.query_drop(format!(
            "UPDATE members SET tier = tier WHERE member_id = {a}"
        ))
        .await?;
    }
    assert_eq!(orders(&db).await?, 0, "a rolled-back order was committed");

    // Generated id, committed: the row is there with the id the client was told.
    p.query_drop("SET autocommit = 0").await?;
    p.query_drop(format!(
        "INSERT INTO orders (member_id, total, status) VALUES ({b}, 2.00, 'new')"
    ))
    .await?;
    let id: Option<u64> = p.query_first("SELECT LAST_INSERT_ID()").await?;
    p.query_drop("COMMIT").await?;
    let mut found = 0;
    for port in [S0_PRIMARY, S1_PRIMARY] {
        found += count(
            port,
            &db,
            &format!(
                "SELECT COUNT(*) FROM orders WHERE id = {} AND member_id = {b}",
                id.unwrap_or(0)
            ),
        )
        .await?;
    }
    assert_eq!(found, 1, "the committed order carries the generated id");

    // Writes to several shards are refused and change nothing.
    for sql in [
        "UPDATE members SET tier = 7".to_string(),
        // Members a and b exist: the INSERT would fail with a duplicate key if it ran at all.
        format!("INSERT INTO members (member_id, name, tier) VALUES ({a}, 'x', 7), ({b}, 'y', 7)"),
        format!("DELETE FROM members WHERE member_id IN ({a}, {b})"),
    ] {
        match p.query_drop(&sql).await {
            Err(mysql_async::Error::Server(e)) => {
                assert_eq!((e.code, e.state.as_str()), (1235, "42000"), "{sql}: {e:?}");
                assert!(e.message.contains("autocommit"), "{sql}: {e:?}");
            }
            other => panic!("{sql}: expected ERR 1235, got {other:?}"),
        }
    }
    p.query_drop("COMMIT").await?;
    for port in [S0_PRIMARY, S1_PRIMARY] {
        assert_eq!(
            count(port, &db, "SELECT COUNT(*) FROM members WHERE tier = 7").await?,
            0
        );
    }
    assert_eq!(
        count(S0_PRIMARY, &db, "SELECT COUNT(*) FROM members").await?
            + count(S1_PRIMARY, &db, "SELECT COUNT(*) FROM members").await?,
        20
    );
    // With autocommit on they run (on each shard in turn).
    p.query_drop("SET autocommit = 1").await?;
    p.query_drop("UPDATE members SET tier = 7").await?;
    for port in [S0_PRIMARY, S1_PRIMARY] {
        assert!(count(port, &db, "SELECT COUNT(*) FROM members WHERE tier = 7").await? > 0);
    }
    p.disconnect().await?;
    Ok(())
}

/// Commands that are no statements of the transaction (COM_STMT_PREPARE, COM_INIT_DB) right after
/// BEGIN leave it held back: it opens with the first statement, on that statement's shard, and
/// rolls back with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_after_begin_leave_the_transaction_to_the_first_statement() -> anyhow::Result<()> {
    let db = unique_name("it_begin_cmd");
    let _drop = ShardedScratch(db.clone());
    let (proxy, mut p, _, b) = start(&db).await?;
    let tier = |port| {
        let db = db.clone();
        async move {
            count(
                port,
                &db,
                &format!("SELECT tier FROM members WHERE member_id = {b}"),
            )
            .await
        }
    };

    // A prepared UPDATE of a member on s1 (not the default shard), rolled back.
    p.query_drop("BEGIN").await?;
    p.exec_drop("UPDATE members SET tier = 8 WHERE member_id = ?", (b,))
        .await?;
    p.query_drop("ROLLBACK").await?;
    assert_eq!(tier(S1_PRIMARY).await?, 0, "a rolled-back prepared UPDATE");
    p.query_drop("BEGIN").await?;
    p.exec_drop("UPDATE members SET tier = 8 WHERE member_id = ?", (b,))
        .await?;
    p.query_drop("COMMIT").await?;
    assert_eq!(tier(S1_PRIMARY).await?, 8);

    // COM_INIT_DB between BEGIN and the first statement.
    let mut raw = peakgate_tests::raw::RawConn::login(proxy.mysql, "shop", "shop", None).await?;
    use peakgate_tests::raw::Answer;
    assert_eq!(raw.query("BEGIN").await?, Answer::Ok);
    let mut init_db = vec![0x02];
    init_db.extend_from_slice(db.as_bytes());
    assert_eq!(raw.command(&init_db).await?, Answer::Ok);
    let update = format!("UPDATE members SET tier = 9 WHERE member_id = {b}");
    assert_eq!(raw.query(&update).await?, Answer::Ok);
    assert_eq!(raw.query("COMMIT").await?, Answer::Ok);
    assert_eq!(tier(S1_PRIMARY).await?, 9);
    p.disconnect().await?;
    Ok(())
}
