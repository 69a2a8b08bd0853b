//! One client session: handshake and login, then the command loop (a state machine over the
//! commands below). Start reading at `serve_client`.
//!
//! Backend connection ownership (multiplexing): a session holds a backend connection only while
//! something connection-bound is alive (`Pins`): an open transaction, temporary tables, user
//! locks, LOCK TABLES, server-side named prepares, cursors, or the statement right after one whose
//! result depends on the connection (warnings, SQL_CALC_FOUND_ROWS, SET TRANSACTION). Otherwise the
//! connection goes back to the pool after every statement, and the next one replays the session
//! state (database, variables, LAST_INSERT_ID) onto whatever connection it gets. A held
//! connection that dies under a transaction leaves the session refusing statements until the
//! client ends it (`lost.rs`).

mod handshake;
mod hot;
pub mod kill;
pub mod lane;
mod lost;
mod prepared;
mod protect;
mod query;
mod route;
mod shard;
mod xa;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::backend::PooledConn;
use crate::backend::pool::Pool;
use crate::errors::{ClientError, from_protocol};
use crate::metrics::METRICS;
use crate::protocol::constants::*;
use crate::protocol::response::{encode_eof, encode_err, simple_ok};
use crate::protocol::tls::ClientStream;
use crate::protocol::{self, Framed};
use crate::server::Shared;
use crate::session_state::SessionState;

pub use prepared::ProxyStmt;
pub(crate) use shard::now_ms;

/// Reasons the session keeps its backend connection.
#[derive(Debug, Default, Clone)]
pub struct Pins {
    /// The server reports an open transaction (SERVER_STATUS_IN_TRANS).
    pub in_txn: bool,
    /// Temporary tables created and not yet dropped.
    pub temp_tables: u32,
    /// GET_LOCK calls not yet released.
    pub locks: u32,
    /// LOCK TABLES in effect.
    pub lock_tables: bool,
    /// State the proxy cannot move: SQL-level PREPARE, HANDLER, XA, open cursors.
    pub sticky: bool,
    /// Keep for the next statement only (SHOW WARNINGS, FOUND_ROWS(), SET TRANSACTION).
    pub one_shot: bool,
}

impl Pins {
    pub fn holds(&self) -> bool {
        self.in_txn
            || self.temp_tables > 0
            || self.locks > 0
            || self.lock_tables
            || self.sticky
            || self.one_shot
    }

    /// Whether the connection is kept for the next statement only (its warnings, FOUND_ROWS()),
    /// which binds the session to nothing: a statement for another shard lets it go.
    pub fn only_one_shot(&self) -> bool {
        self.one_shot && !self.needs_reset()
    }

    /// Whether a connection given up in this state must be reset before anyone else uses it.
    pub fn needs_reset(&self) -> bool {
        self.in_txn || self.temp_tables > 0 || self.locks > 0 || self.lock_tables || self.sticky
    }
}

pub struct Session {
    shared: Arc<Shared>,
    client: Framed<ClientStream>,
    conn_id: u32,
    /// This session as other sessions' KILL sees it.
    ctl: kill::SessionHandle,
    peer: SocketAddr,
    user: String,
    caps: u32,
    scramble: [u8; 20],
    /// The default primary's pool (login checks; statements go through `route`).
    pool: Pool,
    /// Pools and shared connections per instance, by `Instance::index`, made on first use.
    handles: Vec<Option<route::Handles>>,
    /// When the session last wrote (read-your-writes `sticky_primary_ms`).
    last_write: Option<Instant>,
    /// The GTID of the session's last committed write per shard (read-your-writes `gtid`).
    last_gtids: Vec<Option<peakgate_router::plan::Gtid>>,
    /// The user's shared read-your-writes state (`read_your_writes_scope = "user"`).
    user_ryw: Option<Arc<crate::server::UserWrites>>,
    /// A BEGIN held back until the first statement shows which shard the transaction lives on
    /// (only with a shard map).
    deferred_begin: Option<String>,
    /// The open cross-shard (XA) transaction (`cross_shard_transactions = "xa"`).
    xa: Option<xa::XaTxn>,
    /// What the session lost with a backend connection that died under its transaction (or
    /// its temporary tables, locks): statements are refused until the client ends the
    /// transaction (`lost.rs`).
    lost: Option<String>,
    /// The running statement's digest, for `/status/digests`.
    current_digest: Option<u64>,
    /// The running statement's digest text (a buffer kept across statements: no allocation per
    /// statement).
    current_digest_text: String,
    /// The running statement ended in an ERR.
    statement_failed: bool,
    /// Rows the running statement sent or changed.
    statement_rows: u64,
    /// The one hot SKU the running statement is about (set by the hot-SKU decision).
    hot_sku: Option<u64>,
    /// The session's last statement, when it was a read (text or prepared) on a shared
    /// (pipelined) connection that left warnings: `SHOW WARNINGS` right after it runs it again on a pooled connection
    /// to read them there (`query.rs`).
    warned_read: Option<query::WarnedRead>,
    /// While a prepared statement executes: the database it was prepared in, where its
    /// unqualified table names live (MariaDB resolves them at prepare time).
    exec_db: Option<Arc<str>>,
    /// The runtime the session runs on (`lane.rs`).
    lane: lane::Lane,
    /// The running statement went through the hot-row queue.
    hot_written: bool,
    /// When the session's last write through the hot-row queue was answered.
    last_hot_write: Option<Instant>,
    /// The SKUs of the hot table the running statement (or open transaction) uses: a row move
    /// waits for them (`hotmove/gate.rs`).
    hot_passes: Vec<crate::hotmove::gate::Pass>,
    /// The running statement's execution time limit (a limits rule's `max_execution_ms`).
    exec_limit: Option<std::time::Duration>,
    state: SessionState,
    /// State right after login (charset from the handshake), restored by COM_RESET_CONNECTION.
    initial_state: SessionState,
    multi_statements: bool,
    pinned: Option<PooledConn>,
    pins: Pins,
    stmts: HashMap<u32, ProxyStmt>,
    next_stmt_id: u32,
}

