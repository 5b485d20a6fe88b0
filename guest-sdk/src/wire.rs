//! The byte layout of contract 0.3.0's encoded records (a batch's,
//! `records.input-batch.encoded`, and a call's, `records.outputs`), one
//! codec for both sides: the host writes batches and reads outputs, the
//! SDK reads batches and writes outputs. Little-endian; a key, value or
//! header part is a `u32` length and the bytes, null as length
//! 0xffffffff. Reading never panics: a buffer that does not follow the
//! layout is a [`WireError`] saying where. Not for processor code.

/// The length that stands for a null key or value.
const NULL: u32 = u32::MAX;

/// A buffer that does not follow the layout. Small and `Copy`: every
/// read returns it in a `Result`, once per field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The buffer ends (at `len` bytes) where `more` were due.
    Short {
        len: usize,
        more: usize,
    },
    HeaderKeyNotUtf8,
    /// An output's timestamp flag other than 0 or 1.
    TimestampFlag(u8),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Short { len, more } => write!(
                f,
                "the encoded records end at byte {len} where {more} more were due"
            ),
            WireError::HeaderKeyNotUtf8 => f.write_str("a header key is not UTF-8"),
            WireError::TimestampFlag(flag) => {
                write!(f, "timestamp flag {flag} is neither 0 nor 1")
            }
        }
    }
}

impl std::error::Error for WireError {}

/// Bytes `part` takes in the buffer.
#[inline]
pub fn part_len(bytes: Option<&[u8]>) -> usize {
    4 + bytes.map_or(0, <[u8]>::len)
}

/// Bytes a header list takes: its count and each key and value.
#[inline]
pub fn headers_len<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> usize {
    4 + headers.map(|(k, v)| 8 + k.len() + v.len()).sum::<usize>()
}

/// Appends a part: its length and bytes, or the null length. Kafka bounds
/// a record far below 4 GiB, so every length fits.
#[inline]
pub fn put_part(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        None => out.extend_from_slice(&NULL.to_le_bytes()),
    }
}

/// Appends a header list: its count, then each key and value.
#[inline]
pub fn put_headers<'a>(
    out: &mut Vec<u8>,
    headers: impl ExactSizeIterator<Item = (&'a str, &'a [u8])>,
) {
    out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (key, value) in headers {
        put_part(out, Some(key.as_bytes()));
        put_part(out, Some(value));
    }
}

/// Reads a buffer from its start.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    /// Whether every byte has been read.
    #[inline]
    pub fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// Bytes not read yet.
    #[inline]
    pub fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let bytes = self.bytes;
        match self.at.checked_add(n).filter(|&end| end <= bytes.len()) {
            Some(end) => {
                let part = &bytes[self.at..end];
                self.at = end;
                Ok(part)
            }
            None => Err(WireError::Short {
                len: bytes.len(),
                more: n,
            }),
        }
    }

    #[inline]
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    #[inline]
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    #[inline]
    pub fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// A part: `None` for the null length.
    #[inline]
    pub fn part(&mut self) -> Result<Option<&'a [u8]>, WireError> {
        match self.u32()? {
            NULL => Ok(None),
            len => self.take(len as usize).map(Some),
        }
    }

    /// A header list, as (key, value) pairs.
    #[inline]
    pub fn headers(&mut self) -> Result<Vec<(String, Vec<u8>)>, WireError> {
        (0..self.u32()?)
            .map(|_| {
                let key = self.part()?.unwrap_or_default();
                let key = std::str::from_utf8(key).map_err(|_| WireError::HeaderKeyNotUtf8)?;
                let value = self.part()?.unwrap_or_default();
                Ok((key.to_string(), value.to_vec()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_headers_round_trip_and_short_buffers_are_named() {
        let mut out = Vec::new();
        put_part(&mut out, Some(b"k"));
        put_part(&mut out, None);
        put_headers(&mut out, [("h", &b"xy"[..])].into_iter());
        assert_eq!(
            out,
            [
                1, 0, 0, 0, b'k', 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 1, 0, 0, 0, b'h', 2, 0, 0, 0,
                b'x', b'y'
            ]
        );
        assert_eq!(
            part_len(Some(b"k")) + part_len(None) + headers_len([("h", &b"xy"[..])].into_iter()),
            out.len()
        );
        let mut r = Reader::new(&out);
        assert_eq!(r.part().unwrap(), Some(&b"k"[..]));
        assert_eq!(r.part().unwrap(), None);
        assert_eq!(r.headers().unwrap(), [("h".to_string(), b"xy".to_vec())]);
        assert!(r.is_done());
        let err = Reader::new(&out[..3]).part().unwrap_err();
        assert_eq!(
            err.to_string(),
            "the encoded records end at byte 3 where 4 more were due"
        );
    }
}
