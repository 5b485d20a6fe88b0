//! Records in, records out: the incoming [`Record`], the [`Output`] builder and
//! the [`Context`] a processor forwards and schedules through.

use std::time::Duration;

use crate::bindings::weir::streams::context as wit;
use crate::bindings::weir::streams::types;
use crate::codec::Codec;
use crate::error::Error;

/// A Kafka record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header's name.
    pub key: String,
    /// Its value bytes.
    pub value: Vec<u8>,
}

/// Whether a schedule follows record timestamps or the host's clock.
pub use types::PunctuationType;

/// A record from a source topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Where it came from, as declared in `describe()`: a source topic's
    /// declared name or a repartition's name.
    pub source: String,
    /// The record's key bytes (`None`: a null key); see [`Record::key_as`].
    pub key: Option<Vec<u8>>,
    /// The record's value bytes (`None`: a tombstone); see
    /// [`Record::value_as`].
    pub value: Option<Vec<u8>>,
    /// Its Kafka headers, in order (passed on to outputs that set none).
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The topic it was read from (the host's name for it, which the
    /// config may map from the declared `source`).
    pub topic: String,
    /// The partition it was read from: the task's partition.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
}

impl Record {
    /// The key decoded as `T` (`None` for a null key).
    pub fn key_as<T: Codec>(&self) -> Result<Option<T>, Error> {
        self.decode(self.key.as_deref(), "key")
    }

    /// The value decoded as `T` (`None` for a null value, a tombstone).
    pub fn value_as<T: Codec>(&self) -> Result<Option<T>, Error> {
        self.decode(self.value.as_deref(), "value")
    }

    /// The value as UTF-8 text (`None` for a null value).
    pub fn value_str(&self) -> Result<Option<&str>, Error> {
        self.value
            .as_deref()
            .map(|v| std::str::from_utf8(v).map_err(|e| self.error("value", e)))
            .transpose()
    }

    /// The first header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.key == name)
            .map(|h| h.value.as_slice())
    }

    fn decode<T: Codec>(&self, bytes: Option<&[u8]>, part: &str) -> Result<Option<T>, Error> {
        bytes
            .map(|b| T::decode(b).map_err(|e| self.error(part, e)))
            .transpose()
    }

    fn error(&self, part: &str, e: impl std::fmt::Display) -> Error {
        Error::msg(format!(
            "record {}/{}@{}: {part}: {e}",
            self.topic, self.partition, self.offset
        ))
    }
}

/// A record for a sink.
///
/// Headers: an output that sets none (no [`Output::header`], no
/// [`Output::no_headers`]) carries the headers of the record being
/// processed, as Kafka Streams passes them on; one that sets any carries
/// only its own. Outputs of a punctuation have none unless set.
///
/// ```
/// # use weir_sdk::Output;
/// let out = Output::new().key(&"apple".to_string()).value(&"3".to_string()).header("source", b"wc");
/// # let _ = out;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    /// `None`: the input record's.
    headers: Option<Vec<Header>>,
    timestamp: Option<i64>,
}

impl Output {
    /// An output with no key, value or headers.
    pub fn new() -> Self {
        Output::default()
    }

    /// Sets the key (which picks the partition).
    pub fn key<K: Codec>(mut self, key: &K) -> Self {
        self.key = Some(key.encode());
        self
    }

    /// Sets the value.
    pub fn value<V: Codec>(mut self, value: &V) -> Self {
        self.value = Some(value.encode());
        self
    }

    /// Adds a header (the output then carries only the headers it sets).
    pub fn header(mut self, name: &str, value: &[u8]) -> Self {
        self.headers.get_or_insert_with(Vec::new).push(Header {
            key: name.to_string(),
            value: value.to_vec(),
        });
        self
    }

    /// No headers at all, not even the input record's.
    pub fn no_headers(mut self) -> Self {
        self.headers = Some(Vec::new());
        self
    }

    /// Sets the timestamp (default: the timestamp of the record being
    /// processed, or the punctuation time).
    pub fn timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }
}

/// A handle to a schedule made with [`Context::schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScheduleId(pub u32);

/// What a processor can do besides touching its stores: forward records,
/// schedule punctuations, ask the time.
///
/// Outputs are kept here and handed to the host when the call returns,
/// all at once (the contract's `process` returns them), in the order they
/// were forwarded.
pub struct Context {
    /// Timestamp given to outputs that set none.
    pub(crate) timestamp: Option<i64>,
    /// Headers given to outputs that set none: the record being processed.
    pub(crate) headers: Vec<Header>,
    /// What the current call forwarded so far.
    pub(crate) outputs: Vec<Pending>,
}

/// An output of the current call, for its sink by index (sinks, then
/// repartitions, as declared); handed to the host when the call ends.
pub(crate) struct Pending {
    pub sink: u32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    pub timestamp: Option<i64>,
}

impl Context {
    /// A context for one call, forwarding nothing yet.
    pub(crate) fn new(timestamp: Option<i64>) -> Self {
        Context {
            timestamp,
            headers: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Sends `output` to the sink (or repartition) called `sink`; an error
    /// if `describe()` declares no output by that name.
    pub fn forward(&mut self, sink: &str, output: Output) -> Result<(), Error> {
        let index = crate::runtime::output_index(sink)?;
        self.forward_to(index, output);
        Ok(())
    }

    /// Sends `output` to the output at `index` (sinks, then repartitions,
    /// as declared), resolved once by a [`Sink`](crate::Sink).
    pub(crate) fn forward_to(&mut self, index: u32, output: Output) {
        self.outputs.push(Pending {
            sink: index,
            key: output.key,
            value: output.value,
            headers: output.headers.unwrap_or_else(|| self.headers.clone()),
            timestamp: output.timestamp.or(self.timestamp),
        });
    }

    /// This task's id, e.g. `0_3`.
    pub fn task_id(&self) -> String {
        wit::task_id()
    }

    /// The highest record timestamp this task has seen (-1 before any).
    /// Kept across a swap to a new version, and committed with the task's
    /// offsets, so after a restart or a move it goes on from there.
    pub fn stream_time(&self) -> i64 {
        crate::contract::stream_time()
    }

    /// The host's clock, in milliseconds since the Unix epoch.
    pub fn wall_clock_time(&self) -> i64 {
        wit::wall_clock_time()
    }

    /// Calls [`Processor::punctuate`](crate::Processor::punctuate) every
    /// `interval` of stream time or wall-clock time.
    pub fn schedule(&mut self, interval: Duration, kind: PunctuationType) -> ScheduleId {
        ScheduleId(wit::schedule(interval.as_millis() as u64, kind))
    }

    /// Stops a schedule.
    pub fn cancel(&mut self, schedule: ScheduleId) {
        wit::cancel(schedule.0)
    }
}
