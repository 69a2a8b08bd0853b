//! bb8 pools of backend connections, one per (instance, client capability variant).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{BackendConn, Error};
use crate::config::BackendSettings;

/// A pooled connection owned by a session (pinned) or by one statement.
pub type PooledConn = bb8::PooledConnection<'static, Manager>;

/// Opens backend connections for bb8. The pool holds them boxed: a `PooledConn` moves through
/// several functions per statement (pool, route, relay, back to the pool), and a pointer moves
/// for free where the whole connection (buffers, session state, statement cache) was copied.
pub struct Manager {
    addr: Arc<str>,
    /// The instance's unix socket, when `[backend] sockets` names one.
    socket: Option<String>,
    /// The proxy's runtime: connections are opened there whichever runtime asks, so their I/O
    /// is driven by it (see `frontend::lane`).
    home: Option<tokio::runtime::Handle>,
    user: String,
    password: String,
    variant: u32,
    connect_timeout: Duration,
}

impl bb8::ManageConnection for Manager {
    type Connection = Box<BackendConn>;
    type Error = Error;

    async fn connect(&self) -> Result<Box<BackendConn>, Error> {
        let (addr, socket, user, password) = (
            self.addr.clone(),
            self.socket.clone(),
            self.user.clone(),
            self.password.clone(),
        );
        let (variant, timeout) = (self.variant, self.connect_timeout);
        let connect = async move {
            BackendConn::connect(addr, socket.as_deref(), &user, &password, variant, timeout).await
        };
        let c = match &self.home {
            Some(home) => home.spawn(connect).await.unwrap_or_else(|e| {
                Err(Error::Connect {
                    addr: self.addr.to_string(),
                    reason: format!("connect task failed: {e}"),
                })
            }),
            None => connect.await,
        };
        if c.is_ok() {
            crate::metrics::METRICS.backend_connects.inc();
        }
        c.map(Box::new)
    }

    async fn is_valid(&self, conn: &mut Box<BackendConn>) -> Result<(), Error> {
        conn.command(&[crate::protocol::constants::COM_PING])
            .await
            .map(|_| ())
    }

    fn has_broken(&self, conn: &mut Box<BackendConn>) -> bool {
        conn.broken
    }
}

/// The connect failures of one pool, for the callers waiting on it. bb8 reports a failed connect
/// only to its error sink, never to the caller that waits for the connection: that caller would
/// wait the whole `pool_wait_timeout_ms` for an instance that is down, then hear "too many
/// connections". The sink keeps the failure and wakes every waiter, which returns it instead.
#[derive(Debug, Default)]
struct ConnectFailures {
    last: Mutex<Option<Error>>,
    failed: tokio::sync::Notify,
}

#[derive(Debug, Clone)]
struct FailureSink(Arc<ConnectFailures>);

impl bb8::ErrorSink<Error> for FailureSink {
    fn sink(&self, error: Error) {
        *self
            .0
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error);
        self.0.failed.notify_waiters();
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<Error>> {
        Box::new(self.clone())
    }
}

impl ConnectFailures {
    /// The last failure, as an error of its own for one waiter.
    fn last(&self, addr: &str) -> Error {
        let last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*last {
            Some(Error::Connect { addr, reason }) => Error::Connect {
                addr: addr.clone(),
                reason: reason.clone(),
            },
            Some(Error::Login { addr, message }) => Error::Login {
                addr: addr.clone(),
                message: message.clone(),
            },
            other => Error::Connect {
                addr: addr.to_string(),
                reason: other
                    .as_ref()
                    .map_or_else(|| "connect failed".to_string(), ToString::to_string),
            },
        }
    }
}

/// A pool with what the status page needs to know about it.
#[derive(Clone)]
pub struct Pool {
    pub addr: Arc<str>,
    pub variant: u32,
    pub inner: bb8::Pool<Manager>,
    wait: Duration,
    failures: Arc<ConnectFailures>,
}

impl Pool {
    /// Whether the pool holds connections that logged in (idle or in use): proof the instance
    /// is up, whatever a connect attempt just said.
    pub fn has_live_connections(&self) -> bool {
        self.inner.state().connections > 0
    }

