//! Peak protection: rules that match statements and rate-limit, queue, refuse, reroute or delay
//! them, so that on a peak day checkout keeps running while non-core work is shed on purpose.
//!
//! # The rule model
//! A rule (`[[limits.rules]]` in `peakgate.toml`, see [`RuleConfig`]) has a unique name, match
//! fields and one action. Every match field it gives must match (`user`, `schema`, `table`,
//! `kind`, `digest`, `hint`); a rule with none matches every statement. Rules are tried in
//! order and **the first enabled rule with an action that matches decides**, as
//! `[[routing.rules]]` do: put narrow rules before broad ones. The actions:
//! - `rate_limit = { qps, burst }`: a token bucket per rule (shared by every session); a statement
//!   finding it empty is refused with ERR 1226 (SQLSTATE 42000).
//! - `max_concurrency = { limit, queue, timeout_ms }`: `limit` slots per rule; a statement waits in
//!   a queue of at most `queue` for up to `timeout_ms`, else ERR 1205 ("retry").
//! - `deny = { code, sqlstate, message }`: a feature switch; default ERR 1290/HY000.
//! - `route = "reporting" | "primary" | "replica"`: as a `route=` hint (a hint in the statement wins).
//! - `delay_ms = N`: hold the statement N ms, then run it.
//!
//! Every refusal's message names the rule. `priority = "critical" | "normal"` is not an action: it
//! marks the statements a rule matches for write throttling ([`Limits::priority`], first enabled
//! rule with a priority that matches; default normal). A rule may carry a priority alone.
//!
//! # Decisions
//! The session calls [`Limits::check`] once per statement with a [`Query`] and acts on the
//! [`Decision`]: run it, send the [`Refusal`] as an ERR packet, await [`Admission::admit`] and hold
//! the [`Permit`] until the answer is sent, sleep the delay, or route as told.
//!
//! Cost: with no rule that decides, `check` is one relaxed atomic load. With rules, it takes an
//! `ArcSwap` snapshot (no lock), runs the match tests (no allocation), and the matched action
//! costs relaxed counter increments, one compare-exchange (token bucket), a semaphore
//! `try_acquire`, or `Arc` clones of a refusal built when the rules were loaded. The clock is read
//! only when a rate limit matches.
//!
//! # Run-time changes
//! [`Limits::replace_rules`] (and the one-rule helpers) validate the new list and swap it in;
//! a rule that keeps its name keeps its counters, and its bucket or slots when their settings did
//! not change. [`Limits::save`] writes the rules to the runtime file, [`Limits::load_runtime`]
//! reads them back at start (see `persist.rs`).
//!
//! # Layout
//! - `config.rs`: the serde types and validation with key paths and lines.
//! - `rule.rs`: a compiled rule: matcher, action state, counters.
//! - `bucket.rs`: the lock-free token bucket. `concurrency.rs`: slots and wait queue.
//! - `persist.rs`: the runtime file.

mod bucket;
mod concurrency;
pub mod config;
mod persist;
mod rule;
#[cfg(test)]
mod tests;

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use peakgate_router::{RouteHint, StatementKind};
use serde::Serialize;

pub use concurrency::{Admission, CONCURRENCY_CODE, CONCURRENCY_SQLSTATE, Permit};
pub use config::{
    Deny, LimitsConfig, MaxConcurrency, Priority, RateLimit, RouteTarget, RuleConfig,
    validate_rules,
};
pub use persist::{read_runtime_file, write_runtime_file};
pub use rule::{RATE_LIMIT_CODE, RATE_LIMIT_SQLSTATE};

use rule::{Action, Rule, RuleCounters};

/// Counter, label `rule`: statements a rule matched and decided.
pub const RULE_HITS: &str = "peakgate_limit_rule_hits_total";
/// Counter, label `rule`: statements a rule refused (deny, rate, queue full, wait timeout).
pub const RULE_REFUSED: &str = "peakgate_limit_rule_refused_total";
/// Counter, label `rule`: statements that waited for a `max_concurrency` slot.
pub const RULE_WAITED: &str = "peakgate_limit_rule_waited_total";
/// Counter, label `rule`: statements held back by `delay_ms`.
pub const RULE_DELAYED: &str = "peakgate_limit_rule_delayed_total";
/// Counter, label `rule`: statements a `route` rule sent elsewhere.
pub const RULE_ROUTED: &str = "peakgate_limit_rule_routed_total";
/// Gauge, label `rule`: statements holding a `max_concurrency` slot now.
pub const RULE_IN_FLIGHT: &str = "peakgate_limit_rule_in_flight";
/// Gauge, label `rule`: statements waiting for a `max_concurrency` slot now.
pub const RULE_QUEUED: &str = "peakgate_limit_rule_queued";

