//! Test guest: a bad new version of `trap-on-record` (same topology and
//! stores) that panics on every record, for automatic rollback.

const TRAPS_ON_EVERY_RECORD: bool = true;
include!("../../trap-on-record/src/processor.rs");
