//! Word count: splits each line into lowercase words and re-keys every word
//! through the repartition topic `words`, so all occurrences of a word reach
//! the one task that owns it; that task counts it in the persistent,
//! changelogged store `counts` and forwards `word -> count` (the count as
//! decimal text) to the sink `counts`.
//!
//! Lines that are not UTF-8 are skipped with a warning (Kafka Streams'
//! log-and-continue), so one bad record does not stop the application.

use weir_sdk::{Context, Error, KvStore, Output, Processor, Record, StoreSpec, TaskInfo, Topology};

pub struct WordCount {
    counts: KvStore<String, u64>,
}

impl Processor for WordCount {
    fn describe() -> Topology {
        Topology::new("word-count")
            .source("text-lines")
            .repartition("words")
            .sink("counts", "word-counts")
            .store(StoreSpec::kv("counts").formats::<String, u64>())
    }

    fn init(_task: &TaskInfo, _ctx: &mut Context) -> Result<Self, Error> {
        Ok(WordCount {
            counts: KvStore::open("counts")?,
        })
    }

    fn process(&mut self, record: Record, ctx: &mut Context) -> Result<(), Error> {
        if record.source == "words" {
            let Some(word) = record.key_as::<String>()? else {
                return Ok(());
            };
            let count = self.counts.get(&word)?.unwrap_or(0) + 1;
            self.counts.put(&word, &count)?;
            return ctx.forward("counts", Output::new().key(&word).value(&count.to_string()));
        }
        let line = match record.value_str() {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(()),
            Err(e) => {
                weir_sdk::warn!("skipping record: {e}");
                return Ok(());
            }
        };
        for word in line.split_whitespace().map(str::to_lowercase) {
            ctx.forward("words", Output::new().key(&word))?;
        }
        Ok(())
    }
}

weir_sdk::export_processor!(WordCount);
