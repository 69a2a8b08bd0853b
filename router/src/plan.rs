//! Where one statement runs inside its shard: the primary, a replica fresh enough for this
//! session, or a reporting instance. Start at [`plan`].
//!
//! The proxy calls [`plan`] for every statement that is not bound to a pinned connection (inside a
//! transaction everything stays on the transaction's connection; the proxy handles that before
//! asking). The replicas' state comes in through the [`ReplicaView`] trait, which the proxy
//! implements over its lock-free health snapshot, so this module stays pure and every rule below is
//! a unit test:
//!
//! 1. A `route=` hint wins ([`RouteHint`]); then the first matching [`Rule`] (by user, by kind).
//! 2. Everything that is not a plain read goes to the primary: writes, DDL, transaction control
//!    (except `START TRANSACTION READ ONLY`), session and admin statements, locking reads
//!    (`FOR UPDATE`, `LOCK IN SHARE MODE`), reads with side effects or connection-bound results
//!    (`GET_LOCK`, `LAST_INSERT_ID()`, `@var :=`, `SELECT ... INTO`, `SQL_CALC_FOUND_ROWS`), and
//!    any read while autocommit is off (it would open a transaction the next write must join).
//! 3. A read goes to the eligible replica with the fewest requests in flight. Eligible means healthy
//!    and under the lag limit for the hold-down period ([`LagGate`]). Read-your-writes narrows the
//!    choice: in `gtid` mode only replicas known to have applied the session's last write qualify;
//!    when none does yet, the least busy eligible replica is asked to wait for it
//!    (`MASTER_GTID_WAIT`, [`Plan::wait_for`]); in `sticky_primary` mode reads go to the primary
//!    for a while after a write.
//! 4. When no replica is eligible: the primary (`lag_fallback = "primary"`) or an error.
//!
//! Reporting instances take only reporting reads (hint or rule), never OLTP reads; when none is
//! eligible, a reporting read falls back to the replicas, then as in 4.

pub mod shard;

use crate::classify::{Statement, StatementKind};
use crate::hints::RouteHint;

/// The role an instance plays in its shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Primary,
    Replica,
    Reporting,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Reporting => "reporting",
        }
    }
}

/// One MariaDB GTID: `domain-server-sequence`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

impl Gtid {
    /// Parses `0-1-100`; `None` for anything else (the empty `last_gtid` of a session that wrote nothing).
    pub fn parse(s: &str) -> Option<Gtid> {
        let mut it = s.trim().splitn(3, '-');
        let domain = it.next()?.parse().ok()?;
        let server = it.next()?.parse().ok()?;
        let seq = it.next()?.parse().ok()?;
        Some(Gtid {
            domain,
            server,
            seq,
        })
    }
}

impl std::fmt::Display for Gtid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

/// A replica's applied position: the highest sequence number per replication domain
/// (`@@gtid_slave_pos`). Sequence numbers only grow within a domain, so a position that has
/// reached a GTID stays past it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GtidPos(Vec<Gtid>);

impl GtidPos {
    /// Parses `0-1-5,11-3311-9` (empty text: no position). Per domain the highest sequence counts.
    pub fn parse(s: &str) -> GtidPos {
        let mut v: Vec<Gtid> = s.split(',').filter_map(Gtid::parse).collect();
        v.sort_unstable_by(|a, b| a.domain.cmp(&b.domain).then(b.seq.cmp(&a.seq)));
        v.dedup_by_key(|g| g.domain);
        GtidPos(v)
    }

    /// Whether the transaction `g` has been applied here.
    pub fn has_reached(&self, g: &Gtid) -> bool {
        self.0
            .iter()
            .any(|p| p.domain == g.domain && p.seq >= g.seq)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for GtidPos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, g) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{g}")?;
        }
        Ok(())
    }
}

/// What the planner may ask about a replica or reporting instance. The proxy answers from atomics
/// its monitor updates; tests answer from plain structs.
pub trait ReplicaView {
    /// Healthy and under the lag limit (after the hold-down period).
    fn is_eligible(&self) -> bool;
    /// Known to have applied `g` (from the last position the monitor read).
    fn has_reached(&self, g: &Gtid) -> bool;
    /// Requests in flight on this instance now.
    fn in_flight(&self) -> u32;
}

impl<T: ReplicaView> ReplicaView for std::sync::Arc<T> {
    fn is_eligible(&self) -> bool {
        (**self).is_eligible()
    }
    fn has_reached(&self, g: &Gtid) -> bool {
        (**self).has_reached(g)
    }
    fn in_flight(&self) -> u32 {
        (**self).in_flight()
    }
}

