//! The back-office consumer: a durable JetStream pull consumer that applies the outbox events
//! to a separate back-office database (`sql/backoffice/`), idempotently.
//!
//! For each message, in one transaction on the back-office database:
//! 1. `INSERT INTO applied_events (event_id, ...)`: a duplicate key means the event was applied
//!    before (a redelivery after a crash between commit and ack, or a republish by the relay):
//!    roll back, ack, done;
//! 2. the effect (`bo_orders`, `bo_order_items`), written so that `order.created` and
//!    `order.paid` give the same row in either order;
//! 3. COMMIT, then the ack (a double ack: the server confirms it).
//!
//! The consumer is durable (`ack_policy = explicit`): after a restart it resumes at the first
//! unacknowledged message, and a message fetched but never acked comes again after `ack_wait`.
//! So every event is applied exactly once in effect, with at-least-once delivery.
//!
//! The pipeline lag of an event (outbox `created_at` on the member's shard to this commit, both
//! clocks of this machine's servers) is stored in `applied_events.lag_ms` and observed in
//! [`BackofficeStats`] (`shop_outbox_pipeline_lag_seconds` on `--metrics-listen`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool};
use serde_json::Value;

use crate::db::{ER_DUP_ENTRY, lit, server_code};
use crate::metrics::LagHistogram;
use crate::outbox::{Envelope, ensure_stream};

/// The back-office DDL, applied by [`prepare_db`].
pub const DDL: &str = include_str!("../sql/backoffice/01_backoffice.sql");

/// Where the consumer reads and how.
#[derive(Clone, Debug)]
pub struct BackofficeConfig {
    /// The stream (created if missing, as the relay would).
    pub stream: String,
    /// The stream's subjects are `<subject_prefix>.>`; the consumer takes all of them.
    pub subject_prefix: String,
    /// The durable consumer's name: its position survives restarts.
    pub durable: String,
    /// A delivered message not acked within this is delivered again.
    pub ack_wait: Duration,
    /// Messages per pull.
    pub batch: usize,
    /// Used when the consumer creates the stream.
    pub duplicate_window: Duration,
    /// Fault injection for tests: after this many commits, stop with an error before acking
    /// the last one (a crash between commit and ack).
    pub crash_after_commits: Option<u64>,
}

impl Default for BackofficeConfig {
    fn default() -> Self {
        BackofficeConfig {
            stream: "SHOP_OUTBOX".into(),
            subject_prefix: "shop.outbox".into(),
            durable: "shop_backoffice".into(),
            ack_wait: Duration::from_secs(30),
            batch: 100,
            duplicate_window: Duration::from_secs(120),
            crash_after_commits: None,
        }
    }
}

/// The consumer's counters and lag histogram.
#[derive(Default, Debug)]
pub struct BackofficeStats {
    /// Events applied (committed).
    pub applied: AtomicU64,
    /// Events found in `applied_events` already: redeliveries and republishes, no effect.
    pub duplicates: AtomicU64,
    /// Messages that were not an outbox envelope: terminated, never redelivered.
    pub invalid: AtomicU64,
    /// Failed applies (database), redelivered later.
    pub errors: AtomicU64,
    /// Pipeline lag of the events applied.
    pub lag: LagHistogram,
}

impl BackofficeStats {
    /// Prometheus text: counters and the pipeline-lag histogram.
    pub fn render(&self) -> String {
        let mut out = format!(
            "# HELP shop_backoffice_events_total Outbox events seen by the back-office consumer.\n\
             # TYPE shop_backoffice_events_total counter\n\
             shop_backoffice_events_total{{result=\"applied\"}} {}\n\
             shop_backoffice_events_total{{result=\"duplicate\"}} {}\n\
             shop_backoffice_events_total{{result=\"invalid\"}} {}\n\
             shop_backoffice_events_total{{result=\"error\"}} {}\n",
            self.applied.load(Relaxed),
            self.duplicates.load(Relaxed),
            self.invalid.load(Relaxed),
            self.errors.load(Relaxed),
        );
        self.lag.render(
            &mut out,
            "shop_outbox_pipeline",
            "Outbox created_at to back-office commit.",
        );
        out
    }
}

