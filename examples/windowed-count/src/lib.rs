//! Windowed count: counts records per key in 1-minute tumbling windows
//! (10 s grace) and emits each window's final count once, when the window
//! closes (Kafka Streams' `windowedBy(TimeWindows.ofSizeAndGrace(1 min,
//! 10 s)).count().suppress(untilWindowCloses(...))`).
//!
//! Records arrive keyed; their timestamps drive stream time. A record later
//! than its window's end plus grace is dropped by the window store (and
//! counted in `weir_dropped_records_total`). A stream-time punctuation every
//! second forwards every window that has closed since the last one as
//! `<key>@<window start ms>` → count (decimal text) to the sink `counts`;
//! the store `emitted` remembers how far that got, so a restart never emits
//! a window twice (under exactly-once). Windows are read back from the
//! window store at close, so its retention (10 min) must cover the largest
//! jump of stream time within one batch; Kafka Streams' `suppress` keeps a
//! buffer of its own instead.

use std::time::Duration;

use weir_sdk::{
    Context, Error, KvStore, Output, Processor, PunctuationType, Record, ScheduleId, StoreSpec,
    TaskInfo, TimeWindows, Topology, WindowStore,
};

/// One-minute tumbling windows, accepting records 10 s after their end.
pub fn windows() -> TimeWindows {
    TimeWindows::tumbling_ms(60_000).grace_ms(10_000)
}

/// Key of `emitted`'s one entry: the first window start not yet emitted.
const NEXT_TO_EMIT: &str = "next-window-to-emit";

pub struct WindowedCount {
    counts: WindowStore<String, u64>,
    emitted: KvStore<String, i64>,
}

impl Processor for WindowedCount {
    fn describe() -> Topology {
        Topology::new("windowed-count")
            .source("events")
            .sink("counts", "windowed-counts")
            // Kept 10 minutes, so a closed window is still there when the
            // punctuation after its batch comes, even if that batch moved
            // stream time by minutes (a consumer catching up).
            .store(
                StoreSpec::window("counts", &windows())
                    .retention_ms(10 * 60_000)
                    .formats::<String, u64>(),
            )
            .store(StoreSpec::kv("emitted").formats::<String, i64>())
    }

    fn init(_task: &TaskInfo, ctx: &mut Context) -> Result<Self, Error> {
        ctx.schedule(Duration::from_secs(1), PunctuationType::StreamTime);
        Ok(WindowedCount {
            counts: WindowStore::open("counts")?,
            emitted: KvStore::open("emitted")?,
        })
    }

    fn process(&mut self, record: Record, _ctx: &mut Context) -> Result<(), Error> {
        let Some(key) = record.key_as::<String>()? else {
            return Ok(());
        };
        for start in windows().windows_for(record.timestamp) {
            let n = self.counts.get(&key, start)?.unwrap_or(0) + 1;
            // False for a late record: its window closed; nothing changes.
            self.counts.put(&key, start, &n)?;
        }
        Ok(())
    }

    fn punctuate(
        &mut self,
        _schedule: ScheduleId,
        _kind: PunctuationType,
        stream_time: i64,
        ctx: &mut Context,
    ) -> Result<(), Error> {
        let w = windows();
        // Windows starting at or before this have closed.
        let closed_up_to = stream_time - w.size_ms as i64 - w.grace_ms as i64;
        let from = self.emitted.get(&NEXT_TO_EMIT.to_string())?.unwrap_or(0);
        if closed_up_to < from {
            return Ok(());
        }
        for window in self.counts.fetch_all(from, closed_up_to)? {
            let (key, start, count) = window?;
            ctx.forward(
                "counts",
                Output::new()
                    .key(&format!("{key}@{start}"))
                    .value(&count.to_string())
                    .timestamp(start + w.size_ms as i64),
            )?;
        }
        self.emitted
            .put(&NEXT_TO_EMIT.to_string(), &(closed_up_to + 1))?;
        Ok(())
    }
}

weir_sdk::export_processor!(WindowedCount);
