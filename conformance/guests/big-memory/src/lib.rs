//! Test guest: needs 300 MiB of linear memory from the start (a large static
//! buffer), over the host's default 256 MiB cap: it must fail to
//! instantiate, and a deploy of it must be refused.

use weir_sdk::{Context, Error, Processor, Record, TaskInfo, Topology};

static mut BUFFER: [u8; 300 << 20] = [0; 300 << 20];

pub struct BigMemory;

impl Processor for BigMemory {
    fn describe() -> Topology {
        // Touch the buffer so it is kept.
        let first = unsafe { std::ptr::read_volatile(&raw const BUFFER[0]) };
        Topology::new(if first == 0 {
            "big-memory"
        } else {
            "big-memory!"
        })
        .source("text-lines")
    }

    fn init(_task: &TaskInfo, _ctx: &mut Context) -> Result<Self, Error> {
        Ok(BigMemory)
    }

    fn process(&mut self, _record: Record, _ctx: &mut Context) -> Result<(), Error> {
        Ok(())
    }
}

weir_sdk::export_processor!(BigMemory);
