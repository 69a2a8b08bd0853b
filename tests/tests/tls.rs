//! TLS for clients: the `mysql` CLI upgrading with SSL, `require_tls` accounts, and
//! `caching_sha2_password` (full authentication over TLS, then fast auth from the cache) as a
//! MySQL 8+ client that refuses mysql_native_password would do it.

use std::process::Command;
use std::sync::Arc;

use peakgate::protocol::Framed;
use peakgate::protocol::constants::*;
use peakgate::protocol::handshake::{Greeting, HandshakeResponse};
use peakgate_tests::TestProxy;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

struct Tls {
    _dir: std::path::PathBuf,
    cert_der: Vec<u8>,
    cert_path: String,
    key_path: String,
}

fn make_cert(tag: &str) -> anyhow::Result<Tls> {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let dir =
        peakgate_tests::repo_root().join(format!("target/test-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, key.cert.pem())?;
    std::fs::write(&key_path, key.key_pair.serialize_pem())?;
    Ok(Tls {
        _dir: dir,
        cert_der: key.cert.der().to_vec(),
        cert_path: cert_path.display().to_string(),
        key_path: key_path.display().to_string(),
    })
}

async fn tls_proxy(tls: &Tls) -> anyhow::Result<TestProxy> {
    let secure_hash = peakgate::protocol::auth::format_native_hash(
        &peakgate::protocol::auth::native_hash(b"s3cret"),
    );
    let extra = format!(
        "\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n\n[[users]]\nname = \"secure\"\npassword_sha1 = \"{secure_hash}\"\nrequire_tls = true\n",
        tls.cert_path, tls.key_path
    );
    TestProxy::start_with(|t| {
        // [tls] and the extra user go before [routing] so they are top-level tables/arrays.
        *t = t.replacen("[routing]", &format!("{extra}\n[routing]"), 1);
    })
    .await
}

fn mysql_cli(
    proxy: &peakgate_tests::TestProxyAddrs,
    user: &str,
    pass: &str,
    ssl: bool,
    sql: &str,
) -> std::process::Output {
    let mut cmd = Command::new("mysql");
    cmd.args([
        "-h127.0.0.1",
        &format!("-P{}", proxy.mysql.port()),
        &format!("-u{user}"),
        &format!("-p{pass}"),
    ]);
    if ssl {
        cmd.args(["--ssl", "--ssl-verify-server-cert=0"]);
    } else {
        cmd.arg("--skip-ssl");
    }
    cmd.args(["--batch", "-e", sql]);
    cmd.output().expect("mysql client runs")
}

#[tokio::test]
async fn mysql_cli_connects_over_tls_and_require_tls_is_enforced() -> anyhow::Result<()> {
    let tls = make_cert("cli")?;
    let proxy = tls_proxy(&tls).await?;
    let out = tokio::task::spawn_blocking({
        let p = TestProxy::clone_addrs(&proxy);
        move || {
            mysql_cli(
                &p,
                "secure",
                "s3cret",
                true,
                "status; SELECT 40+2 AS answer",
            )
        }
    })
    .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Cipher in use"),
        "no TLS in status output: {stdout}"
    );
    assert!(stdout.contains("42"), "{stdout}");
    // The same account without TLS is refused.
    let out = tokio::task::spawn_blocking({
        let p = TestProxy::clone_addrs(&proxy);
        move || mysql_cli(&p, "secure", "s3cret", false, "SELECT 1")
    })
    .await?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ERROR 1045") && stderr.contains("requires TLS"),
        "{stderr}"
    );
    Ok(())
}

