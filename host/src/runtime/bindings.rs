//! The host side of the `weir:streams/processor` world, generated once per
//! contract version this host speaks: [`v0_3`] (`wit/streams.wit`, what the
//! SDK builds) and [`v0_2`] (`wit/v0.2.0`, frozen, so components uploaded
//! before 0.3.0 keep running).
//!
//! The host's own currency is 0.2.0's types (a record with its source, an
//! outgoing record with its sink by name): they are what the task, the
//! native processors and the test driver pass around. 0.3.0 shares them
//! where the shapes agree (`types` is mapped onto 0.2.0's) and converts at
//! the call where they differ (`records`, in `super::wasm`).
//!
//! Resources map to the concrete host types in `host::state`. Every import
//! is `trappable`: host functions return WIT errors for what the guest can
//! handle and `Err` (a trap) only for a host failure or an exhausted budget.

/// Contract 0.2.0: a record per list element naming its source and topic,
/// outputs through `context.forward` by sink name.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        world: "processor",
        path: "wit/v0.2.0/streams.wit",
        with: {
            "weir:streams/state.kv-store": crate::runtime::host::state::KvStoreHandle,
            "weir:streams/state.kv-iterator": crate::runtime::host::state::KvIteratorHandle,
            "weir:streams/state.window-store": crate::runtime::host::window::WindowStoreHandle,
            "weir:streams/state.window-iterator": crate::runtime::host::window::WindowIteratorHandle,
        },
        imports: { default: trappable },
    });
}

/// Contract 0.3.0: batches with their source once, outputs returned from
/// the call with their sink by index, batched store writes.
pub mod v0_3 {
    wasmtime::component::bindgen!({
        world: "processor",
        path: "wit/streams.wit",
        with: {
            "weir:streams/types": super::v0_2::weir::streams::types,
            "weir:streams/state.kv-store": crate::runtime::host::state::KvStoreHandle,
            "weir:streams/state.kv-iterator": crate::runtime::host::state::KvIteratorHandle,
            "weir:streams/state.window-store": crate::runtime::host::window::WindowStoreHandle,
            "weir:streams/state.window-iterator": crate::runtime::host::window::WindowIteratorHandle,
        },
        imports: { default: trappable },
    });
}

pub use v0_2::weir::streams::types::{
    self, Header, IncomingRecord, OutgoingRecord, ProcessingError, PunctuationType, TaskInfo,
};
