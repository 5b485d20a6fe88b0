//! The benchmark workloads: their input data, how many records the host
//! processes for it, and the same logic as native Rust for the baseline.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::{BenchError, err};
use weir::runtime::bindings::{IncomingRecord, OutgoingRecord};
use weir::runtime::{NativeProcessor, TaskContext};

/// Distinct words in the word-count input: enough keys for RocksDB and the
/// changelog to matter (restore measures them).
pub const VOCABULARY: u64 = 50_000;
/// Words per word-count line.
pub const WORDS_PER_LINE: usize = 8;

pub(crate) struct Workload {
    pub name: &'static str,
    pub file: &'static str,
    /// Records the tasks process for `n` input records (word count also
    /// processes every word it re-keys through its repartition topic).
    pub processed: fn(&[String]) -> u64,
    pub input: fn(usize) -> Vec<String>,
    /// The key of input record `i`.
    pub key: fn(usize) -> String,
    pub native: fn() -> Box<dyn NativeProcessor>,
}

/// Distinct keys of the windowed-count input.
pub const WINDOW_KEYS: usize = 10_000;

/// The workloads `opts` asks for (`--workload`), in the usual order.
pub(crate) fn selected(opts: &crate::BenchOptions) -> impl Iterator<Item = &'static Workload> {
    let only = opts.workload.clone();
    WORKLOADS
        .iter()
        .filter(move |w| only.as_deref().is_none_or(|name| name == w.name))
}

pub(crate) const WORKLOADS: &[Workload] = &[
    Workload {
        name: "filter-map",
        file: "filter_map.wasm",
        processed: |lines| lines.len() as u64,
        input: numbers,
        key: unique_key,
        native: || Box::new(NativeFilterMap),
    },
    Workload {
        name: "word-count",
        file: "word_count.wasm",
        processed: |lines| {
            lines.len() as u64
                + lines
                    .iter()
                    .map(|l| l.split_whitespace().count() as u64)
                    .sum::<u64>()
        },
        input: text_lines,
        key: unique_key,
        native: || Box::new(NativeWordCount),
    },
    Workload {
        name: "windowed-count",
        file: "windowed_count.wasm",
        processed: |lines| lines.len() as u64,
        input: numbers,
        key: |i| format!("k{}", i * 7919 % WINDOW_KEYS),
        native: || Box::new(NativeWindowedCount),
    },
];

fn unique_key(i: usize) -> String {
    format!("k{i}")
}

fn numbers(n: usize) -> Vec<String> {
    (0..n).map(|i| (i * 7919 % 100_003).to_string()).collect()
}

fn text_lines(n: usize) -> Vec<String> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            (0..WORDS_PER_LINE)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    format!("w{}", x % VOCABULARY)
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// `examples/filter-map` in native Rust.
struct NativeFilterMap;

impl NativeProcessor for NativeFilterMap {
    fn process(&mut self, ctx: &mut TaskContext, batch: &[IncomingRecord]) -> Result<(), String> {
        for r in batch {
            let Some(n) = r
                .value
                .as_deref()
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|t| t.trim().parse::<i64>().ok())
            else {
                continue;
            };
            if n % 3 != 0 {
                continue;
            }
            let out = OutgoingRecord {
                key: r.key.clone(),
                value: Some((n * 2).to_string().into_bytes()),
                headers: Vec::new(),
                timestamp: Some(r.timestamp),
            };
            ctx.forward("out", out)?;
        }
        Ok(())
    }
}

/// `examples/word-count` in native Rust (same store encoding: u64 big-endian).
struct NativeWordCount;

impl NativeProcessor for NativeWordCount {
    fn process(&mut self, ctx: &mut TaskContext, batch: &[IncomingRecord]) -> Result<(), String> {
        for r in batch {
            if r.source == "words" {
                let Some(word) = r.key.clone() else { continue };
                let store = &mut ctx.stores[0];
                let old = store.get(&word).map_err(|e| e.to_string())?;
                let count = old
                    .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                    .map_or(0, u64::from_be_bytes)
                    + 1;
                store.put(word.clone(), count.to_be_bytes().to_vec());
                let out = OutgoingRecord {
                    key: Some(word),
                    value: Some(count.to_string().into_bytes()),
                    headers: Vec::new(),
                    timestamp: Some(r.timestamp),
                };
                ctx.forward("counts", out)?;
                continue;
            }
            let Some(line) = r.value.as_deref().and_then(|v| std::str::from_utf8(v).ok()) else {
                continue;
            };
            for word in line.split_whitespace().map(str::to_lowercase) {
                let out = OutgoingRecord {
                    key: Some(word.into_bytes()),
                    value: None,
                    headers: Vec::new(),
                    timestamp: Some(r.timestamp),
                };
                ctx.forward("words", out)?;
            }
        }
        Ok(())
    }
}

