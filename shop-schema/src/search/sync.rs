//! The index consumer: catalogue events from the outbox stream into one index replica.
//!
//! A durable JetStream pull consumer (explicit acks) on `<subject prefix>.product.>` of the
//! outbox stream, the one the back office reads too. Each round takes the messages that are
//! there (up to `batch`, waiting `linger` for more after the first), applies their documents
//! ([`SearchIndex::apply`]: a document replaces only a lower version), commits the index with
//! the highest stream sequence of the round as its position, makes it searchable, and then acks
//! the messages. A crash before the commit loses nothing (the messages were not acked and come
//! again); a crash between commit and ack redelivers events the index already has, which the
//! version check skips.
//!
//! Resuming: the index's own commit says up to which stream sequence it is complete
//! ([`IndexPosition`]). At start the durable consumer is kept if its ack floor is exactly that
//! position; otherwise (a crash between commit and ack, a rebuilt or copied index, a consumer
//! that expired after `inactive_threshold`) it is created again to start right after it. An
//! index with no position, or whose position this stream can no longer serve (the stream was
//! created again, or events after the position were removed), needs a rebuild first
//! ([`rebuild_reason`]).
//!
//! Each replica (shop instance) uses its own durable name: two instances on one durable would
//! split the events between them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind, consumer::DeliverPolicy, consumer::pull, stream};
use futures::StreamExt;

use super::{IndexPosition, PRODUCT_UPDATED, ProductEvent, SearchIndex};
use crate::metrics::LagHistogram;
use crate::outbox::{Envelope, ensure_stream, subject};

/// Where the consumer reads and how.
#[derive(Clone, Debug)]
pub struct IndexSyncConfig {
    /// The outbox stream (created if missing, as the relay would).
    pub stream: String,
    /// The stream's subjects are `<subject_prefix>.>`; the consumer takes
    /// `<subject_prefix>.product.>`.
    pub subject_prefix: String,
    /// This replica's durable consumer: one name per index directory.
    pub durable: String,
    /// A delivered message not acked within this is delivered again.
    pub ack_wait: Duration,
    /// Most events per index commit.
    pub batch: usize,
    /// After the first message of a round, how long to wait for more before committing.
    pub linger: Duration,
    /// Used when the consumer creates the stream.
    pub duplicate_window: Duration,
    /// A durable consumer nobody pulls from for this long is removed by the server (the index
    /// still knows its position, so it is simply created again).
    pub inactive_threshold: Duration,
}

impl Default for IndexSyncConfig {
    fn default() -> Self {
        IndexSyncConfig {
            stream: "SHOP_OUTBOX".into(),
            subject_prefix: "shop.outbox".into(),
            durable: "shop_search".into(),
            ack_wait: Duration::from_secs(30),
            batch: 500,
            linger: Duration::from_millis(20),
            duplicate_window: Duration::from_secs(120),
            inactive_threshold: Duration::from_secs(24 * 3600),
        }
    }
}

/// The consumer's counters and the index lag (event time -> searchable).
#[derive(Default, Debug)]
pub struct SearchStats {
    /// Documents that changed the index.
    pub applied: AtomicU64,
    /// Events whose version the index had already (redeliveries, republishes, events older
    /// than a rebuild).
    pub stale: AtomicU64,
    /// Messages that were not a catalogue event: terminated, never redelivered.
    pub invalid: AtomicU64,
    /// Index commits.
    pub commits: AtomicU64,
    /// Rounds that failed (NATS or the index); their messages come again.
    pub errors: AtomicU64,
    /// The stream sequence the index is complete up to.
    pub position: AtomicU64,
    /// Event time (the change, as the service stamped it) to the commit that made it
    /// searchable.
    pub lag: LagHistogram,
}