    /// A connection from the pool; fails fast if the instance is down: a connect that fails
    /// while this caller waits is this caller's error, unless the pool still holds live
    /// connections. Then the instance is up (a connect timing out in a connection storm on a
    /// busy host, or the server's max_connections reached) and the caller waits on for one of
    /// them to come back, up to `pool_wait_timeout_ms`, instead of failing with every other
    /// waiter at once.
    pub async fn get(&self) -> Result<PooledConn, Error> {
        let get = self.inner.get_owned();
        tokio::pin!(get);
        let got = loop {
            // Registered before (re)polling bb8, so a failure during the wait is never missed.
            let failed = self.failures.failed.notified();
            tokio::select! {
                got = &mut get => break got,
                () = failed => {
                    if !self.has_live_connections() {
                        return Err(self.failures.last(&self.addr));
                    }
                }
            }
        };
        match got {
            Ok(mut c) => {
                // Warnings or an error another session's statement left behind are not this
                // one's to see.
                if c.warned
                    && let Err(e) = c.clear_diagnostics().await
                {
                    c.broken = true;
                    return Err(e);
                }
                Ok(c)
            }
            Err(bb8::RunError::User(e)) => Err(e),
            Err(bb8::RunError::TimedOut) => Err(Error::PoolTimeout {
                addr: self.addr.to_string(),
                ms: self.wait.as_millis() as u64,
            }),
        }
    }
}

/// Every pool of the proxy.
pub struct Pools {
    settings: BackendSettings,
    home: Option<tokio::runtime::Handle>,
    pools: Mutex<HashMap<(Arc<str>, u32), Pool>>,
}

impl Pools {
    pub fn new(settings: BackendSettings) -> Self {
        Self {
            settings,
            home: tokio::runtime::Handle::try_current().ok(),
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// The proxy's runtime, where backend connections are opened and driven.
    pub fn home(&self) -> Option<tokio::runtime::Handle> {
        self.home.clone()
    }

    /// The pool for `addr` and capability variant `variant`, created on first use.
    pub fn pool(&self, addr: &str, variant: u32) -> Pool {
        let mut map = self
            .pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = map
            .iter()
            .find(|((a, v), _)| &**a == addr && *v == variant)
            .map(|(_, p)| p.clone())
        {
            return p;
        }
        let addr: Arc<str> = Arc::from(addr);
        let wait = Duration::from_millis(self.settings.pool_wait_timeout_ms);
        let manager = Manager {
            socket: self.settings.sockets.get(&*addr).cloned(),
            home: self.home.clone(),
            addr: addr.clone(),
            user: self.settings.user.clone(),
            password: self.settings.password.clone(),
            variant,
            connect_timeout: Duration::from_millis(self.settings.connect_timeout_ms),
        };
        let failures = Arc::new(ConnectFailures::default());
        // The shared (pipelined) connections are the rest of `pool_size` (`backend/pipeline.rs`).
        let pooled = (self.settings.pool_size as usize)
            .saturating_sub(self.settings.shared_connections())
            .max(1);
        let inner = bb8::Pool::builder()
            .max_size(u32::try_from(pooled).unwrap_or(1))
            .min_idle(None)
            .test_on_check_out(false)
            .retry_connection(false)
            .connection_timeout(wait)
            .idle_timeout(Some(Duration::from_millis(self.settings.idle_timeout_ms)))
            .max_lifetime(None)
            .error_sink(Box::new(FailureSink(failures.clone())))
            .build_unchecked(manager);
        let pool = Pool {
            addr: addr.clone(),
            variant,
            inner,
            wait,
            failures,
        };
        map.insert((addr, variant), pool.clone());
        pool
    }

    /// A snapshot of all pools (for metrics and status).
    pub fn all(&self) -> Vec<Pool> {
        let map = self
            .pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut v: Vec<Pool> = map.values().cloned().collect();
        v.sort_by(|a, b| (&*a.addr, a.variant).cmp(&(&*b.addr, b.variant)));
        v
    }
}
