//! Test guest: `describe()` panics; a deploy must be refused with the reason.

use weir_sdk::{Context, Error, Processor, Record, TaskInfo, Topology};

pub struct DescribePanics;

impl Processor for DescribePanics {
    fn describe() -> Topology {
        panic!("describe is broken on purpose")
    }

    fn init(_task: &TaskInfo, _ctx: &mut Context) -> Result<Self, Error> {
        Ok(DescribePanics)
    }

    fn process(&mut self, _record: Record, _ctx: &mut Context) -> Result<(), Error> {
        Ok(())
    }
}

weir_sdk::export_processor!(DescribePanics);