/// Read-your-writes: how a session's reads see its own writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadYourWrites {
    /// No guarantee: reads may see a replica that has not applied the session's writes.
    Off,
    /// Reads go to the primary for this many milliseconds after the session's last write.
    StickyPrimary { ms: u64 },
    /// Reads go to a replica that has applied the session's last write (GTID), or wait for one up
    /// to `wait_ms` (0: do not wait), or go to the primary.
    Gtid { wait_ms: u64 },
}

/// What to do with a read when no replica is eligible.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LagFallback {
    /// Read the primary.
    #[default]
    Primary,
    /// Refuse the read with an error.
    Error,
}

/// A routing rule from the config: statements of `user` and/or `kind` go to `route`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Only this client user (any user when `None`).
    pub user: Option<String>,
    /// Only this statement kind (any kind when `None`).
    pub kind: Option<StatementKind>,
    /// Only statements naming one of these tables (lower-case `table` or `schema.table`; any
    /// statement when empty).
    pub tables: Vec<String>,
    /// Where matching statements go (as a hint would send them).
    pub route: RouteHint,
}

impl Rule {
    fn matches(&self, facts: &SessionFacts<'_>, kind: StatementKind) -> bool {
        self.user.as_deref().is_none_or(|u| u == facts.user)
            && self.kind.is_none_or(|k| k == kind)
            && (self.tables.is_empty()
                || facts
                    .tables
                    .iter()
                    .any(|t| self.tables.iter().any(|r| table_matches(r, t))))
    }
}

/// Whether rule table `rule` (`t` or `s.t`) names statement table `t` (`s.t`, schema resolved).
fn table_matches(rule: &str, table: &str) -> bool {
    if rule.contains('.') {
        rule.eq_ignore_ascii_case(table)
    } else {
        table
            .rsplit('.')
            .next()
            .is_some_and(|name| name.eq_ignore_ascii_case(rule))
    }
}

/// The read-routing policy from `[routing]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadPolicy {
    /// Send reads to replicas at all (false: everything on the primary).
    pub replica_reads: bool,
    pub read_your_writes: ReadYourWrites,
    pub lag_fallback: LagFallback,
    pub rules: Vec<Rule>,
}

impl ReadPolicy {
    /// Whether a rule matches on tables (then the proxy must tell the planner a statement's tables).
    pub fn needs_tables(&self) -> bool {
        self.rules.iter().any(|r| !r.tables.is_empty())
    }
}

impl Default for ReadPolicy {
    fn default() -> Self {
        Self {
            replica_reads: true,
            read_your_writes: ReadYourWrites::Gtid { wait_ms: 50 },
            lag_fallback: LagFallback::Primary,
            rules: Vec::new(),
        }
    }
}

/// What the planner needs to know about the session.
#[derive(Clone, Debug, Default)]
pub struct SessionFacts<'a> {
    /// The client user.
    pub user: &'a str,
    /// `@@autocommit` is on.
    pub autocommit: bool,
    /// Milliseconds since the session's last write on this shard's primary (`None`: never wrote).
    pub since_last_write_ms: Option<u64>,
    /// The GTID of the session's last write on this shard.
    pub last_gtid: Option<Gtid>,
    /// The tables the statement names, `schema.table` (filled only when a rule matches tables).
    pub tables: &'a [String],
}

/// Where the statement runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Primary,
    /// Index into the shard's replicas.
    Replica(usize),
    /// Index into the shard's reporting instances.
    Reporting(usize),
}

impl Target {
    pub fn role(self) -> Role {
        match self {
            Target::Primary => Role::Primary,
            Target::Replica(_) => Role::Replica,
            Target::Reporting(_) => Role::Reporting,
        }
    }
}

