//! 0.3.0's encoded records: a batch's (`records.input-batch`), written
//! here, and a call's outputs (`records.outputs`), read here. Each is one
//! buffer, one copy across the boundary, instead of one guest allocation
//! per key, value and header list. The layouts are the WIT's; the SDK
//! writes outputs and reads batches. Outputs come from the guest: any
//! layout error is an `Err` naming it, never a panic.

use super::bindings::{Header, IncomingRecord, OutgoingRecord};

/// The length that stands for a null key or value.
const NULL: u32 = u32::MAX;

/// `batch`'s records, encoded.
pub(super) fn encode(batch: &[IncomingRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.iter().map(encoded_len).sum());
    for r in batch {
        out.extend_from_slice(&r.timestamp.to_le_bytes());
        out.extend_from_slice(&r.offset.to_le_bytes());
        part(&mut out, r.key.as_deref());
        part(&mut out, r.value.as_deref());
        out.extend_from_slice(&(r.headers.len() as u32).to_le_bytes());
        for h in &r.headers {
            part(&mut out, Some(h.key.as_bytes()));
            part(&mut out, Some(&h.value));
        }
    }
    out
}

/// A length and the bytes, or the null length. Kafka bounds a record far
/// below 4 GiB, so every length fits.
fn part(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        None => out.extend_from_slice(&NULL.to_le_bytes()),
    }
}

fn encoded_len(r: &IncomingRecord) -> usize {
    let headers: usize = r
        .headers
        .iter()
        .map(|h| 8 + h.key.len() + h.value.len())
        .sum();
    let bytes = |b: &Option<Vec<u8>>| 4 + b.as_ref().map_or(0, Vec::len);
    16 + bytes(&r.key) + bytes(&r.value) + 4 + headers
}

/// The outputs `count` records in `bytes` hold: `(sink index, record)`.
pub(super) fn outputs(bytes: &[u8], count: u32) -> Outputs<'_> {
    Outputs {
        bytes,
        at: 0,
        left: count,
    }
}

/// A call's outputs, decoded one at a time.
pub(super) struct Outputs<'a> {
    bytes: &'a [u8],
    at: usize,
    left: u32,
}

impl<'a> Outputs<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let bytes = self.bytes;
        match self.at.checked_add(n).filter(|&end| end <= bytes.len()) {
            Some(end) => {
                let part = &bytes[self.at..end];
                self.at = end;
                Ok(part)
            }
            None => Err(format!(
                "encoded outputs end at byte {} where {n} more were due",
                bytes.len()
            )),
        }
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn part(&mut self) -> Result<Option<Vec<u8>>, String> {
        match self.u32()? {
            NULL => Ok(None),
            len => Ok(Some(self.take(len as usize)?.to_vec())),
        }
    }

    fn output(&mut self) -> Result<(u32, OutgoingRecord), String> {
        let sink = self.u32()?;
        let timestamp = match self.take(1)?[0] {
            0 => None,
            1 => Some(i64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            flag => return Err(format!("timestamp flag {flag} is neither 0 nor 1")),
        };
        let key = self.part()?;
        let value = self.part()?;
        let headers = (0..self.u32()?)
            .map(|_| {
                let key = self.part()?.unwrap_or_default();
                let key = String::from_utf8(key).map_err(|_| "a header key is not UTF-8")?;
                let value = self.part()?.unwrap_or_default();
                Ok(Header { key, value })
            })
            .collect::<Result<Vec<_>, String>>()?;
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
            return (self.at != self.bytes.len()).then(|| {
                Err(format!(
                    "{} bytes follow the last encoded output",
                    self.bytes.len() - self.at
                ))
            });
        }
        self.left -= 1;
        let output = self.output();
        if output.is_err() {
            self.left = 0;
            self.at = self.bytes.len();
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
