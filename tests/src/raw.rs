//! A small raw MySQL-protocol client for tests that must send what no real driver would: broken
//! framing, lying lengths, wrong sequence ids, unknown commands. It speaks just enough protocol
//! to log in with `mysql_native_password` and to read answers packet by packet.
//!
//! It asks for neither `CLIENT_DEPRECATE_EOF` nor multi-statements, so result sets end with
//! classic EOF packets and every command gets exactly one answer.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const COM_QUIT: u8 = 0x01;
pub const COM_QUERY: u8 = 0x03;
pub const COM_PING: u8 = 0x0e;
pub const COM_CHANGE_USER: u8 = 0x11;
pub const COM_STMT_PREPARE: u8 = 0x16;
pub const COM_STMT_EXECUTE: u8 = 0x17;

const CLIENT_LONG_PASSWORD: u32 = 1;
const CLIENT_LONG_FLAG: u32 = 4;
const CLIENT_CONNECT_WITH_DB: u32 = 8;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_TRANSACTIONS: u32 = 0x2000;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_MULTI_RESULTS: u32 = 0x2_0000;
const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;

/// What the raw client announces at login.
pub const CAPABILITIES: u32 = CLIENT_LONG_PASSWORD
    | CLIENT_LONG_FLAG
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH;

/// How long a read waits before a test calls the proxy stuck.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// `mysql_native_password`: SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))). Written here rather than
/// borrowed from the proxy, so the proxy's check is tested against an independent implementation.
pub fn native_password(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha1::digest(password);
    let stage2 = Sha1::digest(stage1);
    let mut h = Sha1::new();
    h.update(scramble);
    h.update(stage2);
    let mix = h.finalize();
    stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

/// An ERR packet, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub code: u16,
    pub sqlstate: String,
    pub message: String,
}

/// Decodes an ERR packet payload (`0xff`, code, `#`, SQLSTATE, message).
pub fn parse_err(p: &[u8]) -> Option<ServerError> {
    if p.len() < 3 || p[0] != 0xff {
        return None;
    }
    let code = u16::from_le_bytes([p[1], p[2]]);
    let (sqlstate, message) = if p.get(3) == Some(&b'#') && p.len() >= 9 {
        (String::from_utf8_lossy(&p[4..9]).into_owned(), &p[9..])
    } else {
        (String::new(), &p[3..])
    };
    Some(ServerError {
        code,
        sqlstate,
        message: String::from_utf8_lossy(message).into_owned(),
    })
}

/// Whether a payload is an EOF packet (not a row that happens to start with 0xfe).
pub fn is_eof(p: &[u8]) -> bool {
    p.first() == Some(&0xfe) && p.len() < 9
}

/// The answer to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Ok,
    Err(ServerError),
    /// A text or binary result set: the raw row payloads.
    Rows(Vec<Vec<u8>>),
}

impl Answer {
    /// The error, or a test failure describing what came instead.
    pub fn expect_err(self) -> ServerError {
        match self {
            Answer::Err(e) => e,
            other => panic!("expected an ERR packet, got {other:?}"),
        }
    }
}

/// Reads one length-encoded string from the front of `p` (text-protocol row values).
pub fn lenenc_str(p: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = p.split_first()?;
    let (n, rest) = match first {
        0xfb => return None,
        0xfc => (
            usize::from(u16::from_le_bytes([*rest.first()?, *rest.get(1)?])),
            rest.get(2..)?,
        ),
        0xfd => (
            usize::from(*rest.first()?)
                | usize::from(*rest.get(1)?) << 8
                | usize::from(*rest.get(2)?) << 16,
            rest.get(3..)?,
        ),
        0xfe => {
            let b: [u8; 8] = rest.get(..8)?.try_into().ok()?;
            (usize::try_from(u64::from_le_bytes(b)).ok()?, rest.get(8..)?)
        }
        n => (usize::from(n), rest),
    };
    Some((rest.get(..n)?, rest.get(n..)?))
}

