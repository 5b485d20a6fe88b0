//! The `weir` command line: thin over the library. Errors end here as
//! `anyhow` with their full chain, and a non-zero exit.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::{Parser, Subcommand};

use weir::admin::api::{DeployReply, RollbackReply, TopologiesReply, TopologyReply};
use weir::app::HostContext;
use weir::config::Config;
use weir::deploy::Deployer;
use weir::lifecycle::State;

/// mimalloc for the whole process: with its `override` feature it also
/// serves librdkafka's and RocksDB's `malloc` (see `host/Cargo.toml`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "Run Kafka-Streams-style processors compiled to WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an application: follow its deployments, join its consumer group
    /// and process until SIGTERM.
    Run {
        /// Config file (TOML, Kafka Streams keys); WEIR_* variables override it.
        #[arg(long, env = "WEIR_CONFIG")]
        config: Option<PathBuf>,
        /// A processor component (.wasm) to deploy if the application has no
        /// live version yet. Without it the host waits for `weir deploy`.
        #[arg(long)]
        component: Option<PathBuf>,
    },
    /// Upload a component to a running host; every instance swaps to it.
    Deploy {
        #[command(flatten)]
        admin: AdminArgs,
        /// The deployment's name.
        #[arg(long)]
        name: String,
        /// Accept dropping the state of stores the new version removes.
        #[arg(long)]
        allow_store_drop: bool,
        component: PathBuf,
    },
    /// List deployed topologies and their versions (or one, with its tasks).
    Topologies {
        #[command(flatten)]
        admin: AdminArgs,
        name: Option<String>,
    },
    /// Make an earlier version live again (default: the one before live).
    Rollback {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: Option<u32>,
    },
    /// Stop running a topology on every instance (its history stays).
    Undeploy {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        name: String,
    },
    /// Read one key of a store from any instance (interactive query): the
    /// instance forwards to the key's owner.
    Query {
        #[command(flatten)]
        admin: AdminArgs,
        store: String,
        key: String,
        /// How KEY is written: text, hex, base64 or an integer format
        /// (u8 … u64, i8 … i64). Default: as the store declares its keys.
        #[arg(long)]
        key_format: Option<String>,
        /// How to decode the value: bytes, utf8, json or an integer format.
        /// Default: as the store declares its values.
        #[arg(long)]
        value_format: Option<String>,
        /// Let a standby answer (it may lag; the lag is printed).
        #[arg(long)]
        stale: bool,
    },
    /// Validate a component and print its topology and the contract
    /// version it was built against as JSON.
    Describe { component: PathBuf },
    /// Print the memory bound a config implies for a component.
    Memory {
        #[arg(long, env = "WEIR_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        component: PathBuf,
        /// Tasks this process may own (default: 1 per source partition).
        #[arg(long, default_value_t = 1)]
        tasks: usize,
    },
    /// List the configuration keys, defaults and environment variables.
    ConfigKeys,
    /// Benchmarks on a broker (Wasm against native Rust, the Wasm
    /// boundary, `weir run` against Kafka Streams): runs `weir-bench`,
    /// built next to `weir` (`cargo build --release -p weir-bench`), with
    /// the same arguments; `weir bench --help` lists them.
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(clap::Args)]
struct AdminArgs {
    /// The admin API of any instance, e.g. http://weir-0.weir:8080.
    #[arg(long, env = "WEIR_ADMIN")]
    admin: String,
    /// Bearer token (admin.token of the host).
    #[arg(long, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// `weir bench …` is `weir-bench …`: the benchmarks (JVM launching, child
/// processes, native baselines) live in a crate of their own, not in the
/// host that runs production traffic.
fn bench(args: &[std::ffi::OsString]) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let me = std::env::current_exe().context("locating the weir binary")?;
    let bench = me.with_file_name("weir-bench");
    if !bench.exists() {
        anyhow::bail!(
            "`weir bench` runs {}, which is not built: cargo build --release -p weir-bench",
            bench.display()
        );
    }
    let error = std::process::Command::new(&bench)
        .args(args)
        .env("WEIR_BIN", &me)
        .exec();
    Err(anyhow::anyhow!("running {}: {error}", bench.display()))
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(Config::load(path.map(PathBuf::as_path), std::env::vars())?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A benchmark's own lines are what matter; the host's info logs are noise.
    let default_filter = match cli.command {
        Command::Bench { .. } => "warn",
        _ => "info,rdkafka=warn,librdkafka=warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, skipping causes the message already quotes
/// (library errors embed their source's text).
fn chain(e: &anyhow::Error) -> String {
    let mut message = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message = format!("{message}: {cause}");
        }
    }
    message
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { config, component } => {
            let config = load_config(config.as_ref())?;
            let term = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                // A second signal while shutting down exits at once.
                signal_hook::flag::register_conditional_shutdown(signal, 1, term.clone())
                    .context("installing signal handlers")?;
                signal_hook::flag::register(signal, term.clone())
                    .context("installing signal handlers")?;
            }
            let ctx = HostContext::new(config)?;
            let runtime = Arc::new(weir::app::new_runtime(&ctx.config)?);
            let deployer = Arc::new(Deployer::open(ctx.config.clone(), runtime)?);
            if let Some(listen) = ctx.config.admin_listen {
                weir::admin::serve(
                    listen,
                    ctx.clone(),
                    deployer.clone(),
                    ctx.config.admin_token.clone(),
                    ctx.config.admin_max_component_bytes,
                )
                .with_context(|| format!("admin API on {listen}"))?;
            }
            if let Some(component) = &component {
                weir::rollout::bootstrap(&deployer, component)?;
            }
            let rollout = {
                let (ctx, deployer) = (ctx.clone(), deployer.clone());
                std::thread::Builder::new()
                    .name("weir-rollout".into())
                    .spawn(move || weir::rollout::run(ctx, deployer))?
            };
            ctx.lifecycle
                .wait_for_shutdown(|| term.load(Ordering::Relaxed));
            // The rollout stops the running topology (bounded by
            // shutdown.timeout.ms); give it that long plus a margin.
            let deadline = std::time::Instant::now()
                + ctx.config.shutdown_timeout
                + std::time::Duration::from_secs(5);
            while !rollout.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if !rollout.is_finished() {
                ctx.lifecycle
                    .fail("shutdown did not finish within shutdown.timeout.ms".into());
            }
            let state = ctx.lifecycle.finish();
            match state {
                State::NotRunning => Ok(ExitCode::SUCCESS),
                _ => {
                    let reason = ctx
                        .lifecycle
                        .error()
                        .unwrap_or_else(|| format!("ended in state {state}"));
                    anyhow::bail!("{reason}")
                }
            }
        }
        Command::Deploy {
            admin,
            name,
            allow_store_drop,
            component,
        } => {
            let bytes = std::fs::read(&component)
                .with_context(|| format!("reading {}", component.display()))?;
            let mut url = format!("{}/v1/topologies/{name}", admin.admin.trim_end_matches('/'));
            if allow_store_drop {
                url.push_str("?allow_store_drop=true");
            }
            let reply: DeployReply = client::request(&admin, "PUT", &url, Some(&bytes))?;
            if reply.created {
                println!(
                    "deployed {name} version {} (sha256 {})",
                    reply.version, reply.sha256
                );
            } else {
                println!(
                    "{name}: version {} (sha256 {}) is already live",
                    reply.version, reply.sha256
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Topologies { admin, name } => {
            let base = admin.admin.trim_end_matches('/');
            match name {
                None => {
                    let reply: TopologiesReply =
                        client::request(&admin, "GET", &format!("{base}/v1/topologies"), None)?;
                    println!("{:<24} {:>5} {:>9}  changed", "name", "live", "versions");
                    for t in reply.topologies {
                        println!(
                            "{:<24} {:>5} {:>9}  {} by {}",
                            t.name,
                            t.live_version.map_or("-".to_string(), |v| v.to_string()),
                            t.versions.len(),
                            t.changed_at,
                            t.changed_by,
                        );
                    }
                }
                Some(name) => {
                    let t: TopologyReply = client::request(
                        &admin,
                        "GET",
                        &format!("{base}/v1/topologies/{name}"),
                        None,
                    )?;
                    println!(
                        "{:>7}  {:<12} {:<20} {:<24} by",
                        "version", "sha256", "deployed", "topology"
                    );
                    for v in &t.versions {
                        println!(
                            "{}{:>6}  {:<12} {:<20} {:<24} {}",
                            if v.live { "*" } else { " " },
                            v.version,
                            v.sha256.get(..12).unwrap_or(""),
                            v.deployed_at,
                            v.topology.name,
                            v.deployed_by,
                        );
                    }
                    for task in t.tasks.iter().flatten() {
                        println!(
                            "task {} on this instance: version {} {}",
                            task.task_id, task.version, task.state
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rollback {
            admin,
            name,
            version,
        } => {
            let mut url = format!(
                "{}/v1/topologies/{name}/rollback",
                admin.admin.trim_end_matches('/')
            );
            if let Some(v) = version {
                url.push_str(&format!("?version={v}"));
            }
            let reply: RollbackReply = client::request(&admin, "POST", &url, None)?;
            println!("{name}: version {} is live again", reply.version);
            Ok(ExitCode::SUCCESS)
        }
        Command::Query {
            admin,
            store,
            key,
            key_format,
            value_format,
            stale,
        } => {
            let mut params: Vec<String> = Vec::new();
            if let Some(f) = key_format {
                params.push(format!("key_format={}", path_segment(&f)));
            }
            if let Some(f) = value_format {
                params.push(format!("value_format={}", path_segment(&f)));
            }
            if stale {
                params.push("stale=ok".into());
            }
            let url = format!(
                "{}/v1/stores/{}/keys/{}?{}",
                admin.admin.trim_end_matches('/'),
                path_segment(&store),
                path_segment(&key),
                params.join("&")
            );
            let reply: serde_json::Value = client::request(&admin, "GET", &url, None)?;
            match reply {
                serde_json::Value::String(s) => println!("{s}"),
                other => println!("{other}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Undeploy { admin, name } => {
            let url = format!("{}/v1/topologies/{name}", admin.admin.trim_end_matches('/'));
            let _: TopologyReply = client::request(&admin, "DELETE", &url, None)?;
            println!("{name}: stopped on every instance");
            Ok(ExitCode::SUCCESS)
        }
        Command::Describe { component } => {
            let runtime = weir::runtime::Runtime::new(weir::runtime::WasmLimits::default())
                .map_err(|e| anyhow::anyhow!("{e:#}"))?;
            let loaded = weir::app::load_component(&runtime, &component)?;
            let json = serde_json::json!({
                "component": loaded.label(),
                "sha256": loaded.sha256(),
                "contract": format!("weir:streams@{}", loaded.contract()),
                "topology": &**loaded.topology(),
            });
            println!("{}", serde_json::to_string_pretty(&json)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Memory {
            config,
            component,
            tasks,
        } => {
            let config = load_config(config.as_ref())?;
            let runtime = weir::app::new_runtime(&config)?;
            let loaded = weir::app::load_component(&runtime, &component)?;
            println!(
                "{}",
                weir::limits::memory_formula(&config, loaded.topology(), tasks)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::ConfigKeys => {
            println!(
                "{:<28} {:<36} {:<34} description",
                "key", "default", "environment"
            );
            for (key, default, description) in weir::config::KEYS {
                println!(
                    "{key:<28} {default:<36} {:<34} {description}",
                    weir::config::env_name(key)
                );
            }
            println!(
                "{:<28} {:<36} {:<34} rename a topic the component declares",
                "topics.<name>", "(same name)", ""
            );
            println!(
                "{:<28} {:<36} {:<34} passed to the Kafka clients as is",
                "kafka.<property>", "", ""
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { args } => bench(&args),
    }
}

/// The admin API client behind `deploy`, `topologies`, `rollback`, `undeploy`.
mod client {
    use anyhow::Context;
    use serde::de::DeserializeOwned;
    use weir::admin::api::ErrorReply;

    use super::AdminArgs;

    /// Sends a request and reads the answer as `T`; a non-2xx answer
    /// becomes an error with the host's message.
    pub fn request<T: DeserializeOwned>(
        admin: &AdminArgs,
        method: &str,
        url: &str,
        body: Option<&[u8]>,
    ) -> anyhow::Result<T> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let by = format!(
            "{}@{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into())
        );
        let auth = admin.token.as_ref().map(|t| format!("Bearer {t}"));
        let response = match (method, body) {
            ("PUT", Some(bytes)) => {
                // Expect: 100-continue lets the host refuse an oversized
                // upload before any of it is sent.
                let mut r = agent
                    .put(url)
                    .header("x-weir-deployed-by", &by)
                    .header("expect", "100-continue");
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.send(bytes)
            }
            ("POST", _) => {
                let mut r = agent.post(url).header("x-weir-deployed-by", &by);
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.send_empty()
            }
            ("DELETE", _) => {
                let mut r = agent.delete(url).header("x-weir-deployed-by", &by);
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.call()
            }
            _ => {
                let mut r = agent.get(url);
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.call()
            }
        };
        let mut response = response.with_context(|| format!("{method} {url}"))?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the answer to {method} {url}"))?;
        if !status.is_success() {
            let message = serde_json::from_str::<ErrorReply>(&text)
                .map(|e| e.error)
                .unwrap_or(text);
            anyhow::bail!("{method} {url}: {status}: {message}");
        }
        // A plain-text answer (a query of a `utf8` value) reads as a string.
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        serde_json::from_value(json)
            .with_context(|| format!("{method} {url}: unexpected answer from the host"))
    }
}

/// `text` percent-encoded for a URL path segment or query value (RFC 3986
/// unreserved characters kept).
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
