//! Conformance probe, version 1, built against contract 0.2.0: the same
//! interpreter as `probe`, crossing the boundary the 0.2.0 way.

const VERSION: &str = "probe-v1";
include!("../../probe/src/commands.rs");
