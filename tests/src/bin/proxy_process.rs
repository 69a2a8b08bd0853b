//! The proxy as a process of its own, for tests that kill it (`kill -9`) and start it again:
//! `proxy_process CONFIG` binds `peakgate::Proxy` on the config (listeners on port 0 are fine),
//! prints `mysql=ADDR admin=ADDR` on one line, and serves until SIGTERM or SIGINT, like
//! `peakgate --config CONFIG`.

use std::io::Write;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: proxy_process CONFIG"))?;
    let text = std::fs::read_to_string(&path)?;
    let config = peakgate::Config::parse(&text).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let proxy = peakgate::Proxy::bind(config).await?;
            let admin = proxy
                .admin_addr()
                .map_or_else(|| "-".to_string(), |a| a.to_string());
            println!("mysql={} admin={admin}", proxy.mysql_addr()?);
            std::io::stdout().flush()?;
            let (tx, rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                let _ = tx.send(true);
            });
            proxy.serve(rx).await
        })
}
