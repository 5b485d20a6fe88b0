//! Filter-map, stateless: keeps records whose value is a decimal integer that
//! is a multiple of 3, and forwards `key -> value * 2` to the sink `out`.
//! Everything else is dropped (counted by the host as not forwarded).

use weir_sdk::{Context, Error, Output, Processor, Record, TaskInfo, Topology};

pub struct FilterMap;

impl Processor for FilterMap {
    fn describe() -> Topology {
        Topology::new("filter-map")
            .source("numbers")
            .sink("out", "numbers-doubled")
    }

    fn init(_task: &TaskInfo, _ctx: &mut Context) -> Result<Self, Error> {
        Ok(FilterMap)
    }

    fn process(&mut self, record: Record, ctx: &mut Context) -> Result<(), Error> {
        let Ok(Some(text)) = record.value_str() else {
            return Ok(());
        };
        let Ok(n) = text.trim().parse::<i64>() else {
            return Ok(());
        };
        if n % 3 != 0 {
            return Ok(());
        }
        let mut out = Output::new().value(&(n * 2).to_string());
        if let Some(key) = record.key {
            out = out.key(&key);
        }
        ctx.forward("out", out)
    }
}

weir_sdk::export_processor!(FilterMap);
