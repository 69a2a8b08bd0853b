//! `[limits]` and `[[limits.rules]]` in `peakgate.toml` (and `[[rules]]` in the runtime file):
//! the serde types and their validation, with key paths and lines like the rest of the config.

use std::collections::HashSet;

use peakgate_router::{RouteHint, StatementKind};
use serde::{Deserialize, Serialize};

/// `[limits]`: peak-protection rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// The rules, in order: the first enabled rule with an action that matches a statement
    /// decides what happens to it.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// File that keeps the rules changed at run time (admin API), so a restart keeps them; when
    /// it exists at start its rules replace `rules`. None: run-time changes end with the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_file: Option<String>,
}

/// One `[[limits.rules]]` entry: which statements it matches (every given field must match; a
/// rule without match fields matches every statement) and what it does to them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name: metric label, admin API key, and named in every refusal. Letters, digits,
    /// `_`, `-` and `.`.
    pub name: String,
    /// A disabled rule matches nothing but keeps its place, counters and settings (a feature
    /// switch turned off).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// Only statements of this client user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Only statements run with this current schema (`USE`, or the login's database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Only statements that name this table: `reviews` matches it in any schema,
    /// `shop.reviews` only in `shop` (ASCII case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Only this statement kind: read, write, txn_begin, txn_end, session, ddl, admin, unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Only this statement shape: the 16-hex-digit digest shown by `/status/digests`, or SQL
    /// text (normalised or not: literals are replaced the way the digest does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Only statements carrying this comment hint, `key=value` as in `/* peakgate: key=value */`
    /// (ASCII case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Priority of the matched writes when a shard's writes are throttled on replica lag
    /// (critical writes are never throttled). Default normal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Longest a matched statement may run on the backend; past it the proxy runs
    /// `KILL QUERY` on that backend connection and the client gets the server's ERR 1317
    /// ("Query execution was interrupted"). 1..=3600000. Like `priority`, not an action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_execution_ms: Option<u64>,
    /// Action: at most `qps` statements per second on average, `burst` at once (token bucket);
    /// the others are refused with ERR 1226.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Action: at most `limit` matched statements run at once; up to `queue` more wait up to
    /// `timeout_ms` for a slot, the others are refused with ERR 1205.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<MaxConcurrency>,
    /// Action: refuse every matched statement (a feature switch). `deny = {}` for the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<Deny>,
    /// Action: run matched statements on this role ("primary", "replica", "reporting"),
    /// as a `route=` hint would; a hint in the statement itself still wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteTarget>,
    /// Action: hold each matched statement this long before running it (1..=60000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

/// How much a statement matters when writes must slow down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Checkout, payment: never throttled.
    Critical,
    /// Everything else.
    #[default]
    Normal,
}

/// Where a `route` rule sends statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteTarget {
    /// The shard's primary.
    Primary,
    /// A replica within the lag limit.
    Replica,
    /// A reporting instance.
    Reporting,
}

impl RouteTarget {
    /// The planner's equivalent hint.
    pub fn hint(self) -> RouteHint {
        match self {
            RouteTarget::Primary => RouteHint::Primary,
            RouteTarget::Replica => RouteHint::Replica,
            RouteTarget::Reporting => RouteHint::Reporting,
        }
    }
}

/// `rate_limit = { qps = 50, burst = 10 }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained statements per second (may be fractional, e.g. 0.5).
    pub qps: f64,
    /// Statements admitted at once after a quiet spell; default `qps` rounded up (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl RateLimit {
    /// The burst in effect.
    pub fn effective_burst(&self) -> u32 {
        self.burst
            .unwrap_or_else(|| self.qps.ceil().clamp(1.0, f64::from(u32::MAX)) as u32)
    }
}