/// Errors of rule changes and of the runtime file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    #[error("no rule named \"{0}\"")]
    NoSuchRule(String),
}

/// What the rules see of one statement. Borrowed from the session; building it allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// The client user.
    pub user: &'a str,
    /// The session's current schema.
    pub schema: Option<&'a str>,
    /// The tables the statement names, `t` or `schema.t` (empty when unknown).
    pub tables: &'a [&'a str],
    /// The statement kind.
    pub kind: StatementKind,
    /// The statement digest (`Statement::digest`). Rules match the 64-bit hash; the digest text
    /// is not needed (a collision of two shapes would take 2^32 digests to become likely).
    pub digest: u64,
    /// The `/* peakgate: key=value */` pairs of the statement's hint comments.
    pub hints: &'a [(&'a str, &'a str)],
}

/// A refusal: the ERR packet to send. Built when the rules are loaded; cloning it is three `Arc`
/// increments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule that refused.
    pub rule: Arc<str>,
    /// MySQL error code.
    pub code: u16,
    /// SQLSTATE, 5 characters.
    pub sqlstate: Arc<str>,
    /// Message for the client; names the rule.
    pub message: Arc<str>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ERROR {} ({}): {}",
            self.code, self.sqlstate, self.message
        )
    }
}

/// What to do with one statement.
#[derive(Debug)]
#[must_use]
pub enum Decision {
    /// No rule decided: run it as usual.
    Allow,
    /// Refuse it with this ERR (deny, or rate limit exceeded).
    Deny(Refusal),
    /// A `max_concurrency` rule matched: await [`Admission::admit`] (immediate when a slot is
    /// free), then run the statement holding the [`Permit`] until its answer is sent; an `Err`
    /// is the ERR to send instead.
    Wait(Admission),
    /// Sleep `duration`, then run it.
    Delay { rule: Arc<str>, duration: Duration },
    /// Run it on `route`, as if the statement carried that `route=` hint.
    Route { rule: Arc<str>, route: RouteHint },
}

/// One rule as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleStatus {
    pub name: String,
    pub enabled: bool,
    /// rate_limit, max_concurrency, deny, route, delay_ms, or none (priority only).
    pub action: &'static str,
    pub priority: Priority,
    pub hits: u64,
    pub refused: u64,
    pub waited: u64,
    pub delayed: u64,
    pub routed: u64,
    /// `max_concurrency`: statements holding a slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u32>,
    /// `max_concurrency`: statements waiting for a slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued: Option<u32>,
    /// `rate_limit`: tokens in the bucket now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

/// The live rules. Shared by every session (`Arc<Limits>`); changed through `&self`.
#[derive(Debug)]
pub struct Limits {
    rules: ArcSwap<Vec<Rule>>,
    /// Some enabled rule has an action: the one load the no-rule hot path pays.
    any_decides: AtomicBool,
    /// Some enabled rule has a priority.
    any_priority: AtomicBool,
    /// Some enabled rule sets `max_execution_ms`.
    any_timeout: AtomicBool,
    /// Zero of the token buckets' clocks.
    epoch: Instant,
    /// Serialises changes (admin requests), so two edits cannot lose each other's rules.
    edit: Mutex<()>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            rules: ArcSwap::from_pointee(Vec::new()),
            any_decides: AtomicBool::new(false),
            any_priority: AtomicBool::new(false),
            any_timeout: AtomicBool::new(false),
            epoch: Instant::now(),
            edit: Mutex::new(()),
        }
    }
}

impl Limits {
    /// Live rules from a validated list (validated again here: the runtime file or the admin API
    /// may be the source).
    pub fn new(rules: Vec<RuleConfig>) -> Result<Self, Error> {
        let limits = Self::default();
        limits.replace_rules(rules)?;
        Ok(limits)
    }

