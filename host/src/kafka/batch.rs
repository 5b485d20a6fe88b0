//! Many messages per call from a consumer ([`BatchConsumer`]): librdkafka's
//! `rd_kafka_consume_batch_queue` on the consumer's queue, where
//! rust-rdkafka's `poll` returns one message per call and reads the clock,
//! locks the queue and builds an event for each. A restore or a light
//! processor spends a fifth of its stream thread in that per-message poll.
//!
//! Only for consumers that never subscribe and never commit through
//! librdkafka (Weir's source and restore consumers: assign-only, offsets
//! committed by the process's own group membership). A batch read answers
//! only messages and consumer errors; a rebalance or an asynchronous commit
//! result on the queue would not be served as rust-rdkafka's `poll` serves
//! it. Client-wide errors (all brokers down) reach a batch read as log
//! lines, so the consumer's log goes to a queue of its own here, read after
//! each batch: its errors are kept for [`BatchConsumer::client_errors`]
//! rather than printed by librdkafka. Everything unsafe about librdkafka's
//! messages stays in this module.

use std::ffi::CStr;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// Messages asked for per librdkafka call.
const SLOTS: usize = 1024;

/// A [`BaseConsumer`] read in batches. Derefs to the consumer for
/// everything else (assign, pause, positions, watermarks).
pub struct BatchConsumer<C: ConsumerContext + 'static> {
    /// A reference to the consumer's queue: released before the consumer
    /// (librdkafka's client must outlive every queue reference).
    queue: NonNull<rd::rd_kafka_queue_t>,
    /// The client's log queue (see the module's comment), released with
    /// `queue`.
    logs: NonNull<rd::rd_kafka_queue_t>,
    consumer: ManuallyDrop<BaseConsumer<C>>,
    slots: Vec<*mut rd::rd_kafka_message_t>,
    /// Client-wide errors logged since the last `client_errors`.
    errors: Vec<String>,
}

// The queue reference is librdkafka's, which locks it for every operation;
// the messages in `slots` never outlive a call to `read`.
unsafe impl<C: ConsumerContext + 'static> Send for BatchConsumer<C> {}

