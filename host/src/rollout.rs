//! Makes this instance run what the deployment log says is live: starts the
//! topology on its first deploy, swaps every task to a new version at a
//! commit boundary (state kept), stops it when it is deleted. Every instance
//! of the application runs the same loop over the same log, so all converge
//! on the same version; a restarted one starts on the live version without a
//! new upload.
//!
//! Owns the running [`App`]; stops it on shutdown. A version that cannot be
//! run here (its topics cannot be prepared, the broker is away, a start
//! failed) is logged and retried with backoff while the current one keeps
//! running, so a transient fault never leaves an instance idle for good.
//! A new version swapped in here is watched by a [`Canary`] and rolled
//! back when every task of it fails at once (`deploy.auto.rollback`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::app::{App, HostContext, Release};
use crate::deploy::canary::{Canary, Verdict};
use crate::deploy::{DeployError, DeployRequest, Deployer, VersionRecord};

const CATCH_UP: Duration = Duration::from_secs(60);
const SWAP_TIMEOUT: Duration = Duration::from_secs(120);
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// A version that failed here, and when to try it again.
struct Retry {
    wanted: (String, u32, String),
    attempts: u32,
    next: Instant,
}

impl Retry {
    fn due(retry: &Option<Retry>, wanted: &(String, u32, String)) -> bool {
        match retry {
            Some(r) if &r.wanted == wanted => Instant::now() >= r.next,
            _ => true,
        }
    }

    /// The retry after one more failure of `wanted`.
    fn after(previous: Option<Retry>, wanted: (String, u32, String)) -> Retry {
        let attempts = previous
            .filter(|r| r.wanted == wanted)
            .map_or(1, |r| r.attempts + 1);
        let delay = RETRY_FIRST
            .saturating_mul(1 << (attempts - 1).min(6))
            .min(RETRY_MAX);
        Retry {
            wanted,
            attempts,
            next: Instant::now() + delay,
        }
    }
}

struct Running {
    name: String,
    version: u32,
    sha256: String,
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
    let deployed = match deployer.deploy(DeployRequest {
        name,
        bytes,
        allow_store_drop: false,
        deployed_by: format!("weir run --component {}", component.display()),
    }) {
        Ok(deployed) => deployed,
        Err(e) => {
            // Instances started together all bootstrap; one write wins and
            // the others are fenced or refused as a conflict. Then the log
            // has (or soon has) a live version, which is all `--component`
            // asks for.
            deployer.log().wait_caught_up(CATCH_UP)?;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let (seen, topologies) = deployer.log().snapshot();
                if let Some(live) = topologies.values().find(|t| t.live.is_some()) {
                    tracing::info!(
                        topology = %live.name, version = ?live.live,
                        "another instance deployed first; running the live version"
                    );
                    return Ok(());
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || !matches!(e, DeployError::Conflict { .. }) {
                    return Err(e.into());
                }
                deployer.log().wait_for_change(seen, left);
            }
        }
    };
    tracing::info!(
        version = deployed.version.version,
        "deployed the --component given at start"
    );
    Ok(())
}

