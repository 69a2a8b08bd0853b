//! `[hotspot]` in `peakgate.toml`: the hot instance, the hot table and key column, the configured
//! hot SKUs and automatic detection. Serde types and their validation; the proxy embeds
//! [`HotspotSettings`] as its `hotspot` key and checks `instance` as an address itself.
//!
//! ```toml
//! [hotspot]
//! instance = "127.0.0.1:3331"
//! skus = [1001, 1002]
//! auto_detect = { top_k = 16, min_qps = 500 }
//! ```

use serde::{Deserialize, Serialize};

use crate::shard_map::ConfigError;

/// `[hotspot]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HotspotSettings {
    /// Address (`host:port`) of the dedicated instance that holds hot SKUs' rows.
    pub instance: String,
    /// The table whose rows go hot: `table` (any schema) or `schema.table`, case-insensitive.
    /// Default `sku_stock`.
    #[serde(default = "default_table")]
    pub table: String,
    /// The table's SKU column: statements are hot when they name a hot value of it. Default `sku_id`.
    #[serde(default = "default_key_column")]
    pub key_column: String,
    /// SKUs hot from start (their rows already on the hot instance). Detection never demotes them.
    #[serde(default)]
    pub skus: Vec<u64>,
    /// Automatic detection of hot SKUs; absent means off (only `skus` and the admin API make SKUs hot).
    #[serde(default)]
    pub auto_detect: Option<AutoDetect>,
    /// The stock column that guarded decrements lower (for batching and sold-out). Default `stock`.
    #[serde(default = "default_stock_column")]
    pub stock_column: String,
    /// The hot-row queue and group commit.
    #[serde(default)]
    pub queue: HotQueue,
    /// Detection's promotions and demotions move the SKU's row (home shard -> hot instance and
    /// back) and switch its routing; off, they are only logged. Default off.
    #[serde(default)]
    pub auto_move: bool,
    /// A row move waits this long for the statements and transactions already using the SKU to
    /// finish; past it the move is refused and nothing changes. Milliseconds, default 2000.
    #[serde(default = "default_move_drain_ms")]
    pub move_drain_ms: u64,
    /// A statement on a SKU whose row is being moved waits this long for the move to end; past
    /// it the client gets ERR 1205 ("being moved, retry"). Milliseconds, default 5000.
    #[serde(default = "default_move_wait_ms")]
    pub move_wait_ms: u64,
    /// The sale lane: sessions writing hot rows through the queue run on a runtime of their own
    /// with this many threads, so a flash sale's sessions never queue ahead of normal traffic
    /// inside the proxy. 0 turns it off (every session on the proxy's runtime). Default 1.
    #[serde(default = "default_lane_threads")]
    pub lane_threads: usize,
    /// A session on the sale lane goes back to the proxy's runtime after a statement that is not
    /// a queued hot-row write, once its last such write is this old. Milliseconds, default 1000.
    #[serde(default = "default_lane_linger_ms")]
    pub lane_linger_ms: u64,
    /// The sale lane's threads run at this nice value (0-19): when the host's CPUs are all busy,
    /// the kernel gives the proxy's other threads the larger share, so a sale slows itself before
    /// it slows normal traffic. Default 0 (normal priority).
    #[serde(default = "default_lane_nice")]
    pub lane_nice: i32,
}

/// `[hotspot] queue`: autocommit writes of one hot row wait in one FIFO in the proxy and run in
/// batches (one transaction, one round trip) on the hot instance.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HotQueue {
    /// Off: hot statements go to the hot instance one by one like any statement.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Statements waiting per row; more are refused at once (ERR 1205, "flash sale busy, retry").
    #[serde(default = "default_queue_max")]
    pub queue_max: usize,
    /// The longest a statement waits for its batch; then it is refused (ERR 1205), never run.
    #[serde(default = "default_wait_ms")]
    pub wait_ms: u64,
    /// Most statements in one batch.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Batches of one row in flight at once (backend connections per row).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// After a guarded decrement found too little stock, identical or larger decrements are
    /// answered "0 rows" by the proxy for this long, unless the row is written meanwhile.
    #[serde(default = "default_sold_out_ttl")]
    pub sold_out_ttl_ms: u64,
    /// How a batch of guarded decrements runs in its one round trip. Default `statements`.
    #[serde(default)]
    pub batch_mode: BatchMode,
}

