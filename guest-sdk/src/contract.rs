//! What differs between the contract versions the SDK can build against
//! (see `bindings`): the shape of a batch, how a call's outputs reach the
//! host, stream time, a store's batched writes, and the export glue. The
//! rest of the SDK is the same for both.

use crate::bindings::weir::streams::{context as wit_context, state};
use crate::context::{Pending, Record};

pub use imp::*;

/// 0.3.0: a batch names its source once; outputs are the call's result,
/// with their sink by index; writes go in one `write-all`.
#[cfg(not(feature = "contract-0-2"))]
mod imp {
    use super::*;
    use crate::bindings::weir::streams::records;

    /// What `process` is given.
    pub type Batch = records::InputBatch;
    /// What a call hands back when it succeeds.
    pub type Outputs = records::Outputs;

    pub(crate) fn records(batch: Batch) -> impl Iterator<Item = Record> {
        let records::InputBatch {
            source,
            topic,
            partition,
            count,
            encoded,
        } = batch;
        crate::encoded::Records::new(encoded, count).map(move |r| Record {
            source: source.clone(),
            key: r.key,
            value: r.value,
            headers: r.headers,
            timestamp: r.timestamp,
            topic: topic.clone(),
            partition,
            offset: r.offset,
        })
    }

    pub(crate) fn hand_over(outputs: Vec<Pending>) -> Result<Outputs, crate::Error> {
        Ok(records::Outputs {
            count: outputs.len() as u32,
            encoded: crate::encoded::encode_outputs(&outputs),
        })
    }

    pub(crate) fn stream_time() -> i64 {
        wit_context::stream_time().unwrap_or(-1)
    }

    /// The task's record-cache budget now.
    pub(crate) fn record_cache_bytes() -> usize {
        usize::try_from(wit_context::record_cache_bytes()).unwrap_or(usize::MAX)
    }

    /// Puts (`Some`) and deletes (`None`), in one call.
    pub(crate) fn write_all(
        store: &state::KvStore,
        writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), state::StoreError> {
        let writes: Vec<state::KvWrite> = writes
            .into_iter()
            .map(|(key, value)| state::KvWrite { key, value })
            .collect();
        store.write_all(&writes)
    }

    /// The 0.3.0 `flush` export, inside [`__export_glue!`].
    #[doc(hidden)]
    #[macro_export]
    macro_rules! __export_flush {
        ($slot:ident) => {
            fn flush() -> $crate::runtime::CallResult {
                $crate::runtime::flush(&$slot)
            }
        };
    }
}

/// 0.2.0: every record names its source; outputs go one `forward` call
/// each, by sink name; writes one call each.
#[cfg(feature = "contract-0-2")]
mod imp {
    use super::*;
    use crate::bindings::weir::streams::types;

    /// What `process` is given.
    pub type Batch = Vec<types::IncomingRecord>;
    /// What a call hands back when it succeeds (it forwarded as it went).
    pub type Outputs = ();

    pub(crate) fn records(batch: Batch) -> impl Iterator<Item = Record> {
        batch.into_iter().map(|r| Record {
            source: r.source,
            key: r.key,
            value: r.value,
            headers: (r.headers.into_iter())
                .map(|h| crate::Header {
                    key: h.key,
                    value: h.value,
                })
                .collect(),
            timestamp: r.timestamp,
            topic: r.topic,
            partition: r.partition,
            offset: r.offset,
        })
    }

    pub(crate) fn hand_over(outputs: Vec<Pending>) -> Result<Outputs, crate::Error> {
        for o in outputs {
            let sink = crate::runtime::output_name(o.sink)?;
            let record = types::OutgoingRecord {
                key: o.key,
                value: o.value,
                headers: (o.headers.into_iter())
                    .map(|h| types::Header {
                        key: h.key,
                        value: h.value,
                    })
                    .collect(),
                timestamp: o.timestamp,
            };
            wit_context::forward(&sink, &record).map_err(crate::Error::msg)?;
        }
        Ok(())
    }

    pub(crate) fn stream_time() -> i64 {
        wit_context::stream_time()
    }

    /// No `flush` before a commit, so nothing may be held back.
    pub(crate) fn record_cache_bytes() -> usize {
        0
    }

    /// Puts (`Some`) and deletes (`None`), one call each.
    pub(crate) fn write_all(
        store: &state::KvStore,
        writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), state::StoreError> {
        for (key, value) in writes {
            match value {
                Some(value) => store.put(&key, &value)?,
                None => store.delete(&key)?,
            }
        }
        Ok(())
    }

    /// 0.2.0 has no `flush` export.
    #[doc(hidden)]
    #[macro_export]
    macro_rules! __export_flush {
        ($slot:ident) => {};
    }
}

/// The `handler` export over the processor in `$slot`, for the contract
/// the SDK was built against (only `flush` differs).
#[doc(hidden)]
#[macro_export]
macro_rules! __export_glue {
    ($slot:ident, $processor:ty) => {
        #[doc(hidden)]
        struct __WeirExports;

        impl $crate::__private::handler::Guest for __WeirExports {
            fn describe() -> $crate::__private::WitTopology {
                $crate::runtime::describe::<$processor>()
            }
            fn init(task: $crate::__private::types::TaskInfo) -> $crate::runtime::CallResult {
                $crate::runtime::init(&$slot, task)
            }
            fn process(batch: $crate::__private::contract::Batch) -> $crate::runtime::CallResult {
                $crate::runtime::process(&$slot, batch)
            }
            fn punctuate(
                schedule: u32,
                kind: $crate::__private::types::PunctuationType,
                timestamp: i64,
            ) -> $crate::runtime::CallResult {
                $crate::runtime::punctuate(&$slot, schedule, kind, timestamp)
            }
            $crate::__export_flush!($slot);
            fn close() {
                $crate::runtime::close(&$slot)
            }
        }
    };
}