impl SearchStats {
    /// Prometheus text; `documents` is the index's document count.
    pub fn render(&self, documents: u64) -> String {
        let mut out = format!(
            "# HELP shop_search_index_events_total Catalogue events seen by the index consumer.\n\
             # TYPE shop_search_index_events_total counter\n\
             shop_search_index_events_total{{result=\"applied\"}} {}\n\
             shop_search_index_events_total{{result=\"stale\"}} {}\n\
             shop_search_index_events_total{{result=\"invalid\"}} {}\n\
             # TYPE shop_search_index_commits_total counter\n\
             shop_search_index_commits_total {}\n\
             # TYPE shop_search_index_errors_total counter\n\
             shop_search_index_errors_total {}\n\
             # HELP shop_search_index_position Stream sequence the index is complete up to.\n\
             # TYPE shop_search_index_position gauge\n\
             shop_search_index_position {}\n\
             # TYPE shop_search_index_documents gauge\n\
             shop_search_index_documents {documents}\n",
            self.applied.load(Relaxed),
            self.stale.load(Relaxed),
            self.invalid.load(Relaxed),
            self.commits.load(Relaxed),
            self.errors.load(Relaxed),
            self.position.load(Relaxed),
        );
        self.lag.render(
            &mut out,
            "shop_search_index",
            "Catalogue change to searchable in this replica.",
        );
        out
    }
}

/// The stream's identity and last sequence now: the position of an index built from the
/// database after this moment.
pub fn position_of(info: &stream::Info) -> IndexPosition {
    IndexPosition {
        stream: info.config.name.clone(),
        stream_created: info.created.unix_timestamp_nanos().to_string(),
        stream_seq: info.state.last_sequence,
    }
}

/// Why the index cannot simply resume from its position on this stream, if it cannot.
pub fn rebuild_reason(position: Option<&IndexPosition>, info: &stream::Info) -> Option<String> {
    resume_problem(
        position,
        &position_of(info),
        info.state.first_sequence,
        info.state.messages,
    )
}

/// [`rebuild_reason`] on the stream's facts: `now` (identity and last sequence), its first
/// sequence and how many messages it holds.
fn resume_problem(
    position: Option<&IndexPosition>,
    now: &IndexPosition,
    first_seq: u64,
    messages: u64,
) -> Option<String> {
    let Some(p) = position else {
        return Some("the index has never been built".into());
    };
    if p.stream != now.stream || p.stream_created != now.stream_created {
        return Some(format!(
            "the index follows stream {} created at {}, not this one",
            p.stream, p.stream_created
        ));
    }
    if p.stream_seq > now.stream_seq {
        return Some(format!(
            "the index is at sequence {} but the stream ends at {}",
            p.stream_seq, now.stream_seq
        ));
    }
    if messages > 0 && first_seq > p.stream_seq + 1 {
        return Some(format!(
            "events {}..{} are no longer in the stream",
            p.stream_seq + 1,
            first_seq - 1
        ));
    }
    None
}

/// Connects to NATS and opens (or creates) the outbox stream.
pub async fn open_stream(nats: &str, cfg: &IndexSyncConfig) -> anyhow::Result<stream::Stream> {
    let client = async_nats::connect(nats)
        .await
        .with_context(|| format!("connect to NATS at {nats}"))?;
    let js = jetstream::new(client);
    ensure_stream(&js, &cfg.stream, &cfg.subject_prefix, cfg.duplicate_window).await
}

/// The consumer of one index replica.
pub struct IndexSync {
    index: Arc<SearchIndex>,
    consumer: jetstream::consumer::Consumer<pull::Config>,
    base: IndexPosition,
    cfg: IndexSyncConfig,
    pub stats: Arc<SearchStats>,
}

