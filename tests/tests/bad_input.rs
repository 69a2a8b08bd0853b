//! Broken and hostile clients, driven with the raw protocol client (`peakgate_tests::raw`):
//! truncated and lying packets, garbage handshakes, wrong sequence ids, clients that vanish
//! mid-result or mid-transaction, a dead backend, invalid UTF-8, short COM_CHANGE_USER and
//! COM_STMT_EXECUTE payloads, unknown commands, and a connection storm. After each case the
//! proxy must still serve an ordinary `mysql_async` client.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use mysql_async::prelude::*;
use peakgate_tests::raw::{
    self, Answer, COM_CHANGE_USER, COM_PING, COM_STMT_EXECUTE, RawConn, execute_strings,
};
use peakgate_tests::{S0_PRIMARY, S0_REPLICA, Scratch, TestProxy, direct, tcp_only, unique_name};

/// Asserts that what the proxy sent before closing is nothing, or exactly one ERR `code`.
fn err_then_closed(packets: &[Vec<u8>], code: u16) {
    match packets {
        [] => {}
        [p] => {
            let e = raw::parse_err(p).unwrap_or_else(|| panic!("not an ERR packet: {p:02x?}"));
            assert_eq!(e.code, code, "{e:?}");
        }
        more => panic!("expected at most one ERR before the close, got {more:02x?}"),
    }
}

/// Reads an ERR packet and then the end of the connection.
async fn expect_err_and_close(c: &mut RawConn) -> anyhow::Result<raw::ServerError> {
    let packets = c.read_until_closed().await?;
    let [p] = packets.as_slice() else {
        bail!("expected one ERR and a close, got {packets:02x?}");
    };
    raw::parse_err(p).context("not an ERR packet")
}

async fn select_1_works(c: &mut RawConn) -> anyhow::Result<()> {
    let got = c.query_column("SELECT 1").await?;
    ensure!(got == [Some("1".to_string())], "SELECT 1 gave {got:?}");
    Ok(())
}

#[tokio::test]
async fn truncated_packet_then_close() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    // In the handshake: a header announcing 100 bytes, 10 of them, then the client is gone.
    let mut c = RawConn::connect(proxy.mysql).await?;
    c.read_greeting().await?;
    c.write_raw(&[100, 0, 0, 1]).await?;
    c.write_raw(&[0x85, 0xa6, 0xff, 0x01, 0, 0, 0, 1, 45, 0])
        .await?;
    drop(c);
    // After login: half a COM_QUERY.
    let mut c = RawConn::login(proxy.mysql, "shop", "shop", Some("shop")).await?;
    c.write_raw(&[100, 0, 0, 0, 0x03, b'S', b'E', b'L']).await?;
    drop(c);
    // And a header cut short.
    let mut c = RawConn::login(proxy.mysql, "shop", "shop", None).await?;
    c.write_raw(&[100, 0]).await?;
    drop(c);
    proxy.assert_serves().await?;
    proxy.wait_pools_idle(Duration::from_secs(5)).await
}

#[tokio::test]
async fn garbage_instead_of_a_handshake_response() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    // Framed garbage: capabilities without protocol 4.1.
    let mut c = RawConn::connect(proxy.mysql).await?;
    c.read_greeting().await?;
    c.write_packet(1, b"\x00\x00\x00\x00this is not a handshake response")
        .await?;
    let e = expect_err_and_close(&mut c).await?;
    assert_eq!((e.code, e.sqlstate.as_str()), (1043, "08S01"), "{e:?}");
    // Framed garbage that claims protocol 4.1 and then runs short.
    let mut c = RawConn::connect(proxy.mysql).await?;
    c.read_greeting().await?;
    c.write_packet(1, &[0x00, 0x02, 0x00, 0x00, 0xff, 0xff])
        .await?;
    let e = expect_err_and_close(&mut c).await?;
    assert_eq!(e.code, 1043, "{e:?}");
    // Not MySQL at all: an HTTP request (its first bytes read as a huge length, wrong sequence).
    let mut c = RawConn::connect(proxy.mysql).await?;
    c.read_greeting().await?;
    c.write_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await?;
    err_then_closed(&c.read_until_closed().await?, 1043);
    // Random bytes, many times over.
    let mut x: u32 = 0x1234_5678;
    for _ in 0..20 {
        let mut c = RawConn::connect(proxy.mysql).await?;
        c.read_greeting().await?;
        let junk: Vec<u8> = (0..64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        c.write_raw(&junk).await?;
        // Whatever the bytes announce, the proxy either answers 1043 and closes or, when they
        // announce more bytes than were sent, waits; the client then gives up.
        drop(c);
    }
    proxy.assert_serves().await
}

