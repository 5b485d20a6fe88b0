//! `weir run` against Kafka Streams on the same broker, inputs and commit
//! interval. Each run is a child process started on the loaded input topic
//! (from offset 0, fresh application id) and stopped once every record was
//! processed; its throughput counts from RUNNING to exit (the final commit
//! included), its CPU time and peak RSS come from `wait4`. Rounds alternate
//! Weir / Kafka Streams. After the last round, each system's word-count
//! state directory is deleted and the application restarted to time the
//! restore from the changelog; the same changelog read by a bare consumer
//! (Weir's restore-consumer settings, applying nothing) gives the ceiling.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::workloads::{WORKLOADS, Workload, create_topic, selected};
use super::{BenchError, BenchOptions, err, median, unique};

const TIMEOUT: Duration = Duration::from_secs(1800);

#[derive(Debug, Clone, Serialize)]
pub struct SystemRun {
    pub workload: &'static str,
    pub system: &'static str,
    pub round: usize,
    pub records: usize,
    pub seconds: f64,
    pub records_per_second: f64,
    pub cpu_seconds: f64,
    pub peak_rss_mib: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SystemSummary {
    pub workload: &'static str,
    pub system: &'static str,
    pub records_per_second_median: f64,
    pub records_per_second_min: f64,
    pub records_per_second_max: f64,
    pub cpu_seconds_per_million: f64,
    pub peak_rss_mib: f64,
    /// On Weir's rows: Weir's median throughput over Kafka Streams'.
    pub weir_over_kafka_streams: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreFigure {
    pub store: &'static str,
    pub system: &'static str,
    pub records: u64,
    pub seconds: f64,
    pub records_per_second: f64,
}

pub(crate) struct Usage {
    cpu_seconds: f64,
    peak_rss_mib: f64,
    success: bool,
}

/// Follows a child's peak resident set (`VmHWM`) until it exits. `wait4`'s
/// `ru_maxrss` cannot be used: it includes this process's RSS at the fork.
fn watch_rss(pid: u32) -> std::thread::JoinHandle<f64> {
    std::thread::spawn(move || {
        let mut peak_kib = 0u64;
        while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let Some(hwm) = status.lines().find_map(|l| l.strip_prefix("VmHWM:")) else {
                break; // exited: a zombie has no memory left to report
            };
            let kib = hwm
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peak_kib = peak_kib.max(kib);
            std::thread::sleep(Duration::from_millis(20));
        }
        peak_kib as f64 / 1024.0
    })
}

/// Waits for `child` and reads its resource use.
fn wait(child: &Child, rss: std::thread::JoinHandle<f64>) -> Result<Usage, BenchError> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child's pid; std never waits for it after.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if pid < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Usage {
        cpu_seconds: secs(usage.ru_utime) + secs(usage.ru_stime),
        peak_rss_mib: rss.join().unwrap_or(0.0),
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    })
}

fn http_get(url: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.get(url).call().ok()?;
    let status = response.status().as_u16();
    Some((status, response.body_mut().read_to_string().ok()?))
}

fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> Result<T, BenchError> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(err(format!("timed out waiting for {what}")));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One run of one system: a workload on an input topic, as an application.
#[derive(Clone, Copy)]
pub(crate) struct Run<'a> {
    pub w: &'a Workload,
    pub app: &'a str,
    pub input: &'a str,
    pub state: &'a Path,
}

