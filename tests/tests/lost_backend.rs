//! A backend connection that dies under a transaction (`KILL` of its server thread, as root on
//! the s0 primary): the server rolls the transaction back, and the client must hear it. Every
//! further statement of the transaction gets ERR 1213 / 40001 and never runs in autocommit on
//! another connection; COMMIT gets that ERR, never OK; ROLLBACK ends it with OK; BEGIN and
//! `SET autocommit = 1` end it with the ERR, a connection reset ends it. The same for an
//! `autocommit = 0` session, for prepared statements, and for a session holding a GET_LOCK lock.
//!
//! Each test has a database of its own on s0 (not in the shard map: the default shard).

use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use peakgate_tests::{S0_PRIMARY, Scratch, TestProxy, direct, sync_replicas, unique_name};

/// A database `db` with table `t (id INT PRIMARY KEY)` on the s0 primary (and its replicas).
async fn setup(prefix: &str) -> anyhow::Result<(String, Scratch)> {
    let db = unique_name(prefix);
    let scratch = Scratch::database(&db);
    let mut d = direct(S0_PRIMARY, None).await?;
    d.query_drop(format!("CREATE DATABASE {db}")).await?;
    d.query_drop(format!(
        "CREATE TABLE {db}.t (id INT PRIMARY KEY) ENGINE=InnoDB"
    ))
    .await?;
    d.disconnect().await?;
    // The client's first queries (mysql_async asks for server variables) may read on a replica,
    // in this database.
    sync_replicas().await?;
    Ok((db, scratch))
}

/// The committed ids of `db`.t, read directly on the primary.
async fn committed(db: &str) -> anyhow::Result<Vec<i64>> {
    let mut d = direct(S0_PRIMARY, Some(db)).await?;
    let ids: Vec<i64> = d.query("SELECT id FROM t ORDER BY id").await?;
    d.disconnect().await?;
    Ok(ids)
}

/// Kills the backend connection the proxy session `p` holds (its thread id is what
/// CONNECTION_ID() answers on it), after finding it in the primary's PROCESSLIST; waits until
/// the server has closed it.
async fn kill_backend(p: &mut mysql_async::Conn, db: &str) -> anyhow::Result<()> {
    let id: Option<u64> = p.query_first("SELECT CONNECTION_ID()").await?;
    let id = id.ok_or_else(|| anyhow::anyhow!("no CONNECTION_ID()"))?;
    let mut root = direct(S0_PRIMARY, None).await?;
    let listed: Option<i64> = root
        .query_first(format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {id} AND DB = '{db}'"
        ))
        .await?;
    assert_eq!(
        listed,
        Some(1),
        "the session's backend thread {id} is in PROCESSLIST"
    );
    root.query_drop(format!("KILL {id}")).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Option<i64> = root
            .query_first(format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {id}"
            ))
            .await?;
        if left == Some(0) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "thread {id} survived KILL");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    root.disconnect().await?;
    Ok(())
}

/// The server error a statement got (fails the test when it succeeded).
fn server_error<T: std::fmt::Debug>(
    r: Result<T, mysql_async::Error>,
    what: &str,
) -> mysql_async::ServerError {
    match r {
        Err(mysql_async::Error::Server(e)) => e,
        other => panic!("{what}: expected an ERR from the proxy, got {other:?}"),
    }
}

