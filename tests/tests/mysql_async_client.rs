//! Drives the proxy with `mysql_async`: text and binary protocol, transactions, prepared
//! statements, session state across pooled backend connections.

use mysql_async::prelude::*;
use peakgate_tests::TestProxy;

#[tokio::test]
async fn text_and_binary_protocol_round_trip() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let mut c = proxy.conn(Some("shop")).await?;
    c.query_drop("DROP TABLE IF EXISTS it_roundtrip").await?;
    c.query_drop("CREATE TABLE it_roundtrip (id INT PRIMARY KEY, name VARCHAR(64), price DECIMAL(10,2), note MEDIUMTEXT NULL)").await?;
    c.query_drop("DELETE FROM it_roundtrip").await?;
    c.exec_drop(
        "INSERT INTO it_roundtrip VALUES (?, ?, ?, ?)",
        (1, "tea", "3.50", None::<String>),
    )
    .await?;
    c.exec_drop(
        "INSERT INTO it_roundtrip VALUES (?, ?, ?, ?)",
        (2, "茶 ☕", "12.00", Some("x".repeat(70_000))),
    )
    .await?;
    let rows: Vec<(i32, String, String, Option<String>)> = c
        .query("SELECT id, name, price, note FROM it_roundtrip ORDER BY id")
        .await?;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], (1, "tea".to_string(), "3.50".to_string(), None));
    assert_eq!(rows[1].1, "茶 ☕");
    assert_eq!(rows[1].3.as_deref().map(str::len), Some(70_000));
    let bin: Vec<(i32, String)> = c
        .exec(
            "SELECT id, name FROM it_roundtrip WHERE id >= ? ORDER BY id",
            (1,),
        )
        .await?;
    assert_eq!(bin, vec![(1, "tea".into()), (2, "茶 ☕".into())]);
    c.query_drop("DROP TABLE it_roundtrip").await?;
    c.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn transactions_commit_and_roll_back() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let mut c = proxy.conn(Some("shop")).await?;
    c.query_drop("CREATE TABLE IF NOT EXISTS it_txn (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await?;
    c.query_drop("DELETE FROM it_txn").await?;
    let mut tx = c.start_transaction(Default::default()).await?;
    tx.exec_drop("INSERT INTO it_txn VALUES (?)", (1,)).await?;
    tx.rollback().await?;
    let mut tx = c.start_transaction(Default::default()).await?;
    tx.exec_drop("INSERT INTO it_txn VALUES (?)", (2,)).await?;
    let inside: Vec<i32> = tx.query("SELECT id FROM it_txn").await?;
    assert_eq!(inside, vec![2]);
    tx.commit().await?;
    let after: Vec<i32> = c.query("SELECT id FROM it_txn ORDER BY id").await?;
    assert_eq!(after, vec![2]);
    c.query_drop("DROP TABLE it_txn").await?;
    Ok(())
}

#[tokio::test]
async fn session_state_follows_the_client() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let mut c = proxy.conn(None).await?;
    c.query_drop("USE shop").await?;
    c.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES', time_zone = '+05:00'")
        .await?;
    c.query_drop("SET @who = 'alice', @n := 42").await?;
    // Other clients churn the pool meanwhile, so our next statements land on other connections.
    let mut others = Vec::new();
    for _ in 0..8 {
        let mut o = proxy.conn(None).await?;
        o.query_drop("SET SESSION sql_mode = 'TRADITIONAL'").await?;
        others.push(o);
    }
    for _ in 0..20 {
        let row: Option<(Option<String>, String, String, String, i64)> = c
            .query_first("SELECT DATABASE(), @@session.sql_mode, @@session.time_zone, @who, @n")
            .await?;
        let (db, mode, tz, who, n) = row.expect("one row");
        assert_eq!(db.as_deref(), Some("shop"));
        assert_eq!(mode, "ANSI_QUOTES");
        assert_eq!(tz, "+05:00");
        assert_eq!(who, "alice");
        assert_eq!(n, 42);
    }
    for mut o in others {
        let (db, mode): (Option<String>, String) = o
            .query_first("SELECT DATABASE(), @@session.sql_mode")
            .await?
            .expect("row");
        assert_eq!(db, None);
        assert!(mode.contains("TRADITIONAL"), "{mode}");
        let who: Option<Option<String>> = o.query_first("SELECT @who").await?;
        assert_eq!(who, Some(None));
    }
    Ok(())
}

#[tokio::test]
async fn last_insert_id_survives_connection_changes() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let mut c = proxy.conn(Some("shop")).await?;
    c.query_drop(
        "CREATE TABLE IF NOT EXISTS it_autoinc (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT)",
    )
    .await?;
    c.query_drop("INSERT INTO it_autoinc (v) VALUES (1)")
        .await?;
    let id = c.last_insert_id().expect("insert id");
    let mut o = proxy.conn(Some("shop")).await?;
    o.query_drop("INSERT INTO it_autoinc (v) VALUES (2)")
        .await?;
    let seen: Option<u64> = c.query_first("SELECT LAST_INSERT_ID()").await?;
    assert_eq!(seen, Some(id));
    c.query_drop("DROP TABLE it_autoinc").await?;
    Ok(())
}

#[tokio::test]
async fn wrong_password_is_1045() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let opts = mysql_async::OptsBuilder::from_opts(proxy.opts(None)).pass(Some("nope"));
    let err = mysql_async::Conn::new(opts)
        .await
        .expect_err("must be refused");
    match err {
        mysql_async::Error::Server(e) => {
            assert_eq!(e.code, 1045);
            assert_eq!(e.state, "28000");
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn unknown_database_at_login_is_1049() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let err = mysql_async::Conn::new(proxy.opts(Some("no_such_db")))
        .await
        .expect_err("must be refused");
    match err {
        mysql_async::Error::Server(e) => assert_eq!(e.code, 1049),
        other => panic!("expected a server error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn update_reports_affected_rows_text_and_prepared() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let t = peakgate_tests::unique_name("it_affected");
    let _drop = peakgate_tests::Scratch::table("shop", &t);
    let mut c = proxy.conn(Some("shop")).await?;
    c.query_drop(format!("CREATE TABLE {t} (id INT PRIMARY KEY, v INT)"))
        .await?;
    c.query_drop(format!("INSERT INTO {t} VALUES (1, 0), (2, 0), (3, 0)"))
        .await?;
    assert_eq!(c.affected_rows(), 3);
    c.query_drop(format!("UPDATE {t} SET v = v + 1 WHERE id <= 2"))
        .await?;
    assert_eq!(c.affected_rows(), 2, "text UPDATE");
    c.exec_drop(format!("UPDATE {t} SET v = v + 1 WHERE id = ?"), (3,))
        .await?;
    assert_eq!(c.affected_rows(), 1, "prepared UPDATE");
    let r = c
        .query_iter(format!("UPDATE {t} SET v = 9 WHERE id = 1"))
        .await?;
    assert_eq!(r.affected_rows(), 1, "query_iter UPDATE");
    drop(r);
    Ok(())
}