/// One `weir run` until `expected` records were processed (`None`: until
/// ready, for a restore). Returns (seconds from ready to exit, usage, log).
pub(crate) fn run_weir(
    opts: &BenchOptions,
    run: &Run<'_>,
    expected: Option<u64>,
) -> Result<(f64, Usage, String), BenchError> {
    let Run {
        w,
        app,
        input,
        state,
    } = *run;
    let dir = state.join(app);
    std::fs::create_dir_all(&dir).map_err(err)?;
    let component = opts.components.join(w.file);
    let mut config = format!(
        "application.id = \"{app}\"\nbootstrap.servers = \"{}\"\nstate.dir = \"{}\"\ncommit.interval.ms = {}\n\
         admin.listen = \"127.0.0.1:0\"\n[topics]\n",
        opts.bootstrap,
        dir.join("state").display(),
        opts.commit_interval_ms
    );
    // Sources read the loaded input; sinks write topics of this run's own.
    for (declared, actual) in [
        ("text-lines", input.to_string()),
        ("numbers", input.to_string()),
        ("events", input.to_string()),
        ("word-counts", format!("{app}-out")),
        ("numbers-doubled", format!("{app}-out")),
        ("windowed-counts", format!("{app}-out")),
    ] {
        config.push_str(&format!("\"{declared}\" = \"{actual}\"\n"));
    }
    let config_path = dir.join("weir.toml");
    std::fs::write(&config_path, config).map_err(err)?;
    let log_path = dir.join(format!("{}.log", unique("weir")));
    let log = std::fs::File::create(&log_path).map_err(err)?;
    let child = Command::new(&opts.weir)
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        .arg("--component")
        .arg(&component)
        .env("RUST_LOG", "info,rdkafka=warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(err)?)
        .stderr(log)
        .spawn()
        .map_err(|e| err(format!("starting {}: {e}", opts.weir.display())))?;
    let rss = watch_rss(child.id());
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let admin = wait_until("the admin API", || {
        let text = read_log();
        let at = text.find("admin API listening on ")?;
        text[at + 23..]
            .split_whitespace()
            .next()
            .map(|a| format!("http://{a}"))
    })?;
    wait_until("weir to be ready", || {
        (http_get(&format!("{admin}/health/ready"))?.0 == 200).then_some(())
    })?;
    let started = Instant::now();
    if let Some(expected) = expected {
        // Each scrape costs the measured process CPU (an HTTP request and
        // the whole metrics text): every 5 ms throughout, it was 4% of word
        // count's CPU seconds, which Kafka Streams' in-process counter does
        // not pay. So scrape every 100 ms until 90% is done, then closely.
        let mut processed = 0;
        wait_until("every record processed", || {
            if processed < expected / 10 * 9 {
                std::thread::sleep(Duration::from_millis(95));
            }
            let (_, metrics) = http_get(&format!("{admin}/metrics"))?;
            let line = metrics
                .lines()
                .find(|l| l.starts_with("weir_records_processed_total "))?;
            let n: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            processed = n as u64;
            (processed >= expected).then_some(())
        })?;
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let usage = wait(&child, rss)?;
    let seconds = started.elapsed().as_secs_f64();
    let log = read_log();
    if !usage.success {
        return Err(err(format!(
            "weir run failed; its log is {}",
            log_path.display()
        )));
    }
    Ok((seconds, usage, log))
}

/// One Kafka Streams run; returns (its JSON line, usage).
fn run_kafka_streams(
    opts: &BenchOptions,
    ks: &Path,
    run: &Run<'_>,
    expected: u64,
    mode: &str,
) -> Result<(serde_json::Value, Usage), BenchError> {
    let Run {
        w,
        app,
        input,
        state,
    } = *run;
    // Kafka Streams writes to its sink topic but does not create it.
    create_topic(&opts.bootstrap, opts.partitions, &format!("{app}-out"))?;
    let classpath = format!(
        "{}:{}/*",
        ks.join("target/classes").display(),
        ks.join("target/lib").display()
    );
    let mut child = Command::new("java")
        .args(["-Xmx2g", "-cp", &classpath, "dev.weir.bench.Bench"])
        .args([
            "--workload",
            w.name,
            "--bootstrap",
            &opts.bootstrap,
            "--input",
            input,
        ])
        .args(["--output", &format!("{app}-out"), "--application-id", app])
        .arg("--state-dir")
        .arg(state.join(app))
        .args(["--commit-interval-ms", &opts.commit_interval_ms.to_string()])
        .args(["--expected", &expected.to_string(), "--mode", mode])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| err(format!("starting java: {e}")))?;
    let rss = watch_rss(child.id());
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut out)
        .map_err(err)?;
    let usage = wait(&child, rss)?;
    let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap_or("");
    let json: serde_json::Value = serde_json::from_str(line).map_err(|_| {
        err(format!(
            "Kafka Streams run of {} printed no result (exit ok: {})",
            w.name, usage.success
        ))
    })?;
    Ok((json, usage))
}

