//! Makes this instance run what the deployment log says is live: starts the
//! topology on its first deploy, swaps every task to a new version at a
//! commit boundary (state kept), stops it when it is deleted. Every instance
//! of the application runs the same loop over the same log, so all converge
//! on the same version; a restarted one starts on the live version without a
//! new upload.
//!
//! Owns the running [`App`]; stops it on shutdown. A version that cannot be
//! loaded here is logged and skipped (the current one keeps running) until
//! the log changes again.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::app::{App, HostContext, Release};
use crate::deploy::{DeployRequest, Deployer, VersionRecord};

const CATCH_UP: Duration = Duration::from_secs(60);
const SWAP_TIMEOUT: Duration = Duration::from_secs(120);

struct Running {
    name: String,
    version: u32,
    app: App,
}

/// Why the rollout could not begin.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error(transparent)]
    Deploy(#[from] crate::deploy::DeployError),
    #[error(transparent)]
    Log(#[from] crate::deploy::LogError),
    #[error("cannot read component {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// Deploys `component` unless the application already has a live version
/// (the log wins: `--component` only bootstraps an empty application).
pub fn bootstrap(deployer: &Deployer, component: &Path) -> Result<(), RolloutError> {
    deployer.log().wait_caught_up(CATCH_UP)?;
    let bytes = std::fs::read(component).map_err(|source| RolloutError::Read {
        path: component.display().to_string(),
        source,
    })?;
    let live = deployer.list().into_iter().find(|t| t.live.is_some());
    if let Some(live) = live {
        tracing::info!(
            topology = %live.name, version = ?live.live,
            "the application already has a live version; --component {} is not deployed",
            component.display()
        );
        return Ok(());
    }
    // Named after the topology the component declares; a component that
    // does not load keeps its file name, and the deploy says why it failed.
    let name = deployer.describe_name(&bytes).unwrap_or_else(|| {
        component
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let deployed = deployer.deploy(DeployRequest {
        name,
        bytes,
        allow_store_drop: false,
        deployed_by: format!("weir run --component {}", component.display()),
    })?;
    tracing::info!(
        version = deployed.version.version,
        "deployed the --component given at start"
    );
    Ok(())
}

/// Follows the log until shutdown is requested, then stops what runs.
pub fn run(ctx: Arc<HostContext>, deployer: Arc<Deployer>) {
    let mut running: Option<Running> = None;
    let mut skipped: Option<(String, u32)> = None;
    if let Err(e) = deployer.log().wait_caught_up(CATCH_UP) {
        ctx.lifecycle.fail(e.to_string());
        return;
    }
    let mut announced_wait = false;
    while !ctx.lifecycle.shutdown_requested() {
        let (revision, topologies) = deployer.log().snapshot();
        let desired = topologies
            .values()
            .find_map(|t| t.live_version().map(|v| (t.name.clone(), v.clone())));
        match desired {
            None => {
                if let Some(r) = running.take() {
                    tracing::info!(topology = %r.name, "topology deleted: stopping it");
                    r.app.stop();
                }
                if !announced_wait {
                    tracing::info!("no topology deployed: waiting for a deploy");
                    announced_wait = true;
                }
            }
            Some((name, version)) => {
                announced_wait = false;
                let current = running.as_ref().map(|r| (r.name.clone(), r.version));
                let wanted = (name.clone(), version.version);
                if current.as_ref() != Some(&wanted) && skipped.as_ref() != Some(&wanted) {
                    match converge(&ctx, &deployer, running.take(), &name, &version) {
                        Ok(r) => running = Some(r),
                        Err((previous, error)) => {
                            tracing::error!(topology = %name, version = version.version, "cannot run this version here: {error}");
                            running = previous;
                            skipped = Some(wanted);
                        }
                    }
                }
            }
        }
        deployer
            .log()
            .wait_for_change(revision, Duration::from_millis(250));
    }
    if let Some(r) = running {
        r.app.stop();
    }
}

/// Moves from `running` to `version` of `name`. On failure gives `running`
/// back untouched.
fn converge(
    ctx: &Arc<HostContext>,
    deployer: &Deployer,
    running: Option<Running>,
    name: &str,
    version: &VersionRecord,
) -> Result<Running, (Option<Running>, String)> {
    let release = deployer
        .load_version(version)
        .map_err(|e| e.to_string())
        .and_then(|component| {
            Release::prepare(&ctx.config, version.version, component).map_err(|e| e.to_string())
        });
    let release = match release {
        Ok(release) => release,
        Err(e) => return Err((running, e)),
    };
    match running {
        Some(mut r) if r.name == name => {
            tracing::info!(
                topology = name,
                from = r.version,
                to = version.version,
                "rolling out a new version"
            );
            if !r.app.swap(release, SWAP_TIMEOUT) {
                tracing::warn!(
                    topology = name,
                    version = version.version,
                    "the swap did not complete in time"
                );
            }
            r.version = version.version;
            Ok(r)
        }
        previous => {
            if let Some(r) = previous {
                tracing::info!(topology = %r.name, "another topology is live now: stopping this one");
                r.app.stop();
            }
            tracing::info!(
                topology = name,
                version = version.version,
                "starting topology"
            );
            match App::start(ctx, release) {
                Ok(app) => Ok(Running {
                    name: name.to_string(),
                    version: version.version,
                    app,
                }),
                Err(e) => Err((None, e.to_string())),
            }
        }
    }
}
