//! Bounds-checked big-endian reader and writer helpers shared by every codec in this crate.

use crate::DecodeError;

/// A cursor over received bytes; every read is bounds-checked and returns a typed error.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                needed: n - self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// The rest of the input.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// `u8` length then that many bytes.
    pub(crate) fn short_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u8()? as usize;
        self.bytes(n)
    }

    /// `u16` length then that many bytes.
    pub(crate) fn long_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u16()? as usize;
        self.bytes(n)
    }

    /// `u8` length then UTF-8 text.
    pub(crate) fn short_str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.short_bytes()?).map_err(|_| DecodeError::Invalid {
            what,
            why: "not UTF-8",
        })
    }

    /// `u16` length then UTF-8 text.
    pub(crate) fn long_str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.long_bytes()?).map_err(|_| DecodeError::Invalid {
            what,
            why: "not UTF-8",
        })
    }

    /// Succeeds only when every byte was consumed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// Appends `u8` length + bytes; the caller guarantees `bytes.len() <= 255`.
pub(crate) fn put_short_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    debug_assert!(bytes.len() <= u8::MAX as usize);
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

/// Appends `u16` length + bytes; the caller guarantees `bytes.len() <= 65535`.
pub(crate) fn put_long_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    debug_assert!(bytes.len() <= u16::MAX as usize);
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}