/// Why a statement goes where it goes (for tracing, metrics and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A `route=` hint.
    Hint,
    /// A configured rule.
    Rule,
    /// Not a plain read (write, DDL, transaction control, session, admin, unknown).
    NotRead,
    /// A locking read (`FOR UPDATE`, `LOCK IN SHARE MODE`).
    LockingRead,
    /// A read with side effects or a connection-bound result.
    SideEffects,
    /// Autocommit is off: the read would open a transaction.
    NoAutocommit,
    /// Replica reads are switched off.
    ReplicaReadsOff,
    /// A read on a replica.
    Balanced,
    /// A read on a replica that has applied the session's last write.
    ReadYourWrites,
    /// Read-your-writes: no replica is known to have the write; the primary reads it.
    RywPrimary,
    /// Read-your-writes `sticky_primary`: the session wrote recently.
    StickyPrimary,
    /// No replica is eligible; the primary reads it.
    LagFallback,
    /// `START TRANSACTION READ ONLY` on a replica.
    ReadOnlyTransaction,
    /// A reporting read.
    Reporting,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Hint => "hint",
            Reason::Rule => "rule",
            Reason::NotRead => "not_read",
            Reason::LockingRead => "locking_read",
            Reason::SideEffects => "side_effects",
            Reason::NoAutocommit => "no_autocommit",
            Reason::ReplicaReadsOff => "replica_reads_off",
            Reason::Balanced => "balanced",
            Reason::ReadYourWrites => "read_your_writes",
            Reason::RywPrimary => "ryw_primary",
            Reason::StickyPrimary => "sticky_primary",
            Reason::LagFallback => "lag_fallback",
            Reason::ReadOnlyTransaction => "read_only_transaction",
            Reason::Reporting => "reporting",
        }
    }
}

/// The decision for one statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub target: Target,
    pub reason: Reason,
    /// Run `MASTER_GTID_WAIT` for this GTID on the replica first; on timeout, read the primary.
    pub wait_for: Option<Gtid>,
}

impl Plan {
    fn primary(reason: Reason) -> Plan {
        Plan {
            target: Target::Primary,
            reason,
            wait_for: None,
        }
    }
}

/// Why a statement cannot run anywhere.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// `lag_fallback = "error"` and no replica is eligible.
    #[error(
        "no replica is within the lag limit and routing.lag_fallback = \"error\"; retry later or route=primary"
    )]
    NoEligibleReplica,
}

/// Plans `stmt` for a session in `facts`, given the shard's `replicas` and `reporting` instances
/// (`exclude`: an instance that just failed this statement, by target).
pub fn plan<R: ReplicaView>(
    stmt: &Statement,
    facts: &SessionFacts<'_>,
    replicas: &[R],
    reporting: &[R],
    policy: &ReadPolicy,
    exclude: Option<Target>,
) -> Result<Plan, PlanError> {
    let (route, by) = match stmt.hints.route {
        Some(r) => (Some(r), Reason::Hint),
        None => (
            policy
                .rules
                .iter()
                .find(|r| r.matches(facts, stmt.kind))
                .map(|r| r.route),
            Reason::Rule,
        ),
    };
    if route == Some(RouteHint::Primary) {
        return Ok(Plan::primary(by));
    }
    if let Some(reason) = needs_primary(stmt, facts) {
        return Ok(Plan::primary(reason));
    }
    if !policy.replica_reads && route.is_none() {
        return Ok(Plan::primary(Reason::ReplicaReadsOff));
    }
    if route == Some(RouteHint::Reporting)
        && let Some(i) = least_busy(
            reporting,
            |i| exclude != Some(Target::Reporting(i)),
            |_| true,
        )
    {
        return Ok(Plan {
            target: Target::Reporting(i),
            reason: Reason::Reporting,
            wait_for: None,
        });
    }
    let open = |i: usize| exclude != Some(Target::Replica(i));
    // An explicit route to a replica or a report skips read-your-writes: the application chose.
    if route.is_none() {
        match policy.read_your_writes {
            ReadYourWrites::Off => {}
            ReadYourWrites::StickyPrimary { ms } => {
                if facts.since_last_write_ms.is_some_and(|t| t < ms) {
                    return Ok(Plan::primary(Reason::StickyPrimary));
                }
            }
            ReadYourWrites::Gtid { wait_ms } => {
                if let Some(g) = facts.last_gtid {
                    if let Some(i) = least_busy(replicas, open, |r| r.has_reached(&g)) {
                        return Ok(Plan {
                            target: Target::Replica(i),
                            reason: Reason::ReadYourWrites,
                            wait_for: None,
                        });
                    }
                    if wait_ms == 0 {
                        return Ok(Plan::primary(Reason::RywPrimary));
                    }
                    if let Some(i) = least_busy(replicas, open, |_| true) {
                        return Ok(Plan {
                            target: Target::Replica(i),
                            reason: Reason::ReadYourWrites,
                            wait_for: Some(g),
                        });
                    }
                }
            }
        }
    }
    if let Some(i) = least_busy(replicas, open, |_| true) {
        let reason = match (route, stmt.kind) {
            (Some(_), _) => by,
            (None, StatementKind::TxnBegin) => Reason::ReadOnlyTransaction,
            (None, _) => Reason::Balanced,
        };
        return Ok(Plan {
            target: Target::Replica(i),
            reason,
            wait_for: None,
        });
    }
    match policy.lag_fallback {
        LagFallback::Primary => Ok(Plan::primary(Reason::LagFallback)),
        LagFallback::Error => Err(PlanError::NoEligibleReplica),
    }
}