/// Creates the back-office database named by `url` (if missing) and its tables; returns a pool
/// to it.
pub async fn prepare_db(url: &str) -> anyhow::Result<Pool> {
    let opts = mysql_async::Opts::from_url(url)?;
    let db = opts
        .db_name()
        .context("the back-office URL names no database")?
        .to_string();
    anyhow::ensure!(
        db.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "database name {db:?}: use letters, digits and _"
    );
    let mut conn = Conn::new(
        mysql_async::OptsBuilder::from_opts(opts.clone())
            .db_name(None::<String>)
            .prefer_socket(false),
    )
    .await
    .context("connect to the back-office MariaDB")?;
    conn.query_drop(format!(
        "CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    ))
    .await?;
    conn.query_drop(format!("USE `{db}`")).await?;
    for sql in crate::schema::statements(DDL) {
        conn.query_drop(&sql).await?;
    }
    conn.disconnect().await?;
    crate::db::pool(url, 4)
}

/// What happened to one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied now; the pipeline lag in milliseconds.
    Applied(u64),
    /// Applied before: nothing changed.
    Duplicate,
}

/// The consumer: a pool to the back-office database and a durable pull consumer.
pub struct Backoffice {
    pool: Pool,
    consumer: jetstream::consumer::Consumer<pull::Config>,
    cfg: BackofficeConfig,
    pub stats: Arc<BackofficeStats>,
    commits: AtomicU64,
}

impl Backoffice {
    /// Connects to NATS, makes sure the stream and the durable consumer exist. `stats` may be
    /// shared with an earlier run (counters add up).
    pub async fn connect(
        pool: Pool,
        nats: &str,
        cfg: BackofficeConfig,
        stats: Arc<BackofficeStats>,
    ) -> anyhow::Result<Backoffice> {
        let client = async_nats::connect(nats)
            .await
            .with_context(|| format!("connect to NATS at {nats}"))?;
        let js = jetstream::new(client);
        let stream =
            ensure_stream(&js, &cfg.stream, &cfg.subject_prefix, cfg.duplicate_window).await?;
        let consumer = stream
            .get_or_create_consumer(
                &cfg.durable,
                pull::Config {
                    durable_name: Some(cfg.durable.clone()),
                    description: Some("shop back office: outbox events".into()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: cfg.ack_wait,
                    filter_subject: format!("{}.>", cfg.subject_prefix),
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("create or open durable consumer {}", cfg.durable))?;
        Ok(Backoffice {
            pool,
            consumer,
            cfg,
            stats,
            commits: AtomicU64::new(0),
        })
    }

    /// Pulls and applies messages until the task is dropped. Returns only for the fault
    /// injection of `crash_after_commits` or when NATS fails.
    pub async fn run(&self) -> anyhow::Result<()> {
        loop {
            let mut batch = self
                .consumer
                .batch()
                .max_messages(self.cfg.batch.max(1))
                .expires(Duration::from_secs(1))
                .messages()
                .await
                .context("pull from the durable consumer")?;
            while let Some(msg) = batch.next().await {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "pull failed");
                        break;
                    }
                };
                self.handle(&msg).await?;
            }
        }
    }

    async fn handle(&self, msg: &jetstream::Message) -> anyhow::Result<()> {
        let (seq, deliveries) = msg
            .info()
            .map(|i| (i.stream_sequence, i.delivered))
            .unwrap_or((0, 0));
        let env: Envelope = match serde_json::from_slice(&msg.payload) {
            Ok(e) => e,
            Err(e) => {
                self.stats.invalid.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, seq, "not an outbox event: terminated");
                msg.ack_with(AckKind::Term)
                    .await
                    .map_err(|e| anyhow::anyhow!("term: {e}"))?;
                return Ok(());
            }
        };
        match apply(&self.pool, &env, seq, deliveries).await {
            Ok(Outcome::Applied(lag)) => {
                self.stats.applied.fetch_add(1, Relaxed);
                self.stats.lag.observe(lag);
                let n = self.commits.fetch_add(1, Relaxed) + 1;
                if self.cfg.crash_after_commits.is_some_and(|limit| n >= limit) {
                    anyhow::bail!(
                        "back office stopped after {n} commits, before acking {} (fault injection)",
                        env.event_id
                    );
                }
            }
            Ok(Outcome::Duplicate) => {
                self.stats.duplicates.fetch_add(1, Relaxed);
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %format!("{e:#}"), event = %env.event_id, "apply failed; redelivered later");
                msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await
                    .map_err(|e| anyhow::anyhow!("nak: {e}"))?;
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Ok(());
            }
        }
        msg.double_ack()
            .await
            .map_err(|e| anyhow::anyhow!("ack of {}: {e}", env.event_id))
    }
}

/// Applies one event in one transaction: its `applied_events` row and its effect.
pub async fn apply(
    pool: &Pool,
    env: &Envelope,
    stream_seq: u64,
    deliveries: i64,
) -> anyhow::Result<Outcome> {
    let mut conn = pool
        .get_conn()
        .await
        .context("connect to the back-office database")?;
    let res = apply_in(&mut conn, env, stream_seq, deliveries).await;
    if !matches!(res, Ok(Outcome::Applied(_))) {
        let _ = conn.query_drop("ROLLBACK").await;
    }
    res
}

