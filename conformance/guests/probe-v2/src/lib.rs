//! Conformance probe, version 2: the same interpreter answering `version`
//! with `probe-v2`, to check that a redeploy keeps state.

const VERSION: &str = "probe-v2";
include!("../../probe/src/commands.rs");
