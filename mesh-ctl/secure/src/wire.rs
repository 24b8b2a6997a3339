//! Reading and writing our binary formats: fixed-size integers big-endian, variable
//! fields behind an explicit u16 length, and a bound on every length before it is used.

use super::refusal::Refusal;

/// Why bytes are not the structure they claim to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The bytes end inside a field.
    #[error("truncated in `{0}`")]
    Truncated(&'static str),
    /// A length field announces more than the field may hold.
    #[error("`{field}` of {len} bytes exceeds {max}")]
    Oversized {
        field: &'static str,
        len: usize,
        max: usize,
    },
    /// A fixed-size field has the wrong length.
    #[error("`{field}` is {len} bytes, must be {want}")]
    BadLength {
        field: &'static str,
        len: usize,
        want: usize,
    },
    /// Bytes after the last field.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// Not this structure's magic.
    #[error("bad magic for {0}")]
    Magic(&'static str),
    /// A format version this build does not read.
    #[error("unsupported {what} version {version}")]
    Version { what: &'static str, version: u8 },
    /// A field's value is out of its range.
    #[error("invalid `{0}`")]
    Invalid(&'static str),
}

impl WireError {
    /// The refusal reason this counts under.
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::Oversized { .. } => Refusal::Oversized,
            Self::Version { .. } => Refusal::Version,
            _ => Refusal::Malformed,
        }
    }
}

/// A cursor over received bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// How far into the buffer the cursor is.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Checks a magic and a version, the start of each of our formats.
    pub fn header(
        &mut self,
        what: &'static str,
        magic: &[u8; 4],
        version: u8,
    ) -> Result<(), WireError> {
        if self.take(4, what)? != magic {
            return Err(WireError::Magic(what));
        }
        let v = self.u8(what)?;
        if v != version {
            return Err(WireError::Version { what, version: v });
        }
        Ok(())
    }

    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(WireError::Truncated(field))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A u16 length then that many bytes, refusing a length above `max` before reading.
    pub fn var(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], WireError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(WireError::Oversized { field, len, max });
        }
        self.take(len, field)
    }

    /// A u16 length that must be exactly `want`, then the bytes.
    pub fn exact(&mut self, field: &'static str, want: usize) -> Result<&'a [u8], WireError> {
        let len = usize::from(self.u16(field)?);
        if len > want {
            return Err(WireError::Oversized {
                field,
                len,
                max: want,
            });
        }
        if len != want {
            return Err(WireError::BadLength { field, len, want });
        }
        self.take(len, field)
    }

    /// Everything read so far.
    pub fn consumed(&self) -> &'a [u8] {
        &self.buf[..self.pos]
    }

    /// Refuses bytes after the last field.
    pub fn finish(&self) -> Result<(), WireError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}

/// Appends a u16 length and the bytes; the caller's bounds make the length fit.
pub fn put_var(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).expect("variable fields are bounded below 64 KiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}
