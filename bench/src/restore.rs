//! `weir bench --restore`: a store restored from its changelog against a
//! bare read of the same changelog. The changelog of word count's `counts`
//! store is loaded directly (`--records` records over a tenth as many
//! words, as the host writes them: UTF-8 word, big-endian u64), then
//! `weir run` starts on an empty state directory and restores it; the
//! same topic read by a plain consumer with Weir's restore-consumer
//! settings, applying nothing, is the ceiling. No Kafka Streams needed
//! (`--vs-kafka-streams` also times its restore, of its own changelog).

use super::versus::{RestoreFigure, Run, fetch_only, restore_figure, run_weir, weir_restore};
use super::workloads::{Loader, WORKLOADS, create_topic, create_topic_with};
use super::{BenchError, BenchOptions, err, unique};

/// Restores word count's store `rounds` times, each after a bare read of
/// its changelog.
pub fn run(opts: &BenchOptions) -> Result<Vec<RestoreFigure>, BenchError> {
    let word_count = WORKLOADS
        .iter()
        .find(|w| w.name == "word-count")
        .ok_or_else(|| err("no word-count workload"))?;
    let state = std::env::temp_dir().join(unique("weir-bench-restore"));
    let app = unique("bench-restore");
    let input = format!("{app}-in");
    create_topic(&opts.bootstrap, opts.partitions, &input)?;
    let changelog = format!("{app}-counts-changelog");
    create_topic_with(
        &opts.bootstrap,
        opts.partitions,
        &changelog,
        &[("cleanup.policy", "compact")],
    )?;
    eprintln!("bench: loading {} records into {changelog}", opts.records);
    load_changelog(&opts.bootstrap, &changelog, opts.records)?;
    let mut figures = Vec::new();
    for _ in 0..opts.rounds {
        let (records, seconds) = fetch_only(&opts.bootstrap, &changelog, opts.partitions)?;
        figures.push(restore_figure("fetch only", records, seconds));
        let _ = std::fs::remove_dir_all(state.join(&app).join("state"));
        let run = Run {
            w: word_count,
            app: &app,
            input: &input,
            state: &state,
        };
        let (_, _, log) = run_weir(opts, &run, None)?;
        let (records, seconds) = weir_restore(&log);
        figures.push(restore_figure("weir", records, seconds));
    }
    let _ = std::fs::remove_dir_all(&state);
    Ok(figures)
}

/// `records` count updates over `records / 10` words, spread over the
/// partitions as the default partitioner spreads the words. Each pass over
/// the words visits them in a scattered order (a multiplicative
/// permutation), as a real changelog's keys come, not sorted.
fn load_changelog(bootstrap: &str, topic: &str, records: usize) -> Result<(), BenchError> {
    let loader = Loader::new(bootstrap)?;
    let words = (records / 10).max(1);
    // A prime: a permutation of 0..words unless it divides `words`.
    let step = if words.is_multiple_of(7919) { 1 } else { 7919 };
    for i in 0..records {
        let word = format!("word-{:07}", (i % words) * step % words);
        let count = (i / words + 1) as u64;
        loader.send(topic, word.as_bytes(), &count.to_be_bytes());
    }
    loader.flush()
}