#[tokio::test]
async fn wrong_sequence_id_on_a_command_is_1156() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let mut c = RawConn::login(proxy.mysql, "shop", "shop", None).await?;
    c.write_packet(5, b"\x03SELECT 1").await?;
    let e = expect_err_and_close(&mut c).await?;
    assert_eq!((e.code, e.sqlstate.as_str()), (1156, "08S01"), "{e:?}");
    proxy.assert_serves().await
}

#[tokio::test]
async fn packet_longer_than_max_allowed_packet_is_1153_before_its_body() -> anyhow::Result<()> {
    let proxy = TestProxy::start_with(|cfg| {
        assert!(cfg.contains("max_allowed_packet = 67108864"), "{cfg}");
        *cfg = cfg.replace(
            "max_allowed_packet = 67108864",
            "max_allowed_packet = 1048576",
        );
    })
    .await?;
    let mut c = RawConn::login(proxy.mysql, "shop", "shop", None).await?;
    // A header announcing 2 MiB and only the first bytes of the body: the proxy must refuse on
    // the header alone (were it waiting for the body, the read below would time out).
    let announced: u32 = 2 << 20;
    let mut head = announced.to_le_bytes()[..3].to_vec();
    head.push(0);
    head.extend_from_slice(b"\x03SELECT '");
    c.write_raw(&head).await?;
    let e = expect_err_and_close(&mut c).await?;
    assert_eq!((e.code, e.sqlstate.as_str()), (1153, "08S01"), "{e:?}");
    // Just under the limit is fine.
    let mut c = RawConn::login(proxy.mysql, "shop", "shop", None).await?;
    let v = "y".repeat(1_000_000);
    let got = c.query_column(&format!("SELECT LENGTH('{v}')")).await?;
    assert_eq!(got, [Some("1000000".to_string())]);
    proxy.assert_serves().await
}

/// Queries running on the s0 primary whose text contains `tag`.
async fn running_with_tag(tag: &str) -> anyhow::Result<u64> {
    // Reads may run on the primary or on its replica.
    let mut total = 0;
    for port in [S0_PRIMARY, S0_REPLICA] {
        let mut d = direct(port, None).await?;
        let n: Option<u64> = d
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                 WHERE INFO LIKE CONCAT('%', ?, '%') AND ID <> CONNECTION_ID()",
                (tag,),
            )
            .await?;
        d.disconnect().await?;
        total += n.unwrap_or(0);
    }
    Ok(total)
}

