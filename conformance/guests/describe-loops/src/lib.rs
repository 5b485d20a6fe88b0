//! Test guest: `describe()` never returns; the host's CPU deadline must stop
//! it and refuse the deploy.

use weir_sdk::{Context, Error, Processor, Record, TaskInfo, Topology};

pub struct DescribeLoops;

impl Processor for DescribeLoops {
    fn describe() -> Topology {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    fn init(_task: &TaskInfo, _ctx: &mut Context) -> Result<Self, Error> {
        Ok(DescribeLoops)
    }

    fn process(&mut self, _record: Record, _ctx: &mut Context) -> Result<(), Error> {
        Ok(())
    }
}

weir_sdk::export_processor!(DescribeLoops);
