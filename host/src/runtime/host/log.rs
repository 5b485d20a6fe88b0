//! `weir:streams/log`: guest log lines become `tracing` events inside the
//! task's span (which carries `task_id` and `topology`).

use crate::runtime::HostState;
use crate::runtime::bindings::v0_2::weir::streams::log as log_v0_2;
use crate::runtime::bindings::v0_3::weir::streams::log as log_v0_3;

/// Guest log lines longer than this are cut, so a guest cannot flood logs
/// with one call.
const MAX_LINE: usize = 8 * 1024;

/// The same in both contract versions.
macro_rules! log_impl {
    ($wit:ident) => {
impl $wit::Host for HostState {
    fn log(&mut self, level: $wit::Level, message: String) -> wasmtime::Result<()> {
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
            $wit::Level::Trace => tracing::trace!(target: "weir::guest", component, "{message}"),
            $wit::Level::Debug => tracing::debug!(target: "weir::guest", component, "{message}"),
            $wit::Level::Info => tracing::info!(target: "weir::guest", component, "{message}"),
            $wit::Level::Warn => tracing::warn!(target: "weir::guest", component, "{message}"),
            $wit::Level::Error => tracing::error!(target: "weir::guest", component, "{message}"),
        }
        Ok(())
    }
}
    };
}

log_impl!(log_v0_2);
log_impl!(log_v0_3);
