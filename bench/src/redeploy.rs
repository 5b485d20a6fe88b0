//! `weir bench --redeploy`: what swapping a processor version costs the
//! stream. One `weir run` of word count (4 tasks) processes a steady
//! input; a new version is deployed through the admin API 14 times (the
//! same logic, its bytes made distinct by a custom section, so each is a
//! new version). Each stream thread logs, per swap, how long processing
//! paused (the commit at the boundary, then every task's processor
//! replaced) and how much of it was the commit; those are the figures.
//! The first deploy comes after a few seconds of steady processing, as a
//! deploy lands on an application that has been running.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::rebalance::{Feeder, Scenario, output_reader, wait_for_every_partition};
use super::{BenchError, BenchOptions, err, unique};

const SWAPS: usize = 14;
const TOKEN: &str = "weir-bench";
/// Between deploys: the new version runs a while before the next.
const SETTLE: Duration = Duration::from_millis(700);
/// Steady processing before the first deploy: the broker's first writes
/// to the application's new topics (changelog, repartition, output) are
/// slow for a few seconds, and a deploy lands on a running application.
const WARM_UP: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize)]
pub struct RedeployFigure {
    pub swaps: usize,
    pub tasks: usize,
    pub pause_ms_mean: f64,
    pub pause_ms_p99: f64,
    pub pause_ms_max: f64,
    /// Of the pause, the commit at the boundary (mean).
    pub commit_ms_mean: f64,
}

/// `bytes` with a custom section appended: the same component, a new
/// sha256 (a component may carry custom sections anywhere).
fn variant(bytes: &[u8], n: usize) -> Vec<u8> {
    fn leb(mut v: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"weir-bench-variant";
    let payload = n.to_string().into_bytes();
    let mut content = Vec::new();
    leb(name.len(), &mut content);
    content.extend_from_slice(name);
    content.extend_from_slice(&payload);
    let mut out = bytes.to_vec();
    out.push(0);
    leb(content.len(), &mut out);
    out.extend_from_slice(&content);
    out
}

fn put(url: &str, body: &[u8]) -> Result<(), BenchError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .put(url)
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .send(body)
        .map_err(|e| err(format!("PUT {url}: {e}")))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    if status / 100 != 2 {
        return Err(err(format!("PUT {url}: {status} {text}")));
    }
    Ok(())
}

/// `(pause ms, commit ms)` of every swap the log reports.
fn swaps_in(log: &str) -> Vec<(f64, f64)> {
    let number = |line: &str, key: &str| -> Option<f64> {
        let at = line.find(key)? + key.len();
        let rest = &line[at..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    log.lines()
        .filter(|l| l.contains("swapped processor version"))
        .filter_map(|l| Some((number(l, "paused ")?, number(l, "commit_ms=")?)))
        .collect()
}

fn free_port() -> Result<u16, BenchError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(err)?;
    Ok(listener.local_addr().map_err(err)?.port())
}

pub fn run(opts: &BenchOptions) -> Result<RedeployFigure, BenchError> {
    let state = std::env::temp_dir().join(unique("weir-bench-redeploy"));
    let figure = scenario(opts, &state);
    let _ = std::fs::remove_dir_all(&state);
    figure
}

fn scenario(opts: &BenchOptions, state: &Path) -> Result<RedeployFigure, BenchError> {
    let app = unique("weir-bench-redeploy");
    let port = free_port()?;
    let s = Scenario {
        opts,
        input: format!("{app}-in"),
        output: format!("{app}-out"),
        app: app.clone(),
        state,
        weir_config: vec![
            format!("admin.listen = \"127.0.0.1:{port}\""),
            format!("admin.token = \"{TOKEN}\""),
        ],
        ks_args: Vec::new(),
    };
    s.create_topics()?;
    let component = std::fs::read(opts.components.join("word_count.wasm")).map_err(err)?;
    eprintln!("bench: redeploy scenario: word count, {SWAPS} swaps with input flowing");
    let feeder = Feeder::start(&opts.bootstrap, &s.input)?;
    let member = s.weir("bench-0")?;
    let log_path = state.join(&app).join("bench-0").join("weir.log");
    let result = (|| {
        wait_for_every_partition(&output_reader(&opts.bootstrap, &s.output)?, &s.output)?;
        std::thread::sleep(WARM_UP);
        let url = format!("http://127.0.0.1:{port}/v1/topologies/word-count");
        for n in 0..SWAPS {
            let seen = swaps_in(&std::fs::read_to_string(&log_path).unwrap_or_default()).len();
            put(&url, &variant(&component, n))?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while swaps_in(&std::fs::read_to_string(&log_path).unwrap_or_default()).len() <= seen {
                if Instant::now() > deadline {
                    return Err(err(format!("swap {} not logged within 60 s", n + 1)));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(SETTLE);
        }
        Ok(())
    })();
    feeder.stop();
    member.stop();
    result?;
    let log = std::fs::read_to_string(&log_path).map_err(err)?;
    let swaps = swaps_in(&log);
    Ok(figure(&swaps))
}

fn figure(swaps: &[(f64, f64)]) -> RedeployFigure {
    let mut pauses: Vec<f64> = swaps.iter().map(|s| s.0).collect();
    pauses.sort_by(f64::total_cmp);
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let commits: Vec<f64> = swaps.iter().map(|s| s.1).collect();
    // Nearest rank: with 14 swaps the p99 is the largest.
    let rank = ((0.99 * pauses.len() as f64).ceil() as usize).clamp(1, pauses.len().max(1));
    RedeployFigure {
        swaps: swaps.len(),
        tasks: 4,
        pause_ms_mean: mean(&pauses),
        pause_ms_p99: pauses.get(rank - 1).copied().unwrap_or(f64::NAN),
        pause_ms_max: pauses.last().copied().unwrap_or(f64::NAN),
        commit_ms_mean: mean(&commits),
    }
}

/// The figure as a table.
pub fn table(f: &RedeployFigure) -> String {
    format!(
        "Redeploy with input flowing, word count ({} tasks), {} swaps:\n\
         {:>10} {:>10} {:>10} {:>16}\n{:>10.1} {:>10.1} {:>10.1} {:>16.1}\n",
        f.tasks,
        f.swaps,
        "mean ms",
        "p99 ms",
        "max ms",
        "commit mean ms",
        f.pause_ms_mean,
        f.pause_ms_p99,
        f.pause_ms_max,
        f.commit_ms_mean
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_are_read_from_the_log_lines() {
        let log = "2026 INFO stream_thread: swapped processor version (processing paused 12.5 ms) from=a to=b commit_ms=7.25 pause_ms=12\n\
                   2026 INFO other line\n\
                   2026 INFO stream_thread: swapped processor version (processing paused 3.0 ms) commit_ms=1.5\n";
        assert_eq!(swaps_in(log), vec![(12.5, 7.25), (3.0, 1.5)]);
        let f = figure(&swaps_in(log));
        assert_eq!((f.pause_ms_p99, f.pause_ms_max), (12.5, 12.5));
        assert!((f.pause_ms_mean - 7.75).abs() < 1e-9);
    }

    #[test]
    fn a_variant_is_a_new_sha_with_the_same_prefix() {
        let bytes = b"\0asm\x0d\0\x01\0".to_vec();
        let (a, b) = (variant(&bytes, 1), variant(&bytes, 2));
        assert_ne!(a, b);
        assert!(a.starts_with(&bytes));
        // id 0, size, name length, name, payload.
        assert_eq!(a[bytes.len()], 0);
        assert_eq!(a[bytes.len() + 1] as usize, a.len() - bytes.len() - 2);
    }
}
