//! Pipelined backend connections: independent autocommit reads of many clients share a few
//! backend connections, their commands written together (one write carries several) and their
//! answers read back in order (MySQL answers commands on a connection in the order it got them).
//!
//! How a statement goes through a `PipeConn`:
//! 1. Under a short std mutex the session appends its framed command (preceded by COM_INIT_DB when
//!    the connection's database differs) to the pending bytes, and its answer channel to the FIFO
//!    of waiting answers, in the same order.
//! 2. If no write is in flight, it becomes the flusher: it writes all pending bytes (its own and
//!    those appended meanwhile by others) until none are left ("flat combining").
//! 3. The connection's reader task reads answers back to back and streams each one, in bounded
//!    chunks, to the session that waits for it; the session writes them to its client. A session
//!    that went away has its answer read and dropped, so the connection stays in step.
//!
//! Only statements that need nothing of a connection but its database and system variables are
//! eligible (the frontend decides); the rest use the pool. A broken `PipeConn` fails the statements
//! queued on it (the frontend retries them on the pool) and is replaced in the background.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::PollSender;

use super::stream::{ReadHalf as OwnedReadHalf, WriteHalf as OwnedWriteHalf};
use super::{BackendConn, Error};
use crate::execute::{AnswerKind, Outcome, RelayError, Source, relay_from};
use crate::protocol::Framed;
use crate::protocol::constants::*;
use crate::protocol::packet::frame_into;
use crate::protocol::response::parse_err;
use crate::session_state::SessionState;

/// What the reader task sends a waiting session.
pub enum Answer {
    /// Framed packets to forward to the client as they are.
    Bytes(Vec<u8>),
    /// The answer is complete.
    Done(Outcome),
    /// The answer failed; `next_seq` continues the client's sequence.
    Failed(RelayError),
    /// A COM_STMT_PREPARE's answer: the statement id and parameter count, or the server's error.
    Prepared(Result<(u32, u16), crate::protocol::response::ErrPacket>),
}

struct Waiter {
    tx: mpsc::Sender<Answer>,
    /// When the command was queued.
    queued: std::time::Instant,
    client_caps: u32,
    init_db: bool,
    /// The command is a COM_STMT_PREPARE (its answer is kept by the proxy, not relayed).
    prepare: bool,
}

/// Statements prepared on a shared connection, by (database, SQL).
type StmtCache = std::collections::HashMap<(Option<Arc<str>>, Arc<str>), (u32, u16)>;

/// Prepared statements kept per shared connection before some are closed.
const STMT_CACHE_SIZE: usize = 256;

/// One shared backend connection.
pub struct PipeConn {
    addr: Arc<str>,
    /// The system variables every statement on this connection runs with.
    pub sysvars: std::collections::BTreeMap<String, String>,
    write: Mutex<WriteSide>,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    waiters_changed: Notify,
    broken: AtomicBool,
    stmts: Mutex<StmtCache>,
}

struct WriteSide {
    pending: Vec<u8>,
    /// Answers expected, in the order their commands were appended.
    waiters: VecDeque<Waiter>,
    /// The database the connection will be in after the pending commands.
    schema: Option<String>,
    flushing: bool,
    /// When the command whose answer the reader is reading now was queued.
    answering: Option<std::time::Instant>,
}

/// Flush chunks to the session at this size.
const CHUNK: usize = 64 * 1024;

