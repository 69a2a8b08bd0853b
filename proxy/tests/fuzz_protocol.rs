//! Property-based fuzzing of everything that decodes client bytes: the packet framer, the
//! handshake/command decoders (with COM_STMT_EXECUTE's parameter values), and a live proxy's login state machine fed arbitrary bytes over TCP.
//! (cargo-fuzz needs a nightly toolchain, which this project's machines do not have.)
//!
//! Default runs are short; a long run: `PROPTEST_CASES=200000 cargo test --release -p peakgate --test fuzz_protocol`.

use std::time::Duration;

use peakgate::protocol::constants::*;
use peakgate::protocol::handshake::{ChangeUser, HandshakeResponse, is_ssl_request};
use peakgate::protocol::response::{parse_eof, parse_err, parse_ok, state_changes};
use peakgate::protocol::stmt::{param_values, parse_execute, parse_prepare_ok, rewrite_execute};
use peakgate::protocol::{Error, Framed};
use peakgate::{Config, Proxy};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), n in 0u16..64) {
        let _ = HandshakeResponse::parse(&bytes);
        let _ = ChangeUser::parse(&bytes, PROXY_CAPABILITIES);
        let _ = ChangeUser::parse(&bytes, 0);
        let _ = is_ssl_request(&bytes);
        let _ = parse_execute(&bytes, n);
        let _ = rewrite_execute(&bytes, n, 1, None);
        // Parameter values with types taken from the same bytes, with and without long data.
        let types: Vec<u8> = bytes.iter().rev().take(2 * usize::from(n)).copied().collect();
        let long = std::collections::BTreeMap::from([(n / 2, bytes.clone())]);
        let _ = param_values(&bytes, n, &types, &long);
        let _ = param_values(&bytes, n, &types, &std::collections::BTreeMap::new());
        let _ = parse_prepare_ok(&bytes);
        for caps in [0, CLIENT_SESSION_TRACK] {
            if let Ok(ok) = parse_ok(&bytes, caps) {
                let _ = state_changes(ok.session_state);
            }
        }
        let _ = parse_eof(&bytes);
        let _ = parse_err(&bytes);
        let _ = state_changes(&bytes);
    }

    #[test]
    fn framer_never_panics_and_respects_max(bytes in proptest::collection::vec(any::<u8>(), 0..4096), max in 0usize..2048) {
        runtime().block_on(async {
            let (mut a, b) = tokio::io::duplex(8192);
            a.write_all(&bytes).await.expect("write");
            drop(a);
            let mut f = Framed::new(b);
            loop {
                match f.read_packet(None, max).await {
                    Ok((_, p)) => assert!(p.len() <= max),
                    Err(Error::Closed | Error::PacketTooLarge { .. }) => break,
                    Err(e) => panic!("unexpected {e}"),
                }
            }
        });
    }
}

/// A live proxy (its backend is a dead port: login never needs one) fed arbitrary bytes after its
/// greeting must answer or close, and keep serving the next connection.
#[test]
fn live_login_survives_arbitrary_bytes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let cfg = Config::parse(
            r#"
[listen]
mysql = "127.0.0.1:0"
[proxy]
max_allowed_packet = 65536
[backend]
user = "peakgate"
password = "peakgate"
connect_timeout_ms = 200
[[users]]
name = "shop"
password_sha1 = "*4EF1FA2885332E606E8B51A52EA5B56134B2E575"
[routing]
default_shard = "s0"
[[shards]]
name = "s0"
primary = "127.0.0.1:1"
"#,
        )
        .expect("config");
        let proxy = Proxy::bind(cfg).await.expect("bind");
        let addr = proxy.mysql_addr().expect("addr");
        let (_stop, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(proxy.serve(rx));
        let cases: u32 = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256);
        let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
            cases,
            failure_persistence: None,
            ..Default::default()
        });
        let strategy = proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..300),
                // Well-framed packets with arbitrary payloads and sequence ids.
                (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..200)).prop_map(
                    |(seq, p)| {
                        let mut v = (p.len() as u32).to_le_bytes()[..3].to_vec();
                        v.push(seq);
                        v.extend(p);
                        v
                    }
                ),
            ],
            1..4,
        );
        use proptest::strategy::ValueTree;
        for _ in 0..cases {
            let chunks = strategy.new_tree(&mut runner).expect("generate").current();
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let mut greeting = [0u8; 4];
            s.read_exact(&mut greeting).await.expect("greeting header");
            for c in &chunks {
                if s.write_all(c).await.is_err() {
                    break;
                }
            }
            let _ = s.shutdown().await;
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
        }
        // Still alive and answering greetings.
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .expect("proxy still accepts");
        let mut head = [0u8; 5];
        s.read_exact(&mut head).await.expect("greeting");
        assert_eq!(head[4], 10, "protocol 10 greeting");
    });
}