#[tokio::test]
async fn client_vanishing_mid_result_leaks_no_backend_connection() -> anyhow::Result<()> {
    // Two backend connections and a short wait: a leaked one would show at once.
    let proxy = TestProxy::start_with(|cfg| {
        assert!(cfg.contains("pool_size = 32"), "{cfg}");
        *cfg = cfg.replace(
            "pool_size = 32",
            "pool_size = 2\npool_wait_timeout_ms = 3000",
        );
    })
    .await?;
    for round in 0..4 {
        let tag = unique_name("it_vanish");
        let mut c = RawConn::login(proxy.mysql, "shop", "shop", Some("shop")).await?;
        // ~200 MB of rows: far more than any socket buffer holds.
        let sql = format!("SELECT REPEAT('x', 1000) FROM seq_1_to_200000 /* {tag} */");
        let mut p = vec![raw::COM_QUERY];
        p.extend_from_slice(sql.as_bytes());
        c.write_packet(0, &p).await?;
        for _ in 0..50 {
            c.expect_packet().await?;
        }
        ensure!(
            running_with_tag(&tag).await? == 1,
            "round {round}: the query is not running on the server"
        );
        c.vanish();
        // The proxy drops the backend connection, and the server stops the query.
        let start = Instant::now();
        while running_with_tag(&tag).await? > 0 {
            ensure!(
                start.elapsed() < Duration::from_secs(10),
                "round {round}: the abandoned query still runs after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        proxy.wait_pools_idle(Duration::from_secs(5)).await?;
        for (instance, variant, connections, _) in proxy.pools().await? {
            assert!(
                connections <= 2,
                "{instance}/{variant}: {connections} connections"
            );
        }
        // Both pooled connections are usable: two sessions at once, one pinned by a transaction.
        let mut a = RawConn::login(proxy.mysql, "shop", "shop", Some("shop")).await?;
        assert_eq!(a.query("BEGIN").await?, Answer::Ok);
        let mut b = RawConn::login(proxy.mysql, "shop", "shop", Some("shop")).await?;
        select_1_works(&mut b).await?;
        assert_eq!(a.query("ROLLBACK").await?, Answer::Ok);
        a.quit().await?;
        b.quit().await?;
    }
    proxy.assert_serves().await
}

#[tokio::test]
async fn client_vanishing_mid_transaction_releases_its_row_lock() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let t = unique_name("it_vanish_lock");
    let _drop = Scratch::table("shop", &t);
    let mut d = direct(S0_PRIMARY, Some("shop")).await?;
    d.query_drop(format!(
        "CREATE TABLE {t} (id INT PRIMARY KEY, v INT) ENGINE=InnoDB"
    ))
    .await?;
    d.query_drop(format!("INSERT INTO {t} VALUES (1, 0)"))
        .await?;

    let mut c = RawConn::login(proxy.mysql, "shop", "shop", Some("shop")).await?;
    assert_eq!(c.query("BEGIN").await?, Answer::Ok);
    let locked = c
        .query_column(&format!("SELECT v FROM {t} WHERE id = 1 FOR UPDATE"))
        .await?;
    assert_eq!(locked, [Some("0".to_string())]);
    assert_eq!(
        c.query(format!("UPDATE {t} SET v = 99 WHERE id = 1"))
            .await?,
        Answer::Ok
    );
    // The lock is really held: NOWAIT fails at once on a direct connection.
    let held = d
        .query_drop(format!("SELECT v FROM {t} WHERE id = 1 FOR UPDATE NOWAIT"))
        .await;
    match held {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1205, "{e:?}"),
        other => panic!("the row should be locked: {other:?}"),
    }
    c.vanish();

    // Another client through the proxy gets the row within its 1 s lock wait.
    let mut o = proxy.conn(Some("shop")).await?;
    o.query_drop("SET SESSION innodb_lock_wait_timeout = 1")
        .await?;
    let mut tx = o.start_transaction(Default::default()).await?;
    let v: Option<i32> = tx
        .query_first(format!("SELECT v FROM {t} WHERE id = 1 FOR UPDATE"))
        .await?;
    assert_eq!(v, Some(0), "the vanished client's update was rolled back");
    tx.query_drop(format!("UPDATE {t} SET v = 1 WHERE id = 1"))
        .await?;
    tx.commit().await?;
    let v: Option<i32> = d
        .query_first(format!("SELECT v FROM {t} WHERE id = 1"))
        .await?;
    assert_eq!(v, Some(1));
    d.disconnect().await?;
    o.disconnect().await?;
    proxy.assert_serves().await
}

