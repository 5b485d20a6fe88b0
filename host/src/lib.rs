//! # Weir host
//!
//! Runs Kafka-Streams-style stream processors compiled to WebAssembly
//! components. The host owns everything operational (consumer group, tasks,
//! RocksDB state stores and their changelogs, restore, commits, limits,
//! lifecycle); the processor reaches state and outputs only through the
//! `weir:streams` WIT interfaces.
//!
//! Modules, one concern each. Public are those the `weir` binary, the
//! conformance suite, processor authors' tests and this crate's integration
//! tests use; the others are `pub(crate)`. Without the default feature
//! `server` (librdkafka, RocksDB) only what the offline test driver needs
//! is built: topology, runtime, memory stores, changelogs and commits over
//! a memory log, tasks, `testing`.
//! - [`config`]: Kafka-Streams-style settings from TOML and `WEIR_*` env.
//! - [`topology`]: what a component declares; task ids and derived names.
//! - [`runtime`]: wasmtime engine, component validation, instances, limits.
//! - `store`: backends (RocksDB, memory), per-task buffered stores, the
//!   state directory.
//! - `changelog`: restoring stores from changelog topics.
//! - [`client`]: a Kafka client's failure, as the seams carry it.
//! - `commit`: the commit cycle (one protocol per guarantee) and its seam,
//!   the `Collector` (rdkafka producer; in memory for tests and the driver).
//! - `group`: this process's place in the streams group (subscription,
//!   the leader's assignment, per-thread targets, the source consumer).
//! - [`task`]: stream tasks and the per-thread task manager.
//! - `thread`: the stream thread poll loop over its `Fetcher` (the source
//!   consumer) and `ThreadGroup` (its share of the assignment).
//! - [`kafka`]: settings shared by every rdkafka client, the producer flush
//!   (rust-rdkafka's waits 100 ms a step), consumers read a batch of
//!   messages per librdkafka call; Kafka's partitioner.
//! - [`partitioner`]: Kafka's default partitioner (murmur2).
//! - `topics`: the topics a topology runs on; source checks, sink and
//!   changelog topic creation.
//! - [`lifecycle`]: the application state machine, readiness, liveness.
//! - [`limits`]: open-files check and the memory formula.
//! - `assign`: the leader's pure task assignor (KIP-441: actives,
//!   standbys, warm-ups, threads, cooperative hand-over) and the versioned
//!   subscription/assignment user data.
//! - [`member`]: Weir's own consumer-group membership (classic protocol,
//!   `kafka-protocol` crate): join, the leader's assignment, heartbeats,
//!   offsets committed with the generation.
//! - `query`: interactive queries (the `/v1/stores` API, key formats,
//!   routing a key to the instance that holds it).
//! - `metrics`: counters in Prometheus text format.
//! - [`app`]: a running topology, version swaps and the ordered stop.
//! - `release`: the release (component version and topic plan) the
//!   threads run, and the hand-over of a new one at a commit boundary.
//! - [`deploy`]: validating, recording and listing deployments (the
//!   deployment log every instance follows).
//! - [`rollout`]: making this instance run the live version.
//! - [`admin`]: the HTTP API (deploy, rollback, tasks, probes, metrics).
//! - [`testing`]: the offline test driver for processor authors.

#[cfg(feature = "server")]
pub mod admin;
#[cfg(feature = "server")]
pub mod app;
// The host map interactive queries route by is the assignor's; the rest
// of it is the server's.
#[cfg_attr(not(feature = "server"), allow(dead_code, unused_imports))]
pub(crate) mod assign;
pub(crate) mod changelog;
pub mod client;
pub(crate) mod commit;
pub mod config;
#[cfg(feature = "server")]
pub mod deploy;
pub(crate) mod group;
#[cfg(feature = "server")]
pub mod kafka;
pub mod lifecycle;
pub mod limits;
pub mod member;
pub(crate) mod metrics;
pub mod partitioner;
pub(crate) mod query;
#[cfg(feature = "server")]
pub(crate) mod release;
#[cfg(feature = "server")]
pub mod rollout;
pub mod runtime;
pub(crate) mod store;
pub mod task;
// What processor authors use in their own tests: every public item says
// what it is for.
#[warn(missing_docs)]
pub mod testing;
#[cfg(feature = "server")]
pub(crate) mod thread;
pub(crate) mod topics;
pub mod topology;
