//! Runs one client command on one backend connection and streams the answer back: packets are
//! forwarded as they arrive (no per-row decoding), buffered and flushed in large writes; only the
//! packets that end a result are decoded, for status flags, warnings, insert id and session state.
//! Statements that run on several shards are executed by [`scatter`] (merged reads, summed writes).

pub mod scatter;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::backend::BackendConn;
use crate::protocol::codec::Reader;
use crate::protocol::constants::*;
use crate::protocol::response::{
    StateChange, encode_ok, parse_eof, parse_err, parse_ok, state_changes,
};
use crate::protocol::{self, Framed};
use crate::session_state::SessionState;

/// The shape of answer a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    /// OK, ERR, or one or more result sets (COM_QUERY, COM_STMT_EXECUTE, COM_INIT_DB).
    Results,
    /// Column definitions until EOF (COM_FIELD_LIST).
    FieldList,
    /// One raw string packet (COM_STATISTICS).
    Single,
    /// Rows until EOF (COM_STMT_FETCH).
    Rows,
}

/// What a relayed answer told the proxy.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Status flags of the last OK/EOF.
    pub status: u16,
    /// Whether any OK/EOF was seen (an ERR alone carries no status flags).
    pub status_known: bool,
    pub warnings: u16,
    /// Whether any result of the answer carried warnings or was an error (the diagnostics area
    /// of the backend connection holds them; see `BackendConn::warned`).
    pub warned: bool,
    /// The last non-zero insert id reported.
    pub last_insert_id: Option<u64>,
    /// The server's error code, if the command failed.
    pub error: Option<u16>,
    /// The client stopped reading (write failed); the backend connection was abandoned mid-answer.
    pub client_gone: bool,
    /// The GTID of a transaction this command committed (session tracking of `last_gtid`).
    pub gtid: Option<peakgate_router::plan::Gtid>,
    /// Rows sent (result sets) plus rows affected (OKs), for the digest statistics.
    pub rows: u64,
}

/// A failure of the backend while relaying; `next_seq` is where an ERR to the client continues.
#[derive(Debug)]
pub struct RelayError {
    pub source: crate::backend::Error,
    pub next_seq: u8,
    /// Part of the answer was already flushed to the client (so the command cannot be retried).
    pub flushed: bool,
}

enum Phase {
    First,
    Columns(u64),
    ColumnsEof,
    Rows,
    FieldList,
}

/// Flush to the client once this much is queued, so big results stream in bounded memory.
const FLUSH_AT: usize = 64 * 1024;

/// Where an answer is read from: a backend connection's read side and what goes with it.
pub struct Source<'a, R> {
    pub framed: &'a mut Framed<R>,
    /// Capabilities in effect on the backend connection.
    pub caps: u32,
    pub addr: &'a str,
    /// The backend connection's session state (updated from session tracking).
    pub state: &'a mut SessionState,
    /// Set when the connection can no longer be used.
    pub broken: &'a mut bool,
    /// When the client stops reading, read the answer to its end anyway (a shared connection
    /// must stay usable) instead of abandoning the connection.
    pub drain_on_client_gone: bool,
}

/// Relays the answer to a command already sent on `conn`. Session-state changes the server
/// reports are applied to both `conn.state` and the client's `want` state.
pub async fn relay<C: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut BackendConn,
    client: &mut Framed<C>,
    client_caps: u32,
    kind: AnswerKind,
    want: &mut SessionState,
) -> Result<Outcome, RelayError> {
    let addr = conn.addr.clone();
    let src = Source {
        framed: &mut conn.framed,
        caps: conn.caps,
        addr: &addr,
        state: &mut conn.state,
        broken: &mut conn.broken,
        drain_on_client_gone: false,
    };
    let res = relay_from(src, client, client_caps, kind, want).await;
    conn.warned |= res.as_ref().map_or(true, |o| o.warned || o.error.is_some());
    res
}