impl<C: ConsumerContext + 'static> BatchConsumer<C> {
    /// `consumer` must have a `group.id` (librdkafka only has a consumer
    /// queue then); without one this fails.
    pub fn new(consumer: BaseConsumer<C>) -> Result<Self, KafkaError> {
        let client = consumer.client().native_ptr();
        // SAFETY: the client is alive; the reference returned is released
        // in `release_queue`.
        let queue = unsafe { rd::rd_kafka_queue_get_consumer(client) };
        let queue = NonNull::new(queue).ok_or_else(|| {
            KafkaError::ClientCreation("the consumer has no consumer queue (no group.id)".into())
        })?;
        // SAFETY: as above; rust-rdkafka sets `log.queue`, so the client's
        // log can be sent to a queue (back to the main one on release).
        let logs = unsafe { rd::rd_kafka_queue_new(client) };
        let Some(logs) = NonNull::new(logs) else {
            unsafe { rd::rd_kafka_queue_destroy(queue.as_ptr()) };
            return Err(KafkaError::ClientCreation(
                "cannot create a log queue".into(),
            ));
        };
        unsafe { rd::rd_kafka_set_log_queue(client, logs.as_ptr()) };
        Ok(BatchConsumer {
            queue,
            logs,
            consumer: ManuallyDrop::new(consumer),
            slots: Vec::with_capacity(SLOTS),
            errors: Vec::new(),
        })
    }

    /// Client-wide errors (brokers down, say) since the last call. They do
    /// not stop the consumer: librdkafka reconnects by itself.
    pub fn client_errors(&mut self) -> Vec<String> {
        std::mem::take(&mut self.errors)
    }

    /// Takes what the client logged: errors are kept, the rest is traced.
    fn drain_logs(&mut self) {
        loop {
            // SAFETY: our queue; a returned event is destroyed below.
            let event = unsafe { rd::rd_kafka_queue_poll(self.logs.as_ptr(), 0) };
            if event.is_null() {
                return;
            }
            let (mut fac, mut text, mut level) = (std::ptr::null(), std::ptr::null(), 0);
            // SAFETY: a live event; the strings it gives are its own.
            let is_log = unsafe {
                rd::rd_kafka_event_type(event) == rd::RD_KAFKA_EVENT_LOG
                    && rd::rd_kafka_event_log(event, &mut fac, &mut text, &mut level) == 0
            };
            if is_log && !fac.is_null() && !text.is_null() {
                // SAFETY: NUL-terminated strings owned by the event.
                let (fac, text) = unsafe { (CStr::from_ptr(fac), CStr::from_ptr(text)) };
                let (fac, text) = (fac.to_string_lossy(), text.to_string_lossy());
                if fac == "ERROR" {
                    self.errors.push(text.into_owned());
                } else {
                    tracing::debug!(target: "librdkafka", level, %fac, "{text}");
                }
            }
            // SAFETY: destroyed once, after its strings were copied.
            unsafe { rd::rd_kafka_event_destroy(event) };
        }
    }

    /// Hands each message ready now (up to `max`) to `each`, in queue
    /// order; when none is ready, waits up to `wait` for the first. Returns
    /// how many were handed over (errors included).
    pub fn read(&mut self, wait: Duration, max: usize, mut each: impl FnMut(Message<'_>)) -> usize {
        let mut handed = 0;
        while handed < max {
            let want = (max - handed).min(SLOTS);
            let mut got = self.fetch(0, want);
            let mut waited = false;
            if got == 0 && handed == 0 && !wait.is_zero() {
                let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX).max(1);
                got = self.fetch(ms, 1);
                waited = true;
            }
            if got == 0 {
                break;
            }
            let batch = Taken {
                slots: &mut self.slots,
                next: 0,
            };
            for message in batch {
                each(message);
            }
            handed += got;
            // Short of what was asked: the queue is empty, unless this was
            // the one message waited for (others may have come with it).
            if got < want && !waited {
                break;
            }
        }
        self.drain_logs();
        handed
    }

    /// Fills `slots` with up to `want` messages; returns how many.
    fn fetch(&mut self, timeout_ms: i32, want: usize) -> usize {
        self.slots.clear();
        // SAFETY: `slots` has room for `want` pointers (want <= SLOTS, its
        // capacity); librdkafka writes that many at most and returns the
        // count (-1 on bad arguments, which these are not).
        let got = unsafe {
            rd::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                timeout_ms,
                self.slots.as_mut_ptr(),
                want,
            )
        };
        let got = usize::try_from(got).unwrap_or(0).min(want);
        // SAFETY: librdkafka initialised the first `got` slots.
        unsafe { self.slots.set_len(got) };
        got
    }

    /// The consumer itself, the queue reference released (to close it
    /// elsewhere).
    pub fn into_inner(self) -> BaseConsumer<C> {
        let mut this = ManuallyDrop::new(self);
        this.release_queue();
        // SAFETY: `this` is never dropped, so the consumer is taken once.
        unsafe { ManuallyDrop::take(&mut this.consumer) }
    }

    fn release_queue(&mut self) {
        // SAFETY: the references from `new`, released once (by `Drop` or by
        // `into_inner`, never both); the log goes back to the main queue
        // first, where rust-rdkafka reads it while it closes the consumer.
        unsafe {
            rd::rd_kafka_set_log_queue(self.consumer.client().native_ptr(), std::ptr::null_mut());
            rd::rd_kafka_queue_destroy(self.logs.as_ptr());
            rd::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}

impl<C: ConsumerContext + 'static> Drop for BatchConsumer<C> {
    fn drop(&mut self) {
        self.release_queue();
        // SAFETY: dropped once, here, after the queue reference.
        unsafe { ManuallyDrop::drop(&mut self.consumer) };
    }
}

impl<C: ConsumerContext + 'static> Deref for BatchConsumer<C> {
    type Target = BaseConsumer<C>;

    fn deref(&self) -> &BaseConsumer<C> {
        &self.consumer
    }
}

