//! Implementations of the WIT interfaces the guest imports, one file per
//! interface. Only trait impls and type conversions live here; the logic
//! they call is in `store` and in [`super::TaskContext`].

pub mod context;
pub mod log;
pub mod state;
pub mod window;

impl super::bindings::v0_2::weir::streams::types::Host for super::HostState {}
impl super::bindings::v0_3::weir::streams::records::Host for super::HostState {}
impl super::bindings::v0_3::weir::streams::declarations::Host for super::HostState {}
