//! Packet framing: 3-byte length + sequence id, split packets (payloads of 16 MiB and more), buffered writes.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::constants::MAX_PAYLOAD;
use super::{Error, Result};

/// Appends one logical packet, framed (split at 16 MiB), to `out`. Returns the next sequence id.
pub fn frame_into(out: &mut Vec<u8>, mut seq: u8, payload: &[u8]) -> u8 {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_PAYLOAD);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        out.push(seq);
        out.extend_from_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_PAYLOAD {
            return seq;
        }
    }
}

/// A byte stream with MySQL packet framing. Reads are buffered; writes collect in a buffer until
/// `flush`, so a whole result goes out in few syscalls.
pub struct Framed<S> {
    stream: S,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
}

impl<S> Framed<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            rbuf: BytesMut::with_capacity(16 * 1024),
            wbuf: Vec::with_capacity(16 * 1024),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Gives back the stream and any bytes read past the last packet (none, in a well-behaved
    /// handshake).
    pub fn into_parts(self) -> (S, BytesMut) {
        (self.stream, self.rbuf)
    }

    /// Drops `n` consumed bytes from the read buffer.
    pub fn consume(&mut self, n: usize) {
        self.rbuf.advance(n);
    }

    /// Buffered bytes not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.rbuf
    }

    /// Whether more bytes are already buffered (a pipelining client).
    pub fn has_buffered(&self) -> bool {
        !self.rbuf.is_empty()
    }

    /// Queues one logical packet, splitting it at 16 MiB. Returns the next sequence id.
    pub fn write_packet(&mut self, seq: u8, payload: &[u8]) -> u8 {
        frame_into(&mut self.wbuf, seq, payload)
    }

    /// Queues raw bytes (already framed packets).
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    pub fn pending_write(&self) -> usize {
        self.wbuf.len()
    }

    /// Drops queued, unflushed output after the first `len` bytes (an answer abandoned before
    /// any of it was sent, to be retried elsewhere).
    pub fn truncate_write(&mut self, len: usize) {
        self.wbuf.truncate(len);
    }

    /// Takes the queued bytes out (for a writer that sends them elsewhere).
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.wbuf)
    }

    /// Releases oversized buffers after a large result, so an idle connection stays small.
    pub fn shrink(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 256 * 1024 {
            self.rbuf = BytesMut::with_capacity(16 * 1024);
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > 256 * 1024 {
            self.wbuf = Vec::with_capacity(16 * 1024);
        }
    }
}

impl<S: AsyncRead + Unpin> Framed<S> {
    /// Makes sure at least `n` bytes are buffered.
    pub async fn fill(&mut self, n: usize) -> Result<()> {
        while self.rbuf.len() < n {
            if self.rbuf.capacity() - self.rbuf.len() < 8192 {
                self.rbuf
                    .reserve((n - self.rbuf.len()).clamp(8192, 1 << 20));
            }
            let got = self.stream.read_buf(&mut self.rbuf).await?;
            if got == 0 {
                return Err(Error::Closed);
            }
        }
        Ok(())
    }

    /// Reads one logical packet, joining split packets. Returns the sequence id of its last
    /// physical packet and the payload. `expected_seq`, when given, is checked against the first
    /// packet. The total is checked against `max` before any payload byte is buffered beyond the
    /// current chunk, so a lying length costs no memory.
    pub async fn read_packet(
        &mut self,
        expected_seq: Option<u8>,
        max: usize,
    ) -> Result<(u8, BytesMut)> {
        let mut payload: Option<BytesMut> = None;
        let mut next_seq = expected_seq;
        loop {
            self.fill(4).await?;
            let len = usize::from(self.rbuf[0])
                | usize::from(self.rbuf[1]) << 8
                | usize::from(self.rbuf[2]) << 16;
            let seq = self.rbuf[3];
            if let Some(want) = next_seq
                && want != seq
            {
                return Err(Error::OutOfOrder {
                    expected: want,
                    got: seq,
                });
            }
            let total = payload.as_ref().map_or(0, BytesMut::len) + len;
            if total > max {
                return Err(Error::PacketTooLarge { got: total, max });
            }
            self.fill(4 + len).await?;
            self.rbuf.advance(4);
            let chunk = self.rbuf.split_to(len);
            match payload.as_mut() {
                None => payload = Some(chunk),
                Some(p) => p.extend_from_slice(&chunk),
            }
            next_seq = Some(seq.wrapping_add(1));
            if len < MAX_PAYLOAD {
                let p = payload.unwrap_or_default();
                return Ok((seq, p));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Framed<S> {
    /// Sends everything queued.
    pub async fn flush(&mut self) -> Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
            if self.wbuf.capacity() > 4 << 20 {
                self.wbuf.shrink_to(64 * 1024);
            }
        }
        self.stream.flush().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn split_packets_round_trip() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = Framed::new(a);
        let mut r = Framed::new(b);
        let big = vec![7u8; MAX_PAYLOAD * 2 + 10];
        let writer = tokio::spawn(async move {
            let next = w.write_packet(0, &big);
            assert_eq!(next, 3);
            w.write_packet(0, &[]);
            w.flush().await.unwrap();
            w
        });
        let (seq, p) = r.read_packet(Some(0), usize::MAX).await.unwrap();
        assert_eq!(seq, 2);
        assert_eq!(p.len(), MAX_PAYLOAD * 2 + 10);
        assert!(p.iter().all(|&b| b == 7));
        let (_, empty) = r.read_packet(Some(0), 16).await.unwrap();
        assert!(empty.is_empty());
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn exact_multiple_of_max_payload_ends_with_empty_packet() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = Framed::new(a);
        let mut r = Framed::new(b);
        let writer = tokio::spawn(async move {
            assert_eq!(w.write_packet(5, &vec![1u8; MAX_PAYLOAD]), 7);
            w.flush().await.unwrap();
            w
        });
        let (seq, p) = r.read_packet(Some(5), usize::MAX).await.unwrap();
        assert_eq!((seq, p.len()), (6, MAX_PAYLOAD));
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn lying_length_is_refused_before_buffering() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut r = Framed::new(b);
        a.write_all(&[0xff, 0xff, 0xff, 0]).await.unwrap();
        let err = r.read_packet(Some(0), 1024).await.unwrap_err();
        assert!(matches!(err, Error::PacketTooLarge { .. }));
    }

    #[tokio::test]
    async fn wrong_sequence_is_refused() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut r = Framed::new(b);
        a.write_all(&[1, 0, 0, 9, 0x0e]).await.unwrap();
        assert!(matches!(
            r.read_packet(Some(0), 1024).await.unwrap_err(),
            Error::OutOfOrder {
                expected: 0,
                got: 9
            }
        ));
    }

    #[tokio::test]
    async fn truncated_packet_is_closed() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut r = Framed::new(b);
        a.write_all(&[10, 0, 0, 0, 1, 2]).await.unwrap();
        drop(a);
        assert!(matches!(
            r.read_packet(Some(0), 1024).await.unwrap_err(),
            Error::Closed
        ));
    }
}
