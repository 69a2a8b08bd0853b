//! Drives the proxy with the real `mysql` command-line client in batch mode: its start-up
//! queries, scripts from stdin, `USE`, errors and exit codes, `--init-command`, and a value larger
//! than one packet (split packets in both directions).

use mysql_async::prelude::*;
use peakgate_tests::{S0_PRIMARY, Scratch, TestProxy, direct, mysql_cli, run_command, unique_name};

#[tokio::test]
async fn show_databases_lists_the_servers_databases() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let out = run_command(proxy.cli(&["-e", "SHOW DATABASES"]), b"")
        .await?
        .ok()?;
    let lines = out.lines();
    assert_eq!(lines.first(), Some(&"Database"), "{}", out.stdout);
    for db in ["information_schema", "shop", "sbtest"] {
        assert!(lines.contains(&db), "{db} missing from:\n{}", out.stdout);
    }
    Ok(())
}

#[tokio::test]
async fn create_insert_select_update_delete_in_separate_sessions() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let t = unique_name("it_cli_crud");
    let _drop = Scratch::table("shop", &t);
    let run = |sql: String| {
        let cmd = proxy.cli(&["-D", "shop", "-e", &sql]);
        async move { run_command(cmd, b"").await?.ok() }
    };
    run(format!(
        "CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(32), qty INT)"
    ))
    .await?;
    run(format!(
        "INSERT INTO {t} VALUES (1, 'apple', 3), (2, 'pear', 5)"
    ))
    .await?;
    // Each run is a new session; read-your-writes is per session: wait for the replicas.
    peakgate_tests::sync_replicas().await?;
    let out = run(format!("SELECT id, name, qty FROM {t} ORDER BY id")).await?;
    assert_eq!(out.lines(), ["id\tname\tqty", "1\tapple\t3", "2\tpear\t5"]);
    run(format!("UPDATE {t} SET qty = qty + 10 WHERE id = 2")).await?;
    run(format!("DELETE FROM {t} WHERE id = 1")).await?;
    // Each run is a new session; read-your-writes is per session: wait for the replicas.
    peakgate_tests::sync_replicas().await?;
    let out = run(format!("SELECT id, name, qty FROM {t} ORDER BY id")).await?;
    assert_eq!(out.lines(), ["id\tname\tqty", "2\tpear\t15"]);
    // The same rows, seen directly on the primary.
    let mut d = direct(S0_PRIMARY, Some("shop")).await?;
    let rows: Vec<(i32, String, i32)> = d
        .query(format!("SELECT id, name, qty FROM {t} ORDER BY id"))
        .await?;
    assert_eq!(rows, vec![(2, "pear".to_string(), 15)]);
    d.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn script_from_stdin_with_comments_runs_every_statement() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let t = unique_name("it_cli_script");
    let _drop = Scratch::table("shop", &t);
    let script = format!(
        "-- a scratch table for this test\n\
         CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(32), qty INT);\n\
         /* several rows in one statement;\n   a semicolon inside a comment */\n\
         INSERT INTO {t} VALUES (1, 'apple', 3), (2, 'pear', 5);\n\
         INSERT INTO {t} VALUES (3, 'plum', 7); # trailing comment\n\
         UPDATE {t}\n   SET qty = qty * 10\n WHERE id >= 2;\n\
         DELETE FROM {t} WHERE id = 1;\n\
         SELECT id, name, qty FROM {t} ORDER BY id;\n\
         SELECT COUNT(*) AS n, SUM(qty) AS total FROM {t};\n"
    );
    let out = run_command(proxy.cli(&["-D", "shop"]), script.as_bytes())
        .await?
        .ok()?;
    assert_eq!(
        out.lines(),
        [
            "id\tname\tqty",
            "2\tpear\t50",
            "3\tplum\t70",
            "n\ttotal",
            "2\t120"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn use_changes_the_database_of_the_session() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    // The client's own `use` command (COM_INIT_DB) and SQL `USE` (COM_QUERY), both from stdin.
    let script =
        "SELECT DATABASE();\nuse sbtest\nSELECT DATABASE();\nUSE shop;\nSELECT DATABASE();\n";
    let out = run_command(proxy.cli(&["-N"]), script.as_bytes())
        .await?
        .ok()?;
    assert_eq!(out.lines(), ["NULL", "sbtest", "shop"]);
    let out = run_command(
        proxy.cli(&["-N", "-D", "shop", "-e", "USE sbtest; SELECT DATABASE()"]),
        b"",
    )
    .await?
    .ok()?;
    assert_eq!(out.lines(), ["sbtest"]);
    Ok(())
}

#[tokio::test]
async fn failing_statement_exits_1_with_the_servers_error() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let missing = unique_name("no_such_table");
    let script = format!("SELECT 'before';\nSELECT * FROM {missing};\nSELECT 'after';\n");
    let out = run_command(proxy.cli(&["-N", "-D", "shop"]), script.as_bytes()).await?;
    assert_eq!(out.code, Some(1), "{out:?}");
    // Batch mode stops at the first error: 'after' never runs.
    assert_eq!(out.lines(), ["before"]);
    assert!(
        out.stderr.ends_with(&format!(
            "ERROR 1146 (42S02) at line 2: Table 'shop.{missing}' doesn't exist\n"
        )),
        "{}",
        out.stderr
    );
    // Exactly what the client prints when it talks to the server itself.
    let same = run_command(
        mysql_cli(S0_PRIMARY, "root", None, &["-N", "-D", "shop"]),
        script.as_bytes(),
    )
    .await?;
    assert_eq!(
        (same.code, same.stdout, same.stderr),
        (out.code, out.stdout, out.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn init_command_state_is_seen_by_later_statements() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let out = run_command(
        proxy.cli(&[
            "-N",
            "--init-command=SET @greeting = 'hello', SESSION time_zone = '+03:00'",
            "-e",
            "SELECT @greeting, @@session.time_zone; SELECT @greeting",
        ]),
        b"",
    )
    .await?
    .ok()?;
    assert_eq!(out.lines(), ["hello\t+03:00", "hello"]);
    Ok(())
}

/// 17 MiB of printable pseudo-random text: more than one 16 MiB packet, and not compressible
/// into a pattern that would hide a shifted or dropped chunk.
fn big_value() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..17 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(ALPHABET[(x % ALPHABET.len() as u64) as usize])
        })
        .collect()
}

