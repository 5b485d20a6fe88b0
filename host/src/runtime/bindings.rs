//! The host side of the `weir:streams/processor` world, generated once.
//!
//! Resources map to the concrete host types in `host::state`. Every import is
//! `trappable`: host functions return WIT errors for what the guest can
//! handle and `Err` (a trap) only for a host failure or an exhausted budget.

wasmtime::component::bindgen!({
    world: "processor",
    path: "wit",
    with: {
        "weir:streams/state.kv-store": super::host::state::KvStoreHandle,
        "weir:streams/state.kv-iterator": super::host::state::KvIteratorHandle,
        "weir:streams/state.window-store": super::host::window::WindowStoreHandle,
        "weir:streams/state.window-iterator": super::host::window::WindowIteratorHandle,
    },
    imports: { default: trappable },
});

pub use self::weir::streams::types::{
    Header, IncomingRecord, OutgoingRecord, ProcessingError, PunctuationType, TaskInfo,
};
