//! Runs one statement on several shards: scatter reads (the rewritten SQL sent to every shard's
//! connection first, then the answers read row by row, interleaved as `router::merge` needs
//! them, the merged rows encoded as one text result set), and writes that reach several shards (broadcast tables, DDL, scatter
//! UPDATE/DELETE, a multi-row INSERT split per shard), answered with one OK.

use bytes::BytesMut;
use peakgate_router::merge::{ColumnPos, ColumnType, MergeSpec, Merger, Row};
use tokio::io::AsyncWrite;

use crate::backend::{Error, PooledConn};
use crate::protocol::codec::{Reader, put_lenenc_int, put_lenenc_str};
use crate::protocol::constants::*;
use crate::protocol::response::{ErrPacket, encode_eof, parse_eof, parse_err, parse_ok};
use crate::protocol::{self, Framed};

/// A scatter read that failed; `next_seq` is where the client's ERR continues (rows may be out).
#[derive(Debug)]
pub struct ReadFailure {
    pub error: ScatterError,
    pub next_seq: u8,
}

/// A failure of a scatter statement, with the shard it happened on.
#[derive(Debug)]
pub enum ScatterError {
    /// A shard's server refused the statement.
    Server { shard: String, err: ErrPacket },
    /// A shard's connection failed.
    Backend { shard: String, source: Error },
    /// The shards' rows could not be merged.
    Merge(String),
}

/// One column definition, parsed enough to type and rename it.
struct ColumnDef {
    raw: BytesMut,
    name_range: std::ops::Range<usize>,
    decimals_at: usize,
    ty: ColumnType,
    /// The protocol's column type byte and UNSIGNED flag (binary rows).
    wire: (u8, bool),
}

fn parse_def(raw: BytesMut) -> Result<ColumnDef, protocol::Error> {
    let mut r = Reader::new(&raw);
    for _ in 0..4 {
        r.lenenc_str()?;
    }
    let name_len = r.lenenc_str()?.len();
    let after = raw.len() - r.remaining();
    let name_range = after - name_len..after;
    r.lenenc_str()?;
    r.lenenc_int()?;
    let _charset = r.u16()?;
    let _length = r.u32()?;
    let ty = r.u8()?;
    let flags = r.u16()?;
    let decimals_at = raw.len() - r.remaining();
    let _decimals = r.u8()?;
    let unsigned = flags & 0x20 != 0;
    let wire = (ty, unsigned);
    let ty = match ty {
        0x00 | 0xf6 => ColumnType::Decimal,
        0x01 | 0x02 | 0x03 | 0x08 | 0x09 | 0x0d if unsigned => ColumnType::UInt,
        0x01 | 0x02 | 0x03 | 0x08 | 0x09 | 0x0d => ColumnType::Int,
        0x04 | 0x05 => ColumnType::Float,
        0x0b | 0x13 => ColumnType::Time,
        0x07 | 0x0a | 0x0c | 0x0e | 0x11 | 0x12 => ColumnType::Temporal,
        _ => ColumnType::Bytes,
    };
    Ok(ColumnDef {
        raw,
        name_range,
        decimals_at,
        ty,
        wire,
    })
}

impl ColumnDef {
    /// The definition with another name (both the name and the original name) and `extra`
    /// more decimals.
    fn renamed(&self, name: &str, extra: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.raw.len() + name.len());
        out.extend_from_slice(
            &self.raw[..self.name_range.start - lenenc_len(self.name_range.len())],
        );
        put_lenenc_str(&mut out, name.as_bytes());
        // org_name follows the name.
        let mut r = Reader::new(&self.raw[self.name_range.end..]);
        let org_len = r.lenenc_str().map_or(0, <[u8]>::len);
        let org_end = self.name_range.end + lenenc_len(org_len) + org_len;
        put_lenenc_str(&mut out, name.as_bytes());
        let tail_start = out.len();
        out.extend_from_slice(&self.raw[org_end..]);
        let d = tail_start + (self.decimals_at - org_end);
        if let Some(b) = out.get_mut(d) {
            *b = b.saturating_add(extra).min(38);
        }
        out
    }
}

fn lenenc_len(n: usize) -> usize {
    match n {
        0..=250 => 1,
        251..=0xffff => 3,
        0x1_0000..=0xff_ffff => 4,
        _ => 9,
    }
}

/// Runs a scatter read: sends `spec.shard_sql` on every connection (in shard order), reads and
/// merges the answers, writes one result set to the client. Connections whose answer was not
/// read to its end are marked broken.
pub async fn read<C: AsyncWrite + Unpin>(
    conns: &mut [(String, PooledConn)],
    spec: &MergeSpec,
    client: &mut Framed<C>,
    client_caps: u32,
    status: u16,
    binary: bool,
) -> Result<(), ReadFailure> {
    let mut seq = 1u8;
    match read_inner(conns, spec, client, client_caps, status, binary, &mut seq).await {
        Ok(()) => Ok(()),
        Err(error) => {
            // Whatever is still unread on any connection makes it unusable.
            for (_, c) in conns.iter_mut() {
                c.broken = true;
            }
            Err(ReadFailure {
                error,
                next_seq: seq,
            })
        }
    }
}

