//! `peakgate-shop reindex`: the index rebuilt from the database, with a progress bar.
//!
//! 1. The outbox stream's last sequence is taken **before** the database is read: every event
//!    up to it describes a change committed before the read, so the rebuilt index has it; every
//!    later event is applied by the consumer (or skipped, if the read saw it already: versions).
//! 2. Products are read from the primary through the proxy, 1,000 by id at a time, with their
//!    stock and units sold ([`super::source`]), and streamed into the index writer.
//! 3. One commit replaces every document and stores the position of step 1. A failure before
//!    it leaves the index as it was.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::stream;
use mysql_async::Pool;

use super::sync::position_of;
use super::{IndexPosition, ProductDoc, SearchIndex, source};
use crate::seed::progress_bar;

/// Products read per statement.
const PAGE: usize = 1_000;

/// What a rebuild did.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub documents: u64,
    pub position: IndexPosition,
    pub took: Duration,
}

/// Rebuilds `index` from the database behind `pool`, positioned on `stream`.
pub async fn rebuild(
    index: Arc<SearchIndex>,
    pool: &Pool,
    stream: &stream::Stream,
    progress: bool,
) -> anyhow::Result<RebuildReport> {
    let start = Instant::now();
    let info = stream.get_info().await.context("read the stream's info")?;
    let position = position_of(&info);
    let mut conn = pool.get_conn().await.context("connect to the proxy")?;
    let categories = source::categories(&mut conn).await?;
    let total = source::count_products(&mut conn).await?;
    let bar = progress_bar(
        progress,
        total,
        "{spinner} reindex [{bar:40}] {pos}/{len} products ({per_sec}, {eta} left)",
    )?;

    // The database is read here while a blocking task writes the index.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<ProductDoc>>(PAGE);
    let writer_index = index.clone();
    let commit_position = position.clone();
    let writer = tokio::task::spawn_blocking(move || {
        writer_index.replace_all(std::iter::from_fn(|| rx.blocking_recv()), &commit_position)
    });
    let mut after = 0;
    'pages: loop {
        let page = match source::docs_after(&mut conn, &categories, after, PAGE).await {
            Ok(p) => p,
            Err(e) => {
                // The writer rolls back on the error (or has stopped already).
                let _ = tx
                    .send(Err(anyhow::Error::new(e).context("read products")))
                    .await;
                break;
            }
        };
        let Some(last) = page.last() else { break };
        after = last.id;
        let n = page.len();
        for doc in page {
            if tx.send(Ok(doc)).await.is_err() {
                break 'pages; // the writer stopped: its error is below
            }
        }
        bar.inc(n as u64);
        if n < PAGE {
            break;
        }
    }
    drop(tx);
    drop(conn);
    let documents = writer.await.context("the index writer panicked")??;
    bar.finish_and_clear();
    Ok(RebuildReport {
        documents,
        position,
        took: start.elapsed(),
    })
}