#[tokio::test]
async fn dead_backend_is_2003_naming_the_instance_and_ping_still_works() -> anyhow::Result<()> {
    let proxy = TestProxy::start_with(|cfg| {
        assert!(cfg.contains("primary = \"127.0.0.1:3311\""), "{cfg}");
        *cfg = cfg.replace("primary = \"127.0.0.1:3311\"", "primary = \"127.0.0.1:1\"");
        tcp_only(cfg);
        // Reads would run on the live replica: keep them on the dead primary.
        *cfg = cfg.replace("[routing]", "[routing]\nreplica_reads = false");
    })
    .await?;
    // Settings given up front, so the driver's login runs no query of its own.
    let opts = mysql_async::OptsBuilder::from_opts(proxy.opts(None))
        .max_allowed_packet(Some(16 << 20))
        .wait_timeout(Some(28_800));
    let mut c = mysql_async::Conn::new(opts).await?;
    for _ in 0..2 {
        match c.query_drop("SELECT 1").await {
            Err(mysql_async::Error::Server(e)) => {
                assert_eq!(e.code, 2003, "{e:?}");
                assert!(e.message.contains("'127.0.0.1:1'"), "{}", e.message);
            }
            other => panic!("expected ERR 2003, got {other:?}"),
        }
        c.ping().await?;
    }
    c.disconnect().await?;
    // The same with the raw client: the error, then COM_PING on the same connection.
    let mut r = RawConn::login(proxy.mysql, "shop", "shop", None).await?;
    let e = r.query("SELECT 1").await?.expect_err();
    assert_eq!(e.code, 2003, "{e:?}");
    assert_eq!(r.command(&[COM_PING]).await?, Answer::Ok);
    // A login naming a database needs the backend: refused with the same error.
    let err = mysql_async::Conn::new(proxy.opts(Some("shop")))
        .await
        .expect_err("the backend is down");
    match err {
        mysql_async::Error::Server(e) => assert_eq!(e.code, 2003, "{e:?}"),
        other => panic!("expected ERR 2003, got {other:?}"),
    }
    assert_eq!(r.command(&[COM_PING]).await?, Answer::Ok);
    r.quit().await
}

#[tokio::test]
async fn invalid_utf8_in_sql_gets_an_answer() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let mut c = RawConn::login(proxy.mysql, "shop", "shop", Some("shop")).await?;
    let inputs: [&[u8]; 6] = [
        b"\xff\xfe",
        b"SELECT '\xff\xfe' AS v",
        b"SELECT 1 /* \xc3\x28 */",
        b"SELECT `\xff` FROM t",
        b"\xf0\x28\x8c\x28; SELECT 1",
        b"",
    ];
    for sql in inputs {
        match c.query(sql).await? {
            Answer::Err(_) | Answer::Rows(_) | Answer::Ok => {}
        }
        select_1_works(&mut c).await?;
    }
    // The proxy refuses to prepare what it cannot read, with the server's code for it.
    let mut p = vec![raw::COM_STMT_PREPARE];
    p.extend_from_slice(b"SELECT '\xff'");
    let e = c.command(&p).await?.expect_err();
    assert_eq!(e.code, 1300, "{e:?}");
    select_1_works(&mut c).await?;
    c.quit().await?;
    proxy.assert_serves().await
}

#[tokio::test]
async fn short_or_lying_change_user_is_refused_and_closed() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let cases: [&[u8]; 4] = [
        // Nothing after the command byte.
        &[COM_CHANGE_USER],
        // A user name without its NUL.
        b"\x11shop",
        // An auth response announcing 20 bytes, carrying 3.
        b"\x11shop\0\x14\x01\x02\x03",
        // Well formed, wrong password.
        b"\x11shop\0\x14aaaaaaaaaaaaaaaaaaaa\0\x2d\0mysql_native_password\0",
    ];
    for case in cases {
        let mut c = RawConn::login(proxy.mysql, "shop", "shop", None).await?;
        c.write_packet(0, case).await?;
        let (seq, mut first) = c.expect_packet().await?;
        if first.starts_with(&[0xfe]) {
            // A wrong password gets a fresh scramble (auth switch); answer it wrongly again.
            c.write_packet(seq.wrapping_add(1), &[b'z'; 20]).await?;
            first = c.expect_packet().await?.1;
        }
        let e = raw::parse_err(&first).with_context(|| format!("{case:02x?}: {first:02x?}"))?;
        assert!(matches!(e.code, 1043 | 1045), "{case:02x?}: {e:?}");
        assert!(c.read_until_closed().await?.is_empty(), "{case:02x?}");
    }
    proxy.assert_serves().await
}

/// What a session shows of its state: database, a user variable, sql_mode, a temporary table.
async fn session_view(
    c: &mut mysql_async::Conn,
) -> anyhow::Result<(Option<String>, Option<i64>, String, bool)> {
    let (db, v, mode): (Option<String>, Option<i64>, String) = c
        .query_first("SELECT DATABASE(), @v, @@session.sql_mode")
        .await?
        .context("a row")?;
    let tmp = c.query_drop("SELECT * FROM it_cu_tmp").await.is_ok();
    Ok((db, v, mode, tmp))
}

