//! A rule as [`super::Limits`] runs it: the match fields compiled for a quick test, the action with
//! its live state (token bucket, slots), and the counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use peakgate_router::{RouteHint, StatementKind};

use super::bucket::TokenBucket;
use super::concurrency::ConcurrencyLimit;
use super::config::{Priority, RuleConfig, split_hint};
use super::{Query, Refusal};

/// ER_USER_LIMIT_REACHED: the MySQL error for an exceeded per-account resource (queries per hour).
pub const RATE_LIMIT_CODE: u16 = 1226;
/// SQLSTATE of [`RATE_LIMIT_CODE`].
pub const RATE_LIMIT_SQLSTATE: &str = "42000";

/// A counter bumped on the hot path (relaxed; read for status and metrics only).
#[derive(Debug, Default)]
pub(crate) struct Count(AtomicU64);

impl Count {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What happened to the statements a rule matched. Kept across rule changes while the name stays.
#[derive(Debug, Default)]
pub(crate) struct RuleCounters {
    /// Statements the rule matched (and decided).
    pub(crate) hits: Count,
    /// Statements refused: denied, over the rate, queue full, wait timed out.
    pub(crate) refused: Count,
    /// Statements that waited in the queue for a slot.
    pub(crate) waited: Count,
    /// Statements held back by `delay_ms`.
    pub(crate) delayed: Count,
    /// Statements routed by the rule.
    pub(crate) routed: Count,
}

/// The compiled match fields; `None` matches anything.
#[derive(Debug, Default)]
struct Matcher {
    kind: Option<StatementKind>,
    /// The digest hashes that match: a 16-hex-digit digest, or the hash of the text as written
    /// and of the text normalised.
    digests: Vec<u64>,
    user: Option<Box<str>>,
    schema: Option<Box<str>>,
    /// `(schema, table)`.
    table: Option<(Option<Box<str>>, Box<str>)>,
    /// `(key, value)`.
    hint: Option<(Box<str>, Box<str>)>,
}

impl Matcher {
    fn new(cfg: &RuleConfig) -> Self {
        let boxed = |s: &Option<String>| s.as_deref().map(|s| Box::from(s.trim()));
        Matcher {
            kind: cfg
                .kind
                .as_deref()
                .and_then(|k| StatementKind::from_name(&k.to_ascii_lowercase())),
            digests: cfg.digest.as_deref().map(digest_hashes).unwrap_or_default(),
            user: boxed(&cfg.user),
            schema: boxed(&cfg.schema),
            table: cfg
                .table
                .as_deref()
                .map(|t| match t.trim().split_once('.') {
                    Some((schema, table)) => (Some(schema.into()), table.into()),
                    None => (None, t.trim().into()),
                }),
            hint: cfg
                .hint
                .as_deref()
                .and_then(split_hint)
                .map(|(k, v)| (k.into(), v.into())),
        }
    }

    /// Cheapest tests first; no allocation.
    fn matches(&self, q: &Query<'_>) -> bool {
        if self.kind.is_some_and(|k| k != q.kind) {
            return false;
        }
        if !self.digests.is_empty() && !self.digests.contains(&q.digest) {
            return false;
        }
        if self.user.as_deref().is_some_and(|u| u != q.user) {
            return false;
        }
        if let Some(s) = &self.schema
            && !q.schema.is_some_and(|qs| qs.eq_ignore_ascii_case(s))
        {
            return false;
        }
        if let Some((key, value)) = &self.hint
            && !q
                .hints
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case(key) && v.eq_ignore_ascii_case(value))
        {
            return false;
        }
        if let Some((schema, table)) = &self.table
            && !q
                .tables
                .iter()
                .any(|t| table_matches(schema.as_deref(), table, t, q.schema))
        {
            return false;
        }
        true
    }
}

/// Whether a statement's table `named` (`t` or `s.t`, in `current` schema) is the rule's table.
fn table_matches(schema: Option<&str>, table: &str, named: &str, current: Option<&str>) -> bool {
    let (named_schema, named_table) = match named.split_once('.') {
        Some((s, t)) => (Some(s), t),
        None => (current, named),
    };
    let eq = |a: &str, b: &str| {
        a.trim_matches('`')
            .eq_ignore_ascii_case(b.trim_matches('`'))
    };
    eq(table, named_table)
        && match schema {
            None => true,
            Some(s) => named_schema.is_some_and(|n| eq(s, n)),
        }
}

/// The digest hashes a rule's `digest` value stands for.
fn digest_hashes(value: &str) -> Vec<u64> {
    let value = value.trim();
    if value.len() == 16
        && let Ok(d) = u64::from_str_radix(value, 16)
    {
        return vec![d];
    }
    let written = peakgate_router::digest::fnv1a64(value.as_bytes());
    let normalised = peakgate_router::classify::scan(value.as_bytes()).digest;
    if written == normalised {
        vec![written]
    } else {
        vec![written, normalised]
    }
}

