//! A connection storm on a busy host: new backend connects time out while the pool's existing
//! connections work. The statements waiting for a connection must be served by the working ones
//! (not all failed with the first timed-out connect), and the circuit breaker must stay closed:
//! the instance is up. With no working connection at all, a failed connect still fails fast.
//!
//! The s0 primary is reached through a small TCP forwarder in the test that, once told to, holds
//! new connections open without passing them on (the server never greets), so a connect times out
//! exactly as it does when the server or the host is too busy to answer in time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use peakgate_tests::{S0_PRIMARY, TestProxy};
use tokio::net::{TcpListener, TcpStream};

/// The breaker counter belongs to the process, and `cargo test` runs this file's tests as threads
/// of one process: each test holds this lock and counts only what it added.
static BREAKER_COUNTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Forwards to the s0 primary; while `stall` is set, new connections are held, never forwarded.
struct Forwarder {
    addr: std::net::SocketAddr,
    stall: Arc<AtomicBool>,
    stalled: Arc<AtomicUsize>,
}

impl Forwarder {
    async fn start(stall_from_start: bool) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stall = Arc::new(AtomicBool::new(stall_from_start));
        let stalled = Arc::new(AtomicUsize::new(0));
        let (st, sd) = (stall.clone(), stalled.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut client, _)) = listener.accept().await {
                if st.load(Ordering::SeqCst) {
                    sd.fetch_add(1, Ordering::SeqCst);
                    held.push(client);
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", S0_PRIMARY)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Ok(Self {
            addr,
            stall,
            stalled,
        })
    }
}

async fn proxy_through(f: &Forwarder) -> anyhow::Result<TestProxy> {
    let addr = f.addr.to_string();
    TestProxy::start_with(move |cfg| {
        let primary = format!("primary = \"127.0.0.1:{S0_PRIMARY}\"");
        assert!(cfg.contains(&primary), "{cfg}");
        *cfg = cfg.replace(&primary, &format!("primary = \"{addr}\""));
        *cfg = cfg.replace("[routing]", "[routing]\nreplica_reads = false");
        *cfg = cfg.replacen(
            "[backend]\n",
            "[backend]\npool_size = 4\nconnect_timeout_ms = 300\nbreaker_failures = 3\n",
            1,
        );
        for key in ["pool_size = 32\n", "connect_timeout_ms = 2000\n"] {
            *cfg = cfg.replacen(key, "", 1);
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_connects_do_not_fail_statements_a_live_connection_can_serve()
-> anyhow::Result<()> {
    let _counter = BREAKER_COUNTER.lock().await;
    let fwd = Forwarder::start(false).await?;
    let proxy = proxy_through(&fwd).await?;
    let opens0 = proxy.metric("peakgate_breaker_opens_total").await?;
    // One working pooled connection.
    let mut warm = proxy.conn(None).await?;
    let one: Option<i64> = warm.query_first("SELECT 1").await?;
    assert_eq!(one, Some(1));
    warm.disconnect().await?;
    // From now on every new backend connect times out.
    fwd.stall.store(true, Ordering::SeqCst);
    let clients = 20;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let opts = proxy.opts(None);
        tasks.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await?;
            let got: Option<(i64, i64)> = c.query_first(format!("SELECT SLEEP(0.05), {i}")).await?;
            c.disconnect().await?;
            anyhow::Ok(got)
        }));
    }
    let mut failures = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await? {
            Ok(got) => assert_eq!(got, Some((0, i as i64))),
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(
        fwd.stalled.load(Ordering::SeqCst) >= 1,
        "the pool never tried a new connect: the storm did not happen"
    );
    assert!(
        failures.is_empty(),
        "{} of {clients} statements failed although a live connection could serve them: {failures:?}",
        failures.len()
    );
    let opens = proxy.metric("peakgate_breaker_opens_total").await? - opens0;
    assert_eq!(opens, 0.0, "the breaker opened on an instance that is up");
    // Served one after another on the one live connection, well inside pool_wait_timeout_ms.
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    proxy.assert_serves().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_live_connection_a_timed_out_connect_still_fails_fast() -> anyhow::Result<()> {
    let _counter = BREAKER_COUNTER.lock().await;
    let fwd = Forwarder::start(true).await?;
    let proxy = proxy_through(&fwd).await?;
    let opens0 = proxy.metric("peakgate_breaker_opens_total").await?;
    let opts = mysql_async::OptsBuilder::from_opts(proxy.opts(None))
        .max_allowed_packet(Some(16 << 20))
        .wait_timeout(Some(28_800));
    let mut c = mysql_async::Conn::new(opts).await?;
    let started = Instant::now();
    match c.query_drop("SELECT 1").await {
        Err(mysql_async::Error::Server(e)) => {
            assert_eq!(e.code, 2003, "{e:?}");
            assert!(e.message.contains(&fwd.addr.to_string()), "{}", e.message);
        }
        other => panic!("expected ERR 2003, got {other:?}"),
    }
    // The connect timeout (300 ms), not the pool wait (10 s).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Repeated failures with nothing alive open the breaker, which then refuses at once.
    for _ in 0..3 {
        let _ = c.query_drop("SELECT 1").await;
    }
    let opens = proxy.metric("peakgate_breaker_opens_total").await? - opens0;
    assert!(opens >= 1.0, "the breaker never opened");
    c.ping().await?;
    c.disconnect().await?;
    Ok(())
}