#[tokio::test]
async fn seventeen_mib_value_round_trips_through_split_packets() -> anyhow::Result<()> {
    let proxy = TestProxy::start().await?;
    let t = unique_name("it_cli_big");
    let _drop = Scratch::table("shop", &t);
    let value = big_value();
    let big = ["-N", "-D", "shop", "--max-allowed-packet=64M"];
    let create = format!("CREATE TABLE {t} (id INT PRIMARY KEY, v LONGTEXT NOT NULL)");
    run_command(proxy.cli(&["-D", "shop", "-e", &create]), b"")
        .await?
        .ok()?;
    // Client -> server: one COM_QUERY of 17 MiB, split by the client into two packets.
    let insert = format!("INSERT INTO {t} VALUES (1, '{value}');\n");
    run_command(proxy.cli(&big), insert.as_bytes())
        .await?
        .ok()?;
    // The check runs in a new session, maybe on a replica: read-your-writes is per session.
    peakgate_tests::sync_replicas().await?;
    let check = format!("SELECT LENGTH(v), MD5(v) FROM {t} WHERE id = 1");
    let through = run_command(proxy.cli(&big), check.as_bytes()).await?.ok()?;
    let mut d = direct(S0_PRIMARY, Some("shop")).await?;
    let (len, md5): (u64, String) = d.query_first(&check).await?.expect("the row");
    assert_eq!(len, 17 << 20);
    assert_eq!(through.lines(), [format!("{len}\t{md5}")]);
    let stored: Option<String> = d
        .query_first(format!("SELECT v FROM {t} WHERE id = 1"))
        .await?;
    assert!(
        stored.as_deref() == Some(value.as_str()),
        "the stored value differs from the one sent"
    );
    d.disconnect().await?;
    // Server -> client: one 17 MiB row, split by the server and relayed by the proxy.
    let select = format!("SELECT v FROM {t} WHERE id = 1");
    let out = run_command(proxy.cli(&big), select.as_bytes())
        .await?
        .ok()?;
    let got = out.stdout.strip_suffix('\n').unwrap_or(&out.stdout);
    assert_eq!(got.len(), value.len());
    assert!(
        got == value,
        "the value read back differs from the one sent"
    );
    Ok(())
}