/// `[hotspot] queue.batch_mode`: how a worker sends a batch of guarded decrements of one row.
/// Both send the batch as one transaction in one round trip; they differ in what the server runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchMode {
    /// Every client's statement as written, one after another, each with its own affected rows.
    #[default]
    Statements,
    /// A batch whose statements are all the same text (same amount, same guard) runs as one
    /// UPDATE that takes the sum at once and splits it exactly among the clients in queue order;
    /// any other batch runs as in `statements`.
    Merged,
}

impl Default for HotQueue {
    fn default() -> Self {
        Self {
            enabled: true,
            queue_max: default_queue_max(),
            wait_ms: default_wait_ms(),
            batch_max: default_batch_max(),
            workers: default_workers(),
            sold_out_ttl_ms: default_sold_out_ttl(),
            batch_mode: BatchMode::default(),
        }
    }
}

fn default_lane_threads() -> usize {
    1
}
fn default_lane_linger_ms() -> u64 {
    1_000
}
fn default_lane_nice() -> i32 {
    0
}
fn default_move_drain_ms() -> u64 {
    2_000
}
fn default_move_wait_ms() -> u64 {
    5_000
}
fn default_true() -> bool {
    true
}
fn default_stock_column() -> String {
    "stock".into()
}
fn default_queue_max() -> usize {
    10_000
}
fn default_wait_ms() -> u64 {
    2_000
}
fn default_batch_max() -> usize {
    256
}
fn default_workers() -> usize {
    2
}
fn default_sold_out_ttl() -> u64 {
    1_000
}

/// `[hotspot] auto_detect`: when a SKU is promoted to hot, and when it is demoted again.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AutoDetect {
    /// Counters per counting shard (Space-Saving's `k`), and the most SKUs detection keeps hot at
    /// once. A SKU taking more than 1/`top_k` of the observed statements is always seen. 1..=4096,
    /// default 16.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// A SKU seen at this many statements per second or more over one tick is promoted. Default 500.
    #[serde(default = "default_min_qps")]
    pub min_qps: u64,
    /// A detected SKU below `min_qps * demote_ratio` is cooling; the gap between the two rates
    /// keeps a SKU near the threshold from flapping. In (0, 1], default 0.5.
    #[serde(default = "default_demote_ratio")]
    pub demote_ratio: f64,
    /// How long a detected SKU must stay cooling, without a break, before it is demoted; also how
    /// long a promotion or demotion the proxy has not carried out waits before it is proposed
    /// again. Milliseconds, default 30000.
    #[serde(default = "default_cool_down_ms")]
    pub cool_down_ms: u64,
}

impl Default for AutoDetect {
    fn default() -> AutoDetect {
        AutoDetect {
            top_k: default_top_k(),
            min_qps: default_min_qps(),
            demote_ratio: default_demote_ratio(),
            cool_down_ms: default_cool_down_ms(),
        }
    }
}

/// The largest `top_k` accepted.
pub const MAX_TOP_K: usize = 4096;

fn default_table() -> String {
    "sku_stock".into()
}

fn default_key_column() -> String {
    "sku_id".into()
}

fn default_top_k() -> usize {
    16
}

fn default_min_qps() -> u64 {
    500
}

fn default_demote_ratio() -> f64 {
    0.5
}

fn default_cool_down_ms() -> u64 {
    30_000
}

impl HotspotSettings {
    /// Settings with `instance`, the defaults, no configured SKUs and detection off.
    pub fn new(instance: impl Into<String>) -> HotspotSettings {
        HotspotSettings {
            instance: instance.into(),
            table: default_table(),
            key_column: default_key_column(),
            skus: Vec::new(),
            auto_detect: None,
            stock_column: default_stock_column(),
            queue: HotQueue::default(),
            auto_move: false,
            move_drain_ms: default_move_drain_ms(),
            move_wait_ms: default_move_wait_ms(),
            lane_threads: default_lane_threads(),
            lane_linger_ms: default_lane_linger_ms(),
            lane_nice: default_lane_nice(),
        }
    }

