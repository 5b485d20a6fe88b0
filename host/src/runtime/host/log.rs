//! `weir:streams/log`: guest log lines become `tracing` events inside the
//! task's span (which carries `task_id` and `topology`).

use crate::runtime::HostState;
use crate::runtime::bindings::weir::streams::log::{Host, Level};

/// Guest log lines longer than this are cut, so a guest cannot flood logs
/// with one call.
const MAX_LINE: usize = 8 * 1024;

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let mut message = message;
        if message.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let component = &self.task.component;
        match level {
            Level::Trace => tracing::trace!(target: "weir::guest", component, "{message}"),
            Level::Debug => tracing::debug!(target: "weir::guest", component, "{message}"),
            Level::Info => tracing::info!(target: "weir::guest", component, "{message}"),
            Level::Warn => tracing::warn!(target: "weir::guest", component, "{message}"),
            Level::Error => tracing::error!(target: "weir::guest", component, "{message}"),
        }
        Ok(())
    }
}
