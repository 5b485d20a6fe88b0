//! Big-endian primitives for the subscription and assignment user data, and
//! the error every decoder returns.
//!
//! Owns: byte layout of integers, strings, task ids, sets and maps, and the
//! versioned envelope (`version`, `latest_supported_version`, body length,
//! body). Must never: panic or allocate by a length it has not checked
//! against the bytes actually present, or know what the fields mean.
//!
//! Envelope: a newer writer appends its new fields at the end of the body,
//! and the body's length comes first, so an older reader decodes the
//! fields it knows and skips the rest.

use std::collections::{BTreeMap, BTreeSet};

use crate::topology::TaskId;

/// Why user data could not be decoded. Every variant means the peer sent
/// something this process cannot use: not transient; report the member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{what}: needs {needed} bytes at offset {at}, only {left} left")]
    Truncated {
        what: &'static str,
        at: usize,
        needed: usize,
        left: usize,
    },
    #[error("unsupported version {version}")]
    UnsupportedVersion { version: u32 },
    #[error("{what}: not UTF-8")]
    NotUtf8 { what: &'static str },
    #[error("{what}: invalid value {value}")]
    InvalidValue { what: &'static str, value: i64 },
    #[error("{what}: duplicate entry")]
    Duplicate { what: &'static str },
    #[error("{count} bytes after the end of the payload")]
    TrailingBytes { count: usize },
}

/// Appends big-endian values to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub buf: Vec<u8>,
}

/// A collection length as written on the wire. More than `u32::MAX`
/// entries (4 billion tasks or bytes in one member's user data) cannot
/// be built by a running group.
fn wire_len(n: usize) -> u32 {
    u32::try_from(n).expect("user data collections hold fewer than 2^32 entries")
}

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    pub fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    pub fn len(&mut self, n: usize) {
        self.u32(wire_len(n));
    }
    pub fn string(&mut self, s: &str) {
        self.len(s.len());
        self.bytes(s.as_bytes());
    }
    pub fn opt_string(&mut self, s: Option<&str>) {
        match s {
            None => self.bool(false),
            Some(s) => {
                self.bool(true);
                self.string(s);
            }
        }
    }
    pub fn task(&mut self, t: TaskId) {
        self.u32(t.subtopology);
        self.i32(t.partition);
    }
    pub fn tasks<'a>(&mut self, tasks: impl ExactSizeIterator<Item = &'a TaskId>) {
        self.len(tasks.len());
        for t in tasks {
            self.task(*t);
        }
    }

    /// The envelope around `body`.
    pub fn envelope(version: u32, latest_supported: u32, body: Writer) -> Vec<u8> {
        let mut out = Writer::default();
        out.u32(version);
        out.u32(latest_supported);
        out.len(body.buf.len());
        out.bytes(&body.buf);
        out.buf
    }
}

/// Reads big-endian values from a slice, never past its end.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                what,
                at: self.pos,
                needed: n,
                left: self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    pub fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }
    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }
    pub fn bytes16(&mut self, what: &'static str) -> Result<[u8; 16], DecodeError> {
        self.array(what)
    }
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::InvalidValue {
                what,
                value: i64::from(v),
            }),
        }
    }
    /// A collection length; each entry takes at least `min_entry` bytes, so
    /// a length the remaining bytes cannot hold is refused up front.
    pub fn len(&mut self, what: &'static str, min_entry: usize) -> Result<usize, DecodeError> {
        let n = self.u32(what)? as usize;
        let needed = n.saturating_mul(min_entry.max(1));
        if needed > self.remaining() {
            return Err(DecodeError::Truncated {
                what,
                at: self.pos,
                needed,
                left: self.remaining(),
            });
        }
        Ok(n)
    }
    pub fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let n = self.len(what, 1)?;
        let raw = self.take(n, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::NotUtf8 { what })
    }
    pub fn opt_string(&mut self, what: &'static str) -> Result<Option<String>, DecodeError> {
        if self.bool(what)? {
            Ok(Some(self.string(what)?))
        } else {
            Ok(None)
        }
    }
    pub fn task(&mut self, what: &'static str) -> Result<TaskId, DecodeError> {
        let subtopology = self.u32(what)?;
        let partition = self.i32(what)?;
        if partition < 0 {
            return Err(DecodeError::InvalidValue {
                what,
                value: i64::from(partition),
            });
        }
        Ok(TaskId {
            subtopology,
            partition,
        })
    }
    pub fn task_list(&mut self, what: &'static str) -> Result<Vec<TaskId>, DecodeError> {
        let n = self.len(what, 8)?;
        (0..n).map(|_| self.task(what)).collect()
    }
    pub fn task_set(&mut self, what: &'static str) -> Result<BTreeSet<TaskId>, DecodeError> {
        let mut out = BTreeSet::new();
        for task in self.task_list(what)? {
            if !out.insert(task) {
                return Err(DecodeError::Duplicate { what });
            }
        }
        Ok(out)
    }
    pub fn string_map(
        &mut self,
        what: &'static str,
    ) -> Result<BTreeMap<String, String>, DecodeError> {
        let n = self.len(what, 8)?;
        let mut out = BTreeMap::new();
        for _ in 0..n {
            let k = self.string(what)?;
            let v = self.string(what)?;
            if out.insert(k, v).is_some() {
                return Err(DecodeError::Duplicate { what });
            }
        }
        Ok(out)
    }

    /// Opens the envelope: the payload's version, its writer's latest
    /// supported version, and a reader over exactly the body. Bytes after
    /// the body are refused.
    pub fn envelope(buf: &'a [u8]) -> Result<(u32, u32, Reader<'a>), DecodeError> {
        let mut r = Reader::new(buf);
        let version = r.u32("version")?;
        if version == 0 {
            return Err(DecodeError::UnsupportedVersion { version });
        }
        let latest = r.u32("latest supported version")?;
        if latest < version {
            return Err(DecodeError::InvalidValue {
                what: "latest supported version",
                value: i64::from(latest),
            });
        }
        let n = r.len("body", 1)?;
        let body = r.take(n, "body")?;
        if r.remaining() != 0 {
            return Err(DecodeError::TrailingBytes {
                count: r.remaining(),
            });
        }
        Ok((version, latest, Reader::new(body)))
    }
}
