//! The outbox relay: unpublished `outbox` rows, read through the proxy, published to NATS
//! JetStream at least once, then stamped `published_at`.
//!
//! Two tables feed it: `outbox` (order events, sharded by member, written in the order's
//! transaction) and `catalog_outbox` (catalogue events, `product.updated`, on the default shard
//! with `products`, written in the product change's transaction). Both go to the same stream.
//!
//! One round ([`Relay::run_once`]):
//! 1. `SELECT ... FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT n` through PeakGate
//!    with a `route=primary` hint (a replica could still show rows already stamped). Without
//!    the shard key the proxy asks every shard and merges; each shard's rows stay in id order,
//!    so one member's events (all on the member's shard) are published in the order written.
//! 2. Every row is published to `<subject prefix>.<event_type>` with the JetStream message id
//!    (`Nats-Msg-Id`) set to the event id; the publishes are pipelined, then their acks awaited.
//! 3. Rows whose publish was acknowledged are stamped: `UPDATE outbox SET published_at = NOW(3)
//!    WHERE member_id = ? AND id IN (...)`, one statement per member, so each goes to one shard.
//!
//! A catalogue event's id is `catalog-<catalog_outbox id>-<created_at digits>` (its envelope's
//! `member_id` is 0). An order event's id is `<member_id>-<outbox id>-<created_at digits>`:
//! `outbox.id` is an
//! AUTO_INCREMENT of each shard (two shards both have an id 1) and the member decides the shard,
//! so the first two are unique in one shop database; the row's creation time (never changed)
//! keeps ids apart when the shop's database is recreated and its ids start again at 1 while the
//! stream and the back-office database keep the old events.
//!
//! A crash between a publish ack and the UPDATE publishes the row again next round: JetStream
//! drops the copy within the stream's duplicate window (the ack then says `duplicate`), and the
//! back-office consumer records every event id it applied, so an event published twice after
//! the window is still applied once ([`crate::backoffice`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, context::Context, message::PublishMessage, stream};
use mysql_async::Pool;
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where the relay publishes and how.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// The JetStream stream, created if missing.
    pub stream: String,
    /// Events go to `<subject_prefix>.<event_type>`; the stream holds `<subject_prefix>.>`.
    pub subject_prefix: String,
    /// Rows read per round.
    pub batch: usize,
    /// Pause after a round that found fewer than `batch` rows.
    pub idle: Duration,
    /// The stream's de-duplication window (used when the relay creates the stream).
    pub duplicate_window: Duration,
    /// Fault injection for tests: after this many publish acks in this relay's life, stop with an
    /// error before stamping the acknowledged rows (a crash between ack and UPDATE).
    pub crash_after_acks: Option<u64>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            stream: "SHOP_OUTBOX".into(),
            subject_prefix: "shop.outbox".into(),
            batch: 500,
            idle: Duration::from_millis(200),
            duplicate_window: Duration::from_secs(120),
            crash_after_acks: None,
        }
    }
}

/// What is published: one outbox row and its payload as written by the service.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    /// `<member_id>-<outbox id>-<created_at digits>`, also the JetStream message id.
    pub event_id: String,
    pub outbox_id: u64,
    pub member_id: u64,
    pub aggregate_type: String,
    pub aggregate_id: u64,
    pub event_type: String,
    /// The outbox row's `created_at` (`YYYY-MM-DD hh:mm:ss.fff`, the shard's clock).
    pub created_at: String,
    /// The row's payload (JSON as the service wrote it; a string if it was not JSON).
    pub payload: Value,
}

/// The event id of outbox row `id` of `member` created at `created_at` (the digits of it).
pub fn event_id(member: u64, id: u64, created_at: &str) -> String {
    let stamp: String = created_at.chars().filter(char::is_ascii_digit).collect();
    format!("{member}-{id}-{stamp}")
}

/// The event id of `catalog_outbox` row `id` created at `created_at`.
pub fn catalog_event_id(id: u64, created_at: &str) -> String {
    let stamp: String = created_at.chars().filter(char::is_ascii_digit).collect();
    format!("catalog-{id}-{stamp}")
}

/// The subject of an event type: the prefix, a dot, the type with anything outside
/// `[A-Za-z0-9_.-]` (and empty tokens) replaced by `_`.
pub fn subject(prefix: &str, event_type: &str) -> String {
    let clean: String = event_type
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let tokens: Vec<&str> = clean
        .split('.')
        .map(|t| if t.is_empty() { "_" } else { t })
        .collect();
    format!("{prefix}.{}", tokens.join("."))
}

/// Creates the stream (`<subject_prefix>.>`, file storage, the duplicate window) unless it
/// exists. Both the relay and the back-office consumer call it, so either may start first.
pub async fn ensure_stream(
    js: &Context,
    name: &str,
    subject_prefix: &str,
    duplicate_window: Duration,
) -> anyhow::Result<stream::Stream> {
    js.get_or_create_stream(stream::Config {
        name: name.to_string(),
        subjects: vec![format!("{subject_prefix}.>")],
        storage: stream::StorageType::File,
        duplicate_window,
        ..Default::default()
    })
    .await
    .with_context(|| format!("create or open JetStream stream {name}"))
}