impl PipeConn {
    /// Turns a logged-in connection into a shared one and starts its reader task.
    pub fn start(conn: BackendConn) -> Arc<Self> {
        let BackendConn {
            framed,
            caps,
            addr,
            state,
            ..
        } = conn;
        let (stream, leftover) = framed.into_parts();
        let (r, w) = stream.into_split();
        let pipe = Arc::new(Self {
            addr,
            sysvars: state.sysvars.clone(),
            write: Mutex::new(WriteSide {
                pending: Vec::with_capacity(16 * 1024),
                waiters: VecDeque::new(),
                schema: state.schema.clone(),
                flushing: false,
                answering: None,
            }),
            writer: tokio::sync::Mutex::new(w),
            waiters_changed: Notify::new(),
            broken: AtomicBool::new(false),
            stmts: Mutex::new(StmtCache::new()),
        });
        debug_assert!(leftover.is_empty());
        tokio::spawn(reader(pipe.clone(), Framed::new(r), caps, state));
        pipe
    }

    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Whether the oldest command still unanswered (the one whose answer is being read, else the
    /// first queued) was queued longer than `stall` ago: a slow read is running, and whatever is
    /// queued now waits behind it.
    fn stalled(&self, stall: std::time::Duration) -> bool {
        let w = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        w.answering
            .or_else(|| w.waiters.front().map(|f| f.queued))
            .is_some_and(|t| t.elapsed() > stall)
    }

    fn lost(&self) -> Error {
        Error::Protocol {
            addr: self.addr.to_string(),
            source: crate::protocol::Error::Malformed("shared backend connection failed"),
        }
    }

    /// Marks the connection broken and fails every waiting statement.
    fn fail_all(&self) {
        self.broken.store(true, Ordering::Release);
        let waiters: Vec<Waiter> = {
            let mut w = self
                .write
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            w.waiters.drain(..).collect()
        };
        for waiter in waiters {
            let _ = waiter.tx.try_send(Answer::Failed(RelayError {
                source: self.lost(),
                next_seq: 1,
                flushed: false,
            }));
        }
        self.waiters_changed.notify_one();
    }

    /// Queues one command (`payload`, command byte first) to run in database `schema`; returns
    /// the channel its answer arrives on.
    async fn enqueue(
        &self,
        schema: &str,
        payload: &[u8],
        client_caps: u32,
        prepare: bool,
    ) -> Result<mpsc::Receiver<Answer>, RelayError> {
        let (tx, rx) = mpsc::channel(4);
        let flusher = {
            let mut w = self
                .write
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if self.is_broken() {
                return Err(RelayError {
                    source: self.lost(),
                    next_seq: 1,
                    flushed: false,
                });
            }
            let init_db = w.schema.as_deref() != Some(schema);
            if init_db {
                let mut p = Vec::with_capacity(schema.len() + 1);
                p.push(COM_INIT_DB);
                p.extend_from_slice(schema.as_bytes());
                frame_into(&mut w.pending, 0, &p);
                w.schema = Some(schema.to_string());
            }
            frame_into(&mut w.pending, 0, payload);
            w.waiters.push_back(Waiter {
                tx,
                queued: std::time::Instant::now(),
                client_caps,
                init_db,
                prepare,
            });
            let flusher = !w.flushing;
            w.flushing = true;
            flusher
        };
        self.waiters_changed.notify_one();
        if flusher {
            self.flush_pending().await;
        }
        Ok(rx)
    }

    /// Runs one command (`payload`, command byte first) in database `schema` and relays the answer
    /// to `client`.
    pub async fn run<C: AsyncWrite + Unpin>(
        &self,
        schema: &str,
        payload: &[u8],
        client: &mut Framed<C>,
        client_caps: u32,
    ) -> Result<Outcome, RelayError> {
        let mut rx = self.enqueue(schema, payload, client_caps, false).await?;
        while let Some(answer) = rx.recv().await {
            match answer {
                Answer::Bytes(b) => {
                    client.write_raw(&b);
                    if client.flush().await.is_err() {
                        // Dropping `rx` tells the reader to drain the rest of this answer.
                        return Ok(Outcome {
                            client_gone: true,
                            ..Default::default()
                        });
                    }
                }
                Answer::Done(out) => return Ok(out),
                Answer::Failed(e) => return Err(e),
                Answer::Prepared(_) => break,
            }
        }
        Err(RelayError {
            source: self.lost(),
            next_seq: 1,
            flushed: false,
        })
    }

    /// The statement id and parameter count of `sql` prepared in `schema` on this connection,
    /// preparing it first if needed. `Ok(Err(_))` is the server refusing the prepare.
    pub async fn prepared(
        &self,
        schema: &Arc<str>,
        sql: &Arc<str>,
    ) -> Result<Result<(u32, u16), crate::protocol::response::ErrPacket>, RelayError> {
        let key = (Some(schema.clone()), sql.clone());
        if let Some(v) = self
            .stmts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            return Ok(Ok(*v));
        }
        let mut p = Vec::with_capacity(sql.len() + 1);
        p.push(COM_STMT_PREPARE);
        p.extend_from_slice(sql.as_bytes());
        let mut rx = self.enqueue(schema, &p, 0, true).await?;
        match rx.recv().await {
            Some(Answer::Prepared(Ok(v))) => {
                let evicted = {
                    let mut stmts = self
                        .stmts
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let evicted = if stmts.len() >= STMT_CACHE_SIZE {
                        let k = stmts.keys().next().cloned();
                        k.and_then(|k| stmts.remove(&k)).map(|(id, _)| id)
                    } else {
                        None
                    };
                    stmts.insert(key, v);
                    evicted
                };
                if let Some(id) = evicted {
                    // COM_STMT_CLOSE has no answer: it only joins the pending bytes.
                    let mut w = self
                        .write
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let mut close = vec![COM_STMT_CLOSE];
                    close.extend_from_slice(&id.to_le_bytes());
                    frame_into(&mut w.pending, 0, &close);
                }
                Ok(Ok(v))
            }
            Some(Answer::Prepared(Err(e))) => Ok(Err(e)),
            Some(Answer::Failed(e)) => Err(e),
            _ => Err(RelayError {
                source: self.lost(),
                next_seq: 1,
                flushed: false,
            }),
        }
    }