/// `examples/windowed-count`'s counting in native Rust (the same window
/// store; its emission on close never fires within a bench run, whose
/// records all fall in a minute or two of producer time).
struct NativeWindowedCount;

impl NativeProcessor for NativeWindowedCount {
    fn process(&mut self, ctx: &mut TaskContext, batch: &[IncomingRecord]) -> Result<(), String> {
        let judged_at = ctx.window_time;
        let store = &mut ctx.stores[0];
        for r in batch {
            let Some(key) = r.key.as_deref() else {
                continue;
            };
            let start = r.timestamp - r.timestamp.rem_euclid(60_000);
            let old = store.window_get(key, start).map_err(|e| e.to_string())?;
            let count = old
                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .map_or(0, u64::from_be_bytes)
                + 1;
            store.window_put(key, start, count.to_be_bytes().to_vec(), judged_at);
        }
        Ok(())
    }
}

/// Creates `topic` with `partitions` partitions (it may exist already).
pub(crate) fn create_topic(
    bootstrap: &str,
    partitions: i32,
    topic: &str,
) -> Result<(), BenchError> {
    create_topic_with(bootstrap, partitions, topic, &[])
}

fn admin(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>, BenchError> {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", bootstrap);
    client.create().map_err(err)
}

/// Creates `topic` with topic configs `configs` unless it exists.
pub(crate) fn create_topic_with(
    bootstrap: &str,
    partitions: i32,
    topic: &str,
    configs: &[(&str, &str)],
) -> Result<(), BenchError> {
    let admin = admin(bootstrap)?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        new = new.set(key, value);
    }
    for result in futures_executor::block_on(admin.create_topics([&new], &AdminOptions::new()))
        .map_err(err)?
    {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(err(format!("creating {t}: {e}"))),
        }
    }
    Ok(())
}

/// Deletes every topic of the broker whose name `doomed` picks; returns
/// how many.
pub(crate) fn delete_topics_where(
    bootstrap: &str,
    doomed: impl Fn(&str) -> bool,
) -> Result<usize, BenchError> {
    let admin = admin(bootstrap)?;
    let metadata = (admin.inner())
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(err)?;
    let names: Vec<&str> = (metadata.topics().iter())
        .map(|t| t.name())
        .filter(|name| doomed(name))
        .collect();
    if names.is_empty() {
        return Ok(0);
    }
    for result in futures_executor::block_on(admin.delete_topics(&names, &AdminOptions::new()))
        .map_err(err)?
    {
        if let Err((t, e)) = result {
            return Err(err(format!("deleting {t}: {e}")));
        }
    }
    Ok(names.len())
}

/// Creates `topic` and produces `lines` to it (record `i` keyed `key(i)`).
pub(crate) fn load_input(
    bootstrap: &str,
    partitions: i32,
    topic: &str,
    lines: &[String],
    key: fn(usize) -> String,
) -> Result<(), BenchError> {
    create_topic(bootstrap, partitions, topic)?;
    let loader = Loader::new(bootstrap)?;
    for (i, line) in lines.iter().enumerate() {
        loader.send(topic, key(i).as_bytes(), line.as_bytes());
    }
    loader.flush()
}

/// A producer for loading topics in bulk: large batches, and a full local
/// queue waited out rather than failed.
pub(crate) struct Loader(BaseProducer);

impl Loader {
    pub(crate) fn new(bootstrap: &str) -> Result<Self, BenchError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "20")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .map_err(err)?;
        Ok(Loader(producer))
    }

    pub(crate) fn send(&self, topic: &str, key: &[u8], value: &[u8]) {
        let mut record = BaseRecord::to(topic).key(key).payload(value);
        while let Err((_, back)) = self.0.send(record) {
            self.0.poll(Duration::from_millis(20));
            record = back;
        }
    }

    /// Waits until everything sent is acknowledged.
    pub(crate) fn flush(&self) -> Result<(), BenchError> {
        self.0.flush(Duration::from_secs(120)).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_inputs_are_what_the_expectations_count() {
        let lines = text_lines(10);
        assert!(
            lines
                .iter()
                .all(|l| l.split_whitespace().count() == WORDS_PER_LINE)
        );
        assert_eq!(
            (WORKLOADS[1].processed)(&lines),
            10 + 10 * WORDS_PER_LINE as u64
        );
        assert_eq!((WORKLOADS[0].processed)(&numbers(5)), 5);
    }
}