/// The relay's counters.
#[derive(Default, Debug)]
pub struct RelayStats {
    /// Publishes acknowledged by JetStream (duplicates included).
    pub published: AtomicU64,
    /// Acks that said the message id was already in the stream (a republish after a crash).
    pub duplicates: AtomicU64,
    /// Rows stamped `published_at`.
    pub marked: AtomicU64,
    /// Rounds that failed (database or NATS), retried.
    pub errors: AtomicU64,
    /// Age of the oldest unpublished row seen in the last round, milliseconds.
    pub oldest_unpublished_ms: AtomicU64,
}

impl RelayStats {
    /// Prometheus text of the counters.
    pub fn render(&self) -> String {
        format!(
            "# TYPE shop_outbox_published_total counter\nshop_outbox_published_total {}\n\
             # TYPE shop_outbox_duplicate_publishes_total counter\nshop_outbox_duplicate_publishes_total {}\n\
             # TYPE shop_outbox_marked_total counter\nshop_outbox_marked_total {}\n\
             # TYPE shop_outbox_relay_errors_total counter\nshop_outbox_relay_errors_total {}\n\
             # TYPE shop_outbox_oldest_unpublished_seconds gauge\nshop_outbox_oldest_unpublished_seconds {:.3}\n",
            self.published.load(Relaxed),
            self.duplicates.load(Relaxed),
            self.marked.load(Relaxed),
            self.errors.load(Relaxed),
            self.oldest_unpublished_ms.load(Relaxed) as f64 / 1000.0,
        )
    }
}

/// One unpublished row.
type Row = (u64, u64, String, u64, String, String, String, i64);

/// The two outbox tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Table {
    /// `outbox`: order events, sharded by member.
    Orders,
    /// `catalog_outbox`: catalogue events, on the default shard.
    Catalog,
}

impl Table {
    /// Unpublished rows, oldest first, as [`Row`]s (the catalogue's member id is 0).
    fn select(self, limit: usize) -> String {
        let (member, table) = match self {
            Table::Orders => ("member_id", "outbox"),
            Table::Catalog => ("0", "catalog_outbox"),
        };
        format!(
            "/* peakgate: route=primary */ SELECT id, {member}, aggregate_type, aggregate_id, \
             event_type, payload, CAST(created_at AS CHAR), \
             TIMESTAMPDIFF(MICROSECOND, created_at, NOW(3)) \
             FROM {table} WHERE published_at IS NULL ORDER BY id LIMIT {limit}"
        )
    }

    fn event_id(self, member: u64, id: u64, created_at: &str) -> String {
        match self {
            Table::Orders => event_id(member, id, created_at),
            Table::Catalog => catalog_event_id(id, created_at),
        }
    }

    /// Stamps published rows: one statement per member (one shard each) for `outbox`.
    fn stamp(self, member: u64, ids: &[u64]) -> String {
        let list: Vec<String> = ids.iter().map(u64::to_string).collect();
        let list = list.join(", ");
        match self {
            Table::Orders => format!(
                "UPDATE outbox SET published_at = NOW(3) WHERE member_id = {member} \
                 AND id IN ({list}) AND published_at IS NULL"
            ),
            Table::Catalog => format!(
                "UPDATE catalog_outbox SET published_at = NOW(3) \
                 WHERE id IN ({list}) AND published_at IS NULL"
            ),
        }
    }
}

/// The relay: a pool to the proxy, a JetStream context, its config and counters.
pub struct Relay {
    pool: Pool,
    js: Context,
    cfg: RelayConfig,
    pub stats: Arc<RelayStats>,
    acks: AtomicU64,
}

impl Relay {
    /// Connects to NATS at `nats` and makes sure the stream exists. `pool` reaches the proxy.
    pub async fn connect(pool: Pool, nats: &str, cfg: RelayConfig) -> anyhow::Result<Relay> {
        let client = async_nats::connect(nats)
            .await
            .with_context(|| format!("connect to NATS at {nats}"))?;
        let js = jetstream::new(client);
        ensure_stream(&js, &cfg.stream, &cfg.subject_prefix, cfg.duplicate_window).await?;
        Ok(Relay {
            pool,
            js,
            cfg,
            stats: Arc::default(),
            acks: AtomicU64::new(0),
        })
    }

    /// Publishes one batch of unpublished rows and stamps those acknowledged. Returns how many
    /// rows were read.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let mut conn = self.pool.get_conn().await.context("connect to the proxy")?;
        let mut rows: Vec<(Table, Row)> = Vec::new();
        for table in [Table::Orders, Table::Catalog] {
            let got: Vec<Row> = conn
                .query(table.select(self.cfg.batch.max(1)))
                .await
                .with_context(|| format!("read unpublished {table:?} outbox rows"))?;
            rows.extend(got.into_iter().map(|r| (table, r)));
        }
        let oldest = rows.iter().map(|r| r.1.7).max().unwrap_or(0).max(0) as u64;
        self.stats
            .oldest_unpublished_ms
            .store(oldest / 1000, Relaxed);
        if rows.is_empty() {
            return Ok(0);
        }

