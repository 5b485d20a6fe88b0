//! The live target: a real `weir run` process on a real broker, driven
//! through Kafka (records in, sink topics out), signals and `weir deploy`.
//! Every case gets its own application id and topics.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::target::{Cmd, Out, Setup, Target};

const TOKEN: &str = "conformance-token";
const PARTITIONS: i32 = 2;

pub struct Live {
    weir: PathBuf,
    bootstrap: String,
    dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    topics: Vec<(String, String)>,
    admin: Option<String>,
    producer: BaseProducer,
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

impl Live {
    /// Creates the case's topics and starts `weir run` with `component`.
    pub fn start(
        weir: &Path,
        bootstrap: &str,
        component: &Path,
        setup: &Setup,
    ) -> Result<Self, String> {
        let id = unique("conformance");
        let dir = std::env::temp_dir().join(&id);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let topics: Vec<(String, String)> = ["commands", "side", "results", "sink-a", "sink-b"]
            .iter()
            .map(|t| (t.to_string(), format!("{id}-{t}")))
            .collect();
        let admin: AdminClient<DefaultClientContext> =
            client(bootstrap).create().map_err(|e| e.to_string())?;
        // The cases stamp records at fixed times near 1970 (stream time is
        // theirs to drive): with the broker's default retention a
        // retention check could delete them between produce and fetch, so
        // the harness creates every topic it reads or writes without time
        // retention before the host starts.
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(_, topic)| {
                NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))
                    .set("retention.ms", "-1")
            })
            .collect();
        let created = futures_executor::block_on(admin.create_topics(&new, &AdminOptions::new()))
            .map_err(|e| e.to_string())?;
        for result in created {
            result.map_err(|(topic, e)| format!("creating {topic}: {e}"))?;
        }
        let mut config = format!(
            "application.id = \"{id}\"\nbootstrap.servers = \"{bootstrap}\"\nstate.dir = \"{}\"\n\
             commit.interval.ms = 100\nwasm.max.call.ms = {}\nmax.task.idle.ms = {}\n\
             admin.listen = \"127.0.0.1:0\"\nadmin.token = \"{TOKEN}\"\n[topics]\n",
            dir.join("state").display(),
            setup.max_call.as_millis(),
            setup.max_task_idle.as_millis()
        );
        for (declared, actual) in &topics {
            config.push_str(&format!("\"{declared}\" = \"{actual}\"\n"));
        }
        let config_path = dir.join("weir.toml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let producer: BaseProducer = client(bootstrap)
            .set("linger.ms", "1")
            .create()
            .map_err(|e| e.to_string())?;
        let mut live = Live {
            weir: weir.to_path_buf(),
            bootstrap: bootstrap.to_string(),
            log: dir.join("weir.log"),
            dir,
            config: config_path,
            child: None,
            topics,
            admin: None,
            producer,
        };
        live.spawn(Some(component))?;
        Ok(live)
    }

    /// The actual topic of a declared topic or of a probe sink name.
    fn topic(&self, name: &str) -> String {
        let declared = match name {
            "a" => "sink-a",
            "b" => "sink-b",
            other => other,
        };
        self.topics
            .iter()
            .find(|(d, _)| d == declared)
            .map_or_else(|| declared.to_string(), |(_, t)| t.clone())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn spawn(&mut self, component: Option<&Path>) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| e.to_string())?;
        let start = self.log_text().len();
        let mut cmd = Command::new(&self.weir);
        cmd.arg("run").arg("--config").arg(&self.config);
        if let Some(c) = component {
            cmd.arg("--component").arg(c);
        }
        let child = cmd
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info,rdkafka=warn")
            .env("HOSTNAME", "conformance-0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.weir.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let text = self.log_text();
            let fresh = &text[start.min(text.len())..];
            if let Some(at) = fresh.find("admin API listening on ") {
                self.admin = fresh[at + 23..]
                    .split_whitespace()
                    .next()
                    .map(|a| format!("http://{a}"));
            }
            if fresh.contains("to RUNNING") {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "weir exited ({status}) before RUNNING:\n{}",
                    tail(fresh)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("weir not RUNNING after 90 s:\n{}", tail(fresh)));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "weir exited with {status}:\n{}",
                        tail(&self.log_text())
                    ))
                };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("weir did not stop within 60 s of SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Target for Live {
    fn send(&mut self, cmds: &[Cmd]) -> Result<(), String> {
        for c in cmds {
            let topic = self.topic(c.source);
            let mut headers = OwnedHeaders::new();
            for (k, v) in &c.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v.as_slice()),
                });
            }
            let record = BaseRecord::to(&topic)
                .key(c.key.as_bytes())
                .payload(c.command.as_bytes())
                .partition(c.partition)
                .timestamp(c.timestamp)
                .headers(headers);
            self.producer.send(record).map_err(|(e, _)| e.to_string())?;
        }
        // Not rust-rdkafka's flush, which waits 100 ms a step.
        weir::kafka::flush(&self.producer, Duration::from_secs(30)).map_err(|e| e.to_string())
    }

    fn outputs(
        &mut self,
        sink: &str,
        at_least: usize,
        timeout: Duration,
    ) -> Result<Vec<Out>, String> {
        let topic = self.topic(sink);
        let deadline = Instant::now() + timeout;
        loop {
            let outs = read_topic(&self.bootstrap, &topic)?;
            if outs.len() >= at_least || Instant::now() > deadline {
                return Ok(outs);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn advance_wall_clock(&mut self, by: Duration) -> Result<(), String> {
        std::thread::sleep(by);
        Ok(())
    }

    fn restart(&mut self, wipe_state: bool) -> Result<(), String> {
        self.stop()?;
        if wipe_state {
            std::fs::remove_dir_all(self.dir.join("state")).map_err(|e| e.to_string())?;
        }
        self.spawn(None)
    }

    fn redeploy(&mut self, component: &Path) -> Result<(), String> {
        let admin = self
            .admin
            .clone()
            .ok_or("no admin API address in the log")?;
        let out = Command::new(&self.weir)
            .args([
                "deploy", "--admin", &admin, "--token", TOKEN, "--name", "probe",
            ])
            .arg(component)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "weir deploy failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // Wait until the swap is logged.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.log_text().contains("swapped processor version") {
            if Instant::now() > deadline {
                return Err("no swap within 60 s of the deploy".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn other_tasks_continue(&self) -> bool {
        true
    }

    fn diagnostics(&self) -> Option<String> {
        let log = self.log_text();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        Some(format!("last lines of {}:\n{tail}", self.log.display()))
    }

    /// The first task failure the host logged (it keeps running), or the
    /// error it exited with.
    fn failure(&mut self, timeout: Duration) -> Option<String> {
        const FAILED: &str = "task failed: ";
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let log = self.log_text();
            if let Some(at) = log.find(FAILED) {
                // The error with the lines it spans (a panic message), up
                // to the next log line.
                let rest = &log[at + FAILED.len()..];
                let end = rest
                    .match_indices('\n')
                    .map(|(i, _)| i)
                    .find(|i| rest[i + 1..].starts_with("20"))
                    .unwrap_or(rest.len());
                return Some(rest[..end].trim().to_string());
            }
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                let log = self.log_text();
                // The final error, with any lines it spans (a panic message).
                let error = log
                    .rfind("\nerror: ")
                    .map_or("", |at| &log[at + 1..])
                    .trim()
                    .to_string();
                self.child = None;
                return Some(format!("exit {status}; {error}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

/// Every record of `topic` up to its end when the read began.
fn read_topic(bootstrap: &str, topic: &str) -> Result<Vec<Out>, String> {
    let consumer: BaseConsumer = client(bootstrap)
        .set("group.id", "weir-conformance-reader")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| e.to_string())?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len()) as i32;
    // Records keep arriving (punctuations): read up to the ends seen now.
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0;
    let mut ends = Vec::new();
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| e.to_string())?;
        ends.push(high);
        if high > low {
            remaining += 1;
            tpl.add_partition_offset(topic, p, Offset::Offset(low))
                .map_err(|e| e.to_string())?;
        }
    }
    if remaining == 0 {
        return Ok(Vec::new());
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
    let mut out = Vec::new();
    while remaining > 0 {
        match consumer.poll(timeout) {
            Some(Ok(m)) => {
                let end = ends[m.partition() as usize];
                if m.offset() >= end {
                    continue;
                }
                if m.offset() + 1 == end {
                    remaining -= 1;
                }
                out.push(Out {
                    key: text(m.key()),
                    value: text(m.payload()),
                    headers: m
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    timestamp: m.timestamp().to_millis(),
                });
            }
            Some(Err(e)) => return Err(format!("reading {topic}: {e}")),
            None => return Err(format!("reading {topic}: nothing for 10 s")),
        }
    }
    Ok(out)
}
