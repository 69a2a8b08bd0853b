//! `KILL [HARD | SOFT] [CONNECTION | QUERY] id` and COM_PROCESS_KILL, with the ids the proxy gave
//! its clients in the handshake (what the `mysql` client's Ctrl-C and JDBC's query timeouts
//! send). Passed to a server as is, the id would name an unrelated backend thread, and since every
//! backend connection of the proxy belongs to one backend user, it could end another client's
//! statement or transaction. So a KILL never reaches a backend as written: the proxy looks the id
//! up among its own sessions (a client may kill only sessions of its own user), and
//! - `KILL QUERY id`: the statement that session runs on a backend connection right now is
//!   killed there (`KILL QUERY <backend thread>` from a fresh connection to that instance); the
//!   session gets the server's ERR 1317 for it and goes on. OK also when it runs nothing.
//! - `KILL [CONNECTION] id`: the same, and the session is closed (its transaction rolled back, its
//!   connection reset, as for a client that vanishes). Killing one's own connection answers
//!   ERR 1927 and closes.
//! - an unknown id: ERR 1094; another user's session: ERR 1095; `KILL QUERY ID` (by query id)
//!   and `KILL USER`: ERR 1235.
//!
//! Reads running on a shared (pipelined) connection, scatter reads and queued hot-row writes are
//! not killed by `KILL QUERY` (the backend thread runs other sessions' statements too); they are
//! short, and `KILL CONNECTION` still closes the session.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use peakgate_router::Statement;

use super::Session;
use crate::errors::ClientError;
use crate::protocol;

/// The live sessions by connection id.
#[derive(Default)]
pub struct Sessions(Arc<Mutex<HashMap<u32, Arc<SessionCtl>>>>);

impl Sessions {
    /// Registers a logged-in session; the handle removes it when dropped.
    pub fn register(&self, id: u32, user: &str) -> SessionHandle {
        let ctl = Arc::new(SessionCtl {
            user: Mutex::new(user.to_string()),
            running: Mutex::new(None),
            killing: tokio::sync::Mutex::new(()),
            killed: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        });
        lock(&self.0).insert(id, ctl.clone());
        SessionHandle {
            id,
            ctl,
            all: self.0.clone(),
        }
    }

    fn get(&self, id: u32) -> Option<Arc<SessionCtl>> {
        lock(&self.0).get(&id).cloned()
    }