async fn apply_in(
    conn: &mut Conn,
    env: &Envelope,
    stream_seq: u64,
    deliveries: i64,
) -> anyhow::Result<Outcome> {
    let created = lit(env.created_at.as_str());
    conn.query_drop("BEGIN").await?;
    let lag_us: Option<i64> = conn
        .query_first(format!(
            "SELECT TIMESTAMPDIFF(MICROSECOND, {created}, NOW(3))"
        ))
        .await?;
    let lag_ms = (lag_us.unwrap_or(0).max(0) / 1000) as u64;
    let recorded = conn
        .query_drop(format!(
            "INSERT INTO applied_events \
             (event_id, event_type, aggregate_id, stream_seq, deliveries, created_at, applied_at, lag_ms) \
             VALUES ({}, {}, {}, {stream_seq}, {deliveries}, {created}, NOW(3), {lag_ms})",
            lit(env.event_id.as_str()),
            lit(env.event_type.as_str()),
            env.aggregate_id
        ))
        .await;
    match recorded {
        Ok(()) => {}
        Err(e) if server_code(&e) == Some(ER_DUP_ENTRY) => return Ok(Outcome::Duplicate),
        Err(e) => return Err(e.into()),
    }
    let p = &env.payload;
    match env.event_type.as_str() {
        "order.created" => {
            let order = p["order_id"].as_u64().unwrap_or(env.aggregate_id);
            conn.query_drop(format!(
                "INSERT INTO bo_orders \
                 (order_id, member_id, status, kind, item_count, total, ordered_at, events_applied) \
                 VALUES ({order}, {}, {}, {}, {}, {}, {created}, 1) \
                 ON DUPLICATE KEY UPDATE kind = VALUES(kind), item_count = VALUES(item_count), \
                 total = VALUES(total), ordered_at = VALUES(ordered_at), \
                 events_applied = events_applied + 1",
                env.member_id,
                lit(p["status"].as_str().unwrap_or("pending")),
                lit(p["kind"].as_str()),
                lit(p["item_count"].as_i64()),
                lit(decimal(&p["total"]).as_deref()),
            ))
            .await?;
            let items = p["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let rows: Vec<String> = items
                .iter()
                .enumerate()
                .map(|(i, it)| {
                    format!(
                        "({order}, {}, {}, {}, {}, {}, {})",
                        i + 1,
                        it["sku_id"].as_u64().unwrap_or(0),
                        lit(it["title"].as_str().unwrap_or("")),
                        lit(decimal(&it["unit_price"]).unwrap_or_else(|| "0".into())),
                        it["quantity"].as_i64().unwrap_or(0),
                        lit(decimal(&it["line_total"]).unwrap_or_else(|| "0".into())),
                    )
                })
                .collect();
            if !rows.is_empty() {
                conn.query_drop(format!(
                    "INSERT INTO bo_order_items \
                     (order_id, line_no, sku_id, title, unit_price, quantity, line_total) VALUES {} \
                     ON DUPLICATE KEY UPDATE sku_id = VALUES(sku_id), quantity = VALUES(quantity)",
                    rows.join(", ")
                ))
                .await?;
            }
        }
        "order.paid" => {
            let order = p["order_id"].as_u64().unwrap_or(env.aggregate_id);
            conn.query_drop(format!(
                "INSERT INTO bo_orders \
                 (order_id, member_id, status, paid_amount, payment_method, paid_at, events_applied) \
                 VALUES ({order}, {}, 'paid', {}, {}, {created}, 1) \
                 ON DUPLICATE KEY UPDATE status = 'paid', paid_amount = VALUES(paid_amount), \
                 payment_method = VALUES(payment_method), paid_at = VALUES(paid_at), \
                 events_applied = events_applied + 1",
                env.member_id,
                lit(decimal(&p["amount"]).as_deref()),
                lit(p["method"].as_str()),
            ))
            .await?;
        }
        other => {
            // Recorded in applied_events (so acked once), no effect yet.
            tracing::debug!(
                event_type = other,
                "event type without a back-office effect"
            );
        }
    }
    conn.query_drop("COMMIT").await?;
    Ok(Outcome::Applied(lag_ms))
}

/// A money amount from the payload (a string such as "12.50", or a number) as decimal text.
fn decimal(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if is_decimal(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn is_decimal(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.chars().filter(|c| *c == '.').count() <= 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_are_decimal_text() {
        assert_eq!(decimal(&json!("12.50")).as_deref(), Some("12.50"));
        assert_eq!(decimal(&json!(3)).as_deref(), Some("3"));
        assert_eq!(decimal(&json!("1; DROP")), None);
        assert_eq!(decimal(&json!("1.2.3")), None);
        assert_eq!(decimal(&json!(null)), None);
    }

    #[test]
    fn ddl_is_three_tables() {
        let s = crate::schema::statements(DDL);
        assert_eq!(s.len(), 3);
        assert!(
            s.iter()
                .all(|t| t.starts_with("CREATE TABLE IF NOT EXISTS"))
        );
    }

    #[test]
    fn stats_render_the_pipeline_lag() {
        let s = BackofficeStats::default();
        s.lag.observe(700);
        let text = s.render();
        assert!(text.contains("shop_backoffice_events_total{result=\"applied\"} 0\n"));
        assert!(text.contains("shop_outbox_pipeline_lag_seconds_count 1\n"));
        assert!(text.contains("shop_outbox_pipeline_last_lag_seconds 0.700\n"));
    }
}
