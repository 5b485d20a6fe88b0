//! `weir:streams/context`: forwarding (0.2.0 only; 0.3.0 returns outputs
//! from its calls), time and schedules, over
//! [`TaskContext`](crate::runtime::TaskContext).

use crate::runtime::HostState;
use crate::runtime::bindings::v0_2::weir::streams::context as context_v0_2;
use crate::runtime::bindings::v0_3::weir::streams::context as context_v0_3;
use crate::runtime::bindings::{OutgoingRecord, PunctuationType};

/// The calls both versions share, stamped into each version's `Host` impl
/// (`$extra`: what only that version has).
macro_rules! context_impl {
    ($wit:ident, { $($extra:tt)* }) => {
        impl $wit::Host for HostState {
            $($extra)*

            fn task_id(&mut self) -> wasmtime::Result<String> {
                Ok(self.task.task_id.to_string())
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
    };
}

context_impl!(context_v0_2, {
    fn forward(
        &mut self,
        sink: String,
        output: OutgoingRecord,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(self.task.forward(&sink, output))
    }

    fn stream_time(&mut self) -> wasmtime::Result<i64> {
        Ok(self.task.stream_time)
    }
});

context_impl!(context_v0_3, {
    fn stream_time(&mut self) -> wasmtime::Result<Option<i64>> {
        let time = self.task.stream_time;
        Ok((time >= 0).then_some(time))
    }

    fn record_cache_bytes(&mut self) -> wasmtime::Result<u64> {
        Ok(self
            .task
            .record_cache
            .load(std::sync::atomic::Ordering::Relaxed) as u64)
    }
});