/// The messages of one fetch, each destroyed once handed over (or when the
/// batch is dropped, should a callback panic).
struct Taken<'a> {
    slots: &'a mut Vec<*mut rd::rd_kafka_message_t>,
    next: usize,
}

impl<'a> Iterator for Taken<'a> {
    type Item = Message<'a>;

    fn next(&mut self) -> Option<Message<'a>> {
        let raw = *self.slots.get(self.next)?;
        self.next += 1;
        Some(Message {
            raw,
            batch: PhantomData,
        })
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        for &raw in &self.slots[self.next..] {
            // SAFETY: not handed over, so destroyed only here.
            unsafe { rd::rd_kafka_message_destroy(raw) };
        }
        self.slots.clear();
    }
}

/// One message (or consumer error) of a batch, owned until dropped; it
/// cannot outlive the [`BatchConsumer::read`] that handed it over.
pub struct Message<'a> {
    raw: *mut rd::rd_kafka_message_t,
    batch: PhantomData<&'a mut ()>,
}

impl Drop for Message<'_> {
    fn drop(&mut self) {
        // SAFETY: each message handed over is destroyed once, here.
        unsafe { rd::rd_kafka_message_destroy(self.raw) };
    }
}

impl Message<'_> {
    fn raw(&self) -> &rd::rd_kafka_message_t {
        // SAFETY: a message from librdkafka, alive until `drop`.
        unsafe { &*self.raw }
    }

    /// The consumer error this is, if it is one: the end of a partition
    /// (`enable.partition.eof`) is [`KafkaError::PartitionEOF`].
    pub fn error(&self) -> Option<KafkaError> {
        let code = self.raw().err;
        if code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        Some(
            if code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF {
                KafkaError::PartitionEOF(self.raw().partition)
            } else {
                KafkaError::MessageConsumption(RDKafkaErrorCode::from(code))
            },
        )
    }

    pub fn partition(&self) -> i32 {
        self.raw().partition
    }

    /// The record's offset; for a partition's end, where reading goes on
    /// (past transaction markers).
    pub fn offset(&self) -> i64 {
        self.raw().offset
    }

    pub fn topic(&self) -> &str {
        if self.raw().rkt.is_null() {
            return "";
        }
        // SAFETY: librdkafka's topic handle, alive while the message is;
        // its name is a NUL-terminated string.
        let name = unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(self.raw().rkt)) };
        name.to_str().unwrap_or("")
    }

    pub fn key(&self) -> Option<&[u8]> {
        bytes(self.raw().key, self.raw().key_len)
    }

    pub fn payload(&self) -> Option<&[u8]> {
        if self.raw().err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            // An error's payload is its message text, not a record's.
            return None;
        }
        bytes(self.raw().payload, self.raw().len)
    }

    /// Milliseconds since the epoch, or -1 when the record has none.
    pub fn timestamp(&self) -> i64 {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: a live message; `kind` is written.
        let ts = unsafe { rd::rd_kafka_message_timestamp(self.raw, &mut kind) };
        if kind == rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE {
            -1
        } else {
            ts
        }
    }

    /// Each header's name and value (`None`: a null value), in order.
    pub fn headers(&self) -> Vec<(String, Option<&[u8]>)> {
        let mut headers = std::ptr::null_mut();
        // SAFETY: a live message; on success `headers` points at its parsed
        // headers, owned by the message.
        let found = unsafe { rd::rd_kafka_message_headers(self.raw, &mut headers) };
        if found != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return Vec::new();
        }
        let mut all = Vec::new();
        for index in 0.. {
            let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0);
            // SAFETY: `headers` is the message's; out-of-range indexes
            // answer an error, which ends the loop.
            let got = unsafe {
                rd::rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size)
            };
            if got != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                break;
            }
            // SAFETY: a NUL-terminated name owned by the headers.
            let name = unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned();
            all.push((name, bytes(value.cast_mut(), size)));
        }
        all
    }
}

fn bytes<'a>(ptr: *mut std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: librdkafka's buffer of `len` bytes, alive while the message
    // is (the caller's borrow of it).
    Some(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}
