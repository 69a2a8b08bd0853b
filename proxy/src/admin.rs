//! HTTP admin listener: `GET /metrics` (Prometheus text), `GET /status` (JSON),
//! `GET /status.html` (the live status page, `admin/status.html`), `GET /status/series`,
//! `GET /status/digests`, `GET|POST /limits`, `POST /reload`, `POST /hotspot` and
//! `POST /hotspot/move` (hot SKUs and their row moves). A deliberately small HTTP/1.1
//! server: one request per connection, bounded request size, no keep-alive. Every POST needs
//! `listen.admin_token` (as `Authorization: Bearer ...`) when one is configured.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::debug;

use crate::metrics::{self, METRICS};
use crate::sampler::Series;
use crate::server::Shared;

/// The status page: one self-contained file (no external scripts, styles or fonts) that polls
/// `/status` and `/status/series` every second.
const STATUS_PAGE: &str = include_str!("admin/status.html");

/// Serves admin requests until shutdown.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    series: Arc<Series>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let s = shared.clone();
                    let series = series.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle(stream, &s, &series).await {
                            debug!(error = %e, "admin request failed");
                        }
                    });
                }
            }
            _ = shutdown.changed() => if *shutdown.borrow() { return },
        }
    }
}

/// Largest request (head and body) the admin listener reads.
const MAX_REQUEST: usize = 1 << 20;