    /// Writes pending bytes until there are none; the caller set `flushing`.
    async fn flush_pending(&self) {
        // Let sessions that are ready right now append their commands first, so one write
        // carries them all.
        tokio::task::yield_now().await;
        let mut writer = self.writer.lock().await;
        loop {
            let buf = {
                let mut w = self
                    .write
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if w.pending.is_empty() {
                    w.flushing = false;
                    return;
                }
                std::mem::replace(&mut w.pending, Vec::with_capacity(16 * 1024))
            };
            if writer.write_all(&buf).await.is_err() {
                self.write
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .flushing = false;
                self.fail_all();
                return;
            }
        }
    }
}

/// The reader task: answers in command order, each streamed to its waiting session.
async fn reader(
    pipe: Arc<PipeConn>,
    mut framed: Framed<OwnedReadHalf>,
    caps: u32,
    mut state: SessionState,
) {
    let mut broken = false;
    let mut sink = Framed::new(ChunkSink::default());
    loop {
        let next = loop {
            let notified = pipe.waiters_changed.notified();
            if pipe.is_broken() {
                return;
            }
            let front = {
                let mut w = pipe
                    .write
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let front = w.waiters.pop_front();
                w.answering = front.as_ref().map(|f| f.queued);
                front
            };
            match front {
                Some(w) => break w,
                None => notified.await,
            }
        };
        let Waiter {
            tx,
            client_caps,
            init_db,
            prepare,
            ..
        } = next;
        if init_db {
            match framed.read_packet(None, usize::MAX).await {
                Ok((_, p)) if p.first() == Some(&0xff) => {
                    // The database is gone: the command still runs; read its answer and drop it.
                    let err = parse_err(&p).ok();
                    let mut scratch = SessionState::default();
                    sink.get_mut().tx = None;
                    if prepare {
                        if read_prepare_answer(&mut framed, caps).await.is_err() {
                            broken = true;
                        }
                    } else {
                        let src = Source {
                            framed: &mut framed,
                            caps,
                            addr: &pipe.addr,
                            state: &mut state,
                            broken: &mut broken,
                            drain_on_client_gone: true,
                        };
                        let _ = relay_from(src, &mut sink, caps, AnswerKind::Results, &mut scratch)
                            .await;
                    }
                    let source = err.map_or_else(
                        || pipe.lost(),
                        |err| Error::Server {
                            addr: pipe.addr.to_string(),
                            err,
                        },
                    );
                    let _ = tx
                        .send(Answer::Failed(RelayError {
                            source,
                            next_seq: 1,
                            flushed: false,
                        }))
                        .await;
                    if broken {
                        pipe.fail_all();
                        return;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = tx.try_send(Answer::Failed(RelayError {
                        source: pipe.lost(),
                        next_seq: 1,
                        flushed: false,
                    }));
                    pipe.fail_all();
                    return;
                }
            }
        }
        if prepare {
            match read_prepare_answer(&mut framed, caps).await {
                Ok(answer) => {
                    let _ = tx.send(Answer::Prepared(answer)).await;
                    continue;
                }
                Err(_) => {
                    let _ = tx.try_send(Answer::Failed(RelayError {
                        source: pipe.lost(),
                        next_seq: 1,
                        flushed: false,
                    }));
                    pipe.fail_all();
                    return;
                }
            }
        }
        sink.get_mut().tx = Some(PollSender::new(tx.clone()));
        let mut scratch = SessionState::default();
        let src = Source {
            framed: &mut framed,
            caps,
            addr: &pipe.addr,
            state: &mut state,
            broken: &mut broken,
            drain_on_client_gone: true,
        };
        let res = relay_from(
            src,
            &mut sink,
            client_caps,
            AnswerKind::Results,
            &mut scratch,
        )
        .await;
        sink.get_mut().tx = None;
        let answer = match res {
            Ok(out) => Answer::Done(out),
            Err(e) => Answer::Failed(e),
        };
        let _ = tx.send(answer).await;
        if broken {
            pipe.fail_all();
            return;
        }
    }
}

/// Reads a COM_STMT_PREPARE answer: the statement id and parameter count, or the server's error.
async fn read_prepare_answer(
    framed: &mut Framed<OwnedReadHalf>,
    caps: u32,
) -> Result<Result<(u32, u16), crate::protocol::response::ErrPacket>, crate::protocol::Error> {
    let (_, first) = framed.read_packet(None, usize::MAX).await?;
    if first.first() == Some(&0xff) {
        return Ok(Err(parse_err(&first)?));
    }
    let ok = crate::protocol::stmt::parse_prepare_ok(&first)?;
    let eof = caps & CLIENT_DEPRECATE_EOF == 0;
    for n in [ok.num_params, ok.num_columns] {
        if n > 0 {
            for _ in 0..usize::from(n) + usize::from(eof) {
                framed.read_packet(None, usize::MAX).await?;
            }
        }
    }
    Ok(Ok((ok.stmt_id, ok.num_params)))
}

/// An AsyncWrite that passes each flushed buffer to a session as one chunk, waiting while the
/// session's channel is full (back-pressure). Without a receiver, bytes are dropped.
#[derive(Default)]
struct ChunkSink {
    tx: Option<PollSender<Answer>>,
    buf: Vec<u8>,
}

impl AsyncWrite for ChunkSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.tx.is_some() {
            this.buf.extend_from_slice(data);
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buf.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let Some(tx) = this.tx.as_mut() else {
            this.buf.clear();
            return Poll::Ready(Ok(()));
        };
        match tx.poll_reserve(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => {
                let chunk = std::mem::replace(&mut this.buf, Vec::with_capacity(CHUNK.min(4096)));
                if tx.send_item(Answer::Bytes(chunk)).is_err() {
                    return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
                }
                Poll::Ready(Ok(()))
            }
            // The session went away: report it so the relay drains the rest.
            Poll::Ready(Err(_)) => {
                this.buf.clear();
                Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The shared connections of one pool.
pub struct Pipeline {
    slots: Vec<Mutex<Option<Arc<PipeConn>>>>,
    connecting: Vec<AtomicBool>,
    next: AtomicUsize,
    /// A connection whose oldest owed answer is older than this takes no new statements.
    stall: std::time::Duration,
    /// The proxy's runtime: shared connections are opened there, so their reader tasks run
    /// there too, whichever runtime the session that asked is on (`frontend::lane`).
    home: Option<tokio::runtime::Handle>,
}

impl Pipeline {
    /// `connections` shared connections; one whose oldest owed answer is older than `stall`
    /// takes no new statements until it catches up (they use another or the pool).
    pub fn new(
        connections: usize,
        stall: std::time::Duration,
        home: Option<tokio::runtime::Handle>,
    ) -> Self {
        Self {
            slots: (0..connections).map(|_| Mutex::new(None)).collect(),
            connecting: (0..connections).map(|_| AtomicBool::new(false)).collect(),
            next: AtomicUsize::new(0),
            stall,
            home,
        }
    }

    pub fn is_enabled(&self) -> bool {
        !self.slots.is_empty()
    }

    /// How many shared connections are open and usable now.
    pub fn open(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .as_ref()
                    .is_some_and(|p| !p.is_broken())
            })
            .count()
    }

    /// A usable shared connection in system-variable state `sysvars`, if one is ready: the
    /// next in turn, or after it the first that is not stalled behind a slow read. Otherwise
    /// `None` (the caller uses the pool) and, for an empty or broken slot, a replacement is opened
    /// in the background.
    pub fn pick(
        self: &Arc<Self>,
        sysvars: &std::collections::BTreeMap<String, String>,
        pool: &super::pool::Pool,
    ) -> Option<Arc<PipeConn>> {
        let n = self.slots.len();
        if n == 0 {
            return None;
        }
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).find_map(|k| self.pick_slot((first + k) % n, sysvars, pool))
    }

    fn pick_slot(
        self: &Arc<Self>,
        i: usize,
        sysvars: &std::collections::BTreeMap<String, String>,
        pool: &super::pool::Pool,
    ) -> Option<Arc<PipeConn>> {
        let slot = self.slots[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match slot {
            Some(p) if !p.is_broken() => {
                (p.sysvars == *sysvars && !p.stalled(self.stall)).then_some(p)
            }
            _ => {
                if !self.connecting[i].swap(true, Ordering::AcqRel) {
                    let me = self.clone();
                    let pool = pool.clone();
                    let want = SessionState {
                        sysvars: sysvars.clone(),
                        ..Default::default()
                    };
                    let open = async move {
                        if let Ok(mut c) = pool.inner.dedicated_connection().await
                            && c.sync_to(&want).await.is_ok()
                        {
                            let p = PipeConn::start(*c);
                            *me.slots[i]
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(p);
                        }
                        me.connecting[i].store(false, Ordering::Release);
                    };
                    match &self.home {
                        Some(home) => drop(home.spawn(open)),
                        None => drop(tokio::spawn(open)),
                    }
                }
                None
            }
        }
    }
}
