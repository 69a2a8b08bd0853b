//! Scatter reads over two shards stream in bounded memory: a k-way merged `ORDER BY` without
//! LIMIT and a pass-through scatter read each move about 120 MB through the proxy while the test
//! process (the proxy plus a thin harness; this file holds one test) stays under 64 MiB of peak
//! RSS, which holding either shard's rows would exceed.
//!
//! The table is written directly on both shard primaries with binary logging off for the session
//! (the replicas never see it; the test's proxy reads on the primaries).

use std::process::Stdio;

use mysql_async::prelude::*;
use peakgate_tests::{S0_PRIMARY, S1_PRIMARY, TestProxy, direct, unique_name, vm_kib};

const ROWS_PER_SHARD: u64 = 60_000;
const PAD: u64 = 1_000;

/// Runs `sql` through the proxy with the mysql CLI (`--quick`: row by row) and counts the lines.
async fn lines_through(port: u16, db: &str, sql: &str) -> anyhow::Result<u64> {
    let (db, sql) = (db.to_string(), sql.to_string());
    tokio::task::spawn_blocking(move || {
        let mut mysql = std::process::Command::new("mysql")
            .args([
                "--no-defaults",
                "-h127.0.0.1",
                &format!("-P{port}"),
                "-ushop",
                "-pshop",
                &format!("-D{db}"),
                "--quick",
                "--batch",
                "--skip-column-names",
                "-e",
                &sql,
            ])
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = mysql
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("stdout"))?;
        let mut lines = 0u64;
        let mut last = 0i64;
        let mut sorted = true;
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let line = line?;
            let key: i64 = line
                .split('\t')
                .next()
                .and_then(|k| k.parse().ok())
                .unwrap_or(0);
            sorted &= key >= last;
            last = key;
            lines += 1;
        }
        let status = mysql.wait()?;
        anyhow::ensure!(status.success(), "mysql failed: {status}");
        anyhow::ensure!(
            sorted || !sql.contains("ORDER BY"),
            "the merged rows are out of order"
        );
        Ok(lines)
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scatter_reads_stream_in_bounded_memory() -> anyhow::Result<()> {
    let db = unique_name("it_scatter_mem");
    let proxy = TestProxy::start_with(|cfg| {
        *cfg = cfg.replace("[routing]", "[routing]\nreplica_reads = false");
        cfg.push_str(&format!(
            "\n[[tables]]\nname = \"{db}.big\"\nshard_key = \"member_id\"\n\
             algorithm = \"modulo\"\nshards = [\"s0\", \"s1\"]\n"
        ));
    })
    .await?;
    // member_id 2k on s0 and 2k+1 on s1 (modulo over two shards).
    for (port, parity) in [(S0_PRIMARY, 0), (S1_PRIMARY, 1)] {
        let mut d = direct(port, None).await?;
        d.query_drop("SET SESSION sql_log_bin = 0").await?;
        d.query_drop(format!("CREATE DATABASE {db}")).await?;
        d.query_drop(format!(
            "CREATE TABLE {db}.big (member_id BIGINT PRIMARY KEY, pad VARCHAR({PAD}) NOT NULL)"
        ))
        .await?;
        d.query_drop(format!(
            "INSERT INTO {db}.big SELECT seq * 2 + {parity}, REPEAT('x', {PAD}) \
             FROM {db}.seq_0_to_{}",
            ROWS_PER_SHARD - 1
        ))
        .await?;
        d.disconnect().await?;
    }
    let result = async {
        let port = proxy.mysql.port();
        let merged = lines_through(
            port,
            &db,
            "SELECT member_id, pad FROM big ORDER BY member_id",
        )
        .await?;
        assert_eq!(merged, 2 * ROWS_PER_SHARD, "every row of the k-way merge");
        let passed = lines_through(port, &db, "SELECT member_id, pad FROM big").await?;
        assert_eq!(
            passed,
            2 * ROWS_PER_SHARD,
            "every row of the pass-through read"
        );
        let peak = vm_kib("VmHWM:");
        assert!(peak > 0, "VmHWM readable");
        eprintln!("peak RSS of proxy + harness after two ~120 MB scatter reads: {peak} KiB");
        assert!(
            peak < 64 * 1024,
            "peak RSS was {peak} KiB: the scatter read held rows (limit 64 MiB)"
        );
        anyhow::Ok(())
    }
    .await;
    for port in [S0_PRIMARY, S1_PRIMARY] {
        let mut d = direct(port, None).await?;
        d.query_drop("SET SESSION sql_log_bin = 0").await?;
        d.query_drop(format!("DROP DATABASE IF EXISTS {db}"))
            .await?;
        d.disconnect().await?;
    }
    result
}
