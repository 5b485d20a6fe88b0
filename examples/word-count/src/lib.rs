//! Word count: splits each line into lowercase words and re-keys every word
//! through the repartition topic `words`, so all occurrences of a word reach
//! the one task that owns it; that task counts it in the persistent,
//! changelogged store `counts` and forwards `word -> count` (the count as
//! decimal text) to the sink `counts`.
//!
//! Lines that are not UTF-8 are skipped with a warning (Kafka Streams'
//! log-and-continue), so one bad record does not stop the application.

use weir_sdk::prelude::*;

pub struct WordCount {
    words: Aggregation<String, String, u64>,
    counts: Sink<String, String>,
}

impl Processor for WordCount {
    fn describe() -> Topology {
        Topology::new("word-count")
            .source("text-lines")
            .aggregation::<String, u64>("words", "counts")
            .sink("counts", "word-counts")
    }

    fn init(_task: &TaskInfo, _ctx: &mut Context) -> Result<Self, Error> {
        let (words, counts) = (Aggregation::open("words", "counts")?, Sink::open("counts")?);
        Ok(WordCount { words, counts })
    }

    fn process(&mut self, record: Record, ctx: &mut Context) -> Result<(), Error> {
        if let Some((word, count)) = self.words.count(&record)? {
            return self.counts.send(ctx, &word, &count.to_string());
        }
        match record.value_str() {
            Ok(line) => line
                .unwrap_or_default()
                .split_whitespace()
                .try_for_each(|word| self.words.group_key(ctx, &word.to_lowercase())),
            Err(e) => {
                weir_sdk::warn!("skipping record: {e}");
                Ok(())
            }
        }
    }
}

weir_sdk::export_processor!(WordCount);
