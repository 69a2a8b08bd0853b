//! A backend connection that dies under a session holding a transaction (or other state that
//! cannot move to another connection: temporary tables, GET_LOCK locks, LOCK TABLES). The server
//! rolled the transaction back and released the rest; the client's connection to the proxy is
//! still open, so the session must not go on as if nothing happened: its next statement would run
//! in autocommit on a fresh connection, and a later COMMIT would answer OK for a transaction whose
//! first part is gone.
//!
//! So the session remembers the loss (`Session::lost`) and refuses every further statement with
//! [`lost_error`] until the client ends the dead transaction:
//! - `ROLLBACK` ends it: OK, nothing is left to undo;
//! - `COMMIT`, `BEGIN` / `START TRANSACTION` and `SET autocommit = 1` (the last two commit the
//!   open transaction implicitly) end it with the error: nothing was committed, and the client
//!   must hear so; sent again, they run as usual;
//! - COM_RESET_CONNECTION and COM_CHANGE_USER end it (the session starts over).
//!
//! XA transactions have their own rule (`xa.rs`: a lost branch makes the transaction roll back).

use peakgate_router::{Statement, StatementKind};

use super::{Pins, Session};
use crate::errors::ClientError;
use crate::protocol;

/// The error for every statement of a session whose transaction died with its backend
/// connection. 1213 / SQLSTATE 40001 is the "transaction rolled back, run it again" error: MariaDB
/// sends it for deadlocks and (Galera) for transactions aborted by a conflict, and drivers map
/// 40001 to a rolled-back transaction that may be retried (JDBC's
/// `SQLTransactionRollbackException`, retry loops of ORMs). Every part of that contract holds here.
pub(super) fn lost_error(what: &str) -> ClientError {
    ClientError::new(
        1213,
        "40001",
        format!(
            "Transaction rolled back: PeakGate lost the backend connection that held {what}; the server \
             rolled the transaction back and released what the connection held, and this statement did \
             not run. End the transaction with ROLLBACK (COMMIT, BEGIN and SET autocommit = 1 end it \
             too, with this error: nothing was committed), then run it again"
        ),
    )
}

