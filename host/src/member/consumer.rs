//! The consumer-protocol bytes inside JoinGroup and SyncGroup: this
//! member's `ConsumerProtocolSubscription` and the leader's
//! `ConsumerProtocolAssignment`s (written with `kafka-protocol`), and other
//! members' subscriptions and this member's assignment (read by hand).
//!
//! Reading is by hand with bounds checks because the bytes come from any
//! client that joined the group: `kafka-protocol` 0.18 sizes vectors from a
//! declared array length before reading, so a corrupt length would abort
//! the process. Pure functions: must never do I/O or interpret user data.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::{Encodable, StrBytes};

/// The version this client writes its subscription and assignment in (v1:
/// topics, user data, owned partitions; Weir leaves the partitions empty).
const CONSUMER_PROTOCOL_VERSION: i16 = 1;

/// `ConsumerProtocolSubscription` bytes: version prefix, then the body.
pub(crate) fn encode_subscription(topics: &[String], user_data: &[u8]) -> Result<Bytes, String> {
    let subscription = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| text(t)).collect())
        .with_user_data(Some(Bytes::copy_from_slice(user_data)));
    let mut buf = BytesMut::new();
    buf.put_i16(CONSUMER_PROTOCOL_VERSION);
    subscription
        .encode(&mut buf, CONSUMER_PROTOCOL_VERSION)
        .map_err(|e| format!("encoding the subscription: {e}"))?;
    Ok(buf.freeze())
}

/// Topics and user data of another member's subscription. Read by hand
/// with bounds checks (the bytes come from any client that joined the
/// group): `kafka-protocol` sizes vectors from the declared array length
/// before reading, so a corrupt length would abort the process.
pub(crate) fn decode_subscription(metadata: &Bytes) -> Result<(Vec<String>, Vec<u8>), String> {
    let mut r = Reader(metadata.clone());
    let version = r.i16()?;
    if version < 0 {
        return Err(format!("negative subscription version {version}"));
    }
    let count = r.array_len(2)?;
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        topics.push(r.string()?.ok_or("a null topic name")?);
    }
    // Later fields (owned partitions, generation, rack) are not used.
    let user_data = r.bytes()?.map(|b| b.to_vec()).unwrap_or_default();
    Ok((topics, user_data))
}

/// `ConsumerProtocolAssignment` bytes carrying only user data.
pub(crate) fn encode_assignment(user_data: &[u8]) -> Result<Bytes, String> {
    let assignment = ConsumerProtocolAssignment::default()
        .with_user_data(Some(Bytes::copy_from_slice(user_data)));
    let mut buf = BytesMut::new();
    buf.put_i16(CONSUMER_PROTOCOL_VERSION);
    assignment
        .encode(&mut buf, CONSUMER_PROTOCOL_VERSION)
        .map_err(|e| format!("encoding the assignment: {e}"))?;
    Ok(buf.freeze())
}

/// The user data of this member's assignment; empty bytes (the leader gave
/// this member nothing) mean empty user data. Read by hand, as
/// [`decode_subscription`].
pub(crate) fn decode_assignment(bytes: &Bytes) -> Result<Vec<u8>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = Reader(bytes.clone());
    let version = r.i16()?;
    if version < 0 {
        return Err(format!("negative assignment version {version}"));
    }
    // Assigned partitions: [topic string, [i32]]; Weir keeps them empty.
    for _ in 0..r.array_len(6)? {
        r.string()?;
        let partitions = r.array_len(4)?;
        r.skip(partitions * 4)?;
    }
    Ok(r.bytes()?.map(|b| b.to_vec()).unwrap_or_default())
}

