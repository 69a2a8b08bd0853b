//! `[backend] sockets`: the proxy reaches an instance on its own host over the server's unix
//! socket. The server must see the proxy's sessions arrive over the socket (PROCESSLIST host
//! `localhost`, no port), statements, transactions and prepared statements must behave as over
//! TCP, and a socket that is not there must give ERR 2003 naming the instance and the socket.

use mysql_async::prelude::*;
use peakgate_tests::{
    HOT_PRIMARY, S0_PRIMARY, S0_REPLICA, S0_REPORTING, S1_PRIMARY, TestProxy, direct, repo_root,
    tcp_only, unique_name,
};

/// The topology's config with the s0 primary reached over `socket`, reads kept on it.
async fn proxy_over(socket: &str) -> anyhow::Result<TestProxy> {
    let socket = socket.to_string();
    TestProxy::start_with(move |cfg| {
        assert!(cfg.contains("[backend]\n"), "{cfg}");
        // The topology's own config reaches every instance over its socket: this test names
        // the s0 primary's alone, and the rest go over TCP.
        tcp_only(cfg);
        *cfg = cfg.replacen(
            "[backend]\n",
            &format!("[backend]\nsockets = {{ \"127.0.0.1:{S0_PRIMARY}\" = \"{socket}\" }}\n"),
            1,
        );
        *cfg = cfg.replace("[routing]", "[routing]\nreplica_reads = false");
    })
    .await
}

/// The host the s0 primary (`root`) sees for the backend connection of the proxy session `c`
/// (`localhost` without a port over the unix socket).
async fn backend_host(
    c: &mut mysql_async::Conn,
    root: &mut mysql_async::Conn,
) -> anyhow::Result<Option<String>> {
    let me: u64 = c
        .query_first("/* peakgate: route=primary */ SELECT CONNECTION_ID()")
        .await?
        .expect("a connection id");
    Ok(root
        .exec_first(
            "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = ?",
            (me,),
        )
        .await?)
}

fn s0_socket() -> String {
    repo_root()
        .join("target/topology/s0-primary/mariadbd.sock")
        .display()
        .to_string()
}

#[tokio::test]
async fn statements_reach_the_primary_over_its_unix_socket() -> anyhow::Result<()> {
    let proxy = proxy_over(&s0_socket()).await?;
    let mut c = proxy.conn(None).await?;
    let db = unique_name("it_uds");
    c.query_drop(format!("CREATE DATABASE {db}")).await?;
    c.query_drop(format!("USE {db}")).await?;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
        .await?;
    let mut root = direct(S0_PRIMARY, None).await?;
    let host = backend_host(&mut c, &mut root).await?;
    assert_eq!(
        host.as_deref(),
        Some("localhost"),
        "a unix-socket session has host localhost without a port"
    );
    // A transaction, a prepared statement, a rollback: as over TCP.
    c.query_drop("BEGIN").await?;
    c.exec_drop("INSERT INTO t VALUES (?, ?)", (1, "kept"))
        .await?;
    c.query_drop("COMMIT").await?;
    c.query_drop("BEGIN").await?;
    c.exec_drop("INSERT INTO t VALUES (?, ?)", (2, "rolled back"))
        .await?;
    c.query_drop("ROLLBACK").await?;
    let rows: Vec<(i32, String)> = c.query("SELECT id, v FROM t ORDER BY id").await?;
    assert_eq!(rows, vec![(1, "kept".to_string())]);
    let on_server: Vec<i32> = root.query(format!("SELECT id FROM {db}.t")).await?;
    assert_eq!(on_server, vec![1]);
    c.query_drop(format!("DROP DATABASE {db}")).await?;
    c.disconnect().await?;
    root.disconnect().await?;
    proxy.assert_serves().await
}

#[tokio::test]
async fn a_missing_socket_is_2003_naming_the_instance_and_the_socket() -> anyhow::Result<()> {
    let missing = std::env::temp_dir().join(unique_name("no_such_server"));
    let missing = format!("{}.sock", missing.display());
    let proxy = proxy_over(&missing).await?;
    let mut c = mysql_async::Conn::new(
        mysql_async::OptsBuilder::from_opts(proxy.opts(None))
            .max_allowed_packet(Some(16 << 20))
            .wait_timeout(Some(28_800)),
    )
    .await?;
    match c.query_drop("SELECT 1").await {
        Err(mysql_async::Error::Server(e)) => {
            assert_eq!(e.code, 2003, "{e:?}");
            assert!(
                e.message.contains(&format!("127.0.0.1:{S0_PRIMARY}"))
                    && e.message.contains(&missing),
                "{}",
                e.message
            );
        }
        other => panic!("expected ERR 2003, got {other:?}"),
    }
    c.ping().await?;
    c.disconnect().await?;
    Ok(())
}

#[test]
fn a_socket_for_an_unknown_instance_is_a_config_error() -> anyhow::Result<()> {
    let mut text = std::fs::read_to_string(peakgate_tests::ensure_topology()?)?;
    tcp_only(&mut text);
    let text = text.replacen(
        "[backend]\n",
        "[backend]\nsockets = { \"127.0.0.1:9\" = \"/tmp/x.sock\" }\n",
        1,
    );
    let err = peakgate::Config::parse(&text).expect_err("an unknown instance");
    assert!(
        err.to_string().contains("backend.sockets: \"127.0.0.1:9\""),
        "{err}"
    );
    Ok(())
}

/// `scripts/topology` writes a config whose backend connections go over each server's unix
/// socket (the proxy runs on the servers' host); the monitor stays on TCP.
#[tokio::test]
async fn the_topologys_config_reaches_every_server_over_its_socket() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    for port in [
        S0_PRIMARY,
        S0_REPLICA,
        S0_REPORTING,
        S1_PRIMARY,
        S1_PRIMARY + 1,
        HOT_PRIMARY,
    ] {
        let socket = proxy
            .config
            .backend
            .sockets
            .get(&format!("127.0.0.1:{port}"))
            .unwrap_or_else(|| panic!("no socket for 127.0.0.1:{port}"));
        let meta = std::fs::metadata(socket)?;
        assert!(
            std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()),
            "{socket} is a unix socket"
        );
    }
    let mut c = proxy.conn(None).await?;
    let mut root = direct(S0_PRIMARY, None).await?;
    let host = backend_host(&mut c, &mut root).await?;
    assert_eq!(host.as_deref(), Some("localhost"), "over the unix socket");
    c.disconnect().await?;
    root.disconnect().await?;
    proxy.assert_serves().await
}
