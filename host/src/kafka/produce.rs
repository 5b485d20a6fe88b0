//! Producing one record with librdkafka's `rd_kafka_produceva` and a
//! topic handle kept per topic ([`TopicHandles`]). rust-rdkafka's `send`
//! names the topic by string, so librdkafka looks it up under the client's
//! lock for every record, a tenth of a stream thread producing word count's
//! repartition, changelog and output records.
//!
//! The record is copied (`RD_KAFKA_MSG_F_COPY`) and its delivery report
//! carries the opaque `usize` as rust-rdkafka's does, so the producer's
//! context handles reports of records sent here like its own. Everything
//! unsafe about the call stays in this module.

use std::collections::HashMap;
use std::ffi::CString;
use std::ptr::NonNull;

use rdkafka::bindings as rd;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

/// librdkafka's "unassigned partition": its partitioner picks one.
const PARTITION_UA: i32 = -1;

/// One record to produce; slices are copied by librdkafka.
pub struct RawRecord<'a> {
    pub topic: &'a str,
    /// `None`: the producer's partitioner picks one.
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, &'a [u8])],
    pub timestamp: Option<i64>,
    /// Handed back in the record's delivery report.
    pub opaque: usize,
}

/// Topic handles of one producer. Must be dropped before that producer
/// (librdkafka's client must outlive every handle of it).
pub struct TopicHandles {
    client: NonNull<rd::rd_kafka_t>,
    /// Looked up per record: a fast hash, not std's SipHash.
    topics: HashMap<String, NonNull<rd::rd_kafka_topic_t>, foldhash::fast::RandomState>,
}

// librdkafka's handles are thread-safe; the client pointer is only used
// while the producer it belongs to lives (the owner's field order).
unsafe impl Send for TopicHandles {}

impl TopicHandles {
    pub fn new<C: ProducerContext>(producer: &BaseProducer<C>) -> Option<Self> {
        Some(TopicHandles {
            client: NonNull::new(producer.client().native_ptr())?,
            topics: HashMap::default(),
        })
    }

    fn handle(&mut self, topic: &str) -> Result<NonNull<rd::rd_kafka_topic_t>, KafkaError> {
        if let Some(handle) = self.topics.get(topic) {
            return Ok(*handle);
        }
        let name = CString::new(topic).map_err(|_| invalid(topic, "a NUL in its name"))?;
        // SAFETY: a live client; the handle is destroyed in `Drop`.
        let raw = unsafe {
            rd::rd_kafka_topic_new(self.client.as_ptr(), name.as_ptr(), std::ptr::null_mut())
        };
        let handle = NonNull::new(raw).ok_or_else(|| invalid(topic, "librdkafka refused it"))?;
        self.topics.insert(topic.to_string(), handle);
        Ok(handle)
    }

    /// Queues `record`; a full queue is
    /// `MessageProduction(QueueFull)`, to be retried once delivery reports
    /// have been served.
    pub fn send(&mut self, record: &RawRecord<'_>) -> Result<(), KafkaError> {
        let topic = self.handle(record.topic)?;
        let mut vus: [rd::rd_kafka_vu_t; 8] = unsafe { std::mem::zeroed() };
        let mut n = 0;
        let mut push = |vtype, u| {
            vus[n] = rd::rd_kafka_vu_t { vtype, u };
            n += 1;
        };
        use rd::rd_kafka_vtype_t as V;
        let u = rd::rd_kafka_vu_s__bindgen_ty_1 {
            rkt: topic.as_ptr(),
        };
        push(V::RD_KAFKA_VTYPE_RKT, u);
        let partition = record.partition.unwrap_or(PARTITION_UA);
        push(
            V::RD_KAFKA_VTYPE_PARTITION,
            rd::rd_kafka_vu_s__bindgen_ty_1 { i32_: partition },
        );
        let copy = rd::RD_KAFKA_MSG_F_COPY;
        push(
            V::RD_KAFKA_VTYPE_MSGFLAGS,
            rd::rd_kafka_vu_s__bindgen_ty_1 { i: copy },
        );
        if let Some(value) = record.value {
            push(V::RD_KAFKA_VTYPE_VALUE, memory(value));
        }
        if let Some(key) = record.key {
            push(V::RD_KAFKA_VTYPE_KEY, memory(key));
        }
        let opaque = record.opaque as *mut std::ffi::c_void;
        push(
            V::RD_KAFKA_VTYPE_OPAQUE,
            rd::rd_kafka_vu_s__bindgen_ty_1 { ptr: opaque },
        );
        if let Some(ts) = record.timestamp {
            push(
                V::RD_KAFKA_VTYPE_TIMESTAMP,
                rd::rd_kafka_vu_s__bindgen_ty_1 { i64_: ts },
            );
        }
        let headers = headers(record.headers);
        if let Some(h) = headers {
            push(
                V::RD_KAFKA_VTYPE_HEADERS,
                rd::rd_kafka_vu_s__bindgen_ty_1 {
                    headers: h.as_ptr(),
                },
            );
        }
        // SAFETY: every pointer in `vus` lives for the call (librdkafka
        // copies key and value); on success the headers are librdkafka's,
        // on failure still ours, destroyed below.
        let error = unsafe { rd::rd_kafka_produceva(self.client.as_ptr(), vus.as_ptr(), n) };
        if error.is_null() {
            return Ok(());
        }
        // SAFETY: the error is read and destroyed once; the headers were
        // not taken.
        let code = unsafe {
            let code = rd::rd_kafka_error_code(error);
            rd::rd_kafka_error_destroy(error);
            if let Some(h) = headers {
                rd::rd_kafka_headers_destroy(h.as_ptr());
            }
            code
        };
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::from(code)))
    }
}

impl Drop for TopicHandles {
    fn drop(&mut self) {
        for handle in self.topics.values() {
            // SAFETY: each handle from `rd_kafka_topic_new`, destroyed once.
            unsafe { rd::rd_kafka_topic_destroy(handle.as_ptr()) };
        }
    }
}

fn memory(bytes: &[u8]) -> rd::rd_kafka_vu_s__bindgen_ty_1 {
    rd::rd_kafka_vu_s__bindgen_ty_1 {
        mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
            ptr: bytes.as_ptr().cast_mut().cast(),
            size: bytes.len(),
        },
    }
}

/// A header list for librdkafka (none for no headers).
fn headers(pairs: &[(&str, &[u8])]) -> Option<NonNull<rd::rd_kafka_headers_t>> {
    if pairs.is_empty() {
        return None;
    }
    // SAFETY: a new list; names and values are copied in with their
    // lengths (no NUL needed).
    unsafe {
        let list = NonNull::new(rd::rd_kafka_headers_new(pairs.len()))?;
        for (name, value) in pairs {
            rd::rd_kafka_header_add(
                list.as_ptr(),
                name.as_ptr().cast(),
                name.len() as isize,
                value.as_ptr().cast(),
                value.len() as isize,
            );
        }
        Some(list)
    }
}

fn invalid(topic: &str, why: &str) -> KafkaError {
    tracing::warn!(topic, why, "cannot produce to the topic");
    KafkaError::MessageProduction(RDKafkaErrorCode::InvalidArgument)
}
