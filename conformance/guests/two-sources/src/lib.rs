//! Test guest: reads two sources, `left` and `right`, which must be
//! co-partitioned, and forwards each record to `out` with a header naming
//! the source it came from.

use weir_sdk::{Context, Error, Output, Processor, Record, TaskInfo, Topology};

pub struct TwoSources;

impl Processor for TwoSources {
    fn describe() -> Topology {
        Topology::new("two-sources")
            .source("left")
            .source("right")
            .sink("out", "merged")
    }

    fn init(_task: &TaskInfo, _ctx: &mut Context) -> Result<Self, Error> {
        Ok(TwoSources)
    }

    fn process(&mut self, record: Record, ctx: &mut Context) -> Result<(), Error> {
        let mut out = Output::new().header("source", record.source.as_bytes());
        if let Some(k) = &record.key {
            out = out.key(k);
        }
        if let Some(v) = &record.value {
            out = out.value(v);
        }
        ctx.forward("out", out)
    }
}

weir_sdk::export_processor!(TwoSources);