/// A client's place among `max_client_connections`, and its count in the client gauge, for as
/// long as its session lives (on whichever lane).
pub struct ClientGuard {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl ClientGuard {
    pub fn new(permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        Self { _permit: permit }
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        METRICS.client_connections.dec();
    }
}

/// Serves one client connection to its end. Never panics on input; a broken client only loses
/// its own connection.
pub async fn serve_client(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    conn_id: u32,
    guard: ClientGuard,
) {
    let client = Framed::new(ClientStream::Plain(stream));
    let Some(session) = handshake::login(shared, client, peer, conn_id).await else {
        return;
    };
    tracing::Span::current().record("user", session.user.as_str());
    debug!("logged in");
    drive(Box::new(session), guard, false).await;
}

/// Runs a session on the current runtime until it ends, or until it moves to the other lane
/// (`lane.rs`): then it goes on in a task there. `moved`: it just arrived from the other lane.
fn drive(
    mut session: Box<Session>,
    guard: ClientGuard,
    moved: bool,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    use tracing::Instrument;
    Box::pin(async move {
        let shared = session.shared.clone();
        // A session that ends on the sale lane is counted out of it.
        let leave = |session: &Session| {
            if let (lane::Lane::Sale, Some(lane)) = (session.lane, shared.sale_lane.as_ref()) {
                lane.moved(lane::Lane::Main);
            }
        };
        if moved && let Err(e) = session.client.get_mut().rehome() {
            debug!(error = %e, "client socket could not move to this lane");
            leave(&session);
            return;
        }
        let moved = session.run().await;
        if let (Some(to), Some(lane)) = (moved, shared.sale_lane.as_ref()) {
            lane.moved(to);
            let span = tracing::Span::current();
            lane.handle(to)
                .spawn(drive(session, guard, true).instrument(span));
            return;
        }
        leave(&session);
        session.close().await;
        drop(guard);
    })
}

/// What the loop does after a command.
enum Next {
    Continue,
    Close,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.forget_statements();
    }
}

impl Session {
    /// Serves commands until the client goes (`None`) or the session should move to another
    /// lane between two statements (`Some(lane)`, see `lane.rs`).
    async fn run(&mut self) -> Option<lane::Lane> {
        let max = self.shared.config.proxy.max_allowed_packet;
        loop {
            self.client.shrink();
            let ctl = self.ctl.ctl.clone();
            // A killed session reads no further command (`killed` is ready at once then).
            let read = tokio::select! {
                biased;
                () = ctl.killed() => return None,
                r = self.client.read_packet(Some(0), max) => r,
            };
            let (seq, payload) = match read {
                Ok(p) => p,
                Err(protocol::Error::Closed) => return None,
                Err(protocol::Error::Io(e)) => {
                    debug!(error = %e, "client read failed");
                    return None;
                }
                Err(e) => {
                    let ce = from_protocol(&e);
                    warn!(error = %e, "closing client on bad input");
                    self.send_error(2, &ce).await;
                    return None;
                }
            };
            let started = Instant::now();
            let next = match self.dispatch(seq, &payload).await {
                Ok(n) => n,
                Err(_) => return None,
            };
            self.release_hot_passes();
            let us = started.elapsed().as_micros() as u64;
            METRICS.latency.observe_us(us);
            self.record_digest(us);
            if let Next::Close = next {
                return None;
            }
            if let Some(to) = self.lane_move() {
                return Some(to);
            }
        }
    }