/// SET state, then reset or change user, and report what the session shows before and after.
async fn reset_and_change_user(
    c: &mut mysql_async::Conn,
    user: &str,
    pass: Option<&str>,
) -> anyhow::Result<Vec<(Option<String>, Option<i64>, String, bool)>> {
    let mut seen = Vec::new();
    let dirty = "SET @v = 7, SESSION sql_mode = 'ANSI_QUOTES'";
    c.query_drop(dirty).await?;
    c.query_drop("CREATE TEMPORARY TABLE it_cu_tmp (n INT)")
        .await?;
    seen.push(session_view(c).await?);
    assert!(c.reset().await?, "COM_RESET_CONNECTION is supported");
    seen.push(session_view(c).await?);
    c.query_drop("USE sbtest").await?;
    c.query_drop(dirty).await?;
    c.query_drop("CREATE TEMPORARY TABLE it_cu_tmp (n INT)")
        .await?;
    c.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some(user.into()))
            .with_pass(pass.map(Into::into))
            .with_db_name(Some("shop".into())),
    )
    .await?;
    seen.push(session_view(c).await?);
    c.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some(user.into()))
            .with_pass(pass.map(Into::into))
            .with_db_name(None),
    )
    .await?;
    seen.push(session_view(c).await?);
    Ok(seen)
}

#[tokio::test]
async fn change_user_and_reset_connection_behave_as_on_the_server() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let mut d = direct(S0_PRIMARY, Some("shop")).await?;
    let want = reset_and_change_user(&mut d, "root", None).await?;
    d.disconnect().await?;
    let mut c = proxy.conn(Some("shop")).await?;
    let seen = reset_and_change_user(&mut c, "shop", Some("shop")).await?;
    assert_eq!(seen, want);
    // And the session still works normally afterwards.
    let one: Option<i64> = c.query_first("SELECT 1").await?;
    assert_eq!(one, Some(1));
    c.disconnect().await?;
    proxy.assert_serves().await
}

#[tokio::test]
async fn short_or_lying_stmt_execute_is_refused_and_the_session_goes_on() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let mut c = RawConn::login(proxy.mysql, "shop", "shop", Some("shop")).await?;
    // Unknown statement id.
    let e = c.command(&execute_strings(999, &[])).await?.expect_err();
    assert_eq!(e.code, 1243, "{e:?}");
    // Too short to hold a statement id.
    let e = c.command(&[COM_STMT_EXECUTE, 1, 0]).await?.expect_err();
    assert_eq!(e.code, 1210, "{e:?}");
    let st = c
        .prepare("SELECT CONCAT(?, ?)")
        .await?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(st.params, 2);
    let id = st.id.to_le_bytes();
    let head = [COM_STMT_EXECUTE, id[0], id[1], id[2], id[3], 0, 1, 0, 0, 0];
    let lying: [Vec<u8>; 4] = [
        // No null bitmap, no types.
        head.to_vec(),
        // Types announced, one of two present.
        [&head[..], &[0, 1, 0xfd, 0]].concat(),
        // No types ever bound for this statement.
        [&head[..], &[0, 0, 1, b'a', 1, b'b']].concat(),
        // Types bound, values missing.
        [&head[..], &[0, 1, 0xfd, 0, 0xfd, 0]].concat(),
    ];
    for p in &lying {
        let e = c.command(p).await?.expect_err();
        assert_eq!(e.code, 1210, "{p:02x?}: {e:?}");
        select_1_works(&mut c).await?;
    }
    // A value whose length runs past the packet: the server's to judge (an ERR or a row), the
    // session goes on.
    let past = [&head[..], &[0, 1, 0xfd, 0, 0xfd, 0, 50, b'a', 1, b'b']].concat();
    match c.command(&past).await? {
        Answer::Err(_) | Answer::Rows(_) => {}
        Answer::Ok => panic!("an OK to a SELECT"),
    }
    select_1_works(&mut c).await?;
    // The statement itself still works.
    match c.command(&execute_strings(st.id, &["a", "b"])).await? {
        Answer::Rows(rows) => {
            // Binary row: 0x00, a one-byte null bitmap, then the value.
            let [row] = rows.as_slice() else {
                panic!("{rows:02x?}")
            };
            assert_eq!(raw::lenenc_str(&row[2..]).map(|(v, _)| v), Some(&b"ab"[..]));
        }
        other => panic!("expected a row, got {other:?}"),
    }
    c.quit().await?;
    proxy.assert_serves().await
}

