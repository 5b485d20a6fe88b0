//! The generated WIT bindings for `weir:streams/processor`, in one place.
//!
//! Nothing else in the SDK calls `wit_bindgen` directly; everything a
//! processor author touches is a typed wrapper over what is generated here.

wit_bindgen::generate!({
    world: "processor",
    path: "wit",
    pub_export_macro: true,
    export_macro_name: "__export_processor_world",
    default_bindings_module: "weir_sdk::__private::bindings",
    additional_derives: [PartialEq, Eq],
});