/// `max_concurrency = { limit = 4, queue = 16, timeout_ms = 500 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxConcurrency {
    /// Matched statements running at once (from the decision until the answer is sent).
    pub limit: u32,
    /// Statements that may wait for a slot; more are refused at once. Default 0 (no waiting).
    #[serde(default)]
    pub queue: u32,
    /// Longest wait for a slot before the statement is refused. Default 1000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

/// `deny = { code = 1290, sqlstate = "HY000", message = "reviews are off during the sale" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deny {
    /// MySQL error code sent to the client; default 1290 (ER_OPTION_PREVENTS_STATEMENT).
    #[serde(default = "default_deny_code")]
    pub code: u16,
    /// SQLSTATE sent with it: 5 characters, digits and capital letters; default "HY000".
    #[serde(default = "default_deny_sqlstate")]
    pub sqlstate: String,
    /// What the client reads; the rule's name is appended. Default: says the rule refuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Default for Deny {
    fn default() -> Self {
        Self {
            code: default_deny_code(),
            sqlstate: default_deny_sqlstate(),
            message: None,
        }
    }
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn default_timeout_ms() -> u64 {
    1000
}
fn default_deny_code() -> u16 {
    1290
}
fn default_deny_sqlstate() -> String {
    "HY000".into()
}

/// Longest `delay_ms`: a longer hold is an outage, not a slowdown.
pub const MAX_DELAY_MS: u64 = 60_000;
/// Longest `max_concurrency.timeout_ms`.
pub const MAX_TIMEOUT_MS: u64 = 600_000;
/// Longest `deny.message`, in bytes.
pub const MAX_MESSAGE_LEN: usize = 400;

impl RuleConfig {
    /// The rule's action, if it has one.
    pub fn action_name(&self) -> Option<&'static str> {
        self.actions().first().copied()
    }

    fn actions(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.rate_limit.is_some() {
            names.push("rate_limit");
        }
        if self.max_concurrency.is_some() {
            names.push("max_concurrency");
        }
        if self.deny.is_some() {
            names.push("deny");
        }
        if self.route.is_some() {
            names.push("route");
        }
        if self.delay_ms.is_some() {
            names.push("delay_ms");
        }
        names
    }

    /// What is wrong with this rule on its own: `(key, message)` pairs, key relative to the rule.
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.name.is_empty() {
            out.push(("name", "must not be empty".into()));
        } else if !self
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            out.push((
                "name",
                format!(
                    "\"{}\" may hold only letters, digits, '_', '-' and '.'",
                    self.name
                ),
            ));
        }
        for (key, value) in [
            ("user", &self.user),
            ("schema", &self.schema),
            ("table", &self.table),
            ("digest", &self.digest),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                out.push((key, "must not be empty (leave it out to match any)".into()));
            }
        }
        if let Some(t) = &self.table
            && t.split('.').count() > 2
        {
            out.push(("table", format!("\"{t}\" is not `table` or `schema.table`")));
        }
        if let Some(k) = &self.kind
            && StatementKind::from_name(&k.to_ascii_lowercase()).is_none()
        {
            let kinds: Vec<&str> = StatementKind::ALL.iter().map(|k| k.as_str()).collect();
            out.push((
                "kind",
                format!("\"{k}\" is not one of {}", kinds.join(", ")),
            ));
        }
        if let Some(h) = &self.hint
            && split_hint(h).is_none()
        {
            out.push(("hint", format!("\"{h}\" is not key=value")));
        }
        let actions = self.actions();
        if actions.len() > 1 {
            out.push((
                actions[1],
                format!(
                    "a rule has one action, this one has {}; split it into several rules",
                    actions.join(", ")
                ),
            ));
        }
        if let Some(ms) = self.max_execution_ms
            && !(1..=3_600_000).contains(&ms)
        {
            out.push((
                "max_execution_ms",
                format!("{ms} is out of range 1..=3600000"),
            ));
        }
        if actions.is_empty() && self.priority.is_none() && self.max_execution_ms.is_none() {
            out.push((
                "name",
                format!(
                    "rule \"{}\" does nothing: give it an action (rate_limit, max_concurrency, deny, route, delay_ms), a priority or max_execution_ms",
                    self.name
                ),
            ));
        }
        if let Some(r) = &self.rate_limit {
            if !(r.qps.is_finite() && r.qps > 0.0 && r.qps <= 1e9) {
                out.push((
                    "rate_limit.qps",
                    format!("{} is not a rate above 0 and at most 1e9", r.qps),
                ));
            }
            if r.burst == Some(0) {
                out.push(("rate_limit.burst", "must be at least 1".into()));
            }
        }
        if let Some(c) = &self.max_concurrency {
            let max = tokio::sync::Semaphore::MAX_PERMITS.min(u32::MAX as usize);
            if c.limit == 0 || c.limit as usize > max {
                out.push((
                    "max_concurrency.limit",
                    format!("{} is not in 1..={max}", c.limit),
                ));
            }
            if c.queue > 0 && !(1..=MAX_TIMEOUT_MS).contains(&c.timeout_ms) {
                out.push((
                    "max_concurrency.timeout_ms",
                    format!(
                        "{} is not in 1..={MAX_TIMEOUT_MS} (a queue needs a timeout)",
                        c.timeout_ms
                    ),
                ));
            }
        }
        if let Some(d) = &self.deny {
            if d.code < 1000 {
                out.push((
                    "deny.code",
                    format!("{} is not a MySQL error code (1000 and up)", d.code),
                ));
            }
            if !is_sqlstate(&d.sqlstate) {
                out.push((
                    "deny.sqlstate",
                    format!(
                        "\"{}\" is not 5 digits or capital letters, e.g. \"HY000\"",
                        d.sqlstate
                    ),
                ));
            }
            if let Some(m) = &d.message
                && (m.trim().is_empty() || m.len() > MAX_MESSAGE_LEN)
            {
                out.push((
                    "deny.message",
                    format!("must hold 1..={MAX_MESSAGE_LEN} bytes of text"),
                ));
            }
        }
        if let Some(ms) = self.delay_ms
            && !(1..=MAX_DELAY_MS).contains(&ms)
        {
            out.push(("delay_ms", format!("{ms} is not in 1..={MAX_DELAY_MS}")));
        }
        out
    }
}

