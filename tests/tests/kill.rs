//! Clients' `KILL` through the proxy: ids are the proxy's connection ids (what the handshake gave
//! the client, what `mysql` Ctrl-C and JDBC query timeouts send), never a backend thread's.

use std::time::{Duration, Instant};

use anyhow::ensure;
use mysql_async::prelude::*;
use peakgate_tests::raw::RawConn;
use peakgate_tests::{S0_PRIMARY, TestProxy, direct, unique_name};

/// The server error code of a failed mysql_async call.
fn code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

async fn proxy_with_second_user() -> anyhow::Result<TestProxy> {
    let hash = peakgate::protocol::auth::format_native_hash(
        &peakgate::protocol::auth::native_hash(b"other"),
    );
    TestProxy::start_with(|t| {
        t.push_str(&format!(
            "\n[[users]]\nname = \"other\"\npassword_sha1 = \"{hash}\"\n"
        ));
    })
    .await
}

/// `KILL QUERY id` ends the statement another session of the same user runs (its client gets
/// ERR 1317 and keeps its connection); `KILL id` closes that session, rolling back its
/// transaction and releasing its row locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_query_and_kill_connection_reach_the_right_session() -> anyhow::Result<()> {
    let proxy = proxy_with_second_user().await?;
    let db = unique_name("it_kill");
    let mut root = direct(S0_PRIMARY, None).await?;
    root.query_drop(format!("CREATE DATABASE {db}")).await?;
    root.query_drop(format!(
        "CREATE TABLE {db}.t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB"
    ))
    .await?;
    root.query_drop(format!("INSERT INTO {db}.t VALUES (1, 0)"))
        .await?;
    let result = async {
        let mut a = proxy.conn(Some(&db)).await?;
        let mut b = proxy.conn(Some(&db)).await?;
        let a_id = a.id();
        // KILL QUERY: the running statement ends early; the session and its transaction go on.
        // (Inside a transaction: an autocommit read may run on a shared connection, which KILL
        // QUERY does not reach.)
        a.query_drop("BEGIN").await?;
        let started = Instant::now();
        let sleeper = tokio::spawn(async move {
            let r: Result<Option<i64>, _> = a.query_first("SELECT SLEEP(30)").await;
            (a, r)
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        // /status/sessions maps the session's id to the server thread running its statement.
        let s: serde_json::Value =
            serde_json::from_str(&proxy.admin_get("/status/sessions").await?)?;
        let mine = s["sessions"]
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|x| x["id"].as_u64() == Some(u64::from(a_id)))
            })
            .cloned()
            .unwrap_or_default();
        ensure!(mine["user"] == "shop", "session {a_id} in {s}");
        let thread = mine["running_on"]["thread_id"].as_u64();
        let info: Option<String> = root
            .exec_first(
                "SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = ?",
                (thread.unwrap_or(0),),
            )
            .await?;
        ensure!(
            info.as_deref().is_some_and(|i| i.contains("SLEEP(30)")),
            "thread {thread:?} runs {info:?}"
        );
        b.query_drop(format!("KILL QUERY {a_id}")).await?;
        let (mut a, r) = tokio::time::timeout(Duration::from_secs(10), sleeper).await??;
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "SLEEP(30) ran {:?}",
            started.elapsed()
        );
        match r {
            Err(e) => ensure!(code(&e) == Some(1317), "killed statement: {e}"),
            // MariaDB may end an interrupted SLEEP with 1 instead of an error.
            Ok(v) => ensure!(v == Some(1), "killed SLEEP answered {v:?}"),
        }
        let one: Option<i64> = a.query_first("SELECT 1").await?;
        ensure!(one == Some(1), "the session survives KILL QUERY");
        ensure!(proxy.metric("peakgate_client_kills_total").await? >= 1.0);

        // KILL CONNECTION: a session inside a transaction holding a row lock is closed; the
        // transaction is rolled back and the lock released.
        a.query_drop("UPDATE t SET v = 42 WHERE id = 1").await?;
        b.query_drop(format!("KILL CONNECTION {a_id}")).await?;
        let after = a.query_drop("SELECT 1").await;
        ensure!(after.is_err(), "a killed session still answers");
        let mut c = proxy.conn(Some(&db)).await?;
        c.query_drop("SET SESSION innodb_lock_wait_timeout = 5")
            .await?;
        c.query_drop("UPDATE t SET v = v + 1 WHERE id = 1").await?;
        let v: Option<i64> = root
            .query_first(format!("SELECT v FROM {db}.t WHERE id = 1"))
            .await?;
        ensure!(
            v == Some(1),
            "the killed transaction's update survived: {v:?}"
        );
        anyhow::Ok(())
    }
    .await;
    let _ = root
        .query_drop(format!("DROP DATABASE IF EXISTS {db}"))
        .await;
    result
}

