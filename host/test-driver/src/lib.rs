//! # Weir test driver
//!
//! Tests for a Weir stream processor, offline: the processor's component
//! runs in-process on wasmtime, with in-memory stores and an in-memory
//! Kafka (Kafka Streams' `TopologyTestDriver`). It is the host's own task
//! manager, runtime and commit cycle, built without the server's RocksDB
//! and librdkafka, so a processor crate's tests build in a fraction of the
//! host's time.
//!
//! A processor crate depends on it for its tests only:
//!
//! ```toml
//! [dev-dependencies]
//! weir-test-driver = { path = "../weir/host/test-driver" }  # or { git = "<this repository>" }
//! ```
//!
//! A test builds the crate's component for `wasm32-wasip2`
//! ([`build_component`]), pipes typed records in and reads typed outputs
//! and store contents back:
//!
//! ```no_run
//! use weir_test_driver::{DriverOptions, TestDriver, TestRecord, build_component};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let component = build_component(env!("CARGO_MANIFEST_DIR").as_ref())?;
//! let mut driver = TestDriver::new(&component, DriverOptions::default())?;
//!
//! // Keyed records with the SDK's codecs (`String`, integers, `Json<T>`),
//! // a timestamp, a header; a tombstone.
//! driver.pipe("text-lines", TestRecord::typed(&"l1".to_string(), &"hello weir hello".to_string()).at(1_000))?;
//! driver.pipe("text-lines", TestRecord::new("l2", "weir").header("trace", "t-1"))?;
//! driver.pipe_tombstone("text-lines", &"l3".to_string())?;
//!
//! // What each sink received, typed; the latest value per key.
//! let counts = driver.read_table::<String, String>("counts")?;
//! assert_eq!(counts["hello"], "2");
//! // What a store holds, per partition (one task each).
//! assert_eq!(driver.store_get::<String, u64>(0, "counts", &"weir".to_string())?, Some(2));
//! // A restart rebuilds the stores from their changelogs.
//! driver.restart()?;
//! # Ok(()) }
//! ```
//!
//! Everything here is [`weir::testing`]'s (see it for every helper), with
//! the settings [`DriverOptions`] names: [`WasmLimits`] and
//! [`ProcessingErrors`].

pub use weir::runtime::WasmLimits;
pub use weir::task::ProcessingErrors;
pub use weir::testing::*;
