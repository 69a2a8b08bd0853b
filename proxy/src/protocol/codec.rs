//! Length-encoded integers and strings, and a bounds-checked reader over a packet payload.

use super::{Error, Result};

/// Appends a length-encoded integer.
pub fn put_lenenc_int(out: &mut Vec<u8>, v: u64) {
    if v < 251 {
        out.push(v as u8);
    } else if v < 1 << 16 {
        out.push(0xfc);
        out.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v < 1 << 24 {
        out.push(0xfd);
        out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
    } else {
        out.push(0xfe);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Appends a length-encoded string.
pub fn put_lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    put_lenenc_int(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// A cursor over a payload whose every read is bounds-checked: lying lengths become `Malformed`.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::Malformed("field runs past the end of the packet"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u24(&mut self) -> Result<u32> {
        let b = self.take(3)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }

    pub fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length-encoded integer; `None` for the NULL marker 0xfb.
    pub fn lenenc_int_or_null(&mut self) -> Result<Option<u64>> {
        match self.u8()? {
            0xfb => Ok(None),
            0xfc => Ok(Some(u64::from(self.u16()?))),
            0xfd => Ok(Some(u64::from(self.u24()?))),
            0xfe => Ok(Some(self.u64()?)),
            0xff => Err(Error::Malformed("0xff is not a length-encoded integer")),
            v => Ok(Some(u64::from(v))),
        }
    }

    pub fn lenenc_int(&mut self) -> Result<u64> {
        self.lenenc_int_or_null()?
            .ok_or(Error::Malformed("unexpected NULL length"))
    }

    pub fn lenenc_str(&mut self) -> Result<&'a [u8]> {
        let n = self.lenenc_int()?;
        let n = usize::try_from(n).map_err(|_| Error::Malformed("length overflows"))?;
        self.take(n)
    }

    /// A length-encoded string or NULL (text result rows).
    pub fn lenenc_str_or_null(&mut self) -> Result<Option<&'a [u8]>> {
        match self.lenenc_int_or_null()? {
            None => Ok(None),
            Some(n) => {
                let n = usize::try_from(n).map_err(|_| Error::Malformed("length overflows"))?;
                Ok(Some(self.take(n)?))
            }
        }
    }

    /// A NUL-terminated string (the NUL is consumed, not returned).
    pub fn nul_str(&mut self) -> Result<&'a [u8]> {
        let rest = &self.buf[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(Error::Malformed("missing NUL terminator"))?;
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    /// A NUL-terminated string, or the rest of the packet if no NUL follows.
    pub fn nul_str_or_rest(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos..];
        match rest.iter().position(|&b| b == 0) {
            Some(end) => {
                self.pos += end + 1;
                &rest[..end]
            }
            None => {
                self.pos = self.buf.len();
                rest
            }
        }
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let r = &self.buf[self.pos..];
        self.pos = self.buf.len();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lenenc_int_round_trips(v in any::<u64>()) {
            let mut out = Vec::new();
            put_lenenc_int(&mut out, v);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.lenenc_int().unwrap(), v);
            prop_assert!(r.is_empty());
        }

        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            let _ = r.lenenc_str();
            let _ = r.nul_str();
            let _ = r.u32();
            let _ = r.lenenc_str_or_null();
        }
    }

    #[test]
    fn lying_length_is_malformed() {
        let mut r = Reader::new(&[0xfc, 0xff, 0xff, b'a']);
        assert!(matches!(r.lenenc_str(), Err(Error::Malformed(_))));
    }
}