        // Publish every row (pipelined), then await the acks in order.
        let mut pending = Vec::with_capacity(rows.len());
        for (
            table,
            (id, member, aggregate_type, aggregate_id, event_type, payload, created_at, _),
        ) in &rows
        {
            let env = Envelope {
                event_id: table.event_id(*member, *id, created_at),
                outbox_id: *id,
                member_id: *member,
                aggregate_type: aggregate_type.clone(),
                aggregate_id: *aggregate_id,
                event_type: event_type.clone(),
                created_at: created_at.clone(),
                payload: serde_json::from_str(payload)
                    .unwrap_or_else(|_| Value::String(payload.clone())),
            };
            let body = serde_json::to_vec(&env)?;
            let msg = PublishMessage::build()
                .payload(body.into())
                .message_id(&env.event_id);
            match self
                .js
                .send_publish(subject(&self.cfg.subject_prefix, event_type), msg)
                .await
            {
                Ok(ack) => pending.push(((*table, *member), *id, env.event_id, ack)),
                Err(e) => {
                    tracing::warn!(error = %e, event = %env.event_id, "publish failed");
                    break;
                }
            }
        }
        let mut acked: BTreeMap<(Table, u64), Vec<u64>> = BTreeMap::new();
        let mut failure = None;
        for (key, id, event, ack) in pending {
            match ack.await {
                Ok(a) => {
                    self.stats.published.fetch_add(1, Relaxed);
                    if a.duplicate {
                        self.stats.duplicates.fetch_add(1, Relaxed);
                    }
                    acked.entry(key).or_default().push(id);
                    let n = self.acks.fetch_add(1, Relaxed) + 1;
                    if self.cfg.crash_after_acks.is_some_and(|limit| n >= limit) {
                        anyhow::bail!(
                            "relay stopped after {n} acks, before stamping (fault injection)"
                        );
                    }
                }
                Err(e) => {
                    // Stamp what was acknowledged before; the rest goes again next round.
                    failure = Some(anyhow::anyhow!("publish ack of {event}: {e}"));
                    break;
                }
            }
        }

        // Stamp the acknowledged rows: per member for `outbox` (one shard each), at once for
        // `catalog_outbox`.
        for ((table, member), ids) in &acked {
            conn.query_drop(table.stamp(*member, ids))
                .await
                .context("stamp published_at")?;
            self.stats.marked.fetch_add(ids.len() as u64, Relaxed);
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(rows.len()),
        }
    }

    /// Runs rounds until the task is dropped: straight on after a full batch, after
    /// `cfg.idle` otherwise, after a second when a round failed. Stops only for the fault
    /// injection of `crash_after_acks`.
    pub async fn run(&self) -> anyhow::Result<()> {
        loop {
            match self.run_once().await {
                Ok(n) if n >= self.cfg.batch.max(1) => {}
                Ok(_) => tokio::time::sleep(self.cfg.idle).await,
                Err(e) if self.cfg.crash_after_acks.is_some() => return Err(e),
                Err(e) => {
                    self.stats.errors.fetch_add(1, Relaxed);
                    tracing::warn!(error = %format!("{e:#}"), "outbox relay round failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_valid_tokens() {
        assert_eq!(
            subject("shop.outbox", "order.created"),
            "shop.outbox.order.created"
        );
        assert_eq!(subject("p", "a b*>"), "p.a_b__");
        assert_eq!(subject("p", "a..b."), "p.a._.b._");
        assert_eq!(subject("p", ""), "p._");
    }

    #[test]
    fn event_ids_name_member_and_row() {
        assert_eq!(
            event_id(17, 3, "2026-01-02 03:04:05.678"),
            "17-3-20260102030405678"
        );
        assert_eq!(
            catalog_event_id(3, "2026-01-02 03:04:05.678"),
            "catalog-3-20260102030405678"
        );
        assert_eq!(
            Table::Catalog.stamp(0, &[4, 5]),
            "UPDATE catalog_outbox SET published_at = NOW(3) WHERE id IN (4, 5) AND published_at IS NULL"
        );
        let env = Envelope {
            event_id: event_id(1, 2, "2026-01-01 00:00:00.000"),
            outbox_id: 2,
            member_id: 1,
            aggregate_type: "order".into(),
            aggregate_id: 99,
            event_type: "order.paid".into(),
            created_at: "2026-01-01 00:00:00.000".into(),
            payload: serde_json::json!({ "order_id": 99 }),
        };
        let text = serde_json::to_string(&env).expect("serialize");
        let back: Envelope = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, env);
    }
}