    /// Whether any enabled rule can decide (one relaxed load; callers skip building a
    /// [`Query`]'s tables when not).
    pub fn is_active(&self) -> bool {
        self.any_decides.load(Ordering::Relaxed)
    }

    /// Whether any enabled rule carries a priority or an execution time limit (modifiers the
    /// session asks about even when no rule decides).
    pub fn has_priorities(&self) -> bool {
        self.any_priority.load(Ordering::Relaxed) || self.any_timeout.load(Ordering::Relaxed)
    }

    /// The execution time limit for `q`: the first enabled rule with `max_execution_ms` that
    /// matches, with its name.
    pub fn max_execution(&self, q: &Query<'_>) -> Option<(Arc<str>, Duration)> {
        if !self.any_timeout.load(Ordering::Relaxed) {
            return None;
        }
        self.rules.load().iter().find_map(|r| {
            r.max_execution()
                .filter(|_| r.matches(q))
                .map(|d| (r.name.clone(), d))
        })
    }

    /// What to do with `q` now. See [`Decision`].
    pub fn check(&self, q: &Query<'_>) -> Decision {
        self.decide(q, Instant::now)
    }

    /// [`Limits::check`] at a given time (tests, or a caller that already read the clock).
    pub fn check_at(&self, q: &Query<'_>, now: Instant) -> Decision {
        self.decide(q, || now)
    }

    fn decide(&self, q: &Query<'_>, now: impl FnOnce() -> Instant) -> Decision {
        // Relaxed: a stale answer only means a rule change takes effect a moment later.
        if !self.any_decides.load(Ordering::Relaxed) {
            return Decision::Allow;
        }
        let rules = self.rules.load();
        let Some(rule) = rules.iter().find(|r| r.decides() && r.matches(q)) else {
            return Decision::Allow;
        };
        let c = &rule.counters;
        c.hits.inc();
        match &rule.action {
            Action::None => Decision::Allow,
            Action::RateLimit { bucket, refusal } => {
                if bucket.try_take(self.nanos(now())) {
                    Decision::Allow
                } else {
                    c.refused.inc();
                    Decision::Deny(refusal.clone())
                }
            }
            Action::Concurrency(limit) => Decision::Wait(Admission {
                limit: limit.clone(),
                counters: c.clone(),
            }),
            Action::Deny(refusal) => {
                c.refused.inc();
                Decision::Deny(refusal.clone())
            }
            Action::Route(route) => {
                c.routed.inc();
                Decision::Route {
                    rule: rule.name.clone(),
                    route: *route,
                }
            }
            Action::Delay(duration) => {
                c.delayed.inc();
                Decision::Delay {
                    rule: rule.name.clone(),
                    duration: *duration,
                }
            }
        }
    }

    /// The priority of `q` for write throttling: the first enabled rule with a priority that
    /// matches gives it; default [`Priority::Normal`]. Counts nothing.
    pub fn priority(&self, q: &Query<'_>) -> Priority {
        if !self.any_priority.load(Ordering::Relaxed) {
            return Priority::Normal;
        }
        self.rules
            .load()
            .iter()
            .find_map(|r| r.priority().filter(|_| r.matches(q)))
            .unwrap_or_default()
    }

    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The rules as configured, in order (for the admin API and the runtime file).
    pub fn rules(&self) -> Vec<RuleConfig> {
        self.rules.load().iter().map(|r| r.config.clone()).collect()
    }

    /// Replaces every rule after validating the list (nothing changes on error). Rules that keep
    /// their name keep their counters, and their bucket or slots when those settings are equal.
    pub fn replace_rules(&self, rules: Vec<RuleConfig>) -> Result<(), Error> {
        let _edit = self.edit.lock().unwrap_or_else(|e| e.into_inner());
        self.install(rules)
    }

    /// Adds `rule`, or replaces the rule of the same name in its place.
    pub fn upsert_rule(&self, rule: RuleConfig) -> Result<(), Error> {
        let _edit = self.edit.lock().unwrap_or_else(|e| e.into_inner());
        let mut rules = self.rules();
        match rules.iter_mut().find(|r| r.name == rule.name) {
            Some(slot) => *slot = rule,
            None => rules.push(rule),
        }
        self.install(rules)
    }