impl IndexSync {
    /// Opens the stream and this replica's durable consumer, positioned right after the
    /// index's position. Fails if the index needs a rebuild first ([`rebuild_reason`]).
    pub async fn connect(
        index: Arc<SearchIndex>,
        nats: &str,
        cfg: IndexSyncConfig,
        stats: Arc<SearchStats>,
    ) -> anyhow::Result<IndexSync> {
        let stream = open_stream(nats, &cfg).await?;
        let info = stream.get_info().await.context("read the stream's info")?;
        let position = index.position()?;
        if let Some(why) = rebuild_reason(position.as_ref(), &info) {
            anyhow::bail!(
                "the search index at {} needs a rebuild ({why}): run peakgate-shop reindex",
                index.path().display()
            );
        }
        let base = position.unwrap_or_default();
        let filter = format!("{}.product.>", cfg.subject_prefix);
        let keep = match stream.consumer_info(&cfg.durable).await {
            Ok(c) => {
                let same = c.ack_floor.stream_sequence == base.stream_seq
                    && c.config.filter_subject == filter;
                if !same {
                    tracing::info!(
                        durable = %cfg.durable,
                        ack_floor = c.ack_floor.stream_sequence,
                        index = base.stream_seq,
                        "durable consumer is not at the index's position: creating it again"
                    );
                    stream
                        .delete_consumer(&cfg.durable)
                        .await
                        .with_context(|| format!("delete consumer {}", cfg.durable))?;
                }
                same
            }
            Err(_) => false,
        };
        let consumer = if keep {
            stream
                .get_consumer(&cfg.durable)
                .await
                .map_err(|e| anyhow::anyhow!("open durable consumer {}: {e}", cfg.durable))?
        } else {
            stream
                .create_consumer(pull::Config {
                    durable_name: Some(cfg.durable.clone()),
                    description: Some("shop search index: catalogue events".into()),
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: base.stream_seq + 1,
                    },
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: cfg.ack_wait,
                    filter_subject: filter,
                    inactive_threshold: cfg.inactive_threshold,
                    ..Default::default()
                })
                .await
                .with_context(|| format!("create durable consumer {}", cfg.durable))?
        };
        stats.position.store(base.stream_seq, Relaxed);
        Ok(IndexSync {
            index,
            consumer,
            base,
            cfg,
            stats,
        })
    }

    /// Applies events until the task is dropped. Returns only when the message stream cannot
    /// be opened or ends.
    pub async fn run(&self) -> anyhow::Result<()> {
        let mut messages = self
            .consumer
            .stream()
            .max_messages_per_batch(self.cfg.batch.max(1))
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .context("pull from the durable consumer")?;
        loop {
            let first = match messages.next().await {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    self.stats.errors.fetch_add(1, Relaxed);
                    tracing::warn!(error = %e, "index consumer: pull failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                None => anyhow::bail!("the durable consumer's message stream ended"),
            };
            let mut round = vec![first];
            while round.len() < self.cfg.batch.max(1) {
                match tokio::time::timeout(self.cfg.linger, messages.next()).await {
                    Ok(Some(Ok(m))) => round.push(m),
                    Ok(Some(Err(e))) => {
                        tracing::warn!(error = %e, "index consumer: pull failed");
                        break;
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            if let Err(e) = self.apply_round(&round).await {
                self.stats.errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %format!("{e:#}"), "index round failed; its events come again");
                for m in &round {
                    let _ = m.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    async fn apply_round(&self, round: &[jetstream::Message]) -> anyhow::Result<()> {
        let mut events = Vec::with_capacity(round.len());
        let mut invalid = Vec::new();
        let mut last_seq = self.stats.position.load(Relaxed);
        for (i, m) in round.iter().enumerate() {
            if let Ok(info) = m.info() {
                last_seq = last_seq.max(info.stream_sequence);
            }
            match parse_event(&m.payload) {
                Ok(ev) => events.push(ev),
                Err(e) => {
                    tracing::warn!(error = %e, subject = %m.subject, "not a catalogue event: terminated");
                    invalid.push(i);
                }
            }
        }
        let position = IndexPosition {
            stream_seq: last_seq,
            ..self.base.clone()
        };
        let docs: Vec<_> = events.iter().map(|e| e.product.clone()).collect();
        let index = self.index.clone();
        let applied = tokio::task::spawn_blocking(move || index.apply(&docs, &position))
            .await
            .context("the index task panicked")??;
        let now = unix_ms();
        for (ev, fresh) in events.iter().zip(&applied) {
            if *fresh {
                self.stats.applied.fetch_add(1, Relaxed);
                self.stats.lag.observe(now.saturating_sub(ev.changed_at_ms));
            } else {
                self.stats.stale.fetch_add(1, Relaxed);
            }
        }
        self.stats.commits.fetch_add(1, Relaxed);
        self.stats.position.store(last_seq, Relaxed);
        for (i, m) in round.iter().enumerate() {
            let res = if invalid.contains(&i) {
                self.stats.invalid.fetch_add(1, Relaxed);
                m.ack_with(AckKind::Term).await
            } else {
                m.ack().await
            };
            if let Err(e) = res {
                // The index has it; a redelivery will be skipped as stale.
                tracing::warn!(error = %e, "ack failed");
            }
        }
        Ok(())
    }
}

/// A catalogue event from a stream message (an outbox envelope of type `product.updated`).
pub fn parse_event(payload: &[u8]) -> anyhow::Result<ProductEvent> {
    let env: Envelope = serde_json::from_slice(payload).context("not an outbox envelope")?;
    anyhow::ensure!(
        env.event_type == PRODUCT_UPDATED,
        "event type {:?}, not {PRODUCT_UPDATED}",
        env.event_type
    );
    serde_json::from_value(env.payload).context("not a product.updated payload")
}

/// The subject catalogue events are published to.
pub fn product_subject(prefix: &str) -> String {
    subject(prefix, PRODUCT_UPDATED)
}

/// Now, Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A durable name for the replica in `dir` on this host: `shop_search_<host>_<hash of dir>`.
/// Two instances never share it unless they share host name and directory.
pub fn default_durable(dir: &std::path::Path) -> String {
    use sha2::Digest;
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_else(|| "host".into());
    let host: String = host
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(32)
        .collect();
    let full = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let hash = sha2::Sha256::digest(full.to_string_lossy().as_bytes());
    format!(
        "shop_search_{host}_{}",
        crate::service::auth::hex(&hash[..4])
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::tests::doc;

    #[test]
    fn events_round_trip_through_an_envelope() {
        let ev = ProductEvent {
            product: doc(7, 3, "19.90"),
            reason: "price".into(),
            changed_at_ms: 1_700_000_000_000,
        };
        let env = Envelope {
            event_id: "catalog-1-20260101000000000".into(),
            outbox_id: 1,
            member_id: 0,
            aggregate_type: "product".into(),
            aggregate_id: 7,
            event_type: PRODUCT_UPDATED.into(),
            created_at: "2026-01-01 00:00:00.000".into(),
            payload: serde_json::to_value(&ev).expect("json"),
        };
        let bytes = serde_json::to_vec(&env).expect("json");
        assert_eq!(parse_event(&bytes).expect("parse"), ev);
        let other = Envelope {
            event_type: "order.paid".into(),
            ..env
        };
        assert!(parse_event(&serde_json::to_vec(&other).expect("json")).is_err());
        assert!(parse_event(b"not json").is_err());
        assert_eq!(
            product_subject("shop.outbox"),
            "shop.outbox.product.updated"
        );
    }

    #[test]
    fn an_index_resumes_only_a_stream_that_still_has_its_events() {
        let at = |seq| IndexPosition {
            stream: "S".into(),
            stream_created: "1".into(),
            stream_seq: seq,
        };
        let now = at(100);
        // In step, behind with the events still there, or the stream empty: resume.
        assert_eq!(resume_problem(Some(&at(100)), &now, 1, 100), None);
        assert_eq!(resume_problem(Some(&at(40)), &now, 1, 100), None);
        assert_eq!(resume_problem(Some(&at(40)), &now, 41, 60), None);
        assert_eq!(resume_problem(Some(&at(40)), &now, 101, 0), None);
        // Never built; events removed; the stream created again (or another one); ahead of it.
        assert!(resume_problem(None, &now, 1, 100).is_some());
        let gone = resume_problem(Some(&at(40)), &now, 60, 41).expect("gap");
        assert!(gone.contains("41..59"), "{gone}");
        let again = IndexPosition {
            stream_created: "2".into(),
            ..now.clone()
        };
        assert!(resume_problem(Some(&at(40)), &again, 1, 100).is_some());
        assert!(resume_problem(Some(&at(120)), &now, 1, 100).is_some());
    }

    #[test]
    fn durable_names_differ_per_directory() {
        let a = default_durable(std::path::Path::new("/srv/a"));
        let b = default_durable(std::path::Path::new("/srv/b"));
        assert_ne!(a, b);
        assert!(a.starts_with("shop_search_"));
        assert!(
            a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{a}"
        );
    }

    #[test]
    fn stats_render_the_index_lag() {
        let s = SearchStats::default();
        s.lag.observe(250);
        s.applied.fetch_add(1, Relaxed);
        let text = s.render(42);
        assert!(text.contains("shop_search_index_events_total{result=\"applied\"} 1\n"));
        assert!(text.contains("shop_search_index_documents 42\n"));
        assert!(text.contains("shop_search_index_lag_seconds_bucket{le=\"0.25\"} 1\n"));
        assert!(text.contains("shop_search_index_last_lag_seconds 0.250\n"));
    }
}