async fn handle(mut stream: TcpStream, shared: &Shared, series: &Series) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let read = async {
        let mut head_end = None;
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if head_end.is_none() {
                head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
            }
            if let Some(h) = head_end {
                let len = content_length(&buf[..h]);
                if buf.len() >= h + len {
                    break;
                }
            }
            if buf.len() > MAX_REQUEST {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    };
    if tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .is_err()
    {
        return Ok(());
    }
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(buf.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let body = String::from_utf8_lossy(&buf[head_end.min(buf.len())..]).into_owned();
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let authorised = match &shared.config.listen.admin_token {
        None => true,
        Some(token) => head.lines().any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("authorization")
                    && v.trim()
                        .strip_prefix("Bearer ")
                        .is_some_and(|t| t.trim() == token)
            })
        }),
    };
    let (code, ctype, body) = match (method, path) {
        ("POST", _) if !authorised => (
            401,
            "text/plain",
            "write actions need the admin token: Authorization: Bearer <listen.admin_token>\n"
                .to_string(),
        ),
        ("GET", "/metrics") => {
            let mut m = metrics::render(
                &shared.pools.all(),
                &shared.pipeline_counts(),
                &shared.topology,
            );
            shared.limits.render_metrics(&mut m);
            render_digest_metrics(shared, &mut m);
            (200, "text/plain; version=0.0.4", m)
        }
        ("GET", "/status") => (200, "application/json", status_json(shared)),
        ("GET", "/status.html") => (200, "text/html; charset=utf-8", STATUS_PAGE.to_string()),
        ("GET", "/status/series") => (
            200,
            "application/json",
            serde_json::to_string(&series.snapshot()).unwrap_or_else(|_| "[]".to_string()),
        ),
        ("GET", "/status/digests") => {
            let sort = param(query, "sort")
                .and_then(crate::digests::DigestSort::parse)
                .unwrap_or(crate::digests::DigestSort::Total);
            let limit = param(query, "limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(50usize);
            let rows = shared.digests.snapshot(sort, limit);
            (
                200,
                "application/json",
                json!({"tracked": shared.digests.len(), "evicted": shared.digests.evicted(), "digests": rows})
                    .to_string(),
            )
        }
        ("GET", "/status/sessions") => (
            200,
            "application/json",
            json!({"sessions": shared.sessions.snapshot()}).to_string(),
        ),
        ("GET", "/limits") => (
            200,
            "application/json",
            json!({"rules": shared.limits.snapshot()}).to_string(),
        ),
        ("POST", "/limits") => match put_rules(shared, &body) {
            Ok(n) => (200, "text/plain", format!("{n} rules in effect\n")),
            Err(e) => (422, "text/plain", format!("refused; the rules in effect stay\n{e}\n")),
        },
        ("POST", "/hotspot") => hotspot_mark(shared, query).await,
        ("POST", "/hotspot/move") => hotspot_move(shared, query).await,
        ("POST", "/reload") => match shared.reload() {
            Ok(map) => (200, "text/plain", format!("reloaded\n{map}")),
            Err(e) => (422, "text/plain", format!("refused; the old shard map stays\n{e}\n")),
        },
        // Browsers follow the redirect to the page; the body lists the API for curl.
        ("GET", "/") => (
            302,
            "text/plain",
            "PeakGate admin: GET /status.html (status page), GET /metrics, GET /status, GET /status/series, \
             GET /status/digests?sort=count|total|max|errors|rows&limit=N, \
             GET /limits, POST /limits (TOML [[rules]]), POST /reload, \
             POST /hotspot?sku=N&action=add|remove, POST /hotspot/move?sku=N&to=hot|home\n"
                .to_string(),
        ),
        ("GET", _) => (404, "text/plain", "not found\n".to_string()),
        _ => (405, "text/plain", "method not allowed\n".to_string()),
    };
    let reason = match code {
        200 => "OK",
        302 => "Found",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        503 => "Service Unavailable",
        _ => "Method Not Allowed",
    };
    let location = if code == 302 {
        "Location: /status.html\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{location}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

type Answer = (u16, &'static str, String);

/// `POST /hotspot?sku=N&action=add|remove`: makes a SKU hot or normal, moving its row (a SKU
/// without a row only has its routing switched).
async fn hotspot_mark(shared: &Shared, query: &str) -> Answer {
    use crate::hotmove::{Side, Trigger};
    let (Some(h), Some(moves)) = (&shared.hot, &shared.hot_moves) else {
        return (422, "text/plain", "no [hotspot] is configured\n".into());
    };
    let Some(sku) = param(query, "sku").and_then(|v| v.parse::<u64>().ok()) else {
        return (422, "text/plain", "give ?sku=N&action=add|remove\n".into());
    };
    let to = match param(query, "action") {
        Some("add") => Side::Hot,
        Some("remove") => Side::Home,
        _ => return (422, "text/plain", "action=add|remove\n".into()),
    };
    let routed_hot = h.snapshot().contains(sku);
    if routed_hot == (to == Side::Hot) {
        // Nothing to move: pin a detected SKU, or keep detection off a normal one.
        let msg = if to == Side::Hot {
            h.add(sku);
            format!("SKU {sku} is hot already (now pinned: detection will not demote it)\n")
        } else {
            h.remove(sku);
            format!("SKU {sku} is normal already (detection will not promote it until added)\n")
        };
        return (200, "text/plain", msg);
    }
    match moves.run(shared, sku, to, Trigger::AdminMark).await {
        Ok(m) => (200, "text/plain", moved_text(&m)),
        Err(e) => (e.http_code(), "text/plain", format!("{e}\n")),
    }
}

/// `POST /hotspot/move?sku=N&to=hot|home`: moves a SKU's row and switches its routing.
async fn hotspot_move(shared: &Shared, query: &str) -> Answer {
    use crate::hotmove::{Side, Trigger};
    let Some(moves) = &shared.hot_moves else {
        return (422, "text/plain", "no [hotspot] is configured\n".into());
    };
    let (Some(sku), Some(to)) = (
        param(query, "sku").and_then(|v| v.parse::<u64>().ok()),
        param(query, "to").and_then(Side::parse),
    ) else {
        return (422, "text/plain", "give ?sku=N&to=hot|home\n".into());
    };
    match moves.run(shared, sku, to, Trigger::AdminMove).await {
        Ok(m) => (200, "text/plain", moved_text(&m)),
        Err(e) => (e.http_code(), "text/plain", format!("{e}\n")),
    }
}

fn moved_text(m: &crate::hotmove::Moved) -> String {
    let place = match m.to {
        crate::hotmove::Side::Hot => "the hot instance",
        crate::hotmove::Side::Home => "its home shard",
    };
    let mut s = format!(
        "SKU {}: {} row(s) moved to {place} (statements on it waited {} ms); its statements go there now\n",
        m.sku, m.rows, m.closed_ms
    );
    if let Some(w) = &m.warning {
        s.push_str(&format!("warning: {w}\n"));
    }
    s
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
        .min(MAX_REQUEST)
}

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
    })
}

/// Replaces the limits rules with the `[[rules]]` of a TOML body and saves them to the runtime
/// file when one is configured (so a restart keeps them).
fn put_rules(shared: &Shared, body: &str) -> Result<usize, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default)]
        rules: Vec<crate::limits::RuleConfig>,
    }
    let parsed: Body = toml::from_str(body).map_err(|e| e.to_string())?;
    let errs = crate::limits::validate_rules(&parsed.rules, "rules", Some(body));
    if !errs.is_empty() {
        return Err(errs.join("\n"));
    }
    let n = parsed.rules.len();
    shared
        .limits
        .replace_rules(parsed.rules)
        .map_err(|e| e.to_string())?;
    if let Some(file) = &shared.config.limits.runtime_file {
        shared
            .limits
            .save(std::path::Path::new(file))
            .map_err(|e| format!("in effect, but not saved to {file}: {e}"))?;
    }
    Ok(n)
}