/// Ids that name no session of the proxy get ERR 1094 even when a backend thread has that id
/// (which stays alive); another user's session gets ERR 1095; killing one's own connection gets
/// ERR 1927 and closes it; unsupported forms get ERR 1235; COM_PROCESS_KILL is KILL CONNECTION.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_refusals_and_the_backend_threads_are_safe() -> anyhow::Result<()> {
    let proxy = proxy_with_second_user().await?;
    let mut b = proxy.conn(None).await?;
    // A backend thread of the primary, as root directly: its id is no session of this proxy
    // (only `b` is logged in yet).
    let mut root = direct(S0_PRIMARY, None).await?;
    let thread = root.id();
    ensure!(thread != b.id(), "thread id {thread} is the session's id");
    let e = b
        .query_drop(format!("KILL {thread}"))
        .await
        .expect_err("no such session");
    ensure!(code(&e) == Some(1094), "{e}");
    let alive: Option<i64> = root.query_first("SELECT 1").await?;
    ensure!(
        alive == Some(1),
        "the backend thread with that id was killed"
    );

    let mut other = mysql_async::Conn::new(
        mysql_async::OptsBuilder::from_opts(proxy.opts(None))
            .user(Some("other"))
            .pass(Some("other")),
    )
    .await?;
    let e = other
        .query_drop(format!("KILL QUERY {}", b.id()))
        .await
        .expect_err("another user's session");
    ensure!(code(&e) == Some(1095), "{e}");
    for sql in [
        "KILL QUERY ID 5".to_string(),
        "KILL USER shop".to_string(),
        format!("KILL {}; SELECT 1", b.id()),
    ] {
        match b.query_drop(&sql).await {
            Err(e) => ensure!(matches!(code(&e), Some(1235 | 1064)), "{sql}: {e}"),
            Ok(()) => anyhow::bail!("{sql} was accepted"),
        }
    }
    let one: Option<i64> = b.query_first("SELECT 1").await?;
    ensure!(one == Some(1), "refused KILLs leave the session working");

    // COM_PROCESS_KILL of an unknown id, then of a live session of the same user.
    let addr = proxy.clone_addrs().mysql;
    let mut raw = RawConn::login(addr, "shop", "shop", None).await?;
    let mut p = vec![0x0c];
    p.extend_from_slice(&999_999u32.to_le_bytes());
    let e = raw.command(&p).await?.expect_err();
    ensure!(e.code == 1094, "COM_PROCESS_KILL unknown id: {e:?}");
    let mut p = vec![0x0c];
    p.extend_from_slice(&b.id().to_le_bytes());
    raw.command(&p).await?;
    ensure!(
        b.query_drop("SELECT 1").await.is_err(),
        "COM_PROCESS_KILL left the session open"
    );

    // One's own connection.
    let mut own = proxy.conn(None).await?;
    let e = own
        .query_drop(format!("KILL {}", own.id()))
        .await
        .expect_err("own connection");
    ensure!(code(&e) == Some(1927), "{e}");
    ensure!(
        own.query_drop("SELECT 1").await.is_err(),
        "KILL of its own connection left it open"
    );
    Ok(())
}