    /// Every mistake, each with its key path (`hotspot.auto_detect.min_qps`). Lines are left to the
    /// caller, which holds the file's spans. `instance` is not checked here.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let q = &self.queue;
        if !(0..=19).contains(&self.lane_nice) {
            errs.push(ConfigError {
                path: "hotspot.lane_nice".into(),
                message: format!("{} is out of range (0..=19)", self.lane_nice),
                line: None,
            });
        }
        for (key, bad) in [
            ("queue.queue_max", q.queue_max == 0),
            ("queue.batch_max", q.batch_max == 0 || q.batch_max > 4096),
            ("queue.workers", q.workers == 0 || q.workers > 64),
        ] {
            if bad {
                errs.push(ConfigError {
                    path: format!("hotspot.{key}"),
                    message: "out of range (queue_max >= 1, batch_max 1..=4096, workers 1..=64)"
                        .into(),
                    line: None,
                });
            }
        }
        let mut err = |path: &str, message: String| {
            errs.push(ConfigError {
                path: format!("hotspot.{path}"),
                message,
                line: None,
            })
        };
        for (key, ms) in [
            ("move_drain_ms", self.move_drain_ms),
            ("move_wait_ms", self.move_wait_ms),
        ] {
            if ms == 0 || ms > 600_000 {
                err(key, format!("{ms} is out of range: use 1..=600000 ms"));
            }
        }
        if self.auto_move && self.auto_detect.is_none() {
            err(
                "auto_move",
                "moves what auto_detect proposes: configure auto_detect too (or leave auto_move out)"
                    .into(),
            );
        }
        let parts: Vec<&str> = self.table.split('.').collect();
        if parts.len() > 2 || parts.iter().any(|p| p.trim().is_empty()) {
            err(
                "table",
                format!(
                    "\"{}\" is not a table name: write `table` or `schema.table`",
                    self.table
                ),
            );
        }
        if self.key_column.trim().is_empty() {
            err("key_column", "must name the table's SKU column".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, sku) in self.skus.iter().enumerate() {
            if !seen.insert(sku) {
                err(&format!("skus[{i}]"), format!("SKU {sku} is listed twice"));
            }
        }
        if let Some(a) = &self.auto_detect {
            if !(1..=MAX_TOP_K).contains(&a.top_k) {
                err(
                    "auto_detect.top_k",
                    format!("{} is out of range: use 1..={MAX_TOP_K}", a.top_k),
                );
            }
            if a.min_qps == 0 {
                err(
                    "auto_detect.min_qps",
                    "must be at least 1 (leave out auto_detect to turn detection off)".into(),
                );
            }
            if !(a.demote_ratio > 0.0 && a.demote_ratio <= 1.0) {
                err(
                    "auto_detect.demote_ratio",
                    format!(
                        "{} is out of range: use a ratio in (0, 1], e.g. 0.5",
                        a.demote_ratio
                    ),
                );
            }
        }
        errs
    }

    /// Whether a statement's table, as written (`sku_stock`, `shop.SKU_STOCK`), is the hot table.
    /// Names compare case-insensitively; a schema on only one side matches any schema (the proxy
    /// may qualify an unqualified name with the session's schema to be exact). No allocation.
    pub fn is_table(&self, table: &str) -> bool {
        TableName::new(&self.table).matches(table)
    }
}

/// A table name split once into schema and table, so that matching a statement's table costs
/// one split of the statement's name only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct TableName {
    schema: Option<String>,
    table: String,
}

impl TableName {
    pub(super) fn new(name: &str) -> TableName {
        let (schema, table) = split_name(name);
        TableName {
            schema: schema.map(str::to_owned),
            table: table.to_owned(),
        }
    }

