//! # Weir guest SDK
//!
//! Write a stream processor as a plain Rust type, compile it to a WebAssembly
//! component (`cargo build --release --target wasm32-wasip2`), and run it on a
//! Weir host, which owns Kafka, state stores, changelogs, commits and restore.
//!
//! A processor:
//! - declares its sources, sinks and stores in [`Processor::describe`];
//! - builds itself for one task (one source partition) in [`Processor::init`],
//!   opening its stores;
//! - handles records one at a time in [`Processor::process`], in partition
//!   order, reading and writing typed [`KvStore`]s and [`WindowStore`]s
//!   (windows from [`TimeWindows`]) and forwarding [`Output`]s to named
//!   sinks;
//! - optionally reacts to schedules in [`Processor::punctuate`] and cleans up
//!   in [`Processor::close`] (both default to doing nothing).
//!
//! [`export_processor!`] makes the type the component's export.
//!
//! ## A complete processor: word count
//!
//! Lines come in on any partition; each word is re-keyed through the
//! repartition topic `words` so every occurrence of a word reaches the one
//! task that owns it, which counts it.
//!
//! ```
//! use weir_sdk::{Context, Error, KvStore, Output, Processor, Record, StoreSpec, TaskInfo, Topology};
//!
//! pub struct WordCount {
//!     counts: KvStore<String, u64>,
//! }
//!
//! impl Processor for WordCount {
//!     fn describe() -> Topology {
//!         Topology::new("word-count")
//!             .source("text-lines")
//!             .repartition("words")
//!             .sink("counts", "word-counts")
//!             .store(StoreSpec::kv("counts").formats::<String, u64>())
//!     }
//!
//!     fn init(_task: &TaskInfo, _ctx: &mut Context) -> Result<Self, Error> {
//!         Ok(WordCount { counts: KvStore::open("counts")? })
//!     }
//!
//!     fn process(&mut self, record: Record, ctx: &mut Context) -> Result<(), Error> {
//!         if record.source == "words" {
//!             let Some(word) = record.key_as::<String>()? else { return Ok(()) };
//!             let count = self.counts.get(&word)?.unwrap_or(0) + 1;
//!             self.counts.put(&word, &count)?;
//!             return ctx.forward("counts", Output::new().key(&word).value(&count.to_string()));
//!         }
//!         let Some(line) = record.value_str()? else { return Ok(()) };
//!         for word in line.split_whitespace().map(str::to_lowercase) {
//!             ctx.forward("words", Output::new().key(&word))?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! weir_sdk::export_processor!(WordCount);
//! # fn main() {}
//! ```
//!
//! Put that in `src/lib.rs` of a crate whose `Cargo.toml` has
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! weir-sdk = { path = "../weir/guest-sdk" }  # or { git = "<the Weir repository>" }; "0.1" once published
//!
//! [dev-dependencies]
//! weir-test-driver = { path = "../weir/host/test-driver" }
//!
//! [profile.release]
//! lto = true          # inlines the SDK into the processor: about a third
//! codegen-units = 1   # less time per record than without
//! ```
//!
//! and `cargo build --release --target wasm32-wasip2` gives
//! `target/wasm32-wasip2/release/<crate>.wasm`, ready for
//! `weir run --component` or `weir deploy`.
//!
//! The SDK sets the component's global allocator: small blocks (up to
//! 1 KiB, the keys, values and outputs of most records) come from free
//! lists per size, larger ones from the standard allocator. A crate with
//! its own `#[global_allocator]` depends on the SDK with
//! `default-features = false`.
//!
//! ## Testing a processor without a broker
//!
//! The offline test driver (crate `weir-test-driver`, like Kafka Streams'
//! `TopologyTestDriver`) runs the real component in-process with
//! in-memory stores: the same WIT bindings, store code and limits as
//! `weir run`, no Kafka, and it builds without the host's RocksDB and
//! librdkafka. Add `weir-test-driver` as a dev-dependency and write
//! ordinary tests; `examples/word-count/tests/offline.rs` is this one:
//!
//! ```ignore
//! // tests/offline.rs of the word-count crate; run with `cargo test --release`.
//! use weir_test_driver::{DriverOptions, TestDriver, TestRecord, build_component};
//!
//! #[test]
//! fn counts_words_across_lines_and_partitions() {
//!     // Builds this crate for wasm32-wasip2 and loads the component.
//!     let wasm = build_component(env!("CARGO_MANIFEST_DIR").as_ref()).unwrap();
//!     let options = DriverOptions { partitions: 3, ..Default::default() };
//!     let mut driver = TestDriver::new(&wasm, options).unwrap();
//!
//!     driver
//!         .pipe_all("text-lines", vec![
//!             TestRecord::new("a", "Hello weir").at(1),
//!             TestRecord::new("b", "hello world").at(2),
//!             TestRecord::new("c", "HELLO again").at(3),
//!         ])
//!         .unwrap();
//!
//!     // Words were re-keyed through the repartition, counted by one task.
//!     let counts = driver.read_output("counts");
//!     let hello = counts.iter().rev().find(|o| o.key_str() == Some("hello")).unwrap();
//!     assert_eq!(hello.value_str(), Some("3"));
//!     assert_eq!(hello.timestamp, Some(3));
//!
//!     // Stores can be read directly (here: u64 big-endian counts).
//!     let entries = driver.store_entries(hello.task.partition, "counts").unwrap();
//!     assert!(entries.iter().any(|(k, _)| k.as_slice() == b"hello"));
//! }
//! ```
//!
//! The driver also advances wall-clock time (`advance_wall_clock`) to fire
//! punctuations, pins records to partitions (`TestRecord::on_partition`),
//! reports a failed task (`task_error`) while the others go on, and swaps a
//! new version in over the same stores (`swap`).
//!
//! ## Tables, joins, branches and aggregations
//! On top of [`Processor`], the building blocks of Kafka Streams' DSL:
//! - [`Table`]: a table fed from a source topic (a tombstone deletes), with
//!   stream-table [`Table::join`] and [`Table::left_join`];
//!   [`Topology::table`] declares its source and store in one line, and
//!   [`Topology::source_table`] a table restored from its own topic.
//! - [`Sink`]: a typed output resolved in `init` (a misspelt name fails
//!   `init`, not a record mid-stream); [`Branches`] sends a record to the
//!   first sink whose predicate holds.
//! - [`Aggregation`]: re-key through a declared repartition
//!   ([`Aggregation::group_by`]) and fold on the task that owns the new key
//!   ([`Aggregation::aggregate`], [`Aggregation::count`],
//!   [`Aggregation::reduce`]); with [`Aggregation::emit_to`] it forwards
//!   the aggregates itself through a record cache, the latest per key per
//!   commit (the host's `statestore.cache.max.bytes`);
//!   [`Topology::aggregation`] declares its repartition and store.
//!
//! `use weir_sdk::prelude::*;` imports the types most processors use.
//!
//! `examples/order-enrichment` uses all of them: orders joined with a
//! customers table, unmatched orders to a second sink, totals per customer
//! tier through a repartition.
//!
//! ## Headers and timestamps of outputs
//! An [`Output`] that sets no headers carries those of the record being
//! processed, as Kafka Streams passes them on; one that sets any
//! ([`Output::header`]) carries only its own, and [`Output::no_headers`]
//! sends none. Its timestamp is the input record's (or the punctuation
//! time) unless [`Output::timestamp`] sets one.
//!
//! ## Errors, panics and limits
//! An `Err` from `process` fails the task with its message and the offending
//! record's topic, partition and offset; so does a panic (the SDK reports the
//! panic message to the host before the instance traps). Nothing of the batch
//! is committed, so a fixed processor picks up from the last commit. The host
//! caps each instance's memory and the time one call may take.
//!
//! ## Codecs
//! Keys and values are bytes on the wire; [`Codec`] turns them into types.
//! Provided: `Vec<u8>`, `String`, integers (order-preserving big-endian, so
//! integer keys range-scan in numeric order) and [`Json<T>`] for serde types.

