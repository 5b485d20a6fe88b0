//! `weir-conformance`: runs every conformance case against the offline test
//! driver and/or a live host on a real broker, one line per case, then
//! `N passed, M failed`; exits non-zero on any failure. A case a mode
//! cannot express (a restart offline) is reported as skipped, never hidden
//! as passed.

mod cases;
mod live;
mod offline;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use cases::{CASES, Env};
use target::{NOT_APPLICABLE, Setup, Target};

/// Calls into the probe may take this long; the CPU-deadline case waits it.
const MAX_CALL: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Offline,
    Live,
    Both,
}

#[derive(Parser)]
#[command(about = "Conformance suite for Weir hosts")]
struct Cli {
    #[arg(long, value_enum, default_value = "both")]
    mode: Mode,
    /// Kafka for live mode.
    #[arg(long, env = "WEIR_TEST_BOOTSTRAP")]
    bootstrap: Option<String>,
    /// The `weir` binary for live mode (default: next to this one).
    #[arg(long)]
    weir: Option<PathBuf>,
    /// Directory with probe.wasm, probe_v2.wasm and probe_v0_2.wasm
    /// (default: build them from this crate's guests/ for wasm32-wasip2).
    #[arg(long)]
    components: Option<PathBuf>,
    /// Run only cases whose name contains this.
    #[arg(long)]
    only: Option<String>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("weir-conformance: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<bool> {
    let (probe, probe_v2, probe_v0_2) = match &cli.components {
        Some(dir) => (
            dir.join("probe.wasm"),
            dir.join("probe_v2.wasm"),
            dir.join("probe_v0_2.wasm"),
        ),
        None => {
            let guests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("guests");
            (
                weir::testing::build_component(&guests.join("probe"))?,
                weir::testing::build_component(&guests.join("probe-v2"))?,
                weir::testing::build_component(&guests.join("probe-v0-2"))?,
            )
        }
    };
    // Every case runs against the probe built for each contract version
    // the host speaks; `redeploy-keeps-state` then also upgrades a 0.2.0
    // component to a 0.3.0 one.
    let probes = [(weir::runtime::WIT_VERSION, probe), ("0.2.0", probe_v0_2)];
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let env = Env {
        probe_v2,
        listener: listener.local_addr()?.to_string(),
    };
    let weir = match &cli.weir {
        Some(w) => w.clone(),
        None => std::env::current_exe()?.with_file_name("weir"),
    };
    let mut modes = Vec::new();
    if cli.mode != Mode::Live {
        modes.push("offline");
    }
    if cli.mode != Mode::Offline {
        anyhow::ensure!(
            cli.bootstrap.is_some(),
            "live mode needs --bootstrap (or WEIR_TEST_BOOTSTRAP)"
        );
        anyhow::ensure!(
            weir.exists(),
            "no weir binary at {} (use --weir)",
            weir.display()
        );
        modes.push("live");
    }
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (mode, (contract, probe)) in modes
        .iter()
        .flat_map(|m| probes.iter().map(move |p| (*m, p)))
    {
        let label = format!("{mode} {contract}");
        for case in CASES {
            if cli
                .only
                .as_ref()
                .is_some_and(|o| !case.name.contains(o.as_str()))
            {
                continue;
            }
            if case.live_only && mode == "offline" {
                println!("skip {:<32} [{label}] needs a live host", case.name);
                skipped += 1;
                continue;
            }
            let started = std::time::Instant::now();
            let setup = Setup {
                max_call: MAX_CALL,
                max_task_idle: Duration::from_millis(case.max_task_idle_ms),
            };
            let mut target: Box<dyn Target> = match mode {
                "offline" => match offline::Offline::start(probe, 2, &setup) {
                    Ok(t) => Box::new(t),
                    Err(e) => return Err(anyhow::anyhow!("offline driver: {e}")),
                },
                _ => match live::Live::start(
                    &weir,
                    cli.bootstrap.as_deref().unwrap_or_default(),
                    probe,
                    &setup,
                ) {
                    Ok(t) => Box::new(t),
                    Err(e) => {
                        println!(
                            "FAIL {:<32} [{label}] the host did not start: {e}",
                            case.name
                        );
                        failed += 1;
                        continue;
                    }
                },
            };
            match (case.run)(target.as_mut(), &env) {
                Ok(()) => {
                    println!(
                        "ok   {:<32} [{label}] {:.1}s",
                        case.name,
                        started.elapsed().as_secs_f64()
                    );
                    passed += 1;
                }
                Err(e) if e == NOT_APPLICABLE => {
                    println!("skip {:<32} [{label}] {e}", case.name);
                    skipped += 1;
                }
                Err(e) => {
                    println!("FAIL {:<32} [{label}] {e}", case.name);
                    if let Some(d) = target.diagnostics() {
                        println!("{d}");
                    }
                    failed += 1;
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed ({skipped} skipped)");
    Ok(failed == 0)
}
