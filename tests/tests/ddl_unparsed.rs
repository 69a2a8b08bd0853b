//! DDL on a sharded table that sqlparser cannot parse (MariaDB's `ADD COLUMN IF NOT EXISTS`, as
//! re-run migrations send it) still reaches every shard: the lexer names the one table it changes.
//!
//! The map is the topology's, moved to a database of the test's own.

use mysql_async::prelude::*;
use peakgate_tests::{
    S0_PRIMARY, S1_PRIMARY, ShardedScratch, TestProxy, direct, map_to_db, unique_name,
};

/// The columns of `db`.members on the primary at `port`.
async fn columns(port: u16, db: &str) -> anyhow::Result<Vec<String>> {
    let mut d = direct(port, None).await?;
    let cols: Vec<String> = d
        .query(format!(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{db}' \
             AND TABLE_NAME = 'members' ORDER BY ORDINAL_POSITION"
        ))
        .await?;
    d.disconnect().await?;
    Ok(cols)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparseable_ddl_on_a_sharded_table_runs_on_every_shard() -> anyhow::Result<()> {
    let db = unique_name("it_ddl");
    let _drop = ShardedScratch(db.clone());
    let proxy = TestProxy::start_with(|cfg| *cfg = map_to_db(cfg, &db)).await?;
    let mut p = proxy.conn(None).await?;
    p.query_drop(format!("CREATE DATABASE {db}")).await?;
    p.query_drop(format!("USE {db}")).await?;
    p.query_drop("CREATE TABLE members (member_id BIGINT PRIMARY KEY, tier INT NOT NULL)")
        .await?;
    // Twice, as a re-run migration does: the second is a no-op on every shard.
    for _ in 0..2 {
        p.query_drop(
            "ALTER TABLE members ADD COLUMN IF NOT EXISTS phone VARCHAR(32) NULL AFTER tier",
        )
        .await?;
        p.query_drop(format!(
            "ALTER TABLE `{db}`.members ADD INDEX IF NOT EXISTS idx_phone (phone)"
        ))
        .await?;
    }
    for port in [S0_PRIMARY, S1_PRIMARY] {
        assert_eq!(
            columns(port, &db).await?,
            ["member_id", "tier", "phone"],
            "shard at {port}"
        );
    }
    // Still refused: unparseable SQL on a sharded table that is not such DDL.
    let r = p
        .query_drop("SELECT * FROM members WHERE member_id = 1 LOCK IN SHARE MODE NOWAIT SKIP")
        .await;
    assert!(r.is_err(), "{r:?}");
    p.disconnect().await?;
    Ok(())
}