    /// After a statement: the lane the session should move to, if any. Onto the sale lane after
    /// a write that went through the hot-row queue; back after a statement that did not, once
    /// the last such write is `lane_linger_ms` old. Never while the session holds anything tied
    /// to a backend connection.
    fn lane_move(&mut self) -> Option<lane::Lane> {
        let hot = std::mem::take(&mut self.hot_written);
        let sale = self.shared.sale_lane.as_ref()?;
        let to = match self.lane {
            lane::Lane::Main if hot => lane::Lane::Sale,
            lane::Lane::Sale
                if !hot
                    && self
                        .last_hot_write
                        .is_none_or(|t| t.elapsed() >= sale.linger) =>
            {
                lane::Lane::Main
            }
            _ => return None,
        };
        if self.pinned.is_some()
            || self.xa.is_some()
            || self.deferred_begin.is_some()
            || self.pins.holds()
        {
            return None;
        }
        self.lane = to;
        Some(to)
    }

    /// Handles one command. `Err` means the client is gone.
    async fn dispatch(&mut self, seq: u8, payload: &[u8]) -> Result<Next, protocol::Error> {
        let reply_seq = seq.wrapping_add(1);
        let Some(&cmd) = payload.first() else {
            self.send_error(
                reply_seq,
                &ClientError::new(1047, "08S01", "Unknown command: empty packet"),
            )
            .await;
            return Ok(Next::Continue);
        };
        let warned = self.warned_read.take();
        match cmd {
            COM_QUIT => return Ok(Next::Close),
            COM_PING => self.send_ok(reply_seq).await?,
            COM_QUERY => self.com_query(reply_seq, payload, warned).await?,
            COM_PROCESS_KILL => {
                let Some(id) = payload.get(1..5) else {
                    let e = ClientError::new(1047, "08S01", "Malformed COM_PROCESS_KILL");
                    self.send_error(reply_seq, &e).await;
                    return Ok(Next::Continue);
                };
                let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
                let kill = kill::Kill::Id {
                    id: u64::from(id),
                    query: false,
                };
                if self.kill(reply_seq, kill).await? {
                    return Ok(Next::Close);
                }
            }
            COM_INIT_DB => {
                self.forward_simple(reply_seq, payload, crate::execute::AnswerKind::Results)
                    .await?
            }
            COM_FIELD_LIST => {
                self.forward_simple(reply_seq, payload, crate::execute::AnswerKind::FieldList)
                    .await?
            }
            COM_STATISTICS => {
                self.forward_simple(reply_seq, payload, crate::execute::AnswerKind::Single)
                    .await?
            }
            COM_SET_OPTION => self.com_set_option(reply_seq, payload).await?,
            COM_RESET_CONNECTION => {
                self.reset_session(true).await;
                self.send_ok(reply_seq).await?;
            }
            COM_CHANGE_USER => return handshake::change_user(self, reply_seq, &payload[1..]).await,
            COM_STMT_PREPARE => self.stmt_prepare(reply_seq, payload).await?,
            COM_STMT_EXECUTE => self.stmt_execute(reply_seq, payload).await?,
            COM_STMT_SEND_LONG_DATA => self.stmt_send_long_data(payload).await,
            COM_STMT_CLOSE => self.stmt_close(payload),
            COM_STMT_RESET => self.stmt_reset(reply_seq, payload).await?,
            COM_STMT_FETCH => self.stmt_fetch(reply_seq, payload).await?,
            other => {
                let e = ClientError::new(1047, "08S01", format!("Unknown command 0x{other:02x}"));
                self.send_error(reply_seq, &e).await;
            }
        }
        Ok(Next::Continue)
    }

    async fn com_set_option(&mut self, seq: u8, payload: &[u8]) -> Result<(), protocol::Error> {
        match payload.get(1..3).map(|b| u16::from_le_bytes([b[0], b[1]])) {
            Some(0) => self.multi_statements = true,
            Some(1) => self.multi_statements = false,
            _ => {
                let e = ClientError::new(1047, "08S01", "Unknown option for COM_SET_OPTION");
                self.send_error(seq, &e).await;
                return Ok(());
            }
        }
        let status = self.status_flags();
        if self.caps & CLIENT_DEPRECATE_EOF != 0 {
            // Under CLIENT_DEPRECATE_EOF the EOF becomes an OK with the EOF header.
            let mut ok = simple_ok(status, self.caps);
            ok[0] = 0xfe;
            self.client.write_packet(seq, &ok);
        } else {
            self.client.write_packet(seq, &encode_eof(0, status));
        }
        self.client.flush().await
    }