    /// Every session: its id (what KILL takes), user, and the backend connection running its
    /// statement now (instance and server thread id, as the server's PROCESSLIST shows it).
    pub fn snapshot(&self) -> Vec<serde_json::Value> {
        let mut all: Vec<(u32, Arc<SessionCtl>)> = lock(&self.0)
            .iter()
            .map(|(id, c)| (*id, c.clone()))
            .collect();
        all.sort_by_key(|(id, _)| *id);
        all.into_iter()
            .map(|(id, c)| {
                let running = lock(&c.running).clone();
                serde_json::json!({
                    "id": id,
                    "user": *lock(&c.user),
                    "running_on": running.map(|(addr, thread)| {
                        serde_json::json!({"instance": &*addr, "thread_id": thread})
                    }),
                })
            })
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What another session's KILL needs of a session.
pub struct SessionCtl {
    user: Mutex<String>,
    /// The backend connection running the session's statement now: instance and thread id.
    running: Mutex<Option<(Arc<str>, u32)>>,
    /// Held by a KILL QUERY from before it reads `running` until the server has answered it;
    /// a statement's end waits for it, so the backend connection cannot go back to the pool
    /// (and run another session's statement, which the KILL would hit) in between.
    killing: tokio::sync::Mutex<()>,
    killed: AtomicBool,
    wake: tokio::sync::Notify,
}

impl SessionCtl {
    /// Marks the statement running on `addr`'s backend thread `thread_id` until the guard drops.
    pub fn running(self: &Arc<Self>, addr: Arc<str>, thread_id: u32) -> Running {
        *lock(&self.running) = Some((addr, thread_id));
        Running(self.clone())
    }

    /// `KILL QUERY` for the statement the session runs on a backend connection now (only if it
    /// runs on `only`, when given: instance and thread id); whether one was killed.
    pub async fn kill_running(
        &self,
        backend: &crate::config::BackendSettings,
        only: Option<(&Arc<str>, u32)>,
    ) -> Result<bool, crate::backend::Error> {
        let _killing = self.killing.lock().await;
        let running = lock(&self.running).clone();
        match running {
            Some((addr, thread_id)) if only.is_none_or(|(a, t)| **a == *addr && t == thread_id) => {
                kill_query(backend, addr, thread_id).await.map(|()| true)
            }
            _ => Ok(false),
        }
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// Resolves once the session has been killed (at once if it already was).
    pub async fn killed(&self) {
        loop {
            let woken = self.wake.notified();
            if self.is_killed() {
                return;
            }
            woken.await;
        }
    }
}

/// A registered session; dropping it removes the session from the registry.
pub struct SessionHandle {
    id: u32,
    pub ctl: Arc<SessionCtl>,
    all: Arc<Mutex<HashMap<u32, Arc<SessionCtl>>>>,
}

impl SessionHandle {
    /// After COM_CHANGE_USER: the session belongs to `user` now.
    pub fn set_user(&self, user: &str) {
        *lock(&self.ctl.user) = user.to_string();
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        lock(&self.all).remove(&self.id);
    }
}

/// Clears the running statement's mark when dropped.
pub struct Running(Arc<SessionCtl>);

impl Running {
    /// The statement has been answered: waits for a KILL being sent for it to finish, then
    /// clears the mark. Call before the backend connection can go back to the pool.
    pub async fn end(self) {
        let _killing = self.0.killing.lock().await;
        *lock(&self.0.running) = None;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        *lock(&self.0.running) = None;
    }
}

/// A parsed KILL statement.
#[derive(Debug, PartialEq, Eq)]
pub enum Kill {
    /// `KILL [CONNECTION | QUERY] id`: `query` when only the statement is to go.
    Id { id: u64, query: bool },
    /// A form the proxy does not take (why).
    Unsupported(&'static str),
}

/// The KILL in `stmt` (text `sql`); `None` when it is not a KILL statement.
pub fn parse(stmt: &Statement, sql: &[u8]) -> Option<Kill> {
    if stmt.keyword != "KILL" {
        return None;
    }
    if stmt.multi {
        return Some(Kill::Unsupported("KILL together with other statements"));
    }
    let words: Vec<String> = stmt
        .digest_text
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect();
    let mut w = words
        .iter()
        .map(String::as_str)
        .skip_while(|w| *w != "KILL");
    w.next();
    let mut next = w.next();
    if matches!(next, Some("HARD" | "SOFT")) {
        next = w.next();
    }
    let query = match next {
        Some("QUERY") => {
            next = w.next();
            true
        }
        Some("CONNECTION") => {
            next = w.next();
            false
        }
        _ => false,
    };
    match (next, w.next()) {
        (Some("?"), None) => {}
        (Some("ID"), _) => return Some(Kill::Unsupported("KILL QUERY ID (by query id)")),
        (Some("USER"), _) => return Some(Kill::Unsupported("KILL USER")),
        _ => return Some(Kill::Unsupported("this form of KILL")),
    }
    let lit = stmt.literals.first()?;
    let text = std::str::from_utf8(sql.get(lit.clone())?).ok()?;
    match text.trim().parse::<u64>() {
        Ok(id) => Some(Kill::Id { id, query }),
        Err(_) => Some(Kill::Unsupported("KILL with an id that is not a number")),
    }
}

impl Session {
    /// Answers a KILL (`Kill::Id` from a statement or COM_PROCESS_KILL). `Ok(true)`: the session
    /// killed itself and closes.
    pub(super) async fn kill(&mut self, seq: u8, kill: Kill) -> Result<bool, protocol::Error> {
        let (id, query) = match kill {
            Kill::Id { id, query } => (id, query),
            Kill::Unsupported(what) => {
                let e = ClientError::new(
                    1235,
                    "42000",
                    format!("This version of PeakGate doesn't yet support '{what}'"),
                );
                self.send_error(seq, &e).await;
                return Ok(false);
            }
        };
        let target = u32::try_from(id)
            .ok()
            .and_then(|id| self.shared.sessions.get(id));
        let Some(target) = target else {
            let e = ClientError::new(1094, "HY000", format!("Unknown thread id: {id}"));
            self.send_error(seq, &e).await;
            return Ok(false);
        };
        if *lock(&target.user) != self.user {
            let e = ClientError::new(1095, "HY000", format!("You are not owner of thread {id}"));
            self.send_error(seq, &e).await;
            return Ok(false);
        }
        if u64::from(self.conn_id) == id {
            if query {
                // Nothing of this session runs but the KILL itself.
                self.send_ok(seq).await?;
                return Ok(false);
            }
            let e = ClientError::new(1927, "70100", "Connection was killed");
            self.send_error(seq, &e).await;
            return Ok(true);
        }
        if !query {
            target.killed.store(true, Ordering::Release);
            target.wake.notify_one();
        }
        if let Err(e) = target.kill_running(&self.shared.config.backend, None).await {
            let (code, state, msg) = crate::errors::from_backend(&e);
            self.send_error_raw(seq, code, &state, &msg).await?;
            return Ok(false);
        }
        crate::metrics::METRICS.client_kills.inc();
        self.send_ok(seq).await?;
        Ok(false)
    }
}

/// `KILL QUERY thread_id` on instance `addr`, from a connection of its own.
pub async fn kill_query(
    b: &crate::config::BackendSettings,
    addr: Arc<str>,
    thread_id: u32,
) -> Result<(), crate::backend::Error> {
    let timeout = std::time::Duration::from_millis(b.connect_timeout_ms);
    let mut c = crate::backend::BackendConn::connect(
        addr.clone(),
        b.sockets.get(&*addr).map(String::as_str),
        &b.user,
        &b.password,
        0,
        timeout,
    )
    .await?;
    match c.query(&format!("KILL QUERY {thread_id}")).await {
        Ok(_) => Ok(()),
        // The statement ended and its connection closed in the meantime: nothing to kill.
        Err(crate::backend::Error::Server { err, .. }) if err.code == 1094 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> Option<Kill> {
        let c = peakgate_router::Classifier::new(16);
        parse(&c.classify(sql.as_bytes()), sql.as_bytes())
    }

    #[test]
    fn kill_forms() {
        assert_eq!(
            parsed("KILL 12"),
            Some(Kill::Id {
                id: 12,
                query: false
            })
        );
        assert_eq!(
            parsed("kill connection 7"),
            Some(Kill::Id {
                id: 7,
                query: false
            })
        );
        assert_eq!(
            parsed("/* x */ KILL QUERY 99"),
            Some(Kill::Id {
                id: 99,
                query: true
            })
        );
        assert_eq!(
            parsed("KILL HARD QUERY 3"),
            Some(Kill::Id { id: 3, query: true })
        );
        assert_eq!(
            parsed("KILL SOFT CONNECTION 4"),
            Some(Kill::Id {
                id: 4,
                query: false
            })
        );
        assert!(matches!(
            parsed("KILL QUERY ID 5"),
            Some(Kill::Unsupported(_))
        ));
        assert!(matches!(
            parsed("KILL USER shop"),
            Some(Kill::Unsupported(_))
        ));
        assert!(matches!(parsed("KILL 'x'"), Some(Kill::Unsupported(_))));
        assert!(matches!(parsed("KILL"), Some(Kill::Unsupported(_))));
        assert_eq!(parsed("SELECT 'KILL 5'"), None);
        assert_eq!(parsed("SELECT 1"), None);
    }
}