/// A prepared statement as the server described it.
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    pub id: u32,
    pub columns: u16,
    pub params: u16,
}

/// A raw client connection.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    /// Opens a TCP connection; nothing is read yet.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    /// Connects and logs in; fails if the proxy refuses.
    pub async fn login(
        addr: SocketAddr,
        user: &str,
        password: &str,
        db: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut c = Self::connect(addr).await?;
        let greeting = c.read_greeting().await?;
        c.send_handshake_response(&greeting.scramble, user, password, db)
            .await?;
        match c.expect_packet().await? {
            (_, p) if p.first() == Some(&0) => Ok(c),
            (_, p) => match parse_err(&p) {
                Some(e) => bail!("login refused: {e:?}"),
                None => bail!("unexpected login answer {p:02x?}"),
            },
        }
    }

    /// Reads the server greeting (protocol 10); fails on an ERR or anything else.
    pub async fn read_greeting(&mut self) -> anyhow::Result<Greeting> {
        let (_, p) = self.expect_packet().await?;
        Greeting::parse(&p)
    }

    /// Sends a Handshake Response 41 answering `scramble` with `mysql_native_password`.
    pub async fn send_handshake_response(
        &mut self,
        scramble: &[u8],
        user: &str,
        password: &str,
        db: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut caps = CAPABILITIES;
        if db.is_some() {
            caps |= CLIENT_CONNECT_WITH_DB;
        }
        let mut p = Vec::with_capacity(128);
        p.extend_from_slice(&caps.to_le_bytes());
        p.extend_from_slice(&(16u32 << 20).to_le_bytes());
        p.push(45);
        p.extend_from_slice(&[0u8; 23]);
        p.extend_from_slice(user.as_bytes());
        p.push(0);
        let answer = native_password(password.as_bytes(), scramble);
        p.push(answer.len() as u8);
        p.extend_from_slice(&answer);
        if let Some(db) = db {
            p.extend_from_slice(db.as_bytes());
            p.push(0);
        }
        p.extend_from_slice(b"mysql_native_password\0");
        self.write_packet(1, &p).await
    }

    /// Writes one packet (no splitting: tests that want split packets frame them themselves).
    pub async fn write_packet(&mut self, seq: u8, payload: &[u8]) -> anyhow::Result<()> {
        let mut out = Vec::with_capacity(4 + payload.len());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes()[..3]);
        out.push(seq);
        out.extend_from_slice(payload);
        self.write_raw(&out).await
    }

    /// Writes bytes as they are, framed or not.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Reads one physical packet; `None` when the proxy closed the connection (cleanly or by
    /// reset) before a whole packet arrived. Fails if nothing comes within `READ_TIMEOUT`.
    pub async fn read_packet(&mut self) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
        match tokio::time::timeout(READ_TIMEOUT, self.read_packet_inner()).await {
            Ok(r) => r,
            Err(_) => bail!("no packet from the proxy within {READ_TIMEOUT:?}"),
        }
    }

    async fn read_packet_inner(&mut self) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
        loop {
            if self.buf.len() >= 4 {
                let len = usize::from(self.buf[0])
                    | usize::from(self.buf[1]) << 8
                    | usize::from(self.buf[2]) << 16;
                if self.buf.len() >= 4 + len {
                    let seq = self.buf[3];
                    let payload = self.buf[4..4 + len].to_vec();
                    self.buf.drain(..4 + len);
                    return Ok(Some((seq, payload)));
                }
            }
            self.buf.reserve(64 * 1024);
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if is_reset(&e) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads one packet; the connection closing first is an error.
    pub async fn expect_packet(&mut self) -> anyhow::Result<(u8, Vec<u8>)> {
        self.read_packet()
            .await?
            .context("the proxy closed the connection")
    }

    /// Whether the proxy closes the connection (after any packets still in flight, which are
    /// returned). Fails if the connection stays open for `READ_TIMEOUT`.
    pub async fn read_until_closed(&mut self) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut got = Vec::new();
        while let Some((_, p)) = self.read_packet().await? {
            got.push(p);
        }
        Ok(got)
    }

    /// Sends a command (sequence 0) and reads its whole answer.
    pub async fn command(&mut self, payload: &[u8]) -> anyhow::Result<Answer> {
        self.write_packet(0, payload).await?;
        self.read_answer().await
    }

    /// Sends COM_QUERY with `sql` (any bytes) and reads the answer.
    pub async fn query(&mut self, sql: impl AsRef<[u8]>) -> anyhow::Result<Answer> {
        let mut p = vec![COM_QUERY];
        p.extend_from_slice(sql.as_ref());
        self.command(&p).await
    }

    /// Runs a query that must return rows; returns the first column of each row as text.
    pub async fn query_column(&mut self, sql: &str) -> anyhow::Result<Vec<Option<String>>> {
        match self.query(sql).await? {
            Answer::Rows(rows) => Ok(rows
                .iter()
                .map(|r| lenenc_str(r).map(|(v, _)| String::from_utf8_lossy(v).into_owned()))
                .collect()),
            other => bail!("{sql}: expected rows, got {other:?}"),
        }
    }

    /// Reads the answer to a command: OK, ERR, or a result set up to its final EOF.
    pub async fn read_answer(&mut self) -> anyhow::Result<Answer> {
        let (_, first) = self.expect_packet().await?;
        match first.first() {
            Some(0x00) => return Ok(Answer::Ok),
            Some(0xff) => return Ok(Answer::Err(parse_err(&first).context("bad ERR packet")?)),
            None => bail!("empty answer packet"),
            _ => {}
        }
        let (n, _) = lenenc_int(&first).context("bad column count")?;
        for _ in 0..n {
            self.expect_packet().await?;
        }
        let (_, eof) = self.expect_packet().await?;
        if !is_eof(&eof) {
            bail!("expected EOF after column definitions, got {eof:02x?}");
        }
        let mut rows = Vec::new();
        loop {
            let (_, p) = self.expect_packet().await?;
            if is_eof(&p) {
                return Ok(Answer::Rows(rows));
            }
            if let Some(e) = parse_err(&p) {
                return Ok(Answer::Err(e));
            }
            rows.push(p);
        }
    }

    /// COM_STMT_PREPARE; the parameter and column definitions are read and dropped.
    pub async fn prepare(&mut self, sql: &str) -> anyhow::Result<Result<Prepared, ServerError>> {
        let mut p = vec![COM_STMT_PREPARE];
        p.extend_from_slice(sql.as_bytes());
        self.write_packet(0, &p).await?;
        let (_, ok) = self.expect_packet().await?;
        if let Some(e) = parse_err(&ok) {
            return Ok(Err(e));
        }
        if ok.len() < 9 || ok[0] != 0 {
            bail!("bad prepare answer {ok:02x?}");
        }
        let st = Prepared {
            id: u32::from_le_bytes([ok[1], ok[2], ok[3], ok[4]]),
            columns: u16::from_le_bytes([ok[5], ok[6]]),
            params: u16::from_le_bytes([ok[7], ok[8]]),
        };
        for n in [st.params, st.columns] {
            if n > 0 {
                for _ in 0..=n {
                    self.expect_packet().await?;
                }
            }
        }
        Ok(Ok(st))
    }

    /// Sends COM_QUIT and closes.
    pub async fn quit(mut self) -> anyhow::Result<()> {
        self.write_packet(0, &[COM_QUIT]).await?;
        let _ = self.stream.shutdown().await;
        Ok(())
    }

    /// Drops the connection with a TCP reset, as a crashed client would (no COM_QUIT, unread
    /// data discarded).
    pub fn vanish(self) {
        // Deprecated because a non-zero linger blocks the thread on drop; zero never blocks.
        #[allow(deprecated)]
        let _ = self.stream.set_linger(Some(Duration::ZERO));
        drop(self.stream);
    }
}