#[tokio::test]
async fn unknown_command_is_1047_and_the_session_goes_on() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let mut c = RawConn::login(proxy.mysql, "shop", "shop", None).await?;
    for cmd in [&[0x55u8][..], &[0xff, 1, 2], &[]] {
        let e = c.command(cmd).await?.expect_err();
        assert_eq!((e.code, e.sqlstate.as_str()), (1047, "08S01"), "{e:?}");
        select_1_works(&mut c).await?;
    }
    c.quit().await?;
    proxy.assert_serves().await
}

#[tokio::test]
async fn connection_storm_beyond_max_client_connections() -> anyhow::Result<()> {
    let proxy = TestProxy::start_with(|cfg| {
        assert!(cfg.contains("max_client_connections = 4096"), "{cfg}");
        *cfg = cfg.replace(
            "max_client_connections = 4096",
            "max_client_connections = 50",
        );
    })
    .await?;
    let mut admitted = Vec::new();
    for _ in 0..50 {
        let mut c = RawConn::login(proxy.mysql, "shop", "shop", None).await?;
        select_1_works(&mut c).await?;
        admitted.push(c);
    }
    for i in 50..200 {
        let mut c = RawConn::connect(proxy.mysql).await?;
        let (seq, first) = c.expect_packet().await?;
        let e = raw::parse_err(&first)
            .with_context(|| format!("connection {i}: first packet {first:02x?}"))?;
        assert_eq!(
            (seq, e.code, e.sqlstate.as_str()),
            (0, 1040, "08004"),
            "{e:?}"
        );
        assert!(c.read_until_closed().await?.is_empty());
    }
    // The admitted ones are unaffected.
    for c in &mut admitted {
        select_1_works(c).await?;
    }
    for c in admitted {
        c.quit().await?;
    }
    // Their slots come back as their sessions end.
    let start = Instant::now();
    let mut again = Vec::new();
    while again.len() < 50 {
        match RawConn::login(proxy.mysql, "shop", "shop", None).await {
            Ok(c) => again.push(c),
            Err(e) if start.elapsed() < Duration::from_secs(5) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.context("slots did not come back within 5 s")),
        }
    }
    for c in again {
        c.quit().await?;
    }
    let start = Instant::now();
    loop {
        match proxy.assert_serves().await {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() > Duration::from_secs(5) => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Clients that prepare statements and never close them: beyond `max_prepared_stmt_count`
/// (all clients together, as on MariaDB) COM_STMT_PREPARE gets ERR 1461 and proxy memory stays
/// bounded; closing a statement, COM_RESET_CONNECTION or disconnecting gives the room back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_beyond_the_limit_are_refused() -> anyhow::Result<()> {
    let proxy = TestProxy::start_with(|t| {
        *t = t.replacen("[proxy]", "[proxy]\nmax_prepared_stmt_count = 5", 1);
    })
    .await?;
    let addr = proxy.clone_addrs().mysql;
    let open = || async {
        let s = proxy.admin_get("/status").await?;
        let v: serde_json::Value = serde_json::from_str(&s)?;
        anyhow::Ok(v["prepared_statements"].as_u64())
    };
    let mut a = RawConn::login(addr, "shop", "shop", None).await?;
    let mut ids = Vec::new();
    for i in 0..3 {
        let st = a.prepare(&format!("SELECT {i} + ?")).await?;
        ids.push(st.map_err(|e| anyhow::anyhow!("prepare {i}: {e:?}"))?.id);
    }
    let mut b = RawConn::login(addr, "shop", "shop", None).await?;
    for i in 0..2 {
        b.prepare(&format!("SELECT {i} - ?"))
            .await?
            .map_err(|e| anyhow::anyhow!("prepare {i} on b: {e:?}"))?;
    }
    ensure!(open().await? == Some(5), "count {:?}", open().await?);
    for c in [&mut a, &mut b] {
        match c.prepare("SELECT 99").await? {
            Err(e) => ensure!(e.code == 1461, "{e:?}"),
            Ok(_) => bail!("a 6th prepared statement was accepted"),
        }
    }
    // COM_STMT_CLOSE (no answer) gives one back.
    let mut close = vec![0x19];
    close.extend_from_slice(&ids[0].to_le_bytes());
    a.write_packet(0, &close).await?;
    // The close has no answer: a ping on the same connection is answered after it.
    match a.command(&[COM_PING]).await? {
        Answer::Ok => {}
        other => bail!("ping after the close: {other:?}"),
    }
    b.prepare("SELECT 98")
        .await?
        .map_err(|e| anyhow::anyhow!("after a close: {e:?}"))?;
    // A reset and a disconnect give back all of a session's.
    match a.command(&[0x1f]).await? {
        Answer::Ok => {}
        Answer::Err(e) => bail!("COM_RESET_CONNECTION: {e:?}"),
        Answer::Rows(_) => bail!("COM_RESET_CONNECTION answered rows"),
    }
    ensure!(
        open().await? == Some(3),
        "after the reset: {:?}",
        open().await?
    );
    b.quit().await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while open().await? != Some(0) {
        ensure!(
            Instant::now() < deadline,
            "after the disconnect: {:?}",
            open().await?
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.prepare("SELECT 1")
        .await?
        .map_err(|e| anyhow::anyhow!("after all were given back: {e:?}"))?;
    Ok(())
}

/// COM_STMT_SEND_LONG_DATA is buffered in the proxy until the EXECUTE: at most
/// `max_allowed_packet` bytes for all of a session's statements together, so long data spread
/// over many statements cannot grow proxy memory either. The statement that would pass the
/// bound fails its EXECUTE with ERR 1153; the others and the session go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_data_is_bounded_per_session() -> anyhow::Result<()> {
    const MAX: usize = 1 << 20;
    let proxy = TestProxy::start_with(|t| {
        assert!(t.contains("max_allowed_packet = 67108864"), "{t}");
        *t = t.replacen(
            "max_allowed_packet = 67108864",
            &format!("max_allowed_packet = {MAX}"),
            1,
        );
    })
    .await?;
    let mut c = RawConn::login(proxy.clone_addrs().mysql, "shop", "shop", None).await?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let st = c.prepare("SELECT LENGTH(?)").await?;
        ids.push(st.map_err(|e| anyhow::anyhow!("{e:?}"))?.id);
    }
    let chunk = vec![b'x'; 60 * 1024];
    let send = |id: u32, chunks: usize| {
        let mut packets = Vec::new();
        for _ in 0..chunks {
            let mut ld = vec![0x18];
            ld.extend_from_slice(&id.to_le_bytes());
            ld.extend_from_slice(&0u16.to_le_bytes());
            ld.extend_from_slice(&chunk);
            packets.push(ld);
        }
        packets
    };
    let execute = |id: u32| {
        let mut ex = vec![COM_STMT_EXECUTE];
        ex.extend_from_slice(&id.to_le_bytes());
        ex.push(0);
        ex.extend_from_slice(&1u32.to_le_bytes());
        ex.push(0); // NULL bitmap
        ex.push(1); // types follow
        ex.extend_from_slice(&[0xfc, 0]); // BLOB, its value sent as long data
        ex
    };
    // 600 KiB for the first statement, then 600 KiB for the second: together past 1 MiB.
    for id in [ids[0], ids[1]] {
        for p in send(id, 10) {
            c.write_packet(0, &p).await?;
        }
    }
    let e = c.command(&execute(ids[1])).await?.expect_err();
    ensure!(e.code == 1153, "the statement past the bound: {e:?}");
    for id in [ids[0], ids[2]] {
        if id == ids[2] {
            // The first statement's EXECUTE consumed its data: room for another 600 KiB.
            for p in send(id, 10) {
                c.write_packet(0, &p).await?;
            }
        }
        match c.command(&execute(id)).await? {
            Answer::Rows(rows) => {
                // Binary row: 0x00, NULL bitmap, LENGTH() as an INT or BIGINT (little-endian).
                let n = rows.first().and_then(|r| r.get(2..)).map(|b| {
                    b.iter()
                        .rev()
                        .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte))
                });
                ensure!(n == Some(10 * 60 * 1024), "statement {id}: {rows:02x?}");
            }
            other => bail!("statement {id}: {other:?}"),
        }
    }
    Ok(())
}
