//! 0.3.0's encoded records: a batch (`records.input-batch.encoded`, which
//! the host writes: the records of one input partition back to back) read
//! here, and a call's outputs (`records.outputs`) written here. One copy
//! crosses the boundary each way per call (layouts in the WIT). A batch
//! that does not follow the layout is a host bug and panics (the call
//! traps, naming it). The layout itself is [`crate::wire`]'s.

use crate::context::{Header, Pending};
use crate::wire::{self, Reader};

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

    fn read(&mut self) -> Result<Decoded, wire::WireError> {
        let mut r = Reader::new(&self.bytes[self.at..]);
        let timestamp = r.i64()?;
        let offset = r.i64()?;
        let key = r.part()?.map(<[u8]>::to_vec);
        let value = r.part()?.map(<[u8]>::to_vec);
        let headers = (r.headers()?.into_iter())
            .map(|(key, value)| Header { key, value })
            .collect();
        self.at = self.bytes.len() - r.left();
        Ok(Decoded {
            key,
            value,
            headers,
            timestamp,
            offset,
        })
    }
}

impl Iterator for Records {
    type Item = Decoded;

    fn next(&mut self) -> Option<Decoded> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match self.read() {
            Ok(decoded) => Some(decoded),
            Err(e) => panic!("the host's encoded batch: {e}"),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

fn header_pairs(o: &Pending) -> impl ExactSizeIterator<Item = (&str, &[u8])> {
    (o.headers.iter()).map(|h| (h.key.as_str(), h.value.as_slice()))
}

/// `outputs`, encoded for the host.
pub(crate) fn encode_outputs(outputs: &[Pending]) -> Vec<u8> {
    let size: usize = (outputs.iter())
        .map(|o| {
            let timestamp = if o.timestamp.is_some() { 9 } else { 1 };
            4 + timestamp
                + wire::part_len(o.key.as_deref())
                + wire::part_len(o.value.as_deref())
                + wire::headers_len(header_pairs(o))
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
        wire::put_part(&mut out, o.key.as_deref());
        wire::put_part(&mut out, o.value.as_deref());
        wire::put_headers(&mut out, header_pairs(o));
    }
    out
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
    #[should_panic(expected = "the host's encoded batch: the encoded records end at byte 3")]
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