/// A COM_STMT_EXECUTE of statement `id` with string parameters (all bound, type VAR_STRING).
pub fn execute_strings(id: u32, params: &[&str]) -> Vec<u8> {
    let mut p = vec![COM_STMT_EXECUTE];
    p.extend_from_slice(&id.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&1u32.to_le_bytes());
    if !params.is_empty() {
        p.extend(std::iter::repeat_n(0u8, params.len().div_ceil(8)));
        p.push(1);
        for _ in params {
            p.extend_from_slice(&[0xfd, 0]);
        }
        for v in params {
            assert!(v.len() < 251, "test parameters are short");
            p.push(v.len() as u8);
            p.extend_from_slice(v.as_bytes());
        }
    }
    p
}

fn lenenc_int(p: &[u8]) -> Option<(u64, &[u8])> {
    let (&first, rest) = p.split_first()?;
    match first {
        0xfc => Some((
            u64::from(u16::from_le_bytes([*rest.first()?, *rest.get(1)?])),
            rest.get(2..)?,
        )),
        0xfd => Some((
            u64::from(*rest.first()?)
                | u64::from(*rest.get(1)?) << 8
                | u64::from(*rest.get(2)?) << 16,
            rest.get(3..)?,
        )),
        0xfe => Some((
            u64::from_le_bytes(rest.get(..8)?.try_into().ok()?),
            rest.get(8..)?,
        )),
        0xfb | 0xff => None,
        n => Some((u64::from(n), rest)),
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    )
}