/// Relays one answer from `src` to the client (see [`relay`]).
pub async fn relay_from<R: AsyncRead + Unpin, C: AsyncWrite + Unpin>(
    mut src: Source<'_, R>,
    client: &mut Framed<C>,
    client_caps: u32,
    kind: AnswerKind,
    want: &mut SessionState,
) -> Result<Outcome, RelayError> {
    let mut out = Outcome::default();
    let mut phase = match kind {
        AnswerKind::Results | AnswerKind::Single => Phase::First,
        AnswerKind::FieldList => Phase::FieldList,
        AnswerKind::Rows => Phase::Rows,
    };
    let deprecate_eof = src.caps & CLIENT_DEPRECATE_EOF != 0;
    let mut continuation = false;
    let mut next_seq = 1u8;
    let mut rewritten = Vec::new();
    let mut flushed = false;
    loop {
        if let Err(e) = src.framed.fill(4).await {
            return Err(fail(&mut src, e, next_seq, flushed));
        }
        let b = src.framed.buffered();
        let len = usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16;
        next_seq = b[3].wrapping_add(1);
        if let Err(e) = src.framed.fill(4 + len).await {
            return Err(fail(&mut src, e, next_seq, flushed));
        }
        let frame = &src.framed.buffered()[..4 + len];
        let payload = &frame[4..];
        let was_continuation = continuation;
        continuation = len == MAX_PAYLOAD;
        let mut done = false;
        let mut forward_as_is = true;
        if !was_continuation {
            let first = payload.first().copied();
            match phase {
                _ if kind == AnswerKind::Single => done = true,
                Phase::First => match first {
                    Some(0x00) => {
                        let more = match handle_ok(src.caps, payload, want, src.state, &mut out) {
                            Ok(v) => v,
                            Err(e) => return Err(fail(&mut src, e, next_seq, flushed)),
                        };
                        if client_caps & CLIENT_SESSION_TRACK == 0 {
                            rewrite_ok(src.caps, client_caps, payload, frame[3], &mut rewritten);
                            forward_as_is = false;
                        }
                        done = !more;
                    }
                    Some(0xff) => {
                        out.error = parse_err(payload).ok().map(|e| e.code);
                        done = true;
                    }
                    Some(0xfb) => {
                        *src.broken = true;
                        return Err(RelayError {
                            source: crate::backend::Error::Protocol {
                                addr: src.addr.to_string(),
                                source: protocol::Error::Malformed(
                                    "LOAD DATA LOCAL INFILE is not supported",
                                ),
                            },
                            next_seq: frame[3],
                            flushed,
                        });
                    }
                    _ => {
                        let n = Reader::new(payload).lenenc_int().unwrap_or(0);
                        phase = if n == 0 {
                            Phase::Rows
                        } else {
                            Phase::Columns(n)
                        };
                    }
                },
                Phase::Columns(n) => {
                    phase = if n > 1 {
                        Phase::Columns(n - 1)
                    } else if deprecate_eof {
                        Phase::Rows
                    } else {
                        Phase::ColumnsEof
                    };
                }
                Phase::ColumnsEof => phase = Phase::Rows,
                Phase::Rows | Phase::FieldList => match first {
                    Some(0xfe) if len < MAX_PAYLOAD => {
                        let more = if deprecate_eof {
                            let more = match handle_ok(src.caps, payload, want, src.state, &mut out)
                            {
                                Ok(v) => v,
                                Err(e) => return Err(fail(&mut src, e, next_seq, flushed)),
                            };
                            if client_caps & CLIENT_SESSION_TRACK == 0 {
                                rewrite_ok(
                                    src.caps,
                                    client_caps,
                                    payload,
                                    frame[3],
                                    &mut rewritten,
                                );
                                forward_as_is = false;
                            }
                            more
                        } else {
                            let (w, s) = parse_eof(payload).unwrap_or((0, 0));
                            out.warnings = w;
                            out.warned |= w > 0;
                            out.status = s;
                            out.status_known = true;
                            s & SERVER_MORE_RESULTS_EXISTS != 0
                        };
                        if more && matches!(phase, Phase::Rows) && kind == AnswerKind::Results {
                            phase = Phase::First;
                        } else {
                            done = true;
                        }
                    }
                    Some(0xff) => {
                        out.error = parse_err(payload).ok().map(|e| e.code);
                        done = true;
                    }
                    _ => {
                        if matches!(phase, Phase::Rows) {
                            out.rows += 1;
                        }
                    }
                },
            }
        }
        if !out.client_gone {
            if forward_as_is {
                client.write_raw(frame);
            } else {
                client.write_raw(&rewritten);
            }
        }
        src.framed.consume(4 + len);
        if (done && !continuation) || client.pending_write() >= FLUSH_AT {
            flushed = true;
            if !out.client_gone && client.flush().await.is_err() {
                out.client_gone = true;
            }
            if out.client_gone && !src.drain_on_client_gone {
                // Nobody reads the rest: abandon the connection (the server rolls back its session).
                *src.broken = true;
                return Ok(out);
            }
        }
        if done && !continuation {
            return Ok(out);
        }
    }
}

fn fail<R>(src: &mut Source<'_, R>, e: protocol::Error, next_seq: u8, flushed: bool) -> RelayError {
    *src.broken = true;
    RelayError {
        source: crate::backend::Error::Protocol {
            addr: src.addr.to_string(),
            source: e,
        },
        next_seq,
        flushed,
    }
}

/// Applies an OK packet; returns whether more results follow.
fn handle_ok(
    caps: u32,
    payload: &[u8],
    want: &mut SessionState,
    have: &mut SessionState,
    out: &mut Outcome,
) -> Result<bool, protocol::Error> {
    let ok = parse_ok(payload, caps)?;
    out.rows += ok.affected_rows;
    out.status = ok.status;
    out.status_known = true;
    out.warnings = ok.warnings;
    out.warned |= ok.warnings > 0;
    if ok.last_insert_id != 0 {
        out.last_insert_id = Some(ok.last_insert_id);
    }
    if !ok.session_state.is_empty() {
        let ch = state_changes(ok.session_state)?;
        for c in &ch {
            if let StateChange::SystemVariable { name, value } = c
                && name.eq_ignore_ascii_case(b"last_gtid")
                && let Some(g) = std::str::from_utf8(value)
                    .ok()
                    .and_then(peakgate_router::plan::Gtid::parse)
            {
                out.gtid = Some(g);
            }
        }
        want.apply(&ch);
        have.apply(&ch);
    }
    Ok(ok.status & SERVER_MORE_RESULTS_EXISTS != 0)
}

/// Re-encodes an OK for a client without session tracking, as one framed packet.
fn rewrite_ok(backend_caps: u32, client_caps: u32, payload: &[u8], seq: u8, out: &mut Vec<u8>) {
    out.clear();
    let Ok(ok) = parse_ok(payload, backend_caps) else {
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes()[..3]);
        out.push(seq);
        out.extend_from_slice(payload);
        return;
    };
    let mut body = Vec::with_capacity(payload.len());
    encode_ok(&mut body, payload[0], &ok, client_caps);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes()[..3]);
    out.push(seq);
    out.extend_from_slice(&body);
}
