//! Session isolation under multiplexing: 1,000 concurrent clients share 16 backend connections,
//! and each one, after every step, sees only its own session variables, user variables, database,
//! temporary table, user lock and prepared-statement results.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use mysql_async::prelude::*;
use peakgate_tests::{S0_PRIMARY, TestProxy, direct, unique_name};
use tokio::sync::{Barrier, Semaphore};

const CLIENTS: usize = 1000;
const POOL_SIZE: u64 = 16;

/// Flags picked by the bits of a client's number, so (almost) every client has its own sql_mode.
const MODES: [&str; 10] = [
    "REAL_AS_FLOAT",
    "PIPES_AS_CONCAT",
    "ANSI_QUOTES",
    "IGNORE_SPACE",
    "ONLY_FULL_GROUP_BY",
    "NO_UNSIGNED_SUBTRACTION",
    "NO_AUTO_VALUE_ON_ZERO",
    "STRICT_TRANS_TABLES",
    "ERROR_FOR_DIVISION_BY_ZERO",
    "NO_ENGINE_SUBSTITUTION",
];

/// What one client expects to see in one round.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expect {
    sql_mode: Vec<String>,
    /// As the server shows it after this client's `SET time_zone` (see `time_zone_set`).
    time_zone: String,
    me: i64,
    tag: String,
    db: Option<String>,
}

