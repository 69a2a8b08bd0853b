//! A 200 MB result passes through the proxy in bounded memory. This file holds one test so the
//! test process is the proxy plus a thin harness: its peak RSS bounds the proxy's.

use std::process::Stdio;

use peakgate_tests::{TestProxy, vm_kib};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_result_streams_in_bounded_memory() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let port = proxy.mysql.port();
    // The real mysql CLI, unbuffered (--quick), reading every row and counting bytes.
    let out = tokio::task::spawn_blocking(move || {
        let mut mysql = std::process::Command::new("mysql")
            .args([
                "-h127.0.0.1",
                &format!("-P{port}"),
                "-ushop",
                "-pshop",
                "-Dshop",
                "--quick",
                "--batch",
                "--skip-column-names",
                "-e",
                "SELECT REPEAT('x', 1000) FROM seq_1_to_200000",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("mysql runs");
        let mut stdout = mysql.stdout.take().expect("stdout");
        let mut total = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = std::io::Read::read(&mut stdout, &mut buf).expect("read");
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        let status = mysql.wait().expect("mysql exits");
        assert!(status.success(), "mysql failed: {status}");
        total
    })
    .await?;
    // 200,000 rows of 1,000 bytes plus a newline each.
    assert_eq!(out, 200_000 * 1_001, "every byte of the result arrived");
    let peak = vm_kib("VmHWM:");
    assert!(peak > 0, "VmHWM readable");
    eprintln!("peak RSS of proxy + harness: {peak} KiB");
    assert!(
        peak < 64 * 1024,
        "peak RSS of proxy + harness was {peak} KiB, must stay under 64 MiB"
    );
    Ok(())
}