#![warn(missing_docs)]

#[doc(hidden)]
mod aggregate;
#[allow(missing_docs)] // generated from the WIT, whose comments it carries
pub mod bindings;
mod cache;
mod codec;
mod context;
#[doc(hidden)]
pub mod contract;
#[cfg(not(feature = "contract-0-2"))]
mod encoded;
mod error;
pub mod log;
#[doc(hidden)]
pub mod runtime;
mod sink;
// Dead code where it is not the allocator, but unit-tested everywhere.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod small_alloc;
mod store;
mod store_cache;
mod table;
mod topology;
mod window;
#[doc(hidden)]
pub mod wire;

/// The component's allocator (see `small_alloc`) unless the processor
/// crate turns off the default feature `small-alloc` to bring its own.
#[cfg(all(
    feature = "small-alloc",
    target_arch = "wasm32",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOCATOR: small_alloc::SmallAlloc = small_alloc::SmallAlloc::new();

pub use aggregate::Aggregation;
pub use codec::{Codec, CodecError, Format, Json};
pub use context::{Context, Header, Output, PunctuationType, Record, ScheduleId};
pub use error::Error;
/// serde, for [`Json`] values without a serde dependency of your own:
/// `#[derive(weir_sdk::serde::Serialize)] #[serde(crate = "weir_sdk::serde")]`.
pub use serde;
pub use sink::{Branches, Sink};
pub use store::{Iter, KvStore, StoreError};
pub use table::Table;
pub use topology::{StoreSpec, Topology};
pub use window::{TimeWindows, WindowIter, WindowStore};

