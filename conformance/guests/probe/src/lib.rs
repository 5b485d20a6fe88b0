//! Conformance probe, version 1: a command interpreter whose every record
//! exercises one host behaviour (see `commands.rs`).

const VERSION: &str = "probe-v1";
include!("commands.rs");