async fn read_inner<C: AsyncWrite + Unpin>(
    conns: &mut [(String, PooledConn)],
    spec: &MergeSpec,
    client: &mut Framed<C>,
    client_caps: u32,
    status: u16,
    binary: bool,
    seq: &mut u8,
) -> Result<(), ScatterError> {
    let mut payload = Vec::with_capacity(spec.shard_sql.len() + 1);
    payload.push(COM_QUERY);
    payload.extend_from_slice(spec.shard_sql.as_bytes());
    for (shard, c) in conns.iter_mut() {
        c.send_command(&payload)
            .await
            .map_err(|source| ScatterError::Backend {
                shard: shard.clone(),
                source,
            })?;
    }
    let n = conns.len();
    let mut merger: Option<Merger> = None;
    let mut visible = 0usize;
    let mut widths = Vec::with_capacity(n);
    // Binary rows: each visible column's wire type.
    let mut wire: Option<Vec<(u8, bool)>> = None;
    // Every shard's column definitions first (the first shard's go to the client).
    for (shard, c) in conns.iter_mut() {
        let shard = shard.clone();
        let backend = |source| ScatterError::Backend {
            shard: shard.clone(),
            source,
        };
        let first = c.read().await.map_err(backend)?;
        match first.first() {
            Some(0xff) => {
                let err = parse_err(&first).map_err(|e| backend(proto(c, e)))?;
                c.broken = false;
                c.warned = true;
                return Err(ScatterError::Server { shard, err });
            }
            Some(0x00) => {
                return Err(ScatterError::Merge(
                    "the shards answered OK to a read: nothing to merge".into(),
                ));
            }
            _ => {}
        }
        let cols = Reader::new(&first).lenenc_int().unwrap_or(0) as usize;
        widths.push(cols);
        let mut these = Vec::with_capacity(cols);
        for _ in 0..cols {
            let p = c.read().await.map_err(backend)?;
            these.push(parse_def(p).map_err(|e| backend(proto(c, e)))?);
        }
        if c.caps & CLIENT_DEPRECATE_EOF == 0 {
            c.read().await.map_err(backend)?;
        }
        if merger.is_none() {
            let types: Vec<ColumnType> = these.iter().map(|d| d.ty).collect();
            visible = cols.saturating_sub(spec.hidden_columns);
            merger =
                Some(Merger::new(spec, types, n).map_err(|e| ScatterError::Merge(e.to_string()))?);
            write_definitions(client, seq, spec, &these, visible, client_caps, status);
            if binary {
                wire = Some(these.iter().take(visible).map(|d| d.wire).collect());
            }
        }
    }
    let Some(m) = merger.as_mut() else {
        return Err(ScatterError::Merge("no merger".into()));
    };
    // Then the rows, always from a shard the merge waits for: in a k-way merge the shard whose
    // queue is empty (so at most about one row per shard is held), otherwise the first shard
    // still sending (rows stream through as they come).
    let mut ended = vec![false; n];
    loop {
        let pick = (0..n)
            .find(|&i| !ended[i] && m.queued(i) == 0)
            .or_else(|| (0..n).find(|&i| !ended[i]));
        let Some(i) = pick else { break };
        let (shard, c) = &mut conns[i];
        let p = match c.read().await {
            Ok(p) => p,
            Err(source) => {
                return Err(ScatterError::Backend {
                    shard: shard.clone(),
                    source,
                });
            }
        };
        match p.first() {
            Some(0xfe) if p.len() < MAX_PAYLOAD => {
                let (warnings, status) = if c.caps & CLIENT_DEPRECATE_EOF != 0 {
                    parse_ok(&p, c.caps)
                        .map(|o| (o.warnings, o.status))
                        .unwrap_or((0, 0))
                } else {
                    parse_eof(&p).unwrap_or((0, 0))
                };
                c.warned |= warnings > 0;
                let more = status & SERVER_MORE_RESULTS_EXISTS != 0;
                if more {
                    c.broken = true;
                }
                ended[i] = true;
                m.end_shard(i)
                    .map_err(|e| ScatterError::Merge(e.to_string()))?;
            }
            Some(0xff) => {
                // Rows may already be out: the client gets the error after them, as from a
                // server that fails mid-result.
                let err = parse_err(&p).map_err(|e| ScatterError::Backend {
                    shard: shard.clone(),
                    source: proto(c, e),
                })?;
                c.warned = true;
                return Err(ScatterError::Server {
                    shard: shard.clone(),
                    err,
                });
            }
            _ => {
                let row = decode_row(&p, widths[i]).map_err(|e| ScatterError::Backend {
                    shard: shard.clone(),
                    source: proto(c, e),
                })?;
                m.push(i, row)
                    .map_err(|e| ScatterError::Merge(e.to_string()))?;
            }
        }
        write_ready(m, client, seq, visible, wire.as_deref())?;
        if client.pending_write() >= 64 * 1024 {
            client
                .flush()
                .await
                .map_err(|_| ScatterError::Merge("client gone".into()))?;
        }
    }
    if client_caps & CLIENT_DEPRECATE_EOF != 0 {
        let mut ok = vec![0xfe];
        put_lenenc_int(&mut ok, 0);
        put_lenenc_int(&mut ok, 0);
        ok.extend_from_slice(&status.to_le_bytes());
        ok.extend_from_slice(&0u16.to_le_bytes());
        client.write_packet(*seq, &ok);
    } else {
        client.write_packet(*seq, &encode_eof(0, status));
    }
    client
        .flush()
        .await
        .map_err(|_| ScatterError::Merge("client gone".into()))
}

