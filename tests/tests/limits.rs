//! Peak protection through the proxy: `[[limits.rules]]` feature switches, rate and concurrency
//! limits with their ERR codes, run-time rule changes over the admin API (token, runtime file),
//! and `/status/digests`.

use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use peakgate_tests::{Scratch, TestProxy, admin_http, unique_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_refuse_limit_queue_and_change_at_run_time() -> anyhow::Result<()> {
    let t = unique_name("it_reviews");
    let _drop = Scratch::table("shop", &t);
    let runtime = peakgate_tests::repo_root().join(format!("target/{t}-limits.toml"));
    let rules = format!(
        r#"
[limits]
runtime_file = "{file}"

[[limits.rules]]
name = "no_review_writes"
table = "{t}"
kind = "write"
deny = {{ message = "reviews are read-only during the sale" }}

[[limits.rules]]
name = "sleepers"
digest = "SELECT SLEEP(?)"
max_concurrency = {{ limit = 1, queue = 1, timeout_ms = 300 }}

[[limits.rules]]
name = "runaway"
digest = "SELECT COUNT(*) FROM seq_1_to_1000000000 WHERE MD5(seq) = 'x'"
max_execution_ms = 300

[[limits.rules]]
name = "version_poll"
digest = "SELECT VERSION()"
rate_limit = {{ qps = 1, burst = 2 }}
"#,
        file = runtime.display()
    );
    let proxy = TestProxy::start_with(|cfg| {
        *cfg = cfg.replace(
            "admin = \"127.0.0.1:0\"",
            "admin = \"127.0.0.1:0\"\nadmin_token = \"s3cret\"",
        );
        cfg.push_str(&rules);
    })
    .await?;
    let mut c = proxy.conn(Some("shop")).await?;
    c.query_drop(format!("CREATE TABLE {t} (id INT PRIMARY KEY, body TEXT)"))
        .await?;

    // Feature switch: writes refused with the rule's message, reads fine.
    let e = c
        .query_drop(format!("INSERT INTO {t} VALUES (1, 'great')"))
        .await
        .expect_err("denied");
    let text = e.to_string();
    assert!(
        text.contains("1290")
            && text.contains("read-only during the sale")
            && text.contains("no_review_writes"),
        "{text}"
    );
    let n: Option<i64> = c.query_first(format!("SELECT COUNT(*) FROM {t}")).await?;
    assert_eq!(n, Some(0));

    // Rate limit: a burst of 2, then 1226.
    let mut refused = 0;
    for _ in 0..4 {
        if let Err(e) = c.query_drop("SELECT VERSION()").await {
            assert!(
                e.to_string().contains("1226") && e.to_string().contains("version_poll"),
                "{e}"
            );
            refused += 1;
        }
    }
    assert!(refused >= 1, "the rate limit never refused");

    // Concurrency: 1 running, 1 queued, the third refused at once; the queued one times out.
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let opts = proxy.opts(Some("shop"));
        tasks.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await?;
            let t = Instant::now();
            let r = c.query_drop("SELECT SLEEP(1)").await;
            anyhow::Ok((r.err().map(|e| e.to_string()), t.elapsed()))
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await??);
    }
    let ok = outcomes.iter().filter(|(e, _)| e.is_none()).count();
    let busy = outcomes
        .iter()
        .filter(|(e, _)| {
            e.as_deref()
                .is_some_and(|e| e.contains("1205") && e.contains("sleepers"))
        })
        .count();
    assert_eq!((ok, busy), (1, 2), "{outcomes:?}");

    // A runaway query is killed on the backend past max_execution_ms.
    let t0 = Instant::now();
    let e = c
        .query_drop("SELECT COUNT(*) FROM seq_1_to_1000000000 WHERE MD5(seq) = 'x'")
        .await
        .expect_err("killed");
    let took = t0.elapsed();
    assert!(e.to_string().contains("1317"), "{e}");
    assert!(took < Duration::from_secs(5), "killed after {took:?}");
    let one: Option<i64> = c.query_first("SELECT 1").await?;
    assert_eq!(one, Some(1), "the session goes on");

    // Run-time changes: POST needs the token; the new rules take effect and are saved.
    let (code, _) = proxy.admin_request("POST", "/limits").await?;
    assert_eq!(code, 401);
    let body = format!(
        "[[rules]]\nname = \"no_review_writes\"\ntable = \"{t}\"\nkind = \"write\"\ndelay_ms = 10\n"
    );
    let (code, answer) = post(&proxy, "/limits", &body, "s3cret").await?;
    assert_eq!(code, 200, "{answer}");
    c.query_drop(format!("INSERT INTO {t} VALUES (1, 'great')"))
        .await?;
    let saved = std::fs::read_to_string(&runtime)?;
    assert!(
        saved.contains("no_review_writes") && saved.contains("delay_ms"),
        "{saved}"
    );
    let (code, answer) = post(
        &proxy,
        "/limits",
        "[[rules]]\nname = \"x\"\nrate_limit = { qps = -1 }\n",
        "s3cret",
    )
    .await?;
    assert_eq!(code, 422, "{answer}");
    let status = proxy.admin_get("/status").await?;
    assert!(status.contains("\"no_review_writes\""), "{status}");

    // Digests: the statements seen, counted.
    let d = proxy
        .admin_get("/status/digests?sort=count&limit=100")
        .await?;
    let v: serde_json::Value = serde_json::from_str(&d)?;
    let version = v["digests"]
        .as_array()
        .and_then(|a| {
            a.iter().find(|r| {
                r["text"]
                    .as_str()
                    .is_some_and(|t| t.to_ascii_uppercase().contains("VERSION"))
            })
        })
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no VERSION digest: {d}"))?;
    assert!(version["count"].as_u64().unwrap_or(0) >= 4, "{version}");
    assert!(version["errors"].as_u64().unwrap_or(0) >= 1, "{version}");
    let _ = std::fs::remove_file(&runtime);
    Ok(())
}