/// The time zone a client sets in a round: one of the 51 whole and half hours from -12:00 to
/// +13:00, so neighbours differ. Only real-world offsets: each distinct offset set stays in the
/// server's offset cache for good (see `time_zones_as_shown`), and odd ones could shadow the
/// common ones other tests set.
fn time_zone_set(client: usize, round: usize) -> String {
    let minutes = ((client * 7 + round * 11) % 51) as i64 * 30 - 12 * 60;
    let sign = if minutes < 0 { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", minutes.abs() / 60, minutes.abs() % 60)
}

/// What the server itself shows after `SET time_zone = <offset>`, asked on a direct connection.
/// Not always the offset set: MariaDB caches offset time zones server-wide in a hash whose keys
/// compare as case-insensitive latin1 text, so an offset can come back as an earlier cached one
/// whose bytes fold to the same key (e.g. '-04:22' as '-02:14'). Once cached, the answer is
/// stable, so asking first gives what a direct client sees.
async fn time_zones_as_shown(offsets: &[String]) -> anyhow::Result<HashMap<String, String>> {
    let mut d = direct(S0_PRIMARY, None).await?;
    let mut shown = HashMap::new();
    for tz in offsets {
        d.query_drop(format!("SET SESSION time_zone = '{tz}'"))
            .await?;
        let s: String = d
            .query_first("SELECT @@session.time_zone")
            .await?
            .context("a row")?;
        shown.insert(tz.clone(), s);
    }
    d.disconnect().await?;
    Ok(shown)
}

impl Expect {
    fn new(client: usize, round: usize, shown: &HashMap<String, String>) -> Self {
        let key = client + round * 7;
        let sql_mode = MODES
            .iter()
            .enumerate()
            .filter(|(bit, _)| key >> bit & 1 == 1)
            .map(|(_, m)| m.to_string())
            .collect();
        let set = time_zone_set(client, round);
        Self {
            sql_mode,
            time_zone: shown.get(&set).cloned().unwrap_or(set),
            me: (client * 10 + round) as i64,
            tag: format!("client-{client}-round-{round}"),
            db: None,
        }
    }
}

/// Reads everything a client can see of its session and compares it with what it set.
async fn check(c: &mut mysql_async::Conn, want: &Expect, step: &str) -> anyhow::Result<()> {
    type Seen = (String, String, Option<i64>, Option<String>, Option<String>);
    let (mode, tz, me, tag, db): Seen = c
        .query_first("SELECT @@session.sql_mode, @@session.time_zone, @me, @tag, DATABASE()")
        .await?
        .context("one row")?;
    let mut mode: Vec<String> = mode
        .split(',')
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect();
    mode.sort();
    let mut want_mode = want.sql_mode.clone();
    want_mode.sort();
    let seen = Expect {
        sql_mode: mode,
        time_zone: tz,
        me: me.unwrap_or(-1),
        tag: tag.unwrap_or_default(),
        db,
    };
    let want = Expect {
        sql_mode: want_mode,
        ..want.clone()
    };
    ensure!(
        seen == want,
        "after {step}: saw {seen:?}, expected {want:?}"
    );
    Ok(())
}

/// What all clients share.
struct Shared {
    proxy: TestProxy,
    lock_prefix: String,
    /// Connects go 64 at a time: 1,000 SYNs at once overflow the listen backlog, and a client
    /// whose handshake the kernel dropped waits for a greeting that never comes.
    connecting: Semaphore,
    /// Everyone connected (or failed to) before anyone starts: 1,000 live sessions at once.
    start: Barrier,
    time_zones: HashMap<String, String>,
}

async fn client(sh: Arc<Shared>, n: usize) -> anyhow::Result<()> {
    let connected = {
        let _slot = sh.connecting.acquire().await?;
        sh.proxy.conn(None).await.context("connect")
    };
    sh.start.wait().await;
    let mut c = connected?;
    let mut db_now = None;
    for round in 0..2 {
        let mut want = Expect {
            db: db_now.clone(),
            ..Expect::new(n, round, &sh.time_zones)
        };
        let modes = want.sql_mode.join(",");
        c.query_drop(format!(
            "SET SESSION sql_mode = '{modes}', SESSION time_zone = '{}'",
            time_zone_set(n, round)
        ))
        .await
        .context("SET SESSION")?;
        if round == 0 {
            check(
                &mut c,
                &Expect {
                    me: -1,
                    tag: String::new(),
                    ..want.clone()
                },
                "SET SESSION",
            )
            .await?;
        }
        c.query_drop(format!("SET @me = {}, @tag = '{}'", want.me, want.tag))
            .await
            .context("SET @user_vars")?;
        check(&mut c, &want, "SET @user_vars").await?;
        let db = if (n + round).is_multiple_of(2) {
            "shop"
        } else {
            "sbtest"
        };
        c.query_drop(format!("USE {db}")).await.context("USE")?;
        want.db = Some(db.to_string());
        db_now = want.db.clone();
        check(&mut c, &want, "USE").await?;

        // A temporary table of the same name in every session, each with its own rows.
        c.query_drop("CREATE TEMPORARY TABLE it_iso_tmp (n INT PRIMARY KEY, who VARCHAR(64))")
            .await
            .context("CREATE TEMPORARY TABLE")?;
        check(&mut c, &want, "CREATE TEMPORARY TABLE").await?;
        c.query_drop(format!(
            "INSERT INTO it_iso_tmp VALUES ({n}, '{tag}'), ({}, '{tag}')",
            n + 100_000,
            tag = want.tag
        ))
        .await
        .context("INSERT into the temporary table")?;
        check(&mut c, &want, "INSERT").await?;
        let rows: Vec<(i64, String)> = c
            .query("SELECT n, who FROM it_iso_tmp ORDER BY n")
            .await
            .context("SELECT from the temporary table")?;
        let own = vec![
            (n as i64, want.tag.clone()),
            (n as i64 + 100_000, want.tag.clone()),
        ];
        ensure!(
            rows == own,
            "temporary table: saw {rows:?}, expected {own:?}"
        );
        c.query_drop("DROP TEMPORARY TABLE it_iso_tmp")
            .await
            .context("DROP TEMPORARY TABLE")?;
        check(&mut c, &want, "DROP TEMPORARY TABLE").await?;

        // A user lock: held by the very connection the session's statements run on.
        let lock = format!("{}-client-{n}", sh.lock_prefix);
        let got: Option<i64> = c.exec_first("SELECT GET_LOCK(?, 10)", (&lock,)).await?;
        ensure!(got == Some(1), "GET_LOCK({lock}) = {got:?}");
        check(&mut c, &want, "GET_LOCK").await?;
        let mine: Option<(Option<i64>, Option<i64>)> = c
            .exec_first(
                "SELECT IS_USED_LOCK(?) = CONNECTION_ID(), IS_FREE_LOCK(?)",
                (&lock, &lock),
            )
            .await?;
        ensure!(
            mine == Some((Some(1), Some(0))),
            "IS_USED_LOCK({lock}) is not this session's connection: {mine:?}"
        );
        let released: Option<i64> = c.exec_first("SELECT RELEASE_LOCK(?)", (&lock,)).await?;
        ensure!(released == Some(1), "RELEASE_LOCK({lock}) = {released:?}");
        let free: Option<Option<i64>> = c.exec_first("SELECT IS_USED_LOCK(?)", (&lock,)).await?;
        ensure!(
            free == Some(None),
            "lock still used after release: {free:?}"
        );
        check(&mut c, &want, "RELEASE_LOCK").await?;

        // One prepared statement, executed with this client's own parameters. The driver keeps
        // it prepared across rounds, and a prepared statement stays in the database it was
        // prepared in (the server's rule, which the proxy keeps): DATABASE() says round 0's.
        let prepared_in = if n.is_multiple_of(2) {
            "shop"
        } else {
            "sbtest"
        };
        for k in 0..2i64 {
            let p = format!("{}-param-{k}", want.tag);
            let row: Option<(i64, String, i64, Option<String>)> = c
                .exec_first("SELECT ? + 0, ?, @me, DATABASE()", (want.me * 100 + k, &p))
                .await?;
            let expected = (want.me * 100 + k, p, want.me, Some(prepared_in.to_string()));
            ensure!(
                row.as_ref() == Some(&expected),
                "prepared statement: saw {row:?}, expected {expected:?}"
            );
        }
        check(&mut c, &want, "EXECUTE").await?;
    }
    c.disconnect().await?;
    Ok(())
}

/// Largest `connections` seen per pool (instance, variant) while the clients ran.
type PoolPeaks = BTreeMap<(String, u64), u64>;

async fn watch_pools(sh: Arc<Shared>, stop: Arc<AtomicBool>) -> anyhow::Result<PoolPeaks> {
    let mut peaks = PoolPeaks::new();
    loop {
        let done = stop.load(Ordering::Relaxed);
        for (instance, variant, connections, _) in sh.proxy.pools().await? {
            let e = peaks.entry((instance, variant)).or_default();
            *e = (*e).max(connections);
        }
        if done {
            return Ok(peaks);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `peakgate_backend_connects_total` from /metrics.
async fn backend_connects(proxy: &TestProxy) -> anyhow::Result<u64> {
    let metrics = proxy.admin_get("/metrics").await?;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("peakgate_backend_connects_total "))
        .context("no peakgate_backend_connects_total")?;
    Ok(line.rsplit(' ').next().unwrap_or_default().parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_clients_on_sixteen_connections_see_only_their_own_state() -> anyhow::Result<()> {
    let proxy = TestProxy::start_with(|cfg| {
        assert!(cfg.contains("pool_size = 32"), "{cfg}");
        *cfg = cfg.replace(
            "pool_size = 32",
            &format!("pool_size = {POOL_SIZE}\npool_wait_timeout_ms = 30000"),
        );
    })
    .await?;
    let offsets: Vec<String> = (0..CLIENTS)
        .flat_map(|n| (0..2).map(move |r| time_zone_set(n, r)))
        .collect();
    let sh = Arc::new(Shared {
        proxy,
        lock_prefix: unique_name("it-iso-lock"),
        connecting: Semaphore::new(64),
        start: Barrier::new(CLIENTS),
        time_zones: time_zones_as_shown(&offsets).await?,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_pools(sh.clone(), stop.clone()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(client(sh.clone(), n)))
        .collect();
    let mut failures = Vec::new();
    let all = async {
        for (n, h) in clients.into_iter().enumerate() {
            if let Err(e) = h.await? {
                failures.push(format!("client {n}: {e:#}"));
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .context("the clients did not finish within 120 s")??;
    stop.store(true, Ordering::Relaxed);
    let peaks = watcher.await??;
    assert!(
        failures.is_empty(),
        "{} of {CLIENTS} clients failed, first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
    assert!(!peaks.is_empty(), "no pool was ever seen");
    for ((instance, variant), peak) in &peaks {
        assert!(
            *peak <= POOL_SIZE,
            "pool {instance} variant {variant} reached {peak} backend connections"
        );
    }
    // The clients ran truly concurrently: their statements spread over several connections.
    assert!(
        peaks.values().any(|&p| p > 1),
        "never more than one backend connection in use: {peaks:?}"
    );
    // No connection was thrown away and replaced (a reset that failed, a leak, a broken relay):
    // every pool opened at most its size.
    let opened = backend_connects(&sh.proxy).await?;
    assert!(
        opened <= POOL_SIZE * peaks.len() as u64,
        "{opened} backend connections opened for {} pools of {POOL_SIZE}",
        peaks.len()
    );
    sh.proxy.wait_pools_idle(Duration::from_secs(5)).await?;
    Ok(())
}

/// A backend connection goes back to the pool with the server's diagnostics area as the last
/// statement left it (`SHOW WARNINGS` and statements without tables keep it). The next session
/// on it never sees the warnings or the error of another session's statement; the session that
/// caused them sees them on its next statement, as on a plain server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_sees_another_sessions_warnings_or_errors() -> anyhow::Result<()> {
    // One connection per instance: every session below runs on the same primary connection.
    let proxy = TestProxy::start_with(|cfg| {
        assert!(cfg.contains("pool_size = 32"), "{cfg}");
        *cfg = cfg.replace("pool_size = 32", "pool_size = 1");
    })
    .await?;
    let primary = "/* peakgate: route=primary */";
    let mut a = proxy.conn(Some("shop")).await?;
    let mut b = proxy.conn(Some("shop")).await?;
    let v: Option<i64> = a
        .query_first(format!("{primary} SELECT CAST('secret-7' AS SIGNED)"))
        .await?;
    ensure!(v == Some(0), "cast: {v:?}");
    let w: Vec<(String, u32, String)> = a.query("SHOW WARNINGS").await?;
    ensure!(
        w.len() == 1 && w[0].2.contains("secret-7"),
        "the session's own warning: {w:?}"
    );
    let w: Vec<(String, u32, String)> = b.query("SHOW WARNINGS").await?;
    ensure!(w.is_empty(), "another session's warning shown: {w:?}");
    let n: Option<u32> = b.query_first("SELECT @@warning_count").await?;
    ensure!(n == Some(0), "another session's warning counted: {n:?}");
    // An error: its session sees it in SHOW WARNINGS next; nobody else does.
    let e = a
        .query_drop("SELECT * FROM no_such_table_secret_8")
        .await
        .expect_err("the table does not exist");
    ensure!(format!("{e}").contains("1146"), "{e}");
    let w: Vec<(String, u32, String)> = a.query("SHOW WARNINGS").await?;
    ensure!(
        w.len() == 1 && w[0].1 == 1146 && w[0].2.contains("secret_8"),
        "the session's own error in SHOW WARNINGS: {w:?}"
    );
    for q in ["SHOW WARNINGS", "SHOW ERRORS"] {
        let w: Vec<(String, u32, String)> = b.query(q).await?;
        ensure!(w.is_empty(), "{q} shows another session's error: {w:?}");
    }
    let n: Option<u32> = b.query_first("SELECT @@error_count").await?;
    ensure!(n == Some(0), "another session's error counted: {n:?}");
    Ok(())
}
