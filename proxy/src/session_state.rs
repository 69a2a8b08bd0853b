//! Connection-bound session state (current database, system and user variables, LAST_INSERT_ID)
//! and the SQL that moves a backend connection from one state to another.
//!
//! The frontend keeps the state a client expects; each backend connection remembers the state it is
//! in. Before a statement runs on a connection, the difference is replayed in one `SET`.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::protocol::response::StateChange;

/// Variables reported by session tracking that must never be replayed (read-only or the proxy's own).
const NOT_REPLAYED: &[&str] = &[
    "last_gtid",
    "session_track_system_variables",
    "session_track_schema",
    "session_track_state_change",
    "session_track_transaction_info",
    "last_insert_id",
    "insert_id",
    "warning_count",
    "error_count",
    "in_transaction",
];

/// Variables whose empty value means NULL.
const NULLABLE: &[&str] = &["character_set_results"];

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionState {
    /// Current database; `None` when none is selected.
    pub schema: Option<String>,
    /// Session system variables changed from the server default: name (lowercase) -> value as tracked.
    pub sysvars: BTreeMap<String, String>,
    /// User variables: name (lowercase, no `@`) -> SQL expression recreating the value.
    pub user_vars: BTreeMap<String, String>,
    /// What LAST_INSERT_ID() returns.
    pub last_insert_id: u64,
}

impl SessionState {
    /// Applies the server's session-state-tracking report.
    pub fn apply(&mut self, changes: &[StateChange<'_>]) {
        for c in changes {
            match c {
                StateChange::SystemVariable { name, value } => {
                    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                    if NOT_REPLAYED.contains(&name.as_str()) {
                        continue;
                    }
                    self.sysvars
                        .insert(name, String::from_utf8_lossy(value).into_owned());
                }
                StateChange::Schema(s) => {
                    self.schema =
                        Some(String::from_utf8_lossy(s).into_owned()).filter(|s| !s.is_empty());
                }
                StateChange::Other(_) => {}
            }
        }
    }

    /// Whether autocommit is on (the server default unless the session turned it off).
    pub fn is_autocommit(&self) -> bool {
        self.sysvars
            .get("autocommit")
            .is_none_or(|v| v.eq_ignore_ascii_case("on") || v == "1")
    }

    /// One `SET` statement that makes a connection in state `from` match `self` (schema excluded:
    /// it changes with COM_INIT_DB). `None` when nothing differs.
    pub fn replay_sql(&self, from: &SessionState) -> Option<String> {
        let mut parts: Vec<String> = Vec::new();
        for (k, v) in &self.sysvars {
            if from.sysvars.get(k) != Some(v) {
                parts.push(format!("@@session.{k} = {}", sysvar_literal(k, v)));
            }
        }
        for k in from.sysvars.keys() {
            if !self.sysvars.contains_key(k) {
                parts.push(format!("@@session.{k} = DEFAULT"));
            }
        }
        for (k, v) in &self.user_vars {
            if from.user_vars.get(k) != Some(v) {
                parts.push(format!("@{} = {v}", quote_ident(k)));
            }
        }
        for k in from.user_vars.keys() {
            if !self.user_vars.contains_key(k) {
                parts.push(format!("@{} = NULL", quote_ident(k)));
            }
        }
        if self.last_insert_id != from.last_insert_id {
            parts.push(format!(
                "@@session.last_insert_id = {}",
                self.last_insert_id
            ));
        }
        if parts.is_empty() {
            None
        } else {
            Some(format!("SET {}", parts.join(", ")))
        }
    }
}

fn sysvar_literal(name: &str, value: &str) -> String {
    if value.is_empty() && NULLABLE.contains(&name) {
        return "NULL".into();
    }
    let numeric = !value.is_empty()
        && value
            .strip_prefix('-')
            .unwrap_or(value)
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.')
        && value.bytes().filter(|&b| b == b'.').count() <= 1
        && !value.ends_with('.')
        && !value.starts_with('.');
    if numeric {
        value.to_string()
    } else if value.contains('\\') {
        // A backslash means different things with and without NO_BACKSLASH_ESCAPES; hex does not.
        hex_literal(value.as_bytes())
    } else {
        quote_str(value.as_bytes())
    }
}

/// A single-quoted SQL string literal with `\` and `'` escaped.
pub fn quote_str(v: &[u8]) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('\'');
    for ch in String::from_utf8_lossy(v).chars() {
        match ch {
            '\'' => s.push_str("''"),
            '\\' => s.push_str("\\\\"),
            '\0' => s.push_str("\\0"),
            c => s.push(c),
        }
    }
    s.push('\'');
    s
}

/// A backtick-quoted identifier.
pub fn quote_ident(v: &str) -> String {
    format!("`{}`", v.replace('`', "``"))
}

/// A hex literal, exact for any bytes.
pub fn hex_literal(v: &[u8]) -> String {
    let mut s = String::with_capacity(3 + 2 * v.len());
    s.push_str("X'");
    for b in v {
        let _ = write!(s, "{b:02x}");
    }
    s.push('\'');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_covers_set_reset_and_user_vars() {
        let mut want = SessionState::default();
        want.apply(&[
            StateChange::SystemVariable {
                name: b"sql_mode",
                value: b"ANSI_QUOTES",
            },
            StateChange::SystemVariable {
                name: b"wait_timeout",
                value: b"100",
            },
            StateChange::SystemVariable {
                name: b"last_gtid",
                value: b"0-1-5",
            },
            StateChange::Schema(b"shop"),
        ]);
        want.user_vars.insert("a".into(), "5".into());
        want.last_insert_id = 9;
        let mut have = SessionState::default();
        have.sysvars.insert("time_zone".into(), "+01:00".into());
        have.user_vars.insert("b".into(), "'x'".into());
        assert_eq!(want.schema.as_deref(), Some("shop"));
        assert_eq!(
            want.replay_sql(&have).unwrap(),
            "SET @@session.sql_mode = 'ANSI_QUOTES', @@session.wait_timeout = 100, @@session.time_zone = DEFAULT, \
             @`a` = 5, @`b` = NULL, @@session.last_insert_id = 9"
        );
        let same = want.clone();
        assert_eq!(want.replay_sql(&same), None);
    }

    #[test]
    fn literals_are_escaped() {
        assert_eq!(quote_str(b"it's \\"), "'it''s \\\\'");
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(hex_literal(&[0, 255]), "X'00ff'");
        assert_eq!(sysvar_literal("x", "1.5"), "1.5");
        assert_eq!(sysvar_literal("x", "1.2.3"), "'1.2.3'");
        assert_eq!(sysvar_literal("character_set_results", ""), "NULL");
        assert_eq!(sysvar_literal("x", "a\\b"), "X'615c62'");
    }
}