fn render_digest_metrics(shared: &Shared, out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "# HELP {n} Statement digests tracked for /status/digests.\n# TYPE {n} gauge\n{n} {}",
        shared.digests.len(),
        n = crate::digests::DIGESTS_TRACKED
    );
    let _ = writeln!(
        out,
        "# HELP {n} Digests evicted from the bounded table.\n# TYPE {n} counter\n{n} {}",
        shared.digests.evicted(),
        n = crate::digests::DIGESTS_EVICTED
    );
}

fn status_json(shared: &Shared) -> String {
    let cfg = &shared.config;
    let pools: Vec<_> = shared
        .pools
        .all()
        .iter()
        .map(|p| {
            let st = p.inner.state();
            json!({
                "instance": &*p.addr,
                "variant": p.variant,
                "connections": st.connections,
                "idle": st.idle_connections,
                "in_use": st.connections.saturating_sub(st.idle_connections),
                "max": cfg.backend.pool_size,
            })
        })
        .collect();
    let shards: Vec<_> = cfg
        .shards
        .iter()
        .map(|s| json!({"name": s.name, "primary": s.primary, "replicas": s.replicas, "reporting": s.reporting}))
        .collect();
    let per_shard: serde_json::Map<String, serde_json::Value> = shared
        .topology
        .shards
        .iter()
        .enumerate()
        .map(|(i, sh)| {
            let n = METRICS.per_shard.get(i).map_or(0, |c| c.get());
            (sh.name.clone(), json!(n))
        })
        .collect();
    let instances: Vec<_> = shared
        .topology
        .instances
        .iter()
        .map(|i| {
            use peakgate_router::plan::ReplicaView;
            let h = i.health();
            json!({
                "instance": &*i.addr,
                "shard": shared.topology.shards[i.shard].name,
                "role": i.role.as_str(),
                "state": h.state,
                "detail": h.detail,
                "eligible": i.is_eligible(),
                "lag_ms": i.lag(),
                "seconds_behind_master": h.seconds_behind,
                "gtid_position": i.position().to_string(),
                "in_flight": i.in_flight_now(),
                "breaker": if i.breaker_refuses().is_some() { "open" } else { "closed" },
                "connect_failures": i.breaker_failures(),
                "checked_unix_ms": h.checked_unix_ms,
            })
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "server_version": shared.server_version,
        "uptime_seconds": shared.started.elapsed().as_secs(),
        "client_connections": METRICS.client_connections.get(),
        "max_client_connections": cfg.proxy.max_client_connections,
        "prepared_statements": shared.prepared_stmts.load(std::sync::atomic::Ordering::Relaxed),
        "max_prepared_stmt_count": cfg.proxy.max_prepared_stmt_count,
        "default_shard": cfg.routing.default_shard,
        "shards": shards,
        "shard_map": shared.shard_map().to_string(),
        "statements_per_shard": per_shard,
        "xa": {
            "mode": matches!(
                shared.shard_map().cross_shard_transactions(),
                peakgate_router::shard_map::CrossShardTransactions::Xa
            ),
            "open": shared.xa.live_count(),
            "one_phase": METRICS.xa_one_phase.get(),
            "two_phase": METRICS.xa_two_phase.get(),
            "rolled_back": METRICS.xa_rollbacks.get(),
            "failed": METRICS.xa_failed.get(),
            "recovered_commit": METRICS.xa_recovered_commit.get(),
            "recovered_rollback": METRICS.xa_recovered_rollback.get(),
        },
        "instances": instances,
        "limits": shared.limits.snapshot(),
        "hot_skus": shared.hot.as_ref().map(|h| h.status()),
        "hot_queues": shared.hot_rows.as_ref().map(|h| {
            h.depths()
                .into_iter()
                .map(|(sku, depth, sold_out)| json!({"sku": sku, "waiting": depth, "sold_out": sold_out}))
                .collect::<Vec<_>>()
        }),
        "hot_moves": shared.hot_moves.as_ref().map(|m| m.status()),
        "sale_lane": shared.sale_lane.as_ref().map(|l| {
            let (sessions, moves) = l.counts();
            serde_json::json!({ "sessions": sessions, "moves": moves })
        }),
        "hot_batches": {
            "batches": METRICS.hot_batches.get(),
            "statements": METRICS.hot_batched.get(),
            "merged": METRICS.hot_merged.get(),
            "busy": METRICS.hot_busy.get(),
            "sold_out_answers": METRICS.hot_sold_out_answers.get(),
        },
        "pools": pools,
        "statement_cache_entries": shared.classifier.cache_len(),
    })
    .to_string()
}
