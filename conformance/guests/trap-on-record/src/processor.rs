// The trap-on-record processor, shared by `trap-on-record` and
// `trap-on-record-v2` (each includes this file after defining
// `TRAPS_ON_EVERY_RECORD`).

use weir_sdk::{Context, Error, KvStore, Output, Processor, Record, StoreSpec, TaskInfo, Topology};

pub struct TrapOnRecord {
    seen: KvStore<String, u64>,
}

impl Processor for TrapOnRecord {
    fn describe() -> Topology {
        Topology::new("trap-on-record")
            .source("input")
            .sink("out", "output")
            .store(StoreSpec::kv("seen").formats::<String, u64>())
    }

    fn init(_task: &TaskInfo, _ctx: &mut Context) -> Result<Self, Error> {
        Ok(TrapOnRecord {
            seen: KvStore::open("seen")?,
        })
    }

    fn process(&mut self, record: Record, ctx: &mut Context) -> Result<(), Error> {
        if TRAPS_ON_EVERY_RECORD || record.value.as_deref() == Some(b"boom") {
            panic!("refusing record with value boom");
        }
        let key = record.key_as::<String>()?.unwrap_or_default();
        let n = self.seen.get(&key)?.unwrap_or(0) + 1;
        self.seen.put(&key, &n)?;
        ctx.forward("out", Output::new().key(&key).value(&n.to_string()))
    }
}

weir_sdk::export_processor!(TrapOnRecord);
