//! Processors written in Rust, run by the same tasks, stores and commit
//! cycle as components. They exist for one reason: `weir bench` runs the
//! same pipeline with and without the Wasm boundary, so its cost shows as a
//! ratio. Must not be offered as a way to run user code: it has no limits
//! and no isolation.

use std::sync::Arc;

use super::bindings::IncomingRecord;
use super::task_context::TaskContext;

pub trait NativeProcessor: Send {
    fn init(&mut self, _ctx: &mut TaskContext) -> Result<(), String> {
        Ok(())
    }

    fn process(&mut self, ctx: &mut TaskContext, batch: &[IncomingRecord]) -> Result<(), String>;
}

/// Makes one processor per task.
pub type NativeFactory = Arc<dyn Fn() -> Box<dyn NativeProcessor> + Send + Sync>;
