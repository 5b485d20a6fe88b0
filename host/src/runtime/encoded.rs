//! 0.3.0's encoded batch (`records.input-batch.encoded`): the records of
//! one input partition back to back in one buffer, so a batch is one copy
//! into the guest instead of one guest allocation per key, value and
//! header. The layout is the WIT's; the SDK reads it. Writes only.

use super::bindings::IncomingRecord;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::Header;

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
}