    /// Removes the rule named `name`.
    pub fn remove_rule(&self, name: &str) -> Result<(), Error> {
        let _edit = self.edit.lock().unwrap_or_else(|e| e.into_inner());
        let mut rules = self.rules();
        let before = rules.len();
        rules.retain(|r| r.name != name);
        if rules.len() == before {
            return Err(Error::NoSuchRule(name.into()));
        }
        self.install(rules)
    }

    /// Switches the rule named `name` on or off (a feature switch), keeping everything else.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), Error> {
        let _edit = self.edit.lock().unwrap_or_else(|e| e.into_inner());
        let mut rules = self.rules();
        let rule = rules
            .iter_mut()
            .find(|r| r.name == name)
            .ok_or_else(|| Error::NoSuchRule(name.into()))?;
        rule.enabled = enabled;
        self.install(rules)
    }

    /// Validates and swaps in `rules`; the caller holds `edit`.
    fn install(&self, rules: Vec<RuleConfig>) -> Result<(), Error> {
        let errs = validate_rules(&rules, "rules", None);
        if !errs.is_empty() {
            return Err(Error::Invalid(errs));
        }
        let old = self.rules.load_full();
        let new: Vec<Rule> = rules
            .into_iter()
            .map(|cfg| {
                let previous = old.iter().find(|r| *r.name == *cfg.name);
                Rule::new(cfg, previous)
            })
            .collect();
        let decides = new.iter().any(Rule::decides);
        let priority = new.iter().any(|r| r.priority().is_some());
        let timeout = new.iter().any(|r| r.max_execution().is_some());
        self.rules.store(Arc::new(new));
        self.any_decides.store(decides, Ordering::Relaxed);
        self.any_priority.store(priority, Ordering::Relaxed);
        self.any_timeout.store(timeout, Ordering::Relaxed);
        Ok(())
    }

    /// Every rule with its counters, in order.
    pub fn snapshot(&self) -> Vec<RuleStatus> {
        self.snapshot_at(Instant::now())
    }

    /// [`Limits::snapshot`] with bucket levels at `now`.
    pub fn snapshot_at(&self, now: Instant) -> Vec<RuleStatus> {
        let now = self.nanos(now);
        self.rules
            .load()
            .iter()
            .map(|r| {
                let c = &r.counters;
                let (in_flight, queued, tokens) = match &r.action {
                    Action::Concurrency(l) => (Some(l.in_flight()), Some(l.waiting()), None),
                    Action::RateLimit { bucket, .. } => (None, None, Some(bucket.available(now))),
                    _ => (None, None, None),
                };
                RuleStatus {
                    name: r.config.name.clone(),
                    enabled: r.config.enabled,
                    action: r.config.action_name().unwrap_or("none"),
                    priority: r.config.priority.unwrap_or_default(),
                    hits: c.hits.get(),
                    refused: c.refused.get(),
                    waited: c.waited.get(),
                    delayed: c.delayed.get(),
                    routed: c.routed.get(),
                    in_flight,
                    queued,
                    tokens,
                }
            })
            .collect()
    }

    /// Appends the per-rule metrics in the Prometheus text format (names are the `RULE_*`
    /// constants; rule names need no escaping, validation keeps them to `[A-Za-z0-9_.-]`).
    pub fn render_metrics(&self, out: &mut String) {
        let rules = self.snapshot();
        type Value = fn(&RuleStatus) -> Option<u64>;
        let series: [(&str, &str, Value); 7] = [
            (RULE_HITS, "counter", |r| Some(r.hits)),
            (RULE_REFUSED, "counter", |r| Some(r.refused)),
            (RULE_WAITED, "counter", |r| Some(r.waited)),
            (RULE_DELAYED, "counter", |r| Some(r.delayed)),
            (RULE_ROUTED, "counter", |r| Some(r.routed)),
            (RULE_IN_FLIGHT, "gauge", |r| r.in_flight.map(u64::from)),
            (RULE_QUEUED, "gauge", |r| r.queued.map(u64::from)),
        ];
        for (name, kind, value) in series {
            if rules.iter().all(|r| value(r).is_none()) {
                continue;
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for r in &rules {
                if let Some(v) = value(r) {
                    let _ = writeln!(out, "{name}{{rule=\"{}\"}} {v}", r.name);
                }
            }
        }
    }
}