/// Who an instance is: application, task id (`<subtopology>_<partition>`),
/// partition and topology name.
pub use bindings::weir::streams::types::TaskInfo;

/// What most processors use, in one import: `use weir_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::{Aggregation, Branches, Codec, Context, Error, Json, KvStore, Output};
    pub use crate::{Processor, PunctuationType, Record, Sink, StoreSpec, Table, TaskInfo};
    pub use crate::{TimeWindows, Topology, WindowStore};
}

/// A stream processor. One value is built per task by [`Processor::init`].
pub trait Processor: Sized + 'static {
    /// Sources, sinks and stores. Called by the host to validate a component
    /// and plan tasks; must be pure (no state, no forwarding).
    fn describe() -> Topology;

    /// Builds the processor for one task: open stores, set schedules.
    fn init(task: &TaskInfo, ctx: &mut Context) -> Result<Self, Error>;

    /// Handles one record. Records of a partition arrive in offset order.
    fn process(&mut self, record: Record, ctx: &mut Context) -> Result<(), Error>;

    /// A schedule made with [`Context::schedule`] fired at `timestamp`.
    fn punctuate(
        &mut self,
        schedule: ScheduleId,
        kind: PunctuationType,
        timestamp: i64,
        ctx: &mut Context,
    ) -> Result<(), Error> {
        let _ = (schedule, kind, timestamp, ctx);
        Ok(())
    }

    /// The host is about to commit the task: forward what the processor
    /// holds back (a record cache, say), so the commit includes it. Store
    /// writes are always included; most processors need nothing here.
    fn flush(&mut self, ctx: &mut Context) -> Result<(), Error> {
        let _ = ctx;
        Ok(())
    }

    /// The task is closing: rebalance, shutdown or a new version. It runs
    /// after the task's last commit, so store writes made here are refused
    /// (they could not be kept); release resources, emit nothing.
    fn close(&mut self) {}
}

/// A stateless processor (filter, map, flat-map) in a few lines: the
/// type `Name` reads `source` and forwards to sink `sink` (topic `topic`)
/// every [`Output`] the function returns for a record (an `Option` or a
/// `Vec` of them), and is made the component's export.
///
/// ```ignore
/// weir_sdk::stateless!(Shout: "shout", "lines" => "out" ("shouted"), |record: Record| {
///     let line = record.value_str()?.unwrap_or_default().to_uppercase();
///     Ok::<_, Error>(Some(Output::new().value(&line)))
/// });
/// ```
#[macro_export]
macro_rules! stateless {
    ($ty:ident : $name:literal, $source:literal => $sink:literal ($topic:literal), $f:expr) => {
        pub struct $ty($crate::Sink<Vec<u8>, Vec<u8>>);

        impl $crate::Processor for $ty {
            fn describe() -> $crate::Topology {
                $crate::Topology::new($name)
                    .source($source)
                    .sink($sink, $topic)
            }
            fn init(_: &$crate::TaskInfo, _: &mut $crate::Context) -> Result<Self, $crate::Error> {
                Ok($ty($crate::Sink::open($sink)?))
            }
            fn process(
                &mut self,
                record: $crate::Record,
                ctx: &mut $crate::Context,
            ) -> Result<(), $crate::Error> {
                $crate::runtime::forward_all(ctx, &self.0, record, $f)
            }
        }

        $crate::export_processor!($ty);
    };
}

/// Makes a [`Processor`] type the export of this component.
///
/// Use it once, at the crate root: `weir_sdk::export_processor!(MyProcessor);`
#[macro_export]
macro_rules! export_processor {
    ($processor:ty) => {
        #[doc(hidden)]
        static __WEIR_PROCESSOR: $crate::runtime::Slot<$processor> = $crate::runtime::Slot::new();

        $crate::__export_glue!(__WEIR_PROCESSOR, $processor);

        // Exported only in the component: a native build of the crate (for
        // its own unit tests) links without the component's symbols.
        #[cfg(target_arch = "wasm32")]
        $crate::__private::bindings::__export_processor_world!(
            __WeirExports with_types_in $crate::__private::bindings
        );
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::bindings;
    pub use crate::bindings::exports::weir::streams::handler;
    pub use crate::bindings::weir::streams::types;
    pub use crate::contract;
    pub use crate::topology::WitTopology;
}
