//! HTTP admin listener: `GET /metrics` (Prometheus text), `GET /status` (JSON). A deliberately
//! small HTTP/1.1 server: one request per connection, bounded request size, no keep-alive.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::debug;

use crate::metrics::{self, METRICS};
use crate::server::Shared;

/// Serves admin requests until shutdown.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let s = shared.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle(stream, &s).await {
                            debug!(error = %e, "admin request failed");
                        }
                    });
                }
            }
            _ = shutdown.changed() => if *shutdown.borrow() { return },
        }
    }
}

async fn handle(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() > 16 * 1024 {
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
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (code, ctype, body) = match (method, path) {
        ("GET", "/metrics") => (
            200,
            "text/plain; version=0.0.4",
            metrics::render(
                &shared.pools.all(),
                &shared.pipeline_counts(),
                &shared.topology,
            ),
        ),
        ("GET", "/status") => (200, "application/json", status_json(shared)),
        ("POST", "/reload") => match shared.reload() {
            Ok(map) => (200, "text/plain", format!("reloaded\n{map}")),
            Err(e) => (
                422,
                "text/plain",
                format!("refused; the old shard map stays\n{e}\n"),
            ),
        },
        ("GET", "/") => (
            200,
            "text/plain",
            "PeakGate admin: GET /metrics, GET /status, POST /reload\n".to_string(),
        ),
        ("GET", _) => (404, "text/plain", "not found\n".to_string()),
        _ => (405, "text/plain", "method not allowed\n".to_string()),
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        _ => "Method Not Allowed",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
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
        "default_shard": cfg.routing.default_shard,
        "shards": shards,
        "shard_map": shared.shard_map().to_string(),
        "statements_per_shard": per_shard,
        "instances": instances,
        "pools": pools,
        "statement_cache_entries": shared.classifier.cache_len(),
    })
    .to_string()
}