/// The server greeting, the parts tests need.
#[derive(Debug, Clone)]
pub struct Greeting {
    pub server_version: String,
    pub connection_id: u32,
    pub scramble: Vec<u8>,
}

impl Greeting {
    fn parse(p: &[u8]) -> anyhow::Result<Self> {
        if let Some(e) = parse_err(p) {
            bail!("the proxy refused the connection: {e:?}");
        }
        if p.first() != Some(&10) {
            bail!("not a protocol-10 greeting: {p:02x?}");
        }
        let nul = p[1..]
            .iter()
            .position(|&b| b == 0)
            .context("greeting: version not terminated")?;
        let server_version = String::from_utf8_lossy(&p[1..1 + nul]).into_owned();
        let r = &p[2 + nul..];
        if r.len() < 4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10 + 12 {
            bail!("greeting too short");
        }
        let connection_id = u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
        let mut scramble = r[4..12].to_vec();
        let rest = &r[4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10..];
        scramble.extend_from_slice(&rest[..12]);
        Ok(Self {
            server_version,
            connection_id,
            scramble,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_password_matches_the_known_answer() {
        // PASSWORD('shop') is *4EF1FA28...; check the scramble against that stored hash.
        let scramble = b"abcdefghijklmnopqrst";
        let answer = native_password(b"shop", scramble);
        let stage2: [u8; 20] = Sha1::digest(Sha1::digest(b"shop")).into();
        let mut h = Sha1::new();
        h.update(scramble);
        h.update(stage2);
        let mix = h.finalize();
        let stage1: Vec<u8> = answer.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect();
        assert_eq!(<[u8; 20]>::from(Sha1::digest(&stage1)), stage2);
        assert_eq!(
            stage2[..4],
            [0x4e, 0xf1, 0xfa, 0x28],
            "SHA1(SHA1('shop')) is PASSWORD('shop')"
        );
    }

    #[test]
    fn err_and_lenenc_decode() {
        let e = parse_err(b"\xff\x7a\x04#42S02Table 'x' doesn't exist").expect("an ERR");
        assert_eq!((e.code, e.sqlstate.as_str()), (1146, "42S02"));
        assert_eq!(
            lenenc_str(b"\x02ab\x01c"),
            Some((&b"ab"[..], &b"\x01c"[..]))
        );
        assert_eq!(lenenc_str(b"\x05ab"), None);
        assert!(is_eof(b"\xfe\0\0\x02\0"));
    }
}
