//! One raw-protocol connection to a backend server: login, the proxy's own commands, session-state
//! replay and the per-connection prepared-statement cache.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::Error;
use super::stream::BackendStream;
use crate::protocol::codec::Reader;
use crate::protocol::constants::*;
use crate::protocol::handshake::{Greeting, HandshakeResponse, parse_auth_switch};
use crate::protocol::response::{ErrPacket, parse_eof, parse_err, parse_ok, state_changes};
use crate::protocol::{Framed, auth};
use crate::session_state::{SessionState, quote_str};

/// Capabilities the proxy asks of every backend connection (plus the client variant bits).
const BACKEND_CAPABILITIES: u32 = CLIENT_LONG_PASSWORD
    | CLIENT_LONG_FLAG
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT_SESSION_TRACK;

/// Statements kept prepared per connection before the least recently prepared is closed.
const STMT_CACHE_SIZE: usize = 256;

/// Sent once after login (and after every reset): the server then reports every session change.
const INIT_SQL: &str = "SET SESSION session_track_system_variables = '*', session_track_schema = ON, \
                        session_track_state_change = ON";

/// What a prepared statement is cached under on a connection: its SQL text and the database that
/// was current when it was prepared. The server binds a prepared statement to that database (its
/// unqualified table names, even `DATABASE()`), so the same text prepared in another database is
/// another statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StmtKey {
    pub schema: Option<Arc<str>>,
    pub sql: StmtSql,
}

/// A prepared statement's SQL text with its hash, computed once when the client prepares it: every
/// EXECUTE looks the statement up in its backend connection's cache, and hashing the whole text
/// each time cost more than the rest of the lookup.
#[derive(Debug, Clone)]
pub struct StmtSql {
    text: Arc<str>,
    hash: u64,
}

impl StmtSql {
    pub fn new(text: Arc<str>) -> Self {
        // FNV-1a 64: a statement's text is short and this runs once per PREPARE.
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Self { text, hash }
    }

    pub fn text(&self) -> &Arc<str> {
        &self.text
    }
}

impl std::ops::Deref for StmtSql {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl PartialEq for StmtSql {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && (Arc::ptr_eq(&self.text, &other.text) || self.text == other.text)
    }
}

impl Eq for StmtSql {}

impl std::hash::Hash for StmtSql {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Hashes a [`StmtKey`] cheaply: the text's hash is precomputed, the database name is short.
#[derive(Default)]
pub struct StmtKeyHasher(u64);

impl std::hash::Hasher for StmtKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type StmtCache = HashMap<StmtKey, BackendStmt, std::hash::BuildHasherDefault<StmtKeyHasher>>;

/// A statement prepared on this connection.
#[derive(Debug, Clone)]
pub struct BackendStmt {
    pub id: u32,
    pub num_params: u16,
    pub num_columns: u16,
    /// The prepare answer's packets, framed, as the server sent them (replayed to clients that
    /// prepare the same SQL while it is cached here).
    pub answer: Arc<Vec<u8>>,
}

/// A column of a result the proxy reads itself.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub charset: u16,
    pub column_type: u8,
}

/// The answer to one of the proxy's own commands.
#[derive(Debug)]
pub enum Reply {
    Ok {
        affected_rows: u64,
        last_insert_id: u64,
        status: u16,
        warnings: u16,
    },
    Rows {
        columns: Vec<Column>,
        rows: Vec<Vec<Option<Vec<u8>>>>,
        status: u16,
    },
}