/// A minimal client: TLS upgrade, then `caching_sha2_password`. Returns the packets seen after
/// the handshake response and whether login succeeded.
async fn sha2_login(
    proxy: &TestProxy,
    tls: &Tls,
    user: &str,
    password: &str,
) -> anyhow::Result<(Vec<Vec<u8>>, bool)> {
    let tcp = TcpStream::connect(proxy.mysql).await?;
    let mut f = Framed::new(tcp);
    let (_, g) = f.read_packet(Some(0), 1 << 20).await?;
    let greeting = Greeting::parse(&g)?;
    assert!(
        greeting.capabilities & CLIENT_SSL != 0,
        "TLS must be offered"
    );
    let caps = CLIENT_PROTOCOL_41
        | CLIENT_SECURE_CONNECTION
        | CLIENT_PLUGIN_AUTH
        | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CLIENT_SSL
        | CLIENT_TRANSACTIONS
        | CLIENT_DEPRECATE_EOF;
    let mut ssl = Vec::new();
    ssl.extend_from_slice(&caps.to_le_bytes());
    ssl.extend_from_slice(&(1u32 << 24).to_le_bytes());
    ssl.push(45);
    ssl.extend_from_slice(&[0u8; 23]);
    f.write_packet(1, &ssl);
    f.flush().await?;
    let (tcp, _) = f.into_parts();
    let mut roots = RootCertStore::empty();
    roots.add(tls.cert_der.clone().into())?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let stream = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let mut f = Framed::new(stream);
    let nonce = &greeting.scramble[..20];
    let s1 = Sha256::digest(password.as_bytes());
    let s2 = Sha256::digest(s1);
    let mut h = Sha256::new();
    h.update(s2);
    h.update(nonce);
    let mix = h.finalize();
    let scrambled: Vec<u8> = s1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect();
    let resp = HandshakeResponse {
        capabilities: caps,
        max_packet: 1 << 24,
        collation: 45,
        user: user.as_bytes().to_vec(),
        auth_response: scrambled,
        database: None,
        auth_plugin: Some("caching_sha2_password".into()),
    };
    f.write_packet(2, &resp.encode());
    f.flush().await?;
    let mut seen = Vec::new();
    loop {
        let (seq, p) = f.read_packet(None, 1 << 20).await?;
        seen.push(p.to_vec());
        match p.first() {
            Some(0x00) => break,
            Some(0xff) => return Ok((seen, false)),
            Some(0x01) if p.get(1) == Some(&0x04) => {
                let mut pw = password.as_bytes().to_vec();
                pw.push(0);
                f.write_packet(seq.wrapping_add(1), &pw);
                f.flush().await?;
            }
            Some(0x01) => {}
            other => anyhow::bail!("unexpected packet {other:?}"),
        }
    }
    // Logged in: a query works.
    f.write_packet(0, b"\x03SELECT 7");
    f.flush().await?;
    let (_, first) = f.read_packet(Some(1), 1 << 20).await?;
    assert_eq!(first.as_ref(), &[1], "one column");
    Ok((seen, true))
}

#[tokio::test]
async fn caching_sha2_full_auth_over_tls_then_fast_auth() -> anyhow::Result<()> {
    let tls = make_cert("sha2")?;
    let proxy = tls_proxy(&tls).await?;
    let (seen, ok) = sha2_login(&proxy, &tls, "secure", "wrong").await?;
    assert!(!ok, "wrong password must fail");
    assert_eq!(
        seen.first().map(Vec::as_slice),
        Some(&[0x01, 0x04][..]),
        "full auth requested"
    );
    let err = seen.last().expect("an answer");
    assert_eq!(u16::from_le_bytes([err[1], err[2]]), 1045);

    let (seen, ok) = sha2_login(&proxy, &tls, "secure", "s3cret").await?;
    assert!(ok, "full authentication over TLS: {seen:?}");
    assert_eq!(seen[0], vec![0x01, 0x04]);

    let (seen, ok) = sha2_login(&proxy, &tls, "secure", "s3cret").await?;
    assert!(ok, "fast auth from the cache: {seen:?}");
    assert_eq!(seen[0], vec![0x01, 0x03], "fast auth success");
    Ok(())
}