    /// See [`HotspotSettings::is_table`].
    #[inline]
    pub(super) fn matches(&self, name: &str) -> bool {
        let (schema, table) = split_name(name);
        table.eq_ignore_ascii_case(&self.table)
            && match (schema, &self.schema) {
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                _ => true,
            }
    }
}

#[inline]
fn split_name(name: &str) -> (Option<&str>, &str) {
    match name.split_once('.') {
        Some((schema, table)) => (Some(schema), table),
        None => (None, name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        hotspot: HotspotSettings,
    }

    fn parse(text: &str) -> Result<HotspotSettings, toml::de::Error> {
        toml::from_str::<File>(text).map(|f| f.hotspot)
    }

    #[test]
    fn design_example_parses_with_defaults() {
        let s = parse(
            r#"
            [hotspot]
            instance = "127.0.0.1:3331"
            skus = [1001, 1002]
            auto_detect = { top_k = 16, min_qps = 500 }
            "#,
        )
        .expect("parses");
        assert_eq!(s.instance, "127.0.0.1:3331");
        assert_eq!(
            (s.table.as_str(), s.key_column.as_str()),
            ("sku_stock", "sku_id")
        );
        assert_eq!(s.skus, [1001, 1002]);
        assert_eq!(s.auto_detect, Some(AutoDetect::default()));
        assert!(s.validate().is_empty());
    }

    #[test]
    fn instance_alone_is_enough() {
        let s = parse("[hotspot]\ninstance = \"127.0.0.1:3331\"\n").expect("parses");
        assert_eq!(s, HotspotSettings::new("127.0.0.1:3331"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = parse("[hotspot]\ninstance = \"a:1\"\nhot_skus = [1]\n").expect_err("unknown key");
        assert!(e.to_string().contains("hot_skus"), "{e}");
        let e = parse("[hotspot]\ninstance = \"a:1\"\nauto_detect = { topk = 3 }\n")
            .expect_err("unknown key");
        assert!(e.to_string().contains("topk"), "{e}");
    }

    #[test]
    fn validation_names_each_key() {
        let mut s = HotspotSettings::new("a:1");
        s.table = "a.b.c".into();
        s.key_column = " ".into();
        s.skus = vec![1, 2, 1];
        s.auto_detect = Some(AutoDetect {
            top_k: 0,
            min_qps: 0,
            demote_ratio: 1.5,
            cool_down_ms: 0,
        });
        let paths: Vec<String> = s.validate().into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "hotspot.table",
                "hotspot.key_column",
                "hotspot.skus[2]",
                "hotspot.auto_detect.top_k",
                "hotspot.auto_detect.min_qps",
                "hotspot.auto_detect.demote_ratio",
            ]
        );
    }

    #[test]
    fn moves_parse_and_validate() {
        let s = parse(
            "[hotspot]\ninstance = \"a:1\"\nauto_detect = { min_qps = 50 }\nauto_move = true\nmove_drain_ms = 500\n",
        )
        .expect("parses");
        assert!(s.auto_move);
        assert_eq!((s.move_drain_ms, s.move_wait_ms), (500, 5000));
        assert!(s.validate().is_empty());
        let mut s = HotspotSettings::new("a:1");
        assert!(!s.auto_move, "off by default");
        s.auto_move = true;
        s.move_wait_ms = 0;
        let paths: Vec<String> = s.validate().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["hotspot.move_wait_ms", "hotspot.auto_move"]);
    }

    #[test]
    fn table_names_match_case_insensitively_with_or_without_schema() {
        let mut s = HotspotSettings::new("a:1");
        assert!(s.is_table("sku_stock"));
        assert!(s.is_table("SKU_STOCK"));
        assert!(s.is_table("shop.sku_stock"));
        assert!(!s.is_table("sku_stocks"));
        assert!(!s.is_table("orders"));
        s.table = "shop.sku_stock".into();
        assert!(s.is_table("Shop.Sku_Stock"));
        assert!(s.is_table("sku_stock"));
        assert!(!s.is_table("other.sku_stock"));
    }
}