async fn post(
    proxy: &TestProxy,
    path: &str,
    body: &str,
    token: &str,
) -> anyhow::Result<(u16, String)> {
    admin_http(proxy.admin, "POST", path, Some(token), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_digest_admits_its_rate_and_deny_switches_at_run_time() -> anyhow::Result<()>
{
    let t = unique_name("it_rate");
    let _drop = Scratch::table("shop", &t);
    let rules = format!(
        r#"
[[limits.rules]]
name = "reviews_off"
enabled = false
table = "{t}"
kind = "write"
deny = {{}}

[[limits.rules]]
name = "fifty"
digest = "SELECT CONNECTION_ID()"
rate_limit = {{ qps = 50, burst = 5 }}
"#
    );
    let proxy = TestProxy::start_with(|cfg| cfg.push_str(&rules)).await?;
    let mut c = proxy.conn(Some("shop")).await?;
    c.query_drop(format!("CREATE TABLE {t} (id INT PRIMARY KEY)"))
        .await?;
    // 200 qps offered for 4 s, paced; other traffic alongside.
    let (mut admitted, mut refused, mut other_ok) = (0u32, 0u32, 0u32);
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    while start.elapsed() < Duration::from_secs(4) {
        tick.tick().await;
        match c.query_drop("SELECT CONNECTION_ID()").await {
            Ok(()) => admitted += 1,
            Err(e) => {
                assert!(
                    e.to_string().contains("1226") && e.to_string().contains("fifty"),
                    "{e}"
                );
                refused += 1;
            }
        }
        if admitted.is_multiple_of(10) {
            c.query_drop("SELECT 1").await?;
            other_ok += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = f64::from(admitted) / secs;
    let offered = f64::from(admitted + refused) / secs;
    println!(
        "offered {offered:.0}/s, admitted {rate:.1}/s, refused {refused}, other statements {other_ok} all fine"
    );
    assert!(
        offered > 150.0,
        "the test could not offer enough load ({offered:.0}/s)"
    );
    assert!(
        (45.0..=55.0).contains(&rate),
        "admitted {rate:.1}/s, want 50 within 10%"
    );

    // deny switched on and off at run time; the same connection throughout.
    c.query_drop(format!("INSERT INTO {t} VALUES (1)")).await?;
    let on = format!(
        "[[rules]]\nname = \"reviews_off\"\ntable = \"{t}\"\nkind = \"write\"\ndeny = {{}}\n"
    );
    let (code, body) = post(&proxy, "/limits", &on, "").await?;
    assert_eq!(code, 200, "{body}");
    let e = c
        .query_drop(format!("INSERT INTO {t} VALUES (2)"))
        .await
        .expect_err("denied");
    assert!(
        e.to_string().contains("1290") && e.to_string().contains("reviews_off"),
        "{e}"
    );
    let off = format!("{on}enabled = false\n");
    let (code, body) = post(&proxy, "/limits", &off, "").await?;
    assert_eq!(code, 200, "{body}");
    c.query_drop(format!("INSERT INTO {t} VALUES (3)")).await?;
    let n: Option<i64> = c.query_first(format!("SELECT COUNT(*) FROM {t}")).await?;
    assert_eq!(n, Some(2));
    Ok(())
}