/// Follows the log until shutdown is requested, then stops what runs.
pub fn run(ctx: Arc<HostContext>, deployer: Arc<Deployer>) {
    let mut running: Option<Running> = None;
    let mut retry: Option<Retry> = None;
    if let Err(e) = deployer.log().wait_caught_up(CATCH_UP) {
        ctx.lifecycle.fail(e.to_string());
        return;
    }
    let mut announced_wait = false;
    let mut canary: Option<Canary> = None;
    while !ctx.lifecycle.shutdown_requested() {
        if let Some(c) = &mut canary
            && !judge(&ctx, &deployer, c)
        {
            canary = None;
        }
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
                // By content hash too: two racing deploys may both have
                // written the same version number.
                let current = running
                    .as_ref()
                    .map(|r| (r.name.clone(), r.version, r.sha256.clone()));
                let wanted = (name.clone(), version.version, version.sha256.clone());
                if current.as_ref() != Some(&wanted) && Retry::due(&retry, &wanted) {
                    match converge(&ctx, &deployer, running.take(), &name, &version) {
                        Ok(r) => {
                            // A swap forward from an earlier version of the
                            // same topology: watch it. A rollback (by hand
                            // or automatic) is not watched: it must not roll
                            // forward onto what was rolled away from.
                            let record = &topologies[&name];
                            let previous = current
                                .filter(|(n, v, _)| *n == name && *v < r.version)
                                .map(|(_, v, _)| v);
                            canary = previous
                                .filter(|_| ctx.config.deploy_auto_rollback)
                                .filter(|_| record.reason.is_none())
                                .map(|previous| {
                                    Canary::new(
                                        &name,
                                        (previous, r.version),
                                        record.revision,
                                        ctx.metrics.records_processed.load(Ordering::Relaxed),
                                        &ctx.tasks.snapshot(),
                                    )
                                });
                            running = Some(r);
                            retry = None;
                        }
                        Err(failed) => {
                            let (previous, error) = *failed;
                            let next = Retry::after(retry.take(), wanted);
                            tracing::error!(
                                topology = %name, version = version.version, attempt = next.attempts,
                                retry_in_ms = next.next.saturating_duration_since(Instant::now()).as_millis() as u64,
                                "cannot run this version here: {error}; retrying"
                            );
                            running = previous;
                            retry = Some(next);
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

/// Judges the version `canary` watches and rolls it back if it is bad.
/// Returns whether to keep watching.
fn judge(ctx: &HostContext, deployer: &Deployer, canary: &mut Canary) -> bool {
    let processed = ctx.metrics.records_processed.load(Ordering::Relaxed);
    match canary.check(
        &ctx.tasks.snapshot(),
        processed,
        ctx.config.deploy_canary_records,
    ) {
        Verdict::Watching => true,
        Verdict::Passed => {
            tracing::info!(
                topology = %canary.name, version = canary.version,
                "the new version processed its canary records here"
            );
            false
        }
        Verdict::RollBack(reason) => {
            tracing::error!(
                topology = %canary.name, version = canary.version,
                "bad version: {reason}; rolling back (deploy.auto.rollback)"
            );
            let by = format!("weir (automatic rollback by {})", ctx.config.client_id);
            let to = Some(canary.previous);
            match deployer.rollback_from(&canary.name, canary.revision, to, &by, Some(reason)) {
                Ok(to) => {
                    tracing::warn!(topology = %canary.name, from = canary.version, to = to.version, "rolled back automatically");
                    false
                }
                Err(e @ DeployError::Conflict { .. }) => {
                    tracing::info!(topology = %canary.name, "no automatic rollback from here: {e}");
                    false
                }
                // The log is away: judge again on the next round.
                Err(e @ DeployError::Log(_)) => {
                    tracing::warn!(topology = %canary.name, "automatic rollback not written yet: {e}");
                    true
                }
                Err(e) => {
                    tracing::error!(topology = %canary.name, "automatic rollback refused: {e}");
                    false
                }
            }
        }
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
) -> Result<Running, Box<(Option<Running>, String)>> {
    let release = deployer
        .load_version(version)
        .map_err(|e| e.to_string())
        .and_then(|component| {
            Release::prepare(&ctx.config, version.version, component).map_err(|e| e.to_string())
        });
    let release = match release {
        Ok(release) => release,
        Err(e) => return Err(Box::new((running, e))),
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
            r.sha256 = version.sha256.clone();
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
                    sha256: version.sha256.clone(),
                    app,
                }),
                Err(e) => Err(Box::new((None, e.to_string()))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_versions_are_retried_with_growing_backoff() {
        let wanted = ("wc".to_string(), 2, "ab".to_string());
        assert!(Retry::due(&None, &wanted));
        let first = Retry::after(None, wanted.clone());
        assert_eq!(first.attempts, 1);
        let retry = Some(first);
        assert!(!Retry::due(&retry, &wanted), "not again at once");
        assert!(
            Retry::due(&retry, &("wc".to_string(), 3, "cd".to_string())),
            "a newer version goes at once"
        );
        let mut r = retry;
        for _ in 0..10 {
            r = Some(Retry::after(r, wanted.clone()));
        }
        let r = r.unwrap();
        assert_eq!(r.attempts, 11);
        assert!(r.next <= Instant::now() + RETRY_MAX);
        assert!(r.next > Instant::now() + RETRY_MAX / 2);
    }
}
