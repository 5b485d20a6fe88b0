//! Word count test helpers: deterministic input, expected counts, and the
//! checks that outputs are exact and never repeated.

use std::collections::BTreeMap;
use std::time::Duration;

use super::kafka::{latest, produce, read_all};
use super::weir::App;
use super::{eventually, unique};

/// `n` lines of words from a small vocabulary, deterministic per `seed`.
pub fn lines(seed: u64, n: usize) -> Vec<String> {
    const WORDS: &[&str] = &[
        "kafka",
        "stream",
        "state",
        "store",
        "wasm",
        "weir",
        "river",
        "flow",
        "commit",
        "offset",
        "task",
        "Topic",
        "partition",
        "RocksDB",
        "changelog",
        "restore",
        "the",
        "a",
        "of",
        "and",
    ];
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let len = 1 + (next() % 8) as usize;
            (0..len)
                .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

pub fn count(lines: &[String]) -> BTreeMap<String, String> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for line in lines {
        for word in line.split_whitespace() {
            *counts.entry(word.to_lowercase()).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect()
}

pub fn send_lines(topic: &str, first_index: usize, lines: &[String]) {
    let keys: Vec<String> = (0..lines.len())
        .map(|i| format!("line-{}", first_index + i))
        .collect();
    let records: Vec<(Option<i32>, &str, &[u8])> = keys
        .iter()
        .zip(lines)
        .map(|(k, l)| (None, k.as_str(), l.as_bytes()))
        .collect();
    produce(topic, &records);
}

/// Sends `lines` (numbered from `first_index`) to `topic` on a thread of
/// its own, `chunk` lines at a time with `pause` between: input that keeps
/// flowing while a test restarts, kills or redeploys. Join it to wait
/// for the last line.
pub fn feed_in_background(
    topic: &str,
    first_index: usize,
    lines: &[String],
    chunk: usize,
    pause: std::time::Duration,
) -> std::thread::JoinHandle<()> {
    let (topic, lines) = (topic.to_string(), lines.to_vec());
    std::thread::spawn(move || {
        for (i, part) in lines.chunks(chunk).enumerate() {
            send_lines(&topic, first_index + i * chunk, part);
            std::thread::sleep(pause);
        }
    })
}

/// Configures the app to read `input` and write `output`.
pub fn word_count_app(input: &str, output: &str) -> App {
    let mut app = App::new(&unique("wc"));
    app.extra.push("[topics]".into());
    app.extra.push(format!("\"text-lines\" = \"{input}\""));
    app.extra.push(format!("\"word-counts\" = \"{output}\""));
    app
}

pub fn wait_for_counts(output: &str, expected: &BTreeMap<String, String>) {
    eventually(Duration::from_secs(120), "the expected word counts", || {
        (latest(output) == *expected).then_some(())
    });
}

/// Every word's outputs, in order, must be exactly 1, 2, …, n: nothing lost
/// and nothing counted twice.
pub fn assert_counts_are_sequences(output: &str) {
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (_, word, count) in read_all(output) {
        seen.entry(word).or_default().push(count.parse().unwrap());
    }
    for (word, counts) in seen {
        let expected: Vec<u64> = (1..=counts.len() as u64).collect();
        assert_eq!(counts, expected, "outputs for `{word}`");
    }
}