/// Sum of restored records and the longest restore, from Weir's log.
pub(crate) fn weir_restore(log: &str) -> (u64, f64) {
    let field = |line: &str, name: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
    };
    log.lines()
        .filter(|l| l.contains("restore complete"))
        .fold((0, 0.0), |(n, s), l| {
            let restored = field(l, "restored").unwrap_or(0);
            let secs = field(l, "elapsed_ms").unwrap_or(0) as f64 / 1000.0;
            (n + restored, f64::max(s, secs))
        })
}

type Versus = (Vec<SystemRun>, Vec<SystemSummary>, Vec<RestoreFigure>);

pub fn run(
    opts: &BenchOptions,
    ks: &Path,
    inputs: &BTreeMap<&'static str, (String, u64)>,
    state: &Path,
) -> Result<Versus, BenchError> {
    let mut runs = Vec::new();
    let mut restore = Vec::new();
    for w in selected(opts) {
        let (input, weir_expected) = &inputs[w.name];
        // Kafka Streams counts what its last processor saw: every word, or
        // every input record.
        let ks_expected = match w.name {
            "word-count" => *weir_expected - opts.records as u64,
            _ => *weir_expected,
        };
        let (mut last_weir_app, mut last_ks_app) = (String::new(), String::new());
        for round in 1..=opts.rounds {
            let app = unique("bench-weir");
            let (seconds, usage, _) = run_weir(
                opts,
                &Run {
                    w,
                    app: &app,
                    input,
                    state,
                },
                Some(*weir_expected),
            )?;
            runs.push(record(w.name, "weir", round, opts.records, seconds, &usage));
            last_weir_app = app;
            let app = unique("bench-ks");
            let (json, usage) = run_kafka_streams(
                opts,
                ks,
                &Run {
                    w,
                    app: &app,
                    input,
                    state,
                },
                ks_expected,
                "run",
            )?;
            let seconds = json["seconds"].as_f64().unwrap_or(f64::NAN);
            runs.push(record(
                w.name,
                "kafka-streams",
                round,
                opts.records,
                seconds,
                &usage,
            ));
            last_ks_app = app;
        }
        if w.name == "word-count" {
            let _ = std::fs::remove_dir_all(state.join(&last_weir_app).join("state"));
            let (_, _, log) = run_weir(
                opts,
                &Run {
                    w,
                    app: &last_weir_app,
                    input,
                    state,
                },
                None,
            )?;
            let (records, seconds) = weir_restore(&log);
            restore.push(restore_figure("weir", records, seconds));
            let changelog = format!("{last_weir_app}-counts-changelog");
            let (records, seconds) = fetch_only(&opts.bootstrap, &changelog, opts.partitions)?;
            restore.push(restore_figure("fetch only", records, seconds));
            let _ = std::fs::remove_dir_all(state.join(&last_ks_app));
            let (json, _) = run_kafka_streams(
                opts,
                ks,
                &Run {
                    w,
                    app: &last_ks_app,
                    input,
                    state,
                },
                0,
                "restore",
            )?;
            let records = json["restored"].as_u64().unwrap_or(0);
            let seconds = json["restore_seconds"].as_f64().unwrap_or(f64::NAN);
            restore.push(restore_figure("kafka-streams", records, seconds));
        }
    }
    let summaries = summarize(&runs, opts.records);
    Ok((runs, summaries, restore))
}

