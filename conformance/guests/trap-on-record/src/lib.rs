//! Test guest: counts records per key in the store `seen` and forwards
//! `key -> count` to `out`, but panics (a trap) on a record whose value is
//! `boom`: the host must fail that task naming the component and the record.

const TRAPS_ON_EVERY_RECORD: bool = false;
include!("processor.rs");