/// Asserts `r` is the proxy's "transaction lost" error.
fn assert_lost<T: std::fmt::Debug>(r: Result<T, mysql_async::Error>, what: &str) {
    let e = server_error(r, what);
    assert_eq!((e.code, e.state.as_str()), (1213, "40001"), "{what}: {e:?}");
    assert!(
        e.message.contains("lost the backend connection") && e.message.contains("ROLLBACK"),
        "{what}: {e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_lost_its_backend_never_commits() -> anyhow::Result<()> {
    let (db, _scratch) = setup("it_lost_txn").await?;
    let proxy = TestProxy::start().await?;
    let mut p = proxy.conn(Some(&db)).await?;

    p.query_drop("BEGIN").await?;
    p.query_drop("INSERT INTO t VALUES (1)").await?;
    kill_backend(&mut p, &db).await?;
    let e = server_error(
        p.query_drop("INSERT INTO t VALUES (2)").await,
        "the statement on the dead connection",
    );
    assert!(e.message.contains("rolled back"), "{e:?}");
    assert_lost(
        p.query_drop("INSERT INTO t VALUES (3)").await,
        "a later INSERT",
    );
    assert_lost(
        p.query_first::<i64, _>("SELECT COUNT(*) FROM t").await,
        "a later SELECT",
    );
    assert_lost(p.query_drop("COMMIT").await, "COMMIT");
    assert_eq!(
        committed(&db).await?,
        Vec::<i64>::new(),
        "nothing committed"
    );
    // COMMIT ended the dead transaction: the session works again.
    p.query_drop("ROLLBACK").await?;
    p.query_drop("INSERT INTO t VALUES (4)").await?;
    assert_eq!(committed(&db).await?, vec![4], "autocommit works again");

    // ROLLBACK ends it with OK; BEGIN ends it with the ERR, then starts afresh.
    p.query_drop("START TRANSACTION").await?;
    p.query_drop("INSERT INTO t VALUES (5)").await?;
    kill_backend(&mut p, &db).await?;
    assert!(p.query_drop("INSERT INTO t VALUES (6)").await.is_err());
    assert_lost(p.query_drop("BEGIN").await, "BEGIN in the dead transaction");
    p.query_drop("BEGIN").await?;
    p.query_drop("INSERT INTO t VALUES (7)").await?;
    p.query_drop("COMMIT").await?;
    assert_eq!(committed(&db).await?, vec![4, 7]);
    p.query_drop("BEGIN").await?;
    p.query_drop("INSERT INTO t VALUES (8)").await?;
    kill_backend(&mut p, &db).await?;
    assert!(p.query_drop("INSERT INTO t VALUES (9)").await.is_err());
    p.query_drop("ROLLBACK").await?;
    p.query_drop("INSERT INTO t VALUES (10)").await?;
    assert_eq!(committed(&db).await?, vec![4, 7, 10]);
    p.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autocommit_off_transaction_that_lost_its_backend_never_commits() -> anyhow::Result<()> {
    let (db, _scratch) = setup("it_lost_ac0").await?;
    let proxy = TestProxy::start().await?;
    let mut p = proxy.conn(Some(&db)).await?;

    p.query_drop("SET autocommit = 0").await?;
    p.query_drop("INSERT INTO t VALUES (1)").await?;
    kill_backend(&mut p, &db).await?;
    assert!(p.query_drop("INSERT INTO t VALUES (2)").await.is_err());
    assert_lost(
        p.query_drop("INSERT INTO t VALUES (3)").await,
        "a later INSERT",
    );
    assert_lost(p.query_drop("COMMIT").await, "COMMIT");
    assert_eq!(committed(&db).await?, Vec::<i64>::new());
    p.query_drop("ROLLBACK").await?;
    // Still autocommit = 0: the next transaction commits only with COMMIT.
    p.query_drop("INSERT INTO t VALUES (4)").await?;
    assert_eq!(committed(&db).await?, Vec::<i64>::new());
    p.query_drop("COMMIT").await?;
    assert_eq!(committed(&db).await?, vec![4]);

    // SET autocommit = 1 would commit: it gets the ERR and ends the dead transaction.
    p.query_drop("INSERT INTO t VALUES (5)").await?;
    kill_backend(&mut p, &db).await?;
    assert!(p.query_drop("INSERT INTO t VALUES (6)").await.is_err());
    assert_lost(
        p.query_drop("SET autocommit = 1").await,
        "SET autocommit = 1",
    );
    p.query_drop("SET autocommit = 1").await?;
    p.query_drop("INSERT INTO t VALUES (7)").await?;
    assert_eq!(committed(&db).await?, vec![4, 7]);
    p.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_of_a_lost_transaction_never_commit() -> anyhow::Result<()> {
    let (db, _scratch) = setup("it_lost_ps").await?;
    let proxy = TestProxy::start().await?;
    let mut p = proxy.conn(Some(&db)).await?;
    let insert = "INSERT INTO t VALUES (?)";

    // A prepare right after BEGIN does not take the transaction elsewhere.
    p.query_drop("BEGIN").await?;
    p.exec_drop(insert, (1,)).await?;
    p.query_drop("ROLLBACK").await?;
    assert_eq!(committed(&db).await?, Vec::<i64>::new(), "rolled back");

    p.query_drop("BEGIN").await?;
    p.exec_drop(insert, (2,)).await?;
    kill_backend(&mut p, &db).await?;
    assert!(p.exec_drop(insert, (3,)).await.is_err());
    assert_lost(p.exec_drop(insert, (4,)).await, "a later EXECUTE");
    assert_lost(p.exec_drop("COMMIT", ()).await, "a prepared COMMIT");
    assert_eq!(committed(&db).await?, Vec::<i64>::new());
    p.query_drop("ROLLBACK").await?;
    p.exec_drop(insert, (5,)).await?;
    assert_eq!(committed(&db).await?, vec![5]);
    p.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_user_lock_is_reported() -> anyhow::Result<()> {
    let (db, _scratch) = setup("it_lost_lock").await?;
    let proxy = TestProxy::start().await?;
    let mut p = proxy.conn(Some(&db)).await?;
    let lock = unique_name("it_lost_lock");

    let got: Option<i64> = p
        .query_first(format!("SELECT GET_LOCK('{lock}', 0)"))
        .await?;
    assert_eq!(got, Some(1));
    kill_backend(&mut p, &db).await?;
    assert!(
        p.query_drop("INSERT INTO t VALUES (1)").await.is_err(),
        "the statement on the dead connection"
    );
    let e = server_error(p.query_drop("INSERT INTO t VALUES (2)").await, "later");
    assert_eq!(e.code, 1213, "{e:?}");
    assert!(e.message.contains("GET_LOCK"), "{e:?}");
    p.query_drop("ROLLBACK").await?;
    p.query_drop("INSERT INTO t VALUES (3)").await?;
    assert_eq!(committed(&db).await?, vec![3]);

    // A connection reset (COM_RESET_CONNECTION, or COM_CHANGE_USER) ends it too.
    p.query_drop(format!("SELECT GET_LOCK('{lock}', 0)"))
        .await?;
    kill_backend(&mut p, &db).await?;
    assert!(p.query_drop("INSERT INTO t VALUES (4)").await.is_err());
    p.reset().await?;
    p.query_drop("INSERT INTO t VALUES (5)").await?;
    assert_eq!(committed(&db).await?, vec![3, 5]);
    p.disconnect().await?;
    Ok(())
}

/// A ROLLBACK that is the first to find the transaction's connection dead answers OK: the server
/// rolled the transaction back when the connection died, which is what ROLLBACK asks for (it got
/// ERR 2013 "lost connection ... may not have run"). COMMIT and ROLLBACK TO SAVEPOINT in that
/// position still get an error: neither what they ask for happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_on_a_dead_connection_is_ok() -> anyhow::Result<()> {
    let (db, _scratch) = setup("it_lost_rollback").await?;
    let proxy = TestProxy::start().await?;
    let mut p = proxy.conn(Some(&db)).await?;

    p.query_drop("BEGIN").await?;
    p.query_drop("INSERT INTO t VALUES (1)").await?;
    kill_backend(&mut p, &db).await?;
    p.query_drop("ROLLBACK").await?;
    p.query_drop("INSERT INTO t VALUES (2)").await?;
    assert_eq!(
        committed(&db).await?,
        vec![2],
        "rolled back, then autocommit"
    );

    p.query_drop("BEGIN").await?;
    p.query_drop("INSERT INTO t VALUES (3)").await?;
    p.query_drop("SAVEPOINT s").await?;
    kill_backend(&mut p, &db).await?;
    let e = server_error(
        p.query_drop("ROLLBACK TO SAVEPOINT s").await,
        "ROLLBACK TO SAVEPOINT on the dead connection",
    );
    assert_ne!(e.code, 0, "{e:?}");
    p.query_drop("ROLLBACK").await?;

    p.query_drop("BEGIN").await?;
    p.query_drop("INSERT INTO t VALUES (4)").await?;
    kill_backend(&mut p, &db).await?;
    server_error(
        p.query_drop("COMMIT").await,
        "COMMIT on the dead connection",
    );
    assert_eq!(committed(&db).await?, vec![2], "nothing more committed");
    p.query_drop("INSERT INTO t VALUES (5)").await?;
    assert_eq!(committed(&db).await?, vec![2, 5]);
    p.disconnect().await?;
    Ok(())
}