    /// The status flags the client should see from an answer the proxy makes itself.
    fn status_flags(&self) -> u16 {
        let mut s = 0;
        if self.pins.in_txn || self.deferred_begin.is_some() || self.xa.is_some() {
            s |= SERVER_STATUS_IN_TRANS;
        }
        if self.state.is_autocommit() {
            s |= SERVER_STATUS_AUTOCOMMIT;
        }
        s
    }

    /// An OK the proxy composes for a statement it ran itself (several shards, the hot-row
    /// queue): its counts and the session's status flags.
    async fn send_ok_counts(
        &mut self,
        seq: u8,
        affected_rows: u64,
        last_insert_id: u64,
        warnings: u16,
    ) -> Result<(), protocol::Error> {
        let packet = crate::protocol::response::OkPacket {
            affected_rows,
            last_insert_id,
            status: self.status_flags(),
            warnings,
            info: b"",
            session_state: b"",
        };
        let mut ok = Vec::new();
        crate::protocol::response::encode_ok(&mut ok, 0x00, &packet, self.caps);
        self.client.write_packet(seq, &ok);
        self.client.flush().await
    }

    async fn send_ok(&mut self, seq: u8) -> Result<(), protocol::Error> {
        let ok = simple_ok(self.status_flags(), self.caps);
        self.client.write_packet(seq, &ok);
        self.client.flush().await
    }

    /// Sends an ERR (errors writing it are ignored: the client may already be gone).
    async fn send_error(&mut self, seq: u8, e: &ClientError) {
        METRICS.error(e.code);
        self.statement_failed = true;
        self.client
            .write_packet(seq, &encode_err(e.code, e.sqlstate, &e.message));
        let _ = self.client.flush().await;
    }

    async fn send_error_raw(
        &mut self,
        seq: u8,
        code: u16,
        sqlstate: &str,
        message: &str,
    ) -> Result<(), protocol::Error> {
        METRICS.error(code);
        self.statement_failed = true;
        self.client
            .write_packet(seq, &encode_err(code, sqlstate, message));
        self.client.flush().await
    }

    /// Gives up a connection kept only for the next statement, because the statement now
    /// running goes elsewhere (another shard, several, a held-back BEGIN); `true` if it did.
    /// Unlike `release_pinned`, a held-back BEGIN and an XA transaction stay.
    fn drop_one_shot_pin(&mut self) -> bool {
        if self.pinned.is_none() || !self.pins.only_one_shot() {
            return false;
        }
        drop(self.pinned.take());
        self.pins = Pins::default();
        true
    }

    /// Gives up the backend connection: reset it first if it carries connection-bound state.
    async fn release_pinned(&mut self) {
        self.deferred_begin = None;
        self.xa_abandon();
        if let Some(mut c) = self.pinned.take() {
            if (self.pins.needs_reset() || c.broken) && c.reset().await.is_err() {
                c.broken = true;
            }
            drop(c);
        }
        self.pins = Pins::default();
    }

    /// COM_RESET_CONNECTION / COM_CHANGE_USER: the session starts over (the database stays when `keep_db`).
    async fn reset_session(&mut self, keep_db: bool) {
        self.release_pinned().await;
        self.lost = None;
        let schema = self.state.schema.take();
        self.state = self.initial_state.clone();
        if keep_db {
            self.state.schema = schema;
        }
        self.forget_statements();
        self.multi_statements = self.caps & CLIENT_MULTI_STATEMENTS != 0;
    }

    /// Drops the session's prepared statements from the proxy-wide count and the session.
    fn forget_statements(&mut self) {
        let n = self.stmts.len();
        self.shared
            .prepared_stmts
            .fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
        self.stmts.clear();
    }

    /// The database the running statement's unqualified table names are in, for routing: a
    /// prepared statement's own while it executes, otherwise the session's current one.
    pub(super) fn names_db(&self) -> Option<&str> {
        self.exec_db.as_deref().or(self.state.schema.as_deref())
    }

    async fn close(&mut self) {
        debug!(conn_id = self.conn_id, "session ends");
        self.release_pinned().await;
    }
}