/// `key=value` of a `hint` field, both trimmed and non-empty.
pub(crate) fn split_hint(hint: &str) -> Option<(&str, &str)> {
    let (k, v) = hint.split_once('=')?;
    let (k, v) = (k.trim(), v.trim());
    (!k.is_empty() && !v.is_empty() && !k.contains(char::is_whitespace)).then_some((k, v))
}

fn is_sqlstate(s: &str) -> bool {
    s.len() == 5
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

impl LimitsConfig {
    /// Problems with `[limits]` in `peakgate.toml`, each naming the key path and, where `text` (the
    /// file) shows it, the line: `limits.rules[2].rate_limit.qps: ... (line 40)`.
    pub fn validate(&self, text: &str) -> Vec<String> {
        let mut errs = validate_rules(&self.rules, "limits.rules", Some(text));
        if self
            .runtime_file
            .as_deref()
            .is_some_and(|f| f.trim().is_empty())
        {
            errs.push("limits.runtime_file: must not be empty (leave it out for none)".into());
        }
        errs
    }
}

/// Problems with a list of rules whose key path is `prefix` (`limits.rules` in `peakgate.toml`,
/// `rules` in the runtime file); lines are looked up in `text` under `[[prefix]]` headers.
pub fn validate_rules(rules: &[RuleConfig], prefix: &str, text: Option<&str>) -> Vec<String> {
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for (i, rule) in rules.iter().enumerate() {
        let mut problems = rule.problems();
        if !rule.name.is_empty() && !names.insert(rule.name.as_str()) {
            problems.push(("name", format!("duplicate rule \"{}\"", rule.name)));
        }
        for (key, msg) in problems {
            let line = text
                .and_then(|t| rule_line(t, prefix, i, key))
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default();
            errs.push(format!("{prefix}[{i}].{key}: {msg}{line}"));
        }
    }
    errs
}

/// The line of `key` (its last dotted part) inside the `index`-th `[[prefix]]` table of `text`,
/// or of the table's header when the key is not written there. None when the rules are not
/// written as `[[prefix]]` tables.
fn rule_line(text: &str, prefix: &str, index: usize, key: &str) -> Option<usize> {
    let header = format!("[[{prefix}]]");
    let sub_table = format!("[{prefix}.");
    let leaf = key.rsplit('.').next().unwrap_or(key);
    let mut seen = 0;
    let mut header_line = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with(&header) {
            if header_line.is_some() {
                break;
            }
            if seen == index {
                header_line = Some(n + 1);
            }
            seen += 1;
            continue;
        }
        if header_line.is_none() {
            continue;
        }
        if t.starts_with('[') && !t.starts_with(&sub_table) {
            break;
        }
        if mentions_key(t, leaf) {
            return Some(n + 1);
        }
    }
    header_line
}

