//! The admin status page in a real browser: after a few seconds of traffic through the proxy,
//! headless Chromium loads `/status.html`, runs its script for a few (virtual) seconds and dumps
//! the DOM; the instance table must be filled and both charts must plot at least two points.
//!
//! Chromium is a test dependency (Debian's `chromium`, installed by `.ci/run`): without it the
//! test fails rather than skips, so a missing browser cannot pass for a working page.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use mysql_async::prelude::*;
use peakgate_tests::{TestProxy, unique_name};

const CHROMIUM: &str = "/usr/bin/chromium";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_tables_and_live_charts() -> anyhow::Result<()> {
    ensure!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: this test needs Debian's chromium package \
         (apt-get install chromium; .ci/run installs it)"
    );
    let proxy = TestProxy::start_with(|cfg| {
        cfg.push_str(
            "\n[[limits.rules]]\nname = \"page_probe\"\ndigest = \"SELECT ?\"\n\
             rate_limit = { qps = 1000000, burst = 1000000 }\n",
        );
    })
    .await?;

    // Steady traffic from two clients while the sampler records and the browser watches.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..2 {
        let mut c = proxy.conn(None).await?;
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                c.query_drop("SELECT 1").await?;
            }
            c.disconnect().await?;
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_millis(3500)).await;

    let series: serde_json::Value =
        serde_json::from_str(&proxy.admin_get("/status/series").await?)?;
    let points = series.as_array().context("/status/series is an array")?;
    ensure!(points.len() >= 2, "/status/series: {series}");
    ensure!(
        points
            .iter()
            .any(|p| p["qps"].as_f64() > Some(0.0) && p["p99_ms"].is_number()),
        "no second with statements and a p99 in {series}"
    );
    let (code, _) = proxy.admin_request("GET", "/").await?;
    ensure!(
        code == 302,
        "GET / answered {code}, not a redirect to the page"
    );

    let dom = dump_dom(&format!("http://{}/status.html", proxy.admin)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await??;
    }
    let dom = dom?;

    let instances = element(&dom, "<table id=\"instances\"", "</table>")?;
    let rows = instances.matches("<tr>").count().saturating_sub(1);
    let expected = proxy.shared.topology.instances.len();
    ensure!(
        rows == expected,
        "instance table has {rows} rows, the topology {expected} instances:\n{instances}"
    );
    for i in &proxy.shared.topology.instances {
        ensure!(
            instances.contains(&*i.addr),
            "{} missing:\n{instances}",
            i.addr
        );
    }
    let limits = element(&dom, "<table id=\"limits\"", "</table>")?;
    // The rule's row: name, action, enabled, priority, hits.
    let hits = limits
        .split("<tr>")
        .find(|r| r.contains(">page_probe<"))
        .and_then(|r| r.split("<td").nth(5))
        .and_then(|c| c.split(['>', '<']).nth(1))
        .and_then(|h| h.parse::<u64>().ok());
    ensure!(hits > Some(0), "rule page_probe without hits:\n{limits}");
    for chart in ["qps-chart", "p99-chart"] {
        let svg = element(&dom, &format!("<svg id=\"{chart}\""), "</svg>")?;
        let n = plotted_points(svg).with_context(|| format!("{chart} has no polyline: {svg}"))?;
        ensure!(n >= 2, "{chart} plots {n} points: {svg}");
    }
    Ok(())
}

/// Loads `url` in headless Chromium, lets its script run for 4 s of virtual time, returns the DOM.
async fn dump_dom(url: &str) -> anyhow::Result<String> {
    let profile = std::env::temp_dir().join(unique_name("it_chromium"));
    let run = tokio::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run).await;
    let _ = std::fs::remove_dir_all(&profile);
    let out = out
        .context("chromium did not finish within 60 s")?
        .context("cannot run chromium")?;
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || !dom.contains("</html>") {
        bail!(
            "chromium failed ({}):\n{}\n{dom}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(dom)
}

/// The text from `start` to the first `end` after it.
fn element<'a>(dom: &'a str, start: &str, end: &str) -> anyhow::Result<&'a str> {
    let from = dom
        .find(start)
        .with_context(|| format!("{start} not in the DOM:\n{dom}"))?;
    let len = dom[from..]
        .find(end)
        .with_context(|| format!("{start} is not closed"))?;
    Ok(&dom[from..from + len + end.len()])
}

/// The number of `x,y` pairs in the first polyline's `points`.
fn plotted_points(svg: &str) -> Option<usize> {
    let points = svg.split("<polyline").nth(1)?.split("points=\"").nth(1)?;
    let points = &points[..points.find('"')?];
    Some(
        points
            .split_whitespace()
            .filter(|p| p.split(',').filter_map(|v| v.parse::<f64>().ok()).count() == 2)
            .count(),
    )
}