pub struct BackendConn {
    pub framed: Framed<BackendStream>,
    /// Capabilities in effect on this connection.
    pub caps: u32,
    /// Server thread id (for KILL).
    pub thread_id: u32,
    pub server_version: String,
    pub addr: Arc<str>,
    /// Set on any I/O or protocol failure; the pool then drops the connection.
    pub broken: bool,
    /// The session state this connection is in.
    pub state: SessionState,
    /// Whether CLIENT_MULTI_STATEMENTS is currently on (COM_SET_OPTION).
    pub multi_statements: bool,
    /// The instance's failure epoch when this connection was first used (see
    /// `Instance::epoch`): a connection from before a failure is discarded, not trusted.
    pub epoch: Option<u32>,
    /// The GTID of the last transaction a command of the proxy's own committed here (session
    /// tracking of `last_gtid`; read-your-writes after an XA commit).
    pub last_gtid: Option<peakgate_router::plan::Gtid>,
    /// The server's diagnostics area may hold warnings or an error of the last statement (an
    /// answer carried a warning count or an ERR): `SHOW WARNINGS` of the next session to take
    /// the connection would show them, so the pool clears them first ([`Self::clear_diagnostics`]).
    pub warned: bool,
    stmts: StmtCache,
    stmt_order: VecDeque<StmtKey>,
    /// Login credentials and the greeting's scramble, for COM_CHANGE_USER.
    login: Login,
}

struct Login {
    user: String,
    password: String,
    scramble: Vec<u8>,
}

impl BackendConn {
    /// Opens and logs in, over the unix `socket` when given (the instance is still named by
    /// `addr`). `variant` adds client capability bits that change answer shapes.
    pub async fn connect(
        addr: Arc<str>,
        socket: Option<&str>,
        user: &str,
        password: &str,
        variant: u32,
        timeout: Duration,
    ) -> Result<Self, Error> {
        match tokio::time::timeout(
            timeout,
            Self::connect_inner(addr.clone(), socket, user, password, variant),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(Error::Connect {
                addr: addr.to_string(),
                reason: format!("timed out after {timeout:?}"),
            }),
        }
    }

    async fn connect_inner(
        addr: Arc<str>,
        socket: Option<&str>,
        user: &str,
        password: &str,
        variant: u32,
    ) -> Result<Self, Error> {
        let a = addr.to_string();
        let stream = BackendStream::connect(&addr, socket)
            .await
            .map_err(|e| Error::Connect {
                addr: a.clone(),
                reason: match socket {
                    Some(path) => format!("unix socket {path}: {e}"),
                    None => e.to_string(),
                },
            })?;
        let mut framed = Framed::new(stream);
        let proto = |source| Error::Protocol {
            addr: a.clone(),
            source,
        };
        let (seq, greeting) = framed.read_packet(None, 1 << 20).await.map_err(proto)?;
        if greeting.first() == Some(&0xff) {
            let e = parse_err(&greeting).map_err(proto)?;
            return Err(Error::Connect {
                addr: a,
                reason: e.message,
            });
        }
        let g = Greeting::parse(&greeting).map_err(proto)?;
        let caps = (BACKEND_CAPABILITIES | (variant & VARIANT_CAPABILITIES))
            & (g.capabilities | CLIENT_LONG_PASSWORD);
        let scramble = &g.scramble[..g.scramble.len().min(20)];
        let resp = HandshakeResponse {
            capabilities: caps,
            max_packet: 1 << 30,
            collation: DEFAULT_COLLATION,
            user: user.as_bytes().to_vec(),
            auth_response: auth::native_scramble(password.as_bytes(), scramble),
            database: None,
            auth_plugin: Some(auth::NATIVE_PASSWORD.into()),
        };
        let mut next = framed.write_packet(seq.wrapping_add(1), &resp.encode());
        framed.flush().await.map_err(proto)?;
        loop {
            let (seq, p) = framed
                .read_packet(Some(next), 1 << 20)
                .await
                .map_err(proto)?;
            match p.first() {
                Some(0x00) => break,
                Some(0xff) => {
                    let e = parse_err(&p).map_err(proto)?;
                    return Err(Error::Login {
                        addr: a,
                        message: e.message,
                    });
                }
                Some(0xfe) => {
                    let (plugin, data) = parse_auth_switch(&p).map_err(proto)?;
                    if plugin != auth::NATIVE_PASSWORD {
                        return Err(Error::Login {
                            addr: a,
                            message: format!(
                                "backend asks for auth plugin {plugin}; only mysql_native_password is supported"
                            ),
                        });
                    }
                    let answer =
                        auth::native_scramble(password.as_bytes(), &data[..data.len().min(20)]);
                    next = framed.write_packet(seq.wrapping_add(1), &answer);
                    framed.flush().await.map_err(proto)?;
                }
                _ => {
                    return Err(Error::Login {
                        addr: a,
                        message: "unexpected packet during login".into(),
                    });
                }
            }
        }
        let mut conn = Self {
            framed,
            caps,
            thread_id: g.connection_id,
            server_version: g.server_version,
            addr,
            broken: false,
            state: SessionState::default(),
            multi_statements: true,
            epoch: None,
            last_gtid: None,
            warned: false,
            stmts: StmtCache::default(),
            stmt_order: VecDeque::new(),
            login: Login {
                user: user.to_string(),
                password: password.to_string(),
                scramble: scramble.to_vec(),
            },
        };
        conn.query(INIT_SQL).await?;
        conn.state = SessionState::default();
        Ok(conn)
    }