/// Whether a line sets `key`, as `key = ...` or inside an inline table `{ key = ... }`.
fn mentions_key(line: &str, key: &str) -> bool {
    line.match_indices(key).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + key.len()..].trim_start();
        matches!(before, None | Some(' ' | '{' | ',' | '\t' | '.'))
            && (after.starts_with('=') || after.starts_with('.'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> LimitsConfig {
        #[derive(Deserialize)]
        struct File {
            limits: LimitsConfig,
        }
        toml::from_str::<File>(text).unwrap().limits
    }

    const GOOD: &str = r#"
[limits]
runtime_file = "limits.runtime.toml"

[[limits.rules]]
name = "no-reviews"
table = "reviews"
kind = "write"
deny = { message = "reviews are closed during the sale" }

[[limits.rules]]
name = "search"
digest = "select * from products where title like ?"
rate_limit = { qps = 50, burst = 10 }

[[limits.rules]]
name = "reports"
user = "bi"
max_concurrency = { limit = 2, queue = 4, timeout_ms = 500 }

[[limits.rules]]
name = "checkout"
hint = "flow=checkout"
priority = "critical"
"#;

    #[test]
    fn good_rules_parse_and_validate() {
        let c = parse(GOOD);
        assert_eq!(c.validate(GOOD), Vec::<String>::new());
        assert_eq!(c.rules.len(), 4);
        let deny = c.rules[0].deny.as_ref().unwrap();
        assert_eq!((deny.code, deny.sqlstate.as_str()), (1290, "HY000"));
        assert_eq!(c.rules[1].rate_limit.unwrap().effective_burst(), 10);
        assert_eq!(c.rules[2].max_concurrency.unwrap().queue, 4);
        assert_eq!(c.rules[3].priority, Some(Priority::Critical));
        assert_eq!(c.rules[3].action_name(), None);
        assert!(c.rules.iter().all(|r| r.enabled));
    }

    #[test]
    fn burst_defaults_to_qps_rounded_up() {
        let r = |qps| RateLimit { qps, burst: None }.effective_burst();
        assert_eq!((r(0.2), r(2.5), r(50.0)), (1, 3, 50));
    }

    #[test]
    fn errors_name_key_path_and_line() {
        let bad = GOOD
            .replace("kind = \"write\"", "kind = \"writes\"")
            .replace("qps = 50", "qps = 0")
            .replace("name = \"reports\"", "name = \"search\"")
            .replace(
                "limit = 2, queue = 4, timeout_ms = 500",
                "limit = 0, queue = 4, timeout_ms = 0",
            )
            .replace("hint = \"flow=checkout\"", "hint = \"flow\"");
        let errs = parse(&bad).validate(&bad);
        let want = [
            "limits.rules[0].kind: \"writes\" is not one of read, write, txn_begin, txn_end, session, ddl, admin, unknown (line 8)",
            "limits.rules[1].rate_limit.qps: 0 is not a rate above 0 and at most 1e9 (line 14)",
            "limits.rules[2].max_concurrency.limit: 0 is not in 1..=",
            "limits.rules[2].max_concurrency.timeout_ms: 0 is not in 1..=600000 (a queue needs a timeout) (line 19)",
            "limits.rules[2].name: duplicate rule \"search\" (line 17)",
            "limits.rules[3].hint: \"flow\" is not key=value (line 23)",
        ];
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
        for (e, w) in errs.iter().zip(want) {
            assert!(e.starts_with(w), "{e}\nwanted {w}");
        }
    }

    #[test]
    fn one_action_per_rule_and_at_least_something() {
        let text = r#"
[[limits.rules]]
name = "both"
deny = {}
delay_ms = 5

[[limits.rules]]
name = "idle"
user = "x"

[[limits.rules]]
name = "bad name!"
delay_ms = 0
deny = { code = 12, sqlstate = "hy000", message = "" }
"#;
        let errs = parse(text).validate(text);
        let want = [
            "limits.rules[0].delay_ms: a rule has one action, this one has deny, delay_ms; split it into several rules (line 5)",
            "limits.rules[1].name: rule \"idle\" does nothing: give it an action (rate_limit, max_concurrency, deny, route, delay_ms), a priority or max_execution_ms (line 8)",
            "limits.rules[2].name: \"bad name!\" may hold only letters, digits, '_', '-' and '.' (line 12)",
            "limits.rules[2].delay_ms: a rule has one action, this one has deny, delay_ms; split it into several rules (line 13)",
            "limits.rules[2].deny.code: 12 is not a MySQL error code (1000 and up) (line 14)",
            "limits.rules[2].deny.sqlstate: \"hy000\" is not 5 digits or capital letters, e.g. \"HY000\" (line 14)",
            "limits.rules[2].deny.message: must hold 1..=400 bytes of text (line 14)",
            "limits.rules[2].delay_ms: 0 is not in 1..=60000 (line 13)",
        ];
        assert_eq!(errs, want);
    }

    #[test]
    fn serde_refuses_unknown_keys_and_values() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct File {
            limits: LimitsConfig,
        }
        let e = toml::from_str::<File>(&GOOD.replace("user = \"bi\"", "users = \"bi\""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown field `users`") && e.contains("line 18"),
            "{e}"
        );
        let e = toml::from_str::<File>(&GOOD.replace("\"critical\"", "\"urgent\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("urgent") && e.contains("line 24"), "{e}");
    }

    #[test]
    fn peakgate_toml_reports_rule_errors_with_the_others() {
        let text = r#"
[listen]
mysql = "127.0.0.1:6033"

[backend]
user = "peakgate"
password = "peakgate"

[[users]]
name = "shop"
password_sha1 = "*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9"

[routing]
default_shard = "s0"

[[shards]]
name = "s0"
primary = "127.0.0.1:3311"

[[limits.rules]]
name = "reviews"
table = "reviews"
deny = {}
"#;
        let c = crate::Config::parse(text).unwrap();
        assert_eq!(c.limits.rules[0].name, "reviews");
        let e = crate::Config::parse(&text.replace("deny = {}", "delay_ms = 99999"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "limits.rules[0].delay_ms: 99999 is not in 1..=60000 (line 23)"
        );
    }

    #[test]
    fn sub_table_keys_are_found_in_their_rule() {
        let text = r#"
[[limits.rules]]
name = "a"
deny = {}

[[limits.rules]]
name = "b"

[limits.rules.rate_limit]
qps = -1
"#;
        let errs = parse(text).validate(text);
        assert_eq!(
            errs,
            ["limits.rules[1].rate_limit.qps: -1 is not a rate above 0 and at most 1e9 (line 10)"]
        );
    }
}
