//! A `weir` host process under test: a config file in a temporary
//! directory, the real binary, its log captured to a file, and signals.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::kafka::bootstrap;

/// An application's settings and directories, reused across restarts.
pub struct App {
    pub application_id: String,
    pub dir: tempfile::TempDir,
    /// Extra `key = value` TOML lines.
    pub extra: Vec<String>,
}

impl App {
    pub fn new(application_id: &str) -> Self {
        App {
            application_id: application_id.to_string(),
            dir: tempfile::tempdir().unwrap(),
            extra: Vec::new(),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn instance_state_dir(&self, hostname: &str) -> PathBuf {
        if hostname == DEFAULT_HOST {
            self.state_dir()
        } else {
            self.dir.path().join(format!("state-{hostname}"))
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("weir.toml")
    }

    /// Writes the config: fast commits (unless `extra` sets
    /// `commit.interval.ms`), test broker, state under the temp dir.
    pub fn write_config(&self) -> PathBuf {
        self.write_instance_config(DEFAULT_HOST)
    }

    fn write_instance_config(&self, hostname: &str) -> PathBuf {
        let mut text = format!(
            "application.id = \"{}\"\nbootstrap.servers = \"{}\"\nstate.dir = \"{}\"\n",
            self.application_id,
            bootstrap(),
            self.instance_state_dir(hostname).display()
        );
        if !self
            .extra
            .iter()
            .any(|l| l.starts_with("commit.interval.ms"))
        {
            text.push_str("commit.interval.ms = 200\n");
        }
        for line in &self.extra {
            text.push_str(line);
            text.push('\n');
        }
        let path = if hostname == DEFAULT_HOST {
            self.config_path()
        } else {
            self.dir.path().join(format!("weir-{hostname}.toml"))
        };
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts `weir run` with `component`.
    pub fn start(&self, component: &Path) -> Weir {
        self.start_instance(DEFAULT_HOST, Some(component))
    }

    /// Starts one instance of the application as pod `hostname` (its own
    /// identity and state directory), with or without a component to
    /// bootstrap.
    pub fn start_instance(&self, hostname: &str, component: Option<&Path>) -> Weir {
        self.start_instance_with_env(hostname, component, &[])
    }

    /// As [`App::start_instance`], with `WEIR_*` overrides of this
    /// instance's own (its admin address, `application.server`).
    pub fn start_instance_with_env(
        &self,
        hostname: &str,
        component: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Weir {
        let config = self.write_instance_config(hostname);
        let mut args = vec![
            "run".to_string(),
            "--config".into(),
            config.display().to_string(),
        ];
        if let Some(c) = component {
            args.push("--component".into());
            args.push(c.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Weir::spawn_with(&args, self.dir.path(), hostname, env)
    }
}

const DEFAULT_HOST: &str = "weir-test-0";

pub struct Weir {
    child: Child,
    log: PathBuf,
}

impl Weir {
    /// Runs the `weir` binary with `args`, logging to a file in `dir`.
    pub fn spawn(args: &[&str], dir: &Path) -> Weir {
        Weir::spawn_as(args, dir, DEFAULT_HOST)
    }

    /// As [`Weir::spawn`], as pod `hostname`.
    pub fn spawn_as(args: &[&str], dir: &Path, hostname: &str) -> Weir {
        Weir::spawn_with(args, dir, hostname, &[])
    }

    /// As [`Weir::spawn_as`], with extra environment variables.
    pub fn spawn_with(args: &[&str], dir: &Path, hostname: &str, env: &[(&str, &str)]) -> Weir {
        let log = dir.join(format!(
            "weir-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let out = File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .env("RUST_LOG", "info,rdkafka=warn")
            .env("NO_COLOR", "1")
            .env("HOSTNAME", hostname)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting weir");
        Weir { child, log }
    }

    /// The process's peak resident memory so far (`VmHWM`), in bytes.
    #[allow(dead_code)]
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("reading the host's /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status");
        kib * 1024
    }

    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        strip_ansi(&text)
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            if self.log().contains(needle) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "weir exited ({status}) before logging {needle:?}:\n{}",
                    self.log()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "no {needle:?} in the log after {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The admin API's base URL, once the host has logged it.
    pub fn admin_url(&mut self) -> String {
        const MARK: &str = "admin API listening on ";
        self.wait_for_log(MARK, Duration::from_secs(60));
        let log = self.log();
        let rest = &log[log.find(MARK).unwrap() + MARK.len()..];
        let address = rest.split_whitespace().next().unwrap();
        format!("http://{address}")
    }

    /// Waits for the application to reach RUNNING.
    pub fn wait_running(&mut self) {
        self.wait_for_log("to RUNNING", Duration::from_secs(60));
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.log());
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("weir did not exit within {timeout:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for the ordered shutdown.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait_exit(Duration::from_secs(60))
    }

    /// SIGKILL: no shutdown path at all.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