    fn proto_err(&mut self, source: crate::protocol::Error) -> Error {
        self.broken = true;
        Error::Protocol {
            addr: self.addr.to_string(),
            source,
        }
    }

    fn server_err(&self, err: ErrPacket) -> Error {
        Error::Server {
            addr: self.addr.to_string(),
            err,
        }
    }

    /// Sends one command packet (sequence 0) and flushes.
    pub async fn send_command(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.framed.write_packet(0, payload);
        if let Err(e) = self.framed.flush().await {
            return Err(self.proto_err(e));
        }
        Ok(())
    }

    /// Reads one packet of an answer.
    pub async fn read(&mut self) -> Result<bytes::BytesMut, Error> {
        match self.framed.read_packet(None, usize::MAX).await {
            Ok((_, p)) => Ok(p),
            Err(e) => Err(self.proto_err(e)),
        }
    }

    /// Runs a text query of the proxy's own and reads the whole answer (small results only).
    pub async fn query(&mut self, sql: &str) -> Result<Reply, Error> {
        let mut payload = Vec::with_capacity(sql.len() + 1);
        payload.push(COM_QUERY);
        payload.extend_from_slice(sql.as_bytes());
        self.command(&payload).await
    }

    /// Runs several `;`-separated statements of the proxy's own in one round trip: one entry per
    /// statement until the first error, where the server stops. Needs multi-statements on.
    pub async fn query_all(&mut self, sql: &str) -> Result<Vec<Result<Reply, ErrPacket>>, Error> {
        let mut payload = Vec::with_capacity(sql.len() + 1);
        payload.push(COM_QUERY);
        payload.extend_from_slice(sql.as_bytes());
        self.send_command(&payload).await?;
        let mut out = Vec::new();
        loop {
            match self.read_one_reply(true).await {
                Ok((r, more)) => {
                    out.push(Ok(r));
                    if !more {
                        return Ok(out);
                    }
                }
                Err(Error::Server { err, .. }) => {
                    out.push(Err(err));
                    return Ok(out);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends a command of the proxy's own and reads the whole answer, applying session tracking.
    pub async fn command(&mut self, payload: &[u8]) -> Result<Reply, Error> {
        self.send_command(payload).await?;
        self.read_reply(true).await
    }

    /// Sends a command and reads its whole answer, dropping the rows unread (text or binary
    /// protocol alike); `Reply::Rows` comes back with no rows.
    pub async fn command_discarding(&mut self, payload: &[u8]) -> Result<Reply, Error> {
        self.send_command(payload).await?;
        self.read_reply(false).await
    }

    async fn read_reply(&mut self, keep_rows: bool) -> Result<Reply, Error> {
        let mut reply = None;
        loop {
            let (r, more) = self.read_one_reply(keep_rows).await?;
            if reply.is_none() {
                reply = Some(r);
            }
            if !more {
                break;
            }
        }
        reply.ok_or_else(|| self.proto_err(crate::protocol::Error::Malformed("empty reply")))
    }

    async fn read_one_reply(&mut self, keep_rows: bool) -> Result<(Reply, bool), Error> {
        let first = self.read().await?;
        match first.first() {
            Some(0x00) => {
                let ok = parse_ok(&first, self.caps).map_err(|e| self.proto_err(e))?;
                self.warned |= ok.warnings > 0;
                if !ok.session_state.is_empty() {
                    let ch = state_changes(ok.session_state).map_err(|e| self.proto_err(e))?;
                    for c in &ch {
                        if let crate::protocol::response::StateChange::SystemVariable {
                            name,
                            value,
                        } = c
                            && name.eq_ignore_ascii_case(b"last_gtid")
                            && let Some(g) = std::str::from_utf8(value)
                                .ok()
                                .and_then(peakgate_router::plan::Gtid::parse)
                        {
                            self.last_gtid = Some(g);
                        }
                    }
                    self.state.apply(&ch);
                }
                let more = ok.status & SERVER_MORE_RESULTS_EXISTS != 0;
                Ok((
                    Reply::Ok {
                        affected_rows: ok.affected_rows,
                        last_insert_id: ok.last_insert_id,
                        status: ok.status,
                        warnings: ok.warnings,
                    },
                    more,
                ))
            }
            Some(0xff) => {
                let e = parse_err(&first).map_err(|e| self.proto_err(e))?;
                self.warned = true;
                Err(self.server_err(e))
            }
            Some(0xfe) if first.len() < 9 => {
                // EOF (COM_SET_OPTION's answer; an OK with header 0xfe under CLIENT_DEPRECATE_EOF).
                let status = if first.len() >= 5 {
                    u16::from_le_bytes([first[3], first[4]])
                } else {
                    0
                };
                let status = if self.caps & CLIENT_DEPRECATE_EOF != 0 {
                    parse_ok(&first, self.caps)
                        .map(|o| o.status)
                        .unwrap_or(status)
                } else {
                    status
                };
                Ok((
                    Reply::Ok {
                        affected_rows: 0,
                        last_insert_id: 0,
                        status,
                        warnings: 0,
                    },
                    false,
                ))
            }
            Some(0xfb) => Err(self.proto_err(crate::protocol::Error::Malformed(
                "LOCAL INFILE is not supported",
            ))),
            Some(_) => {
                let n = Reader::new(&first)
                    .lenenc_int()
                    .map_err(|e| self.proto_err(e))?;
                let mut columns = Vec::with_capacity(n.min(4096) as usize);
                for _ in 0..n {
                    let p = self.read().await?;
                    columns.push(parse_column(&p).map_err(|e| self.proto_err(e))?);
                }
                if self.caps & CLIENT_DEPRECATE_EOF == 0 {
                    self.read().await?;
                }
                let mut rows = Vec::new();
                loop {
                    let p = self.read().await?;
                    match p.first() {
                        Some(0xfe) if p.len() < MAX_PAYLOAD => {
                            let (warnings, status) = if self.caps & CLIENT_DEPRECATE_EOF != 0 {
                                let ok = parse_ok(&p, self.caps).map_err(|e| self.proto_err(e))?;
                                (ok.warnings, ok.status)
                            } else {
                                parse_eof(&p).map_err(|e| self.proto_err(e))?
                            };
                            self.warned |= warnings > 0;
                            let more = status & SERVER_MORE_RESULTS_EXISTS != 0;
                            return Ok((
                                Reply::Rows {
                                    columns,
                                    rows,
                                    status,
                                },
                                more,
                            ));
                        }
                        Some(0xff) => {
                            let e = parse_err(&p).map_err(|e| self.proto_err(e))?;
                            self.warned = true;
                            return Err(self.server_err(e));
                        }
                        _ if !keep_rows => {}
                        _ => {
                            let mut r = Reader::new(&p);
                            let mut row = Vec::with_capacity(columns.len());
                            for _ in 0..columns.len() {
                                row.push(
                                    r.lenenc_str_or_null()
                                        .map_err(|e| self.proto_err(e))?
                                        .map(<[u8]>::to_vec),
                                );
                            }
                            rows.push(row);
                        }
                    }
                }
            }
            None => Err(self.proto_err(crate::protocol::Error::Malformed("empty packet"))),
        }
    }

    /// Makes this connection's session match `want`: database, variables, LAST_INSERT_ID.
    pub async fn sync_to(&mut self, want: &SessionState) -> Result<(), Error> {
        if want.schema != self.state.schema {
            match &want.schema {
                Some(db) => {
                    let mut p = Vec::with_capacity(db.len() + 1);
                    p.push(COM_INIT_DB);
                    p.extend_from_slice(db.as_bytes());
                    self.command(&p).await?;
                    self.state.schema = Some(db.clone());
                }
                None => self.change_user().await?,
            }
        }
        if let Some(sql) = want.replay_sql(&self.state) {
            self.query(&sql).await?;
            self.state.sysvars = want.sysvars.clone();
            self.state.user_vars = want.user_vars.clone();
            self.state.last_insert_id = want.last_insert_id;
        }
        Ok(())
    }

    /// Empties the server's diagnostics area: only a statement that uses a table clears it (not
    /// `SELECT 1`, `DO 0` or `SET`), and a derived table counts without touching a real one.
    pub async fn clear_diagnostics(&mut self) -> Result<(), Error> {
        self.query("DO (SELECT 1 FROM (SELECT 1) AS t)").await?;
        self.warned = false;
        Ok(())
    }

    /// COM_RESET_CONNECTION: rolls back, releases locks, drops temporary tables and prepared
    /// statements, restores defaults. The connection is then as fresh from the pool.
    pub async fn reset(&mut self) -> Result<(), Error> {
        self.command(&[COM_RESET_CONNECTION]).await?;
        self.stmts.clear();
        self.stmt_order.clear();
        self.multi_statements = true;
        self.query(INIT_SQL).await?;
        // The reset keeps no database selected only if none was; ask rather than guess.
        let db = match self.query("SELECT DATABASE()").await? {
            Reply::Rows { rows, .. } => rows
                .into_iter()
                .next()
                .and_then(|r| r.into_iter().next().flatten()),
            Reply::Ok { .. } => None,
        };
        self.state = SessionState {
            schema: db.map(|d| String::from_utf8_lossy(&d).into_owned()),
            ..Default::default()
        };
        Ok(())
    }

    /// COM_CHANGE_USER to the same backend user with no database: everything COM_RESET_CONNECTION
    /// does, and the current database is cleared too (which nothing else can do).
    pub async fn change_user(&mut self) -> Result<(), Error> {
        let mut p = vec![COM_CHANGE_USER];
        p.extend_from_slice(self.login.user.as_bytes());
        p.push(0);
        let answer = auth::native_scramble(self.login.password.as_bytes(), &self.login.scramble);
        p.push(answer.len() as u8);
        p.extend_from_slice(&answer);
        p.push(0);
        p.extend_from_slice(&u16::from(DEFAULT_COLLATION).to_le_bytes());
        p.extend_from_slice(auth::NATIVE_PASSWORD.as_bytes());
        p.push(0);
        self.send_command(&p).await?;
        loop {
            let (seq, reply) = match self.framed.read_packet(None, 1 << 20).await {
                Ok(r) => r,
                Err(e) => return Err(self.proto_err(e)),
            };
            match reply.first() {
                Some(0x00) => break,
                Some(0xfe) => {
                    let (_, data) = parse_auth_switch(&reply).map_err(|e| self.proto_err(e))?;
                    let data = &data[..data.len().min(20)];
                    self.login.scramble = data.to_vec();
                    let answer = auth::native_scramble(self.login.password.as_bytes(), data);
                    self.framed.write_packet(seq.wrapping_add(1), &answer);
                    if let Err(e) = self.framed.flush().await {
                        return Err(self.proto_err(e));
                    }
                }
                _ => {
                    self.broken = true;
                    let e = parse_err(&reply).map_err(|e| self.proto_err(e))?;
                    return Err(self.server_err(e));
                }
            }
        }
        self.stmts.clear();
        self.stmt_order.clear();
        self.multi_statements = true;
        self.query(INIT_SQL).await?;
        self.state = SessionState::default();
        Ok(())
    }

    /// Reads the values of user variables (after a statement assigned them) as SQL expressions.
    pub async fn capture_user_vars(
        &mut self,
        names: &[String],
    ) -> Result<Vec<(String, String)>, Error> {
        let select = names
            .iter()
            .map(|n| format!("@{}", crate::session_state::quote_ident(n)))
            .collect::<Vec<_>>()
            .join(", ");
        let reply = self.query(&format!("SELECT {select}")).await?;
        let Reply::Rows { columns, rows, .. } = reply else {
            return Ok(Vec::new());
        };
        let Some(row) = rows.into_iter().next() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(names.len());
        for ((name, col), val) in names.iter().zip(columns.iter()).zip(row) {
            let expr = match val {
                None => "NULL".to_string(),
                Some(v) => match col.column_type {
                    MYSQL_TYPE_TINY
                    | MYSQL_TYPE_SHORT
                    | MYSQL_TYPE_LONG
                    | MYSQL_TYPE_LONGLONG
                    | MYSQL_TYPE_INT24
                    | MYSQL_TYPE_DECIMAL
                    | MYSQL_TYPE_NEWDECIMAL
                        if v.iter()
                            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'.')) =>
                    {
                        String::from_utf8_lossy(&v).into_owned()
                    }
                    MYSQL_TYPE_DOUBLE | MYSQL_TYPE_FLOAT => {
                        format!("CAST({} AS DOUBLE)", quote_str(&v))
                    }
                    _ if col.charset == 63 => crate::session_state::hex_literal(&v),
                    _ => format!(
                        "CONVERT({} USING utf8mb4)",
                        crate::session_state::hex_literal(&v)
                    ),
                },
            };
            out.push((name.clone(), expr));
        }
        Ok(out)
    }

    /// The cached prepare of `key` on this connection.
    pub fn cached_stmt(&self, key: &StmtKey) -> Option<&BackendStmt> {
        self.stmts.get(key)
    }

    /// Remembers a prepare; returns the id of a statement evicted to make room (to be closed).
    pub fn cache_stmt(&mut self, key: StmtKey, stmt: BackendStmt) -> Option<u32> {
        let mut evicted = None;
        if self.stmts.len() >= STMT_CACHE_SIZE
            && let Some(old) = self.stmt_order.pop_front()
        {
            evicted = self.stmts.remove(&old).map(|s| s.id);
        }
        self.stmt_order.push_back(key.clone());
        self.stmts.insert(key, stmt);
        evicted
    }
}

/// Decodes a Column Definition 41 packet.
pub fn parse_column(p: &[u8]) -> Result<Column, crate::protocol::Error> {
    let mut r = Reader::new(p);
    for _ in 0..4 {
        r.lenenc_str()?;
    }
    let name = String::from_utf8_lossy(r.lenenc_str()?).into_owned();
    r.lenenc_str()?;
    r.lenenc_int()?;
    let charset = r.u16()?;
    r.u32()?;
    let column_type = r.u8()?;
    Ok(Column {
        name,
        charset,
        column_type,
    })
}