/// A bounds-checked reader of the classic (non-flexible) encoding.
struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize) -> Result<(), String> {
        if self.0.remaining() < n {
            return Err(format!(
                "truncated: {n} bytes needed, {} left",
                self.0.remaining()
            ));
        }
        Ok(())
    }

    fn i16(&mut self) -> Result<i16, String> {
        self.need(2)?;
        Ok(self.0.get_i16())
    }

    fn i32(&mut self) -> Result<i32, String> {
        self.need(4)?;
        Ok(self.0.get_i32())
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        self.need(n)?;
        self.0.advance(n);
        Ok(())
    }

    /// An array length (null counts as empty), refused when the remaining
    /// bytes cannot hold that many elements of at least `min_size` bytes.
    fn array_len(&mut self, min_size: usize) -> Result<usize, String> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(0);
        }
        let n = n as usize;
        if n.saturating_mul(min_size) > self.0.remaining() {
            return Err(format!(
                "array of {n} elements in {} bytes",
                self.0.remaining()
            ));
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<Option<String>, String> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        self.need(n as usize)?;
        let raw = self.0.split_to(n as usize);
        String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|_| "a string that is not UTF-8".to_string())
    }

    fn bytes(&mut self) -> Result<Option<Bytes>, String> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(None);
        }
        self.need(n as usize)?;
        Ok(Some(self.0.split_to(n as usize)))
    }
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::TopicName;

    #[test]
    fn subscription_round_trips() {
        let bytes = encode_subscription(&["a".into(), "b".into()], b"weir").unwrap();
        assert_eq!(&bytes[..2], &CONSUMER_PROTOCOL_VERSION.to_be_bytes());
        let (topics, user_data) = decode_subscription(&bytes).unwrap();
        assert_eq!(topics, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(user_data, b"weir");
    }

    #[test]
    fn a_newer_subscription_version_is_read_as_the_newest_known() {
        let body = ConsumerProtocolSubscription::default()
            .with_topics(vec![text("t")])
            .with_user_data(Some(Bytes::from_static(b"x")))
            .with_generation_id(7)
            .with_rack_id(Some(text("rack")));
        let mut buf = BytesMut::new();
        buf.put_i16(9);
        body.encode(&mut buf, 3).unwrap();
        buf.put_slice(b"fields from the future");
        let (topics, user_data) = decode_subscription(&buf.freeze()).unwrap();
        assert_eq!((topics, user_data), (vec!["t".to_string()], b"x".to_vec()));
    }

    #[test]
    fn kafkas_own_encodings_are_read_at_every_version() {
        use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as Assigned;
        use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as Owned;
        for v in 0..=3 {
            let mut subscription = ConsumerProtocolSubscription::default()
                .with_topics(vec![text("t1"), text("t2")])
                .with_user_data(Some(Bytes::from_static(b"sub")));
            if v >= 1 {
                subscription = subscription.with_owned_partitions(vec![
                    Owned::default()
                        .with_topic(TopicName(text("t1")))
                        .with_partitions(vec![0, 3]),
                ]);
            }
            let mut buf = BytesMut::new();
            buf.put_i16(v);
            subscription.encode(&mut buf, v).unwrap();
            let (topics, user_data) = decode_subscription(&buf.freeze()).unwrap();
            assert_eq!(topics, ["t1", "t2"]);
            assert_eq!(user_data, b"sub");

            let assignment = ConsumerProtocolAssignment::default()
                .with_assigned_partitions(vec![
                    Assigned::default()
                        .with_topic(TopicName(text("t1")))
                        .with_partitions(vec![1, 2]),
                    Assigned::default()
                        .with_topic(TopicName(text("t2")))
                        .with_partitions(vec![]),
                ])
                .with_user_data(Some(Bytes::from_static(b"asg")));
            let mut buf = BytesMut::new();
            buf.put_i16(v);
            assignment.encode(&mut buf, v).unwrap();
            assert_eq!(decode_assignment(&buf.freeze()).unwrap(), b"asg");
        }
        // A null user data reads as empty.
        let mut buf = BytesMut::new();
        buf.put_i16(0);
        ConsumerProtocolAssignment::default()
            .encode(&mut buf, 0)
            .unwrap();
        assert_eq!(decode_assignment(&buf.freeze()).unwrap(), b"");
    }

    #[test]
    fn garbage_metadata_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            &b"\x00"[..],
            &b"\xff\xff"[..],
            &b"\x00\x01\x7f\xff\xff\xff"[..],
        ] {
            assert!(decode_subscription(&Bytes::copy_from_slice(bytes)).is_err());
        }
        assert!(decode_assignment(&Bytes::from_static(b"\x00\x01\x00")).is_err());
        assert!(decode_assignment(&Bytes::from_static(b"\x00\x01\x7f\xff\xff\xff")).is_err());
        assert!(
            decode_assignment(&Bytes::from_static(
                b"\x00\x01\x00\x00\x00\x01\x00\x01t\x7f\xff\xff\xff"
            ))
            .is_err()
        );
    }

    #[test]
    fn assignment_round_trips_and_empty_means_nothing() {
        let bytes = encode_assignment(b"tasks").unwrap();
        assert_eq!(decode_assignment(&bytes).unwrap(), b"tasks");
        assert_eq!(decode_assignment(&Bytes::new()).unwrap(), Vec::<u8>::new());
    }
}
