//! The `weir` command line: thin over the library. Errors end here as
//! `anyhow` with their full chain, and a non-zero exit.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::{Parser, Subcommand};

use weir::app::App;
use weir::config::Config;
use weir::lifecycle::State;

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
    /// Run an application: join its consumer group and process until SIGTERM.
    Run {
        /// Config file (TOML, Kafka Streams keys); WEIR_* variables override it.
        #[arg(long, env = "WEIR_CONFIG")]
        config: Option<PathBuf>,
        /// The processor component (.wasm, built for wasm32-wasip2).
        #[arg(long)]
        component: PathBuf,
    },
    /// Validate a component and print its topology as JSON.
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
    /// Records/s through the host for the example processors, as Wasm and
    /// as native Rust on the same host (the cost of the Wasm boundary).
    Bench {
        /// Kafka to run against (e.g. from `scripts/kafka start`).
        #[arg(long, env = "WEIR_BOOTSTRAP")]
        bootstrap: String,
        /// Directory with word_count.wasm and filter_map.wasm
        /// (`scripts/build-guests` prints it).
        #[arg(long)]
        components: PathBuf,
        #[arg(long, default_value_t = 200_000)]
        records: usize,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Runs per engine, alternating wasm/native.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value_t = 1000)]
        commit_interval_ms: u64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
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
            let app = App::start(config, &component)?;
            app.wait_for_shutdown(|| term.load(Ordering::Relaxed));
            let lifecycle = app.lifecycle().clone();
            let state = app.close();
            match state {
                State::NotRunning => Ok(ExitCode::SUCCESS),
                _ => {
                    let reason = lifecycle
                        .error()
                        .unwrap_or_else(|| format!("ended in state {state}"));
                    anyhow::bail!("{reason}")
                }
            }
        }
        Command::Describe { component } => {
            let runtime = weir::app::new_runtime(&Config::from_map(
                [
                    ("application.id", "describe"),
                    ("bootstrap.servers", "unused:0"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
                Some("local"),
            )?)?;
            let loaded = weir::app::load_component(&runtime, &component)?;
            let json = serde_json::json!({
                "component": loaded.label(),
                "sha256": loaded.sha256(),
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
        Command::Bench {
            bootstrap,
            components,
            records,
            partitions,
            rounds,
            commit_interval_ms,
            json,
        } => {
            let opts = weir::bench::BenchOptions {
                bootstrap,
                components,
                records,
                partitions,
                rounds: rounds.max(1),
                commit_interval_ms,
            };
            let (measurements, summaries) = weir::bench::run(&opts)?;
            if json {
                let out = serde_json::json!({ "measurements": measurements, "summary": summaries });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print!("{}", weir::bench::table(&summaries));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
