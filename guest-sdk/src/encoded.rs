//! 0.3.0's encoded records: a batch (`records.input-batch.encoded`, which
//! the host writes: the records of one input partition back to back) read
//! here, and a call's outputs (`records.outputs`) written here. One copy
//! crosses the boundary each way per call (layouts in the WIT). A batch
//! that does not follow the layout is a host bug and panics (the call
//! traps, naming it).

use crate::context::{Header, Pending};

/// The length that stands for a null key or value.
const NULL: u32 = u32::MAX;

/// One record's payload, as decoded.
pub(crate) struct Decoded {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    pub timestamp: i64,
    pub offset: i64,
}

/// The `count` records of `bytes`, in order.
pub(crate) struct Records {
    bytes: Vec<u8>,
    at: usize,
    left: u32,
}

impl Records {
    pub(crate) fn new(bytes: Vec<u8>, count: u32) -> Self {
        Records {
            bytes,
            at: 0,
            left: count,
        }
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            panic!(
                "the host's encoded batch ends at byte {} where {n} more were due",
                self.bytes.len()
            );
        };
        let part = &self.bytes[self.at..end];
        self.at = end;
        part
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
    }

    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
    }

    fn part(&mut self) -> Option<Vec<u8>> {
        match self.u32() {
            NULL => None,
            len => Some(self.take(len as usize).to_vec()),
        }
    }
}

impl Iterator for Records {
    type Item = Decoded;

    fn next(&mut self) -> Option<Decoded> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let timestamp = self.i64();
        let offset = self.i64();
        let key = self.part();
        let value = self.part();
        let headers = (0..self.u32())
            .map(|_| {
                let key = self.part().unwrap_or_default();
                Header {
                    key: String::from_utf8(key)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                    value: self.part().unwrap_or_default(),
                }
            })
            .collect();
        Some(Decoded {
            key,
            value,
            headers,
            timestamp,
            offset,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

/// `outputs`, encoded for the host.
pub(crate) fn encode_outputs(outputs: &[Pending]) -> Vec<u8> {
    let size: usize = outputs
        .iter()
        .map(|o| {
            let headers: usize = o
                .headers
                .iter()
                .map(|h| 8 + h.key.len() + h.value.len())
                .sum();
            let part = |b: &Option<Vec<u8>>| 4 + b.as_ref().map_or(0, Vec::len);
            let timestamp = if o.timestamp.is_some() { 9 } else { 1 };
            4 + timestamp + part(&o.key) + part(&o.value) + 4 + headers
        })
        .sum();
    let mut out = Vec::with_capacity(size);
    for o in outputs {
        out.extend_from_slice(&o.sink.to_le_bytes());
        match o.timestamp {
            Some(t) => {
                out.push(1);
                out.extend_from_slice(&t.to_le_bytes());
            }
            None => out.push(0),
        }
        part(&mut out, o.key.as_deref());
        part(&mut out, o.value.as_deref());
        out.extend_from_slice(&(o.headers.len() as u32).to_le_bytes());
        for h in &o.headers {
            part(&mut out, Some(h.key.as_bytes()));
            part(&mut out, Some(&h.value));
        }
    }
    out
}

/// A length and the bytes, or the null length.
fn part(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        None => out.extend_from_slice(&NULL.to_le_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_back_as_the_host_writes_them() {
        // What the host's encoder writes for: (k, null, [h: xy]) and
        // (null, empty, []), both at timestamp 7 and offset 258.
        let mut bytes: Vec<u8> = Vec::new();
        bytes.extend([7, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]);
        bytes.extend([1, 0, 0, 0, b'k', 0xff, 0xff, 0xff, 0xff]);
        bytes.extend([1, 0, 0, 0, 1, 0, 0, 0, b'h', 2, 0, 0, 0, b'x', b'y']);
        bytes.extend([7, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]);
        bytes.extend([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
        let records: Vec<Decoded> = Records::new(bytes, 2).collect();
        assert_eq!(records.len(), 2);
        let (a, b) = (&records[0], &records[1]);
        assert_eq!((a.timestamp, a.offset), (7, 258));
        assert_eq!(
            (a.key.as_deref(), a.value.as_deref()),
            (Some(&b"k"[..]), None)
        );
        assert_eq!(a.headers.len(), 1);
        assert_eq!(
            (a.headers[0].key.as_str(), &a.headers[0].value[..]),
            ("h", &b"xy"[..])
        );
        assert_eq!(
            (b.key.as_deref(), b.value.as_deref()),
            (None, Some(&b""[..]))
        );
        assert!(b.headers.is_empty());
    }

    #[test]
    #[should_panic(expected = "ends at byte 3")]
    fn a_short_buffer_is_named() {
        Records::new(vec![1, 2, 3], 1).next();
    }

    #[test]
    fn outputs_are_written_as_the_host_reads_them() {
        let outputs = [
            Pending {
                sink: 2,
                key: Some(b"k".to_vec()),
                value: None,
                headers: vec![Header {
                    key: "h".into(),
                    value: b"xy".to_vec(),
                }],
                timestamp: Some(5),
            },
            Pending {
                sink: 0,
                key: None,
                value: Some(Vec::new()),
                headers: Vec::new(),
                timestamp: None,
            },
        ];
        // The bytes the host's decoder test reads.
        let mut want: Vec<u8> = Vec::new();
        want.extend([2, 0, 0, 0, 1, 5, 0, 0, 0, 0, 0, 0, 0]);
        want.extend([1, 0, 0, 0, b'k', 0xff, 0xff, 0xff, 0xff]);
        want.extend([1, 0, 0, 0, 1, 0, 0, 0, b'h', 2, 0, 0, 0, b'x', b'y']);
        want.extend([
            0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        let encoded = encode_outputs(&outputs);
        assert_eq!(encoded, want);
        assert_eq!(encoded.capacity(), want.len(), "sized up front");
    }
}
