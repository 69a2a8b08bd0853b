//! Prepared statements across databases: the server binds a prepared statement to the database
//! current at PREPARE (its unqualified tables, even `DATABASE()`), and the proxy, which prepares
//! statements again on whichever backend connection an EXECUTE lands on, must keep that rule.

use mysql_async::prelude::*;
use peakgate_tests::{S0_PRIMARY, Scratch, TestProxy, direct, unique_name};

/// A table of the same name in `shop` (one row) and `sbtest` (two rows).
async fn same_table_in_two_databases(t: &str) -> anyhow::Result<[Scratch; 2]> {
    let guards = [Scratch::table("shop", t), Scratch::table("sbtest", t)];
    let mut d = direct(S0_PRIMARY, None).await?;
    for (db, rows) in [("shop", "(1)"), ("sbtest", "(1), (2)")] {
        d.query_drop(format!("CREATE TABLE {db}.{t} (n INT PRIMARY KEY)"))
            .await?;
        d.query_drop(format!("INSERT INTO {db}.{t} VALUES {rows}"))
            .await?;
    }
    d.disconnect().await?;
    peakgate_tests::sync_replicas().await?;
    Ok(guards)
}

#[tokio::test]
async fn same_text_prepared_in_two_databases_on_one_backend_connection() -> anyhow::Result<()> {
    let t = unique_name("it_ps_db");
    let _drop = same_table_in_two_databases(&t).await?;
    // One backend connection: both sessions' statements are prepared on it.
    let proxy = TestProxy::start_with(|cfg| {
        assert!(cfg.contains("pool_size = 32"), "{cfg}");
        *cfg = cfg.replace("pool_size = 32", "pool_size = 1");
    })
    .await?;
    let sql = format!("SELECT DATABASE(), COUNT(*) FROM {t}");
    let mut a = proxy.conn(Some("shop")).await?;
    let mut b = proxy.conn(Some("sbtest")).await?;
    for _ in 0..3 {
        let seen: Option<(String, i64)> = a.exec_first(&sql, ()).await?;
        assert_eq!(seen, Some(("shop".into(), 1)));
        let seen: Option<(String, i64)> = b.exec_first(&sql, ()).await?;
        assert_eq!(seen, Some(("sbtest".into(), 2)));
    }
    a.disconnect().await?;
    b.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn prepared_statement_keeps_its_database_after_use() -> anyhow::Result<()> {
    let t = unique_name("it_ps_use");
    let _drop = same_table_in_two_databases(&t).await?;
    let sql = format!("SELECT DATABASE(), COUNT(*) FROM {t}");
    // What the server does when a client talks to it directly.
    let mut d = direct(S0_PRIMARY, Some("shop")).await?;
    let st = d.prep(&sql).await?;
    d.query_drop("USE sbtest").await?;
    let direct_answer: Option<(String, i64)> = d.exec_first(&st, ()).await?;
    assert_eq!(direct_answer, Some(("shop".into(), 1)), "the server's rule");
    d.disconnect().await?;

    // One backend connection, and its prepared statements are dropped between the EXECUTEs
    // (another session leaves a temporary table behind, so the connection is reset after it):
    // every EXECUTE prepares the statement again, on a connection that is in sbtest by then.
    let proxy = TestProxy::start_with(|cfg| {
        assert!(cfg.contains("pool_size = 32"), "{cfg}");
        *cfg = cfg.replace("pool_size = 32", "pool_size = 1");
    })
    .await?;
    let mut c = proxy.conn(Some("shop")).await?;
    let st = c.prep(&sql).await?;
    c.query_drop("USE sbtest").await?;
    for _ in 0..3 {
        let mut o = proxy.conn(Some("sbtest")).await?;
        o.query_drop("CREATE TEMPORARY TABLE it_ps_reset (n INT)")
            .await?;
        o.disconnect().await?;
        let seen: Option<(String, i64)> = c.exec_first(&st, ()).await?;
        assert_eq!(seen, direct_answer);
        let now: Option<String> = c.query_first("SELECT DATABASE()").await?;
        assert_eq!(now.as_deref(), Some("sbtest"), "the session's own database");
    }
    // A statement prepared after USE belongs to the new database.
    let seen: Option<(String, i64)> = c.exec_first(format!("{sql} WHERE n > 0"), ()).await?;
    assert_eq!(seen, Some(("sbtest".into(), 2)));
    c.disconnect().await?;
    Ok(())
}