fn resolve(pos: ColumnPos, visible: usize) -> usize {
    match pos {
        ColumnPos::Start(n) => n,
        ColumnPos::End(n) => visible.saturating_sub(1 + n),
        ColumnPos::Hidden(n) => visible + n,
    }
}

/// The column count and definitions of the merged result (renamed where the rewrite asks).
fn write_definitions<C: AsyncWrite + Unpin>(
    client: &mut Framed<C>,
    seq: &mut u8,
    spec: &MergeSpec,
    defs: &[ColumnDef],
    visible: usize,
    client_caps: u32,
    status: u16,
) {
    let mut count = Vec::new();
    put_lenenc_int(&mut count, visible as u64);
    client.write_packet(*seq, &count);
    *seq = seq.wrapping_add(1);
    let renamed: Vec<(usize, &str)> = spec
        .renamed
        .iter()
        .map(|(pos, name)| (resolve(*pos, visible), name.as_str()))
        .collect();
    for (k, d) in defs.iter().take(visible).enumerate() {
        match renamed.iter().find(|(p, _)| *p == k) {
            Some((_, name)) => client.write_packet(*seq, &d.renamed(name, 4)),
            None => client.write_packet(*seq, &d.raw),
        };
        *seq = seq.wrapping_add(1);
    }
    if client_caps & CLIENT_DEPRECATE_EOF == 0 {
        client.write_packet(*seq, &encode_eof(0, status));
        *seq = seq.wrapping_add(1);
    }
}

/// Writes the merged rows that are ready: text rows, or binary rows of the `wire` types.
fn write_ready<C: AsyncWrite + Unpin>(
    m: &mut Merger,
    client: &mut Framed<C>,
    seq: &mut u8,
    visible: usize,
    wire: Option<&[(u8, bool)]>,
) -> Result<(), ScatterError> {
    let mut buf = Vec::new();
    while let Some(row) = m.next_row() {
        buf.clear();
        match wire {
            None => {
                for cell in row.iter().take(visible) {
                    match cell {
                        None => buf.push(0xfb),
                        Some(v) => put_lenenc_str(&mut buf, v),
                    }
                }
            }
            Some(types) => {
                crate::protocol::binary_row::encode(&mut buf, &row[..visible.min(row.len())], types)
                    .map_err(|e| ScatterError::Merge(e.to_string()))?
            }
        }
        client.write_packet(*seq, &buf);
        *seq = seq.wrapping_add(1);
    }
    Ok(())
}

fn decode_row(p: &[u8], cols: usize) -> Result<Row, protocol::Error> {
    let mut r = Reader::new(p);
    let mut row = Vec::with_capacity(cols);
    for _ in 0..cols {
        row.push(r.lenenc_str_or_null()?.map(<[u8]>::to_vec));
    }
    Ok(row)
}

fn proto(c: &mut PooledConn, e: protocol::Error) -> Error {
    c.broken = true;
    Error::Protocol {
        addr: c.addr.to_string(),
        source: e,
    }
}

/// The summed answer of a write run on several shards.
#[derive(Debug, Default, Clone, Copy)]
pub struct WriteTotal {
    pub affected_rows: u64,
    pub warnings: u16,
}

/// Runs `sql` on each connection in turn (stopping at the first failure, which names its shard:
/// the shards before it have applied the statement; there is no cross-shard atomicity).
pub async fn write(conns: &mut [(String, PooledConn, String)]) -> Result<WriteTotal, ScatterError> {
    let mut total = WriteTotal::default();
    for (shard, c, sql) in conns.iter_mut() {
        // What this statement commits is what read-your-writes notes afterwards.
        c.last_gtid = None;
        match c.query(sql).await {
            Ok(crate::backend::conn::Reply::Ok {
                affected_rows,
                warnings,
                ..
            }) => {
                total.affected_rows += affected_rows;
                total.warnings = total.warnings.saturating_add(warnings);
            }
            Ok(crate::backend::conn::Reply::Rows { .. }) => {}
            Err(Error::Server { err, .. }) => {
                return Err(ScatterError::Server {
                    shard: shard.clone(),
                    err,
                });
            }
            Err(source) => {
                return Err(ScatterError::Backend {
                    shard: shard.clone(),
                    source,
                });
            }
        }
    }
    Ok(total)
}
