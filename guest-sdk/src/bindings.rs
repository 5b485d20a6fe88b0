//! The generated WIT bindings for `weir:streams/processor`, in one place:
//! the current contract (`wit/streams.wit`, 0.3.0), or with the
//! `contract-0-2` feature the frozen 0.2.0 one (`wit/v0.2.0`), for building
//! a component that older hosts run too.
//!
//! Nothing else in the SDK calls `wit_bindgen` directly; everything a
//! processor author touches is a typed wrapper over what is generated here,
//! and what differs between the versions is in `contract`.

#[cfg(not(feature = "contract-0-2"))]
wit_bindgen::generate!({
    world: "processor",
    path: "wit/streams.wit",
    pub_export_macro: true,
    export_macro_name: "__export_processor_world",
    default_bindings_module: "weir_sdk::__private::bindings",
    additional_derives: [PartialEq, Eq],
});

#[cfg(feature = "contract-0-2")]
wit_bindgen::generate!({
    world: "processor",
    path: "wit/v0.2.0/streams.wit",
    pub_export_macro: true,
    export_macro_name: "__export_processor_world",
    default_bindings_module: "weir_sdk::__private::bindings",
    additional_derives: [PartialEq, Eq],
});