/// What a session loses with its backend connection, as a phrase (`None`: nothing that matters).
/// `stmt` is the statement that was running: one that ends a transaction (COMMIT, ROLLBACK, BEGIN,
/// DDL, SET autocommit = 1) leaves the transaction's outcome to that statement's own error, not
/// to a rollback the proxy would claim.
fn lost_state(pins: &Pins, stmt: Option<(&Statement, &[u8])>) -> Option<String> {
    let ends_txn = stmt.is_some_and(|(s, sql)| ends_transaction(s, sql));
    let mut parts = Vec::new();
    if pins.in_txn && !ends_txn {
        parts.push("an open transaction".to_string());
    }
    if pins.temp_tables > 0 {
        parts.push(format!("{} temporary table(s)", pins.temp_tables));
    }
    if pins.locks > 0 {
        parts.push("user locks (GET_LOCK)".to_string());
    }
    if pins.lock_tables {
        parts.push("LOCK TABLES".to_string());
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Whether `stmt` ends the open transaction (explicitly or by an implicit commit).
fn ends_transaction(stmt: &Statement, sql: &[u8]) -> bool {
    match stmt.kind {
        StatementKind::TxnBegin | StatementKind::TxnEnd => true,
        StatementKind::Ddl => {
            !stmt.effects.creates_temp_table && stmt.effects.drops_temp_tables == 0
        }
        StatementKind::Session => sets_autocommit_on(sql),
        _ => false,
    }
}

/// Whether `sql` (a SET) turns autocommit on: `SET autocommit = 1`, `SET @@session.autocommit=ON`,
/// `SET SESSION autocommit := true`, ...
fn sets_autocommit_on(sql: &[u8]) -> bool {
    let text = String::from_utf8_lossy(sql).to_ascii_lowercase();
    text.match_indices("autocommit").any(|(i, m)| {
        let rest = text[i + m.len()..].trim_start();
        let Some(rest) = rest.strip_prefix(":=").or_else(|| rest.strip_prefix('=')) else {
            return false;
        };
        let value: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '\'' || *c == '"')
            .filter(|c| *c != '\'' && *c != '"')
            .collect();
        matches!(value.as_str(), "1" | "on" | "true")
    })
}

/// Plain `ROLLBACK` / `ROLLBACK WORK` (no CHAIN or RELEASE, not TO SAVEPOINT, not XA).
fn is_plain_rollback(stmt: &Statement) -> bool {
    stmt.kind == StatementKind::TxnEnd
        && stmt.keyword == "ROLLBACK"
        && !stmt.multi
        && !stmt.digest_text.contains("chain")
        && !stmt.digest_text.contains("release")
        && !stmt
            .digest_text
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .any(|w| w.eq_ignore_ascii_case("to"))
}

impl Session {
    /// The backend connection died under the session: whatever it held (transaction, locks,
    /// temp tables) is gone with it, and the session remembers that until the client ends the
    /// transaction. `stmt` is the statement that was running and its text, if any.
    pub(super) fn after_lost_backend(&mut self, stmt: Option<(&Statement, &[u8])>) {
        self.xa_branch_lost();
        if self.xa.is_none()
            && self.lost.is_none()
            && let Some(what) = lost_state(&self.pins, stmt)
        {
            self.lost = Some(what);
        }
        self.pins = Pins::default();
    }

    /// Whether `stmt`, whose backend connection just died under it (`after_lost_backend` ran),
    /// is a plain ROLLBACK and the session lost nothing but the transaction: the server rolled
    /// the transaction back when the connection went, which is what the client asked for, so the
    /// answer is OK (not "lost connection, the statement may not have run").
    pub(super) fn rolled_back_by_loss(&self, stmt: Option<(&Statement, &[u8])>) -> bool {
        self.lost.is_none() && self.xa.is_none() && stmt.is_some_and(|(s, _)| is_plain_rollback(s))
    }

    /// The transaction the client began could not be opened on the backend (the held-back BEGIN
    /// failed): its statements must not run in autocommit instead.
    pub(super) fn begin_lost(&mut self) {
        if self.xa.is_none() && self.lost.is_none() {
            self.lost = Some("an open transaction".to_string());
        }
    }

    /// The message of a backend failure that just cost the session its transaction: says so.
    pub(super) fn lost_note(&self, message: String) -> String {
        match &self.lost {
            Some(what) => format!(
                "{message}; {what} of this session was lost with it (rolled back by the server): \
                 further statements get ERR 1213 until ROLLBACK"
            ),
            None => message,
        }
    }

    /// Before a statement runs: while the session's transaction is lost, answers the client
    /// (`true`) unless the statement ends it by a plain ROLLBACK (then answered OK here) or, for a
    /// ROLLBACK with CHAIN / RELEASE, runs as usual (`false`).
    pub(super) async fn lost_gate(
        &mut self,
        seq: u8,
        stmt: &Statement,
        sql: &[u8],
    ) -> Result<bool, protocol::Error> {
        let Some(what) = &self.lost else {
            return Ok(false);
        };
        let e = lost_error(what);
        if stmt.kind == StatementKind::TxnEnd && stmt.keyword == "ROLLBACK" && !stmt.multi {
            self.lost = None;
            if is_plain_rollback(stmt) {
                self.send_ok(seq).await?;
                return Ok(true);
            }
            return Ok(false);
        }
        if !stmt.multi && ends_transaction(stmt, sql) && stmt.kind != StatementKind::Ddl {
            self.lost = None;
        }
        self.send_error(seq, &e).await;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(sql: &str) -> Statement {
        peakgate_router::Classifier::new(16).classify(sql.as_bytes())
    }

    #[test]
    fn autocommit_on_is_recognised() {
        for sql in [
            "SET autocommit = 1",
            "set AUTOCOMMIT=ON",
            "SET @@session.autocommit := true",
            "SET sql_mode = '', autocommit = 'on'",
        ] {
            assert!(sets_autocommit_on(sql.as_bytes()), "{sql}");
        }
        for sql in [
            "SET autocommit = 0",
            "SET autocommit=OFF",
            "SET @a = 1",
            "SELECT @@autocommit",
        ] {
            assert!(!sets_autocommit_on(sql.as_bytes()), "{sql}");
        }
    }

    #[test]
    fn plain_rollbacks() {
        for sql in ["ROLLBACK", "rollback work", "ROLLBACK /* x */", "ROLLBACK;"] {
            assert!(is_plain_rollback(&classify(sql)), "{sql}");
        }
        for sql in [
            "ROLLBACK TO SAVEPOINT s",
            "ROLLBACK WORK TO s",
            "rollback to `to`",
            "ROLLBACK AND CHAIN",
            "ROLLBACK RELEASE",
            "XA ROLLBACK 'x'",
            "COMMIT",
        ] {
            assert!(!is_plain_rollback(&classify(sql)), "{sql}");
        }
    }

    #[test]
    fn what_is_lost() {
        let insert = classify("INSERT INTO t VALUES (1)");
        let commit = classify("COMMIT");
        let in_txn = Pins {
            in_txn: true,
            ..Pins::default()
        };
        assert_eq!(
            lost_state(&in_txn, Some((&insert, b"INSERT INTO t VALUES (1)"))).as_deref(),
            Some("an open transaction")
        );
        // A COMMIT whose answer was lost may have committed: its own error says so.
        assert_eq!(lost_state(&in_txn, Some((&commit, b"COMMIT"))), None);
        let locks = Pins {
            in_txn: true,
            temp_tables: 2,
            locks: 1,
            lock_tables: true,
            ..Pins::default()
        };
        assert_eq!(
            lost_state(&locks, Some((&commit, b"COMMIT"))).as_deref(),
            Some("2 temporary table(s), user locks (GET_LOCK), LOCK TABLES")
        );
        let sticky = Pins {
            sticky: true,
            one_shot: true,
            ..Pins::default()
        };
        assert_eq!(lost_state(&sticky, None), None);
    }

    #[test]
    fn what_ends_the_dead_transaction() {
        for sql in ["COMMIT", "BEGIN", "START TRANSACTION", "ROLLBACK"] {
            assert!(ends_transaction(&classify(sql), sql.as_bytes()), "{sql}");
        }
        for sql in [
            "INSERT INTO t VALUES (1)",
            "ROLLBACK TO SAVEPOINT a",
            "CREATE TEMPORARY TABLE x (a INT)",
            "SET autocommit = 0",
        ] {
            assert!(!ends_transaction(&classify(sql), sql.as_bytes()), "{sql}");
        }
        assert!(is_plain_rollback(&classify("ROLLBACK")));
        assert!(is_plain_rollback(&classify("rollback work")));
        assert!(!is_plain_rollback(&classify("ROLLBACK AND CHAIN")));
        assert!(!is_plain_rollback(&classify("ROLLBACK TO SAVEPOINT a")));
    }
}
