//! Logging into the host's `tracing`, tagged there with the task and topology.
//! The guest has no stdout or stderr worth writing to: the host discards them.

use crate::bindings::weir::streams::log as wit;

pub use wit::Level;

/// Writes `message` to the host's log at `level`.
pub fn log(level: Level, message: &str) {
    wit::log(level, message);
}

/// Logs at error level, `format!`-style: `weir_sdk::error!("bad {x}")`.
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Error, &format!($($t)*)) }; }
/// Logs at warn level, `format!`-style.
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Warn, &format!($($t)*)) }; }
/// Logs at info level, `format!`-style.
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Info, &format!($($t)*)) }; }
/// Logs at debug level, `format!`-style.
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Debug, &format!($($t)*)) }; }