fn record(
    workload: &'static str,
    system: &'static str,
    round: usize,
    records: usize,
    seconds: f64,
    u: &Usage,
) -> SystemRun {
    let run = SystemRun {
        workload,
        system,
        round,
        records,
        seconds,
        records_per_second: records as f64 / seconds,
        cpu_seconds: u.cpu_seconds,
        peak_rss_mib: u.peak_rss_mib,
    };
    eprintln!(
        "bench: {workload} {system} round {round}: {:.0} records/s, {:.1} CPU s, {:.0} MiB peak RSS",
        run.records_per_second, run.cpu_seconds, run.peak_rss_mib
    );
    run
}

/// Reads `topic` from the start to its end (`read_committed`) with the
/// settings of Weir's restore consumer, applying nothing: the fetch rate a
/// restore cannot beat. Returns (records, seconds).
pub(crate) fn fetch_only(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Result<(u64, f64), BenchError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    // Weir's restore consumer's context: the end of a partition is how
    // this read ends, not an error to log.
    let consumer: BaseConsumer<weir::kafka::EndOfPartitionExpected> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("bench-fetch-only"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "100")
        .set("isolation.level", "read_committed")
        .set(
            "fetch.queue.backoff.ms",
            weir::kafka::FETCH_QUEUE_BACKOFF_MS,
        )
        .create_with_context(weir::kafka::EndOfPartitionExpected)
        .map_err(err)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(err)?;
    }
    // Connected before the clock starts, as Weir's restore consumer is.
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .map_err(err)?;
    let started = Instant::now();
    consumer.assign(&tpl).map_err(err)?;
    let (mut records, mut at_end) = (0u64, std::collections::BTreeSet::new());
    while at_end.len() < partitions as usize {
        if started.elapsed() > TIMEOUT {
            return Err(BenchError(format!("reading {topic} did not end")));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => records += 1,
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => return Err(err(e)),
            None => {}
        }
    }
    Ok((records, started.elapsed().as_secs_f64()))
}

pub(crate) fn restore_figure(system: &'static str, records: u64, seconds: f64) -> RestoreFigure {
    eprintln!("bench: word-count restore, {system}: {records} records in {seconds:.2} s");
    RestoreFigure {
        store: "counts",
        system,
        records,
        seconds,
        records_per_second: records as f64 / seconds.max(1e-3),
    }
}

fn summarize(runs: &[SystemRun], records: usize) -> Vec<SystemSummary> {
    let mut out: Vec<SystemSummary> = Vec::new();
    for w in WORKLOADS {
        for system in ["weir", "kafka-streams"] {
            let mine: Vec<&SystemRun> = runs
                .iter()
                .filter(|r| r.workload == w.name && r.system == system)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let rates: Vec<f64> = mine.iter().map(|r| r.records_per_second).collect();
            let cpu = median(mine.iter().map(|r| r.cpu_seconds).collect());
            out.push(SystemSummary {
                workload: w.name,
                system,
                records_per_second_median: median(rates.clone()),
                records_per_second_min: rates.iter().copied().fold(f64::INFINITY, f64::min),
                records_per_second_max: rates.iter().copied().fold(0.0, f64::max),
                cpu_seconds_per_million: cpu / (records as f64 / 1e6),
                peak_rss_mib: mine.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max),
                weir_over_kafka_streams: None,
            });
        }
        let rate = |s: &str| {
            out.iter()
                .find(|x| x.workload == w.name && x.system == s)
                .map(|x| x.records_per_second_median)
        };
        if let (Some(weir), Some(ks)) = (rate("weir"), rate("kafka-streams"))
            && let Some(row) = out
                .iter_mut()
                .find(|x| x.workload == w.name && x.system == "weir")
        {
            row.weir_over_kafka_streams = Some(weir / ks);
        }
    }
    out
}
