//! 0.3.0's encoded records: a batch's (`records.input-batch`), written
//! here, and a call's outputs (`records.outputs`), read here. Each is one
//! buffer, one copy across the boundary, instead of one guest allocation
//! per key, value and header list. The layouts are the WIT's; the SDK
//! writes outputs and reads batches. Outputs come from the guest: any
//! layout error is an `Err` naming it, never a panic. The layout itself
//! is `weir_sdk::wire`'s, shared with the SDK.

use weir_sdk::wire::{self, Reader, WireError};

use super::bindings::{Header, IncomingRecord, OutgoingRecord};

/// `batch`'s records, encoded.
pub(super) fn encode(batch: &[IncomingRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.iter().map(encoded_len).sum());
    for r in batch {
        out.extend_from_slice(&r.timestamp.to_le_bytes());
        out.extend_from_slice(&r.offset.to_le_bytes());
        wire::put_part(&mut out, r.key.as_deref());
        wire::put_part(&mut out, r.value.as_deref());
        wire::put_headers(&mut out, header_pairs(&r.headers));
    }
    out
}

fn header_pairs(headers: &[Header]) -> impl ExactSizeIterator<Item = (&str, &[u8])> {
    headers.iter().map(|h| (h.key.as_str(), h.value.as_slice()))
}

fn encoded_len(r: &IncomingRecord) -> usize {
    16 + wire::part_len(r.key.as_deref())
        + wire::part_len(r.value.as_deref())
        + wire::headers_len(header_pairs(&r.headers))
}

/// The `count` outputs encoded in `bytes`, `(sink index, record)` each; a
/// layout error ends them.
pub(super) fn outputs(bytes: &[u8], count: u32) -> Outputs<'_> {
    Outputs {
        reader: Reader::new(bytes),
        left: count,
    }
}

/// A call's outputs, decoded one at a time.
pub(super) struct Outputs<'a> {
    reader: Reader<'a>,
    left: u32,
}

impl Outputs<'_> {
    fn output(&mut self) -> Result<(u32, OutgoingRecord), WireError> {
        let r = &mut self.reader;
        let sink = r.u32()?;
        let timestamp = match r.u8()? {
            0 => None,
            1 => Some(r.i64()?),
            flag => return Err(WireError::TimestampFlag(flag)),
        };
        let key = r.part()?.map(<[u8]>::to_vec);
        let value = r.part()?.map(<[u8]>::to_vec);
        let headers = (r.headers()?.into_iter())
            .map(|(key, value)| Header { key, value })
            .collect();
        let record = OutgoingRecord {
            key,
            value,
            headers,
            timestamp,
        };
        Ok((sink, record))
    }
}

impl Iterator for Outputs<'_> {
    type Item = Result<(u32, OutgoingRecord), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            let left = self.reader.left();
            return (left > 0).then(|| Err(format!("{left} bytes follow the last encoded output")));
        }
        self.left -= 1;
        let output = self.output().map_err(|e| format!("encoded outputs: {e}"));
        if output.is_err() {
            self.left = 0;
            let rest = self.reader.left();
            let _ = self.reader.take(rest);
        }
        Some(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_written_back_to_back_as_the_wit_says() {
        let record = |key: Option<&[u8]>, value: Option<&[u8]>, headers| IncomingRecord {
            source: "in".into(),
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers,
            timestamp: 7,
            topic: "in".into(),
            partition: 0,
            offset: 258,
        };
        let header = Header {
            key: "h".into(),
            value: b"xy".to_vec(),
        };
        let batch = [
            record(Some(b"k"), None, vec![header]),
            record(None, Some(b""), Vec::new()),
        ];
        let mut want: Vec<u8> = Vec::new();
        want.extend([7, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]);
        want.extend([1, 0, 0, 0, b'k', 0xff, 0xff, 0xff, 0xff]);
        want.extend([1, 0, 0, 0, 1, 0, 0, 0, b'h', 2, 0, 0, 0, b'x', b'y']);
        want.extend([7, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]);
        want.extend([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
        let encoded = encode(&batch);
        assert_eq!(encoded, want);
        assert_eq!(encoded.len(), batch.iter().map(encoded_len).sum::<usize>());
    }

    #[test]
    fn outputs_are_read_as_the_wit_says_and_bad_ones_are_named() {
        let mut bytes: Vec<u8> = Vec::new();
        // Sink 2, timestamp 5, key "k", null value, header h: xy.
        bytes.extend([2, 0, 0, 0, 1, 5, 0, 0, 0, 0, 0, 0, 0]);
        bytes.extend([1, 0, 0, 0, b'k', 0xff, 0xff, 0xff, 0xff]);
        bytes.extend([1, 0, 0, 0, 1, 0, 0, 0, b'h', 2, 0, 0, 0, b'x', b'y']);
        // Sink 0, no timestamp, null key, empty value, no headers.
        bytes.extend([
            0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        let read: Vec<(u32, OutgoingRecord)> = outputs(&bytes, 2).map(Result::unwrap).collect();
        assert_eq!(read.len(), 2);
        let (sink, first) = &read[0];
        assert_eq!((*sink, first.timestamp), (2, Some(5)));
        assert_eq!(
            (first.key.as_deref(), first.value.as_deref()),
            (Some(&b"k"[..]), None)
        );
        assert_eq!(
            (first.headers[0].key.as_str(), &first.headers[0].value[..]),
            ("h", &b"xy"[..])
        );
        let (sink, second) = &read[1];
        assert_eq!(
            (*sink, second.timestamp, second.key.as_deref()),
            (0, None, None)
        );
        assert_eq!(second.value.as_deref(), Some(&b""[..]));

        let errors = |bytes: &[u8], count| outputs(bytes, count).find_map(Result::err);
        assert!(errors(&bytes[..20], 1).unwrap().contains("end at byte 20"));
        assert!(
            errors(&bytes, 1)
                .unwrap()
                .contains("bytes follow the last encoded output")
        );
        let mut bad = bytes.clone();
        bad[4] = 7;
        assert!(errors(&bad, 2).unwrap().contains("timestamp flag 7"));
    }
}