/// Why `stmt` must run on the primary whatever the replicas look like, if it must.
fn needs_primary(stmt: &Statement, facts: &SessionFacts<'_>) -> Option<Reason> {
    match stmt.kind {
        StatementKind::Read => {}
        StatementKind::TxnBegin if is_read_only_begin(stmt) => {}
        _ => return Some(Reason::NotRead),
    }
    if stmt.locking_read {
        return Some(Reason::LockingRead);
    }
    let fx = &stmt.effects;
    if fx.get_lock
        || fx.release_lock
        || fx.release_all_locks
        || fx.uses_last_insert_id
        || !fx.user_vars_assigned.is_empty()
        || fx.calc_found_rows
        || fx.uses_found_rows
        || fx.uses_diagnostics
        || fx.creates_temp_table
        || fx.pins_connection
        || fx.sql_prepare
        || stmt.multi
    {
        return Some(Reason::SideEffects);
    }
    if !facts.autocommit && stmt.kind == StatementKind::Read {
        return Some(Reason::NoAutocommit);
    }
    None
}

/// `START TRANSACTION READ ONLY` (with or without other characteristics; not `READ WRITE`).
fn is_read_only_begin(stmt: &Statement) -> bool {
    stmt.keyword == "START" && {
        let t = stmt.digest_text.to_ascii_uppercase();
        t.contains("READ ONLY") && !t.contains("READ WRITE")
    }
}

/// The index of the eligible instance with the fewest requests in flight among those `open` and
/// passing `want`; ties go to the lower index.
fn least_busy<R: ReplicaView>(
    list: &[R],
    open: impl Fn(usize) -> bool,
    want: impl Fn(&R) -> bool,
) -> Option<usize> {
    let mut best: Option<(usize, u32)> = None;
    for (i, r) in list.iter().enumerate() {
        if !open(i) || !r.is_eligible() || !want(r) {
            continue;
        }
        let load = r.in_flight();
        if best.is_none_or(|(_, b)| load < b) {
            best = Some((i, load));
        }
    }
    best.map(|(i, _)| i)
}

/// Whether a replica may take reads, with hold-down: after it has been out (unhealthy or over the
/// lag limit) it must stay healthy and under the limit for `hold_down_ms` before it takes reads
/// again, so a replica hovering at the limit does not flap. A replica that has never been out
/// (start-up) is eligible at its first good observation.
#[derive(Clone, Debug, Default)]
pub struct LagGate {
    eligible: bool,
    /// Since when (ms) the replica has been good while out; `None` while bad.
    good_since: Option<u64>,
    /// It has been out at least once.
    was_out: bool,
}

impl LagGate {
    /// Feeds one observation at `now_ms`: `lag_ms` is `None` when the replica is unhealthy
    /// (unreachable, replication stopped, no lag reading). Returns whether it is eligible now.
    pub fn observe(
        &mut self,
        now_ms: u64,
        lag_ms: Option<u64>,
        max_lag_ms: u64,
        hold_down_ms: u64,
    ) -> bool {
        let good = lag_ms.is_some_and(|l| l <= max_lag_ms);
        if !good {
            if self.eligible || !self.was_out {
                self.was_out = true;
            }
            self.eligible = false;
            self.good_since = None;
            return false;
        }
        if self.eligible {
            return true;
        }
        if !self.was_out {
            self.eligible = true;
            return true;
        }
        let since = *self.good_since.get_or_insert(now_ms);
        if now_ms.saturating_sub(since) >= hold_down_ms {
            self.eligible = true;
        }
        self.eligible
    }

    /// The data path saw the instance fail: out at once, hold-down applies when it recovers.
    pub fn force_out(&mut self) {
        self.eligible = false;
        self.was_out = true;
        self.good_since = None;
    }

    pub fn is_eligible(&self) -> bool {
        self.eligible
    }
}

#[cfg(test)]
mod tests;