/// A rule's action with its live state.
#[derive(Debug)]
pub(crate) enum Action {
    /// Only a priority: never decides.
    None,
    RateLimit {
        bucket: Arc<TokenBucket>,
        refusal: Refusal,
    },
    Concurrency(Arc<ConcurrencyLimit>),
    Deny(Refusal),
    Route(RouteHint),
    Delay(Duration),
}

/// One rule, compiled.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) name: Arc<str>,
    matcher: Matcher,
    pub(crate) action: Action,
    pub(crate) counters: Arc<RuleCounters>,
    pub(crate) config: RuleConfig,
}

impl Rule {
    /// Compiles a validated rule. `previous` is the rule of the same name being replaced: its
    /// counters carry over, and so do its bucket or slots when their settings did not change
    /// (statements holding a slot of changed settings give it back to the old semaphore).
    pub(crate) fn new(cfg: RuleConfig, previous: Option<&Rule>) -> Self {
        let name: Arc<str> = cfg.name.as_str().into();
        let action = if let Some(r) = cfg.rate_limit {
            let bucket = match previous {
                Some(Rule {
                    action: Action::RateLimit { bucket, .. },
                    config,
                    ..
                }) if config.rate_limit == Some(r) => bucket.clone(),
                _ => Arc::new(TokenBucket::new(r.qps, r.effective_burst())),
            };
            Action::RateLimit {
                bucket,
                refusal: Refusal {
                    rule: name.clone(),
                    code: RATE_LIMIT_CODE,
                    sqlstate: RATE_LIMIT_SQLSTATE.into(),
                    message: format!(
                        "PeakGate rule \"{name}\": more than {} statements per second (burst {}); retry later",
                        r.qps,
                        r.effective_burst()
                    )
                    .into(),
                },
            }
        } else if let Some(c) = cfg.max_concurrency {
            match previous {
                Some(Rule {
                    action: Action::Concurrency(limit),
                    config,
                    ..
                }) if config.max_concurrency == Some(c) => Action::Concurrency(limit.clone()),
                _ => Action::Concurrency(Arc::new(ConcurrencyLimit::new(
                    &name,
                    c.limit,
                    c.queue,
                    c.timeout_ms,
                ))),
            }
        } else if let Some(d) = &cfg.deny {
            let message = match &d.message {
                Some(m) => format!("{} (PeakGate rule \"{name}\")", m.trim()),
                None => format!(
                    "PeakGate rule \"{name}\" refuses this statement (feature switched off)"
                ),
            };
            Action::Deny(Refusal {
                rule: name.clone(),
                code: d.code,
                sqlstate: d.sqlstate.as_str().into(),
                message: message.into(),
            })
        } else if let Some(r) = cfg.route {
            Action::Route(r.hint())
        } else if let Some(ms) = cfg.delay_ms {
            Action::Delay(Duration::from_millis(ms))
        } else {
            Action::None
        };
        Rule {
            matcher: Matcher::new(&cfg),
            counters: previous.map(|p| p.counters.clone()).unwrap_or_default(),
            name,
            action,
            config: cfg,
        }
    }

    /// Whether the rule decides what happens to statements it matches.
    pub(crate) fn decides(&self) -> bool {
        self.config.enabled && !matches!(self.action, Action::None)
    }

    /// The execution time limit this rule gives, when enabled and set.
    pub(crate) fn max_execution(&self) -> Option<std::time::Duration> {
        self.config
            .max_execution_ms
            .filter(|_| self.config.enabled)
            .map(std::time::Duration::from_millis)
    }

    /// The priority this rule gives, when enabled and set.
    pub(crate) fn priority(&self) -> Option<Priority> {
        self.config.priority.filter(|_| self.config.enabled)
    }

    pub(crate) fn matches(&self, q: &Query<'_>) -> bool {
        self.matcher.matches(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_by_name_or_qualified_name() {
        let m = |rule_schema, named, current| table_matches(rule_schema, "Reviews", named, current);
        assert!(m(None, "reviews", None));
        assert!(m(None, "shop.reviews", Some("other")));
        assert!(m(None, "`reviews`", None));
        assert!(!m(None, "reviews_old", None));
        assert!(m(Some("shop"), "shop.reviews", None));
        assert!(m(Some("shop"), "reviews", Some("SHOP")));
        assert!(!m(Some("shop"), "reviews", Some("other")));
        assert!(!m(Some("shop"), "reviews", None));
        assert!(!m(Some("shop"), "other.reviews", Some("shop")));
    }

    #[test]
    fn digest_values_hex_or_text() {
        assert_eq!(digest_hashes("00000000000000ff"), [255]);
        let sql = "SELECT * FROM products WHERE id = 42";
        let st = peakgate_router::classify::scan(sql.as_bytes());
        assert_eq!(st.digest_text, "select * from products where id = ?");
        assert!(digest_hashes(sql).contains(&st.digest));
        assert!(digest_hashes(&st.digest_text).contains(&st.digest));
        assert!(digest_hashes(&format!("{:016x}", st.digest)).contains(&st.digest));
    }
}
