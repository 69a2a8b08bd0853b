//! Hot (flash-sale) SKUs: statements on hot SKU rows of the stock table run on the `hot` instance,
//! the others on the home shard; DDL reaches both. The topology's `[hotspot]` (SKUs 1001-1010 of
//! `shop.sku_stock`) is moved to a table of the test's own.

use mysql_async::prelude::*;
use peakgate_tests::{S0_PRIMARY, Scratch, TestProxy, direct, unique_name};

const HOT: u16 = 3331;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_skus_run_on_the_hot_instance() -> anyhow::Result<()> {
    let t = unique_name("it_stock");
    let _drop = Scratch::table("shop", &t);
    let _drop_hot = HotScratch(t.clone());
    let proxy = TestProxy::start_with(|cfg| {
        assert!(cfg.contains("table = \"shop.sku_stock\""), "{cfg}");
        *cfg = cfg.replace(
            "table = \"shop.sku_stock\"",
            &format!("table = \"shop.{t}\""),
        );
        *cfg = cfg.replace("[routing]", "[routing]\nreplica_reads = false");
    })
    .await?;
    let mut c = proxy.conn(Some("shop")).await?;
    c.query_drop(format!(
        "CREATE TABLE {t} (sku_id BIGINT PRIMARY KEY, stock INT NOT NULL)"
    ))
    .await?;
    let count_on = |port: u16, sql: String| async move {
        let mut d = direct(port, Some("shop")).await?;
        let n: Option<i64> = d.query_first(sql).await?;
        d.disconnect().await?;
        anyhow::Ok(n)
    };
    // DDL on both the home shard and the hot instance.
    for port in [S0_PRIMARY, HOT] {
        let n = count_on(
            port,
            format!("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = '{t}'"),
        )
        .await?;
        assert_eq!(n, Some(1), "table on port {port}");
    }
    c.query_drop(format!(
        "INSERT INTO {t} (sku_id, stock) VALUES (1001, 100)"
    ))
    .await?;
    c.query_drop(format!(
        "INSERT INTO {t} (sku_id, stock) VALUES (5, 10), (6, 10)"
    ))
    .await?;
    assert_eq!(
        count_on(HOT, format!("SELECT COUNT(*) FROM {t}")).await?,
        Some(1)
    );
    assert_eq!(
        count_on(S0_PRIMARY, format!("SELECT COUNT(*) FROM {t}")).await?,
        Some(2)
    );
    // A guarded decrement of hot stock, text and prepared.
    c.query_drop(format!(
        "UPDATE {t} SET stock = stock - 1 WHERE sku_id = 1001 AND stock > 0"
    ))
    .await?;
    c.exec_drop(
        format!("UPDATE {t} SET stock = stock - 1 WHERE sku_id = ? AND stock > 0"),
        (1001,),
    )
    .await?;
    let left: Option<i64> = c
        .exec_first(format!("SELECT stock FROM {t} WHERE sku_id = ?"), (1001,))
        .await?;
    assert_eq!(left, Some(98));
    assert_eq!(
        count_on(HOT, format!("SELECT stock FROM {t} WHERE sku_id = 1001")).await?,
        Some(98)
    );
    let normal: Option<i64> = c
        .query_first(format!("SELECT stock FROM {t} WHERE sku_id = 5"))
        .await?;
    assert_eq!(normal, Some(10));
    // Hot and normal SKUs in one statement: refused.
    let e = c
        .query_drop(format!(
            "UPDATE {t} SET stock = 0 WHERE sku_id IN (5, 1001)"
        ))
        .await
        .expect_err("mixed");
    assert!(e.to_string().contains("1235"), "{e}");
    // A SKU made hot at run time (its row moved by the operator first).
    c.query_drop(format!("DELETE FROM {t} WHERE sku_id = 6"))
        .await?;
    let (code, body) = proxy
        .admin_request("POST", "/hotspot?sku=6&action=add")
        .await?;
    assert_eq!(code, 200, "{body}");
    c.query_drop(format!("INSERT INTO {t} (sku_id, stock) VALUES (6, 7)"))
        .await?;
    assert_eq!(
        count_on(HOT, format!("SELECT stock FROM {t} WHERE sku_id = 6")).await?,
        Some(7)
    );
    let metrics = proxy.admin_get("/metrics").await?;
    assert!(
        !metrics.contains("peakgate_hot_statements_total 0\n"),
        "no hot statement counted"
    );
    let status = proxy.admin_get("/status").await?;
    assert!(status.contains("\"hot_skus\""), "{status}");
    Ok(())
}

/// Drops the test's table on the hot instance too.
struct HotScratch(String);

impl Drop for HotScratch {
    fn drop(&mut self) {
        let _ = std::process::Command::new("mysql")
            .args(["--no-defaults", "-h127.0.0.1", "-P3331", "-uroot", "-e"])
            .arg(format!("DROP TABLE IF EXISTS shop.{}", self.0))
            .status();
    }
}
