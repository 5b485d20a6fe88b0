//! `weir:streams/context`: forwarding, time and schedules, over
//! [`TaskContext`](crate::runtime::TaskContext).

use crate::runtime::HostState;
use crate::runtime::bindings::weir::streams::context::Host;
use crate::runtime::bindings::{OutgoingRecord, PunctuationType};

impl Host for HostState {
    fn forward(
        &mut self,
        sink: String,
        output: OutgoingRecord,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(self.task.forward(&sink, output))
    }

    fn task_id(&mut self) -> wasmtime::Result<String> {
        Ok(self.task.task_id.to_string())
    }

    fn stream_time(&mut self) -> wasmtime::Result<i64> {
        Ok(self.task.stream_time)
    }

    fn wall_clock_time(&mut self) -> wasmtime::Result<i64> {
        Ok(self.task.clock.now_ms())
    }

    fn schedule(&mut self, interval_ms: u64, kind: PunctuationType) -> wasmtime::Result<u32> {
        Ok(self.task.schedule(interval_ms, kind))
    }

    fn cancel(&mut self, schedule: u32) -> wasmtime::Result<()> {
        self.task.schedules.cancel(schedule);
        Ok(())
    }

    fn abort_reason(&mut self, message: String, batch_index: Option<u32>) -> wasmtime::Result<()> {
        self.task.abort_reason = Some((message, batch_index));
        Ok(())
    }
}
