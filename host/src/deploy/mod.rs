//! Deployments: accept a component, validate it before anything live
//! changes, record it in the deployment log (which every instance follows),
//! and answer what is deployed. Rollback and delete are log records too.
//!
//! Validation, in order: it is a component of this host's world that
//! compiles, instantiates under the host's limits and answers `describe()`
//! in time with a valid topology ([`Runtime::load_cached`]); it is the
//! application's topology (one per application); it is compatible with the
//! live version's state ([`compat`]); its sources exist and are
//! co-partitioned. A rejected deploy writes nothing. Must not swap running
//! tasks itself: the rollout does, on every instance alike.

mod cache;
pub mod compat;
mod log;
pub mod model;

use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use cache::ComponentCache;
pub use log::{DeploymentLog, LogError, topic_name};
pub use model::{TopologyRecord, VersionRecord, now_rfc3339};

use crate::config::Config;
use crate::runtime::{LoadError, LoadedComponent, Runtime};
use crate::topics::TopicError;

const CATCH_UP: Duration = Duration::from_secs(60);

/// Why a deploy, rollback or delete was refused. The admin API maps each
/// to a status code.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("deployment name `{0}` is invalid: {1}")]
    BadName(String, &'static str),
    #[error("{0}")]
    Invalid(#[from] LoadError),
    #[error("not compatible with live version {live} of `{name}`: {reason}")]
    Incompatible {
        name: String,
        live: u32,
        reason: compat::Incompatible,
    },
    #[error(
        "application `{application}` runs topology `{live}`; delete it before deploying `{name}`"
    )]
    OtherTopologyLive {
        application: String,
        live: String,
        name: String,
    },
    #[error("{0}")]
    Topics(#[from] TopicError),
    #[error("no topology `{0}` is deployed")]
    NotFound(String),
    #[error("topology `{name}` has no version {version}")]
    NoSuchVersion { name: String, version: u32 },
    #[error("topology `{0}` has no earlier version to roll back to")]
    NothingToRollBackTo(String),
    #[error("{0}")]
    Log(#[from] LogError),
    #[error("component cache: {0}")]
    Cache(String),
}

/// A deploy request, as the admin API received it.
pub struct DeployRequest {
    pub name: String,
    pub bytes: Vec<u8>,
    pub allow_store_drop: bool,
    pub deployed_by: String,
}

/// What a deploy did.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub version: VersionRecord,
    /// False when this exact component was already the live version.
    pub created: bool,
}

pub struct Deployer {
    config: Arc<Config>,
    runtime: Arc<Runtime>,
    cache: Arc<ComponentCache>,
    log: DeploymentLog,
    /// Serialises this instance's writes so version numbers do not collide.
    writing: Mutex<()>,
}

fn check_name(name: &str) -> Result<(), DeployError> {
    match crate::topology::name_problem(name) {
        None => Ok(()),
        Some(reason) => Err(DeployError::BadName(name.to_string(), reason)),
    }
}

impl Deployer {
    /// Opens the component cache and the deployment log of `config`'s
    /// application.
    pub fn open(config: Arc<Config>, runtime: Arc<Runtime>) -> Result<Self, DeployError> {
        let dir = config.app_state_dir().join(".components");
        let cache = Arc::new(
            ComponentCache::open(&dir)
                .map_err(|e| DeployError::Cache(format!("{}: {e}", dir.display())))?,
        );
        let log = DeploymentLog::open(&config, cache.clone())?;
        Ok(Deployer {
            config,
            runtime,
            cache,
            log,
            writing: Mutex::new(()),
        })
    }

    pub fn log(&self) -> &DeploymentLog {
        &self.log
    }

    /// Compiles (or loads the compiled form of) a component by content.
    fn load(&self, name: &str, bytes: &[u8], sha: &str) -> Result<Arc<LoadedComponent>, LoadError> {
        let compiled = self
            .cache
            .compiled_path(sha, &self.runtime.compatibility_tag());
        self.runtime.load_cached(name, bytes, Some(&compiled))
    }

    /// The component of a recorded version, from the local cache.
    pub fn load_version(
        &self,
        version: &VersionRecord,
    ) -> Result<Arc<LoadedComponent>, DeployError> {
        let bytes = self
            .cache
            .read(&version.sha256)
            .map_err(|e| DeployError::Cache(format!("version {}: {e}", version.version)))?;
        Ok(self.load(&version.topology.name, &bytes, &version.sha256)?)
    }

    /// The topology name a component declares, if it loads.
    pub fn describe_name(&self, bytes: &[u8]) -> Option<String> {
        let sha = hex::encode(Sha256::digest(bytes));
        self.load("component", bytes, &sha)
            .ok()
            .map(|c| c.topology().name.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Validates and records a new version; every instance then swaps to it.
    pub fn deploy(&self, request: DeployRequest) -> Result<Deployed, DeployError> {
        check_name(&request.name)?;
        let sha = hex::encode(Sha256::digest(&request.bytes));
        let component = self.load(&format!("{}.wasm", request.name), &request.bytes, &sha)?;
        let topology = component.topology().as_ref().clone();

        let _writing = self.lock();
        self.log.wait_caught_up(CATCH_UP)?;
        let (_, topologies) = self.log.snapshot();
        if let Some(other) = topologies
            .values()
            .find(|t| t.live.is_some() && t.name != request.name)
        {
            return Err(DeployError::OtherTopologyLive {
                application: self.config.application_id.clone(),
                live: other.name.clone(),
                name: request.name,
            });
        }
        let mut record = topologies
            .get(&request.name)
            .cloned()
            .unwrap_or_else(|| TopologyRecord {
                name: request.name.clone(),
                versions: Vec::new(),
                live: None,
                changed_at: String::new(),
                changed_by: String::new(),
            });
        if let Some(live) = record.live_version() {
            if live.sha256 == sha {
                return Ok(Deployed {
                    version: live.clone(),
                    created: false,
                });
            }
            compat::check(&live.topology, &topology, request.allow_store_drop).map_err(
                |reason| DeployError::Incompatible {
                    name: request.name.clone(),
                    live: live.version,
                    reason,
                },
            )?;
        }
        crate::topics::check_topics(&self.config, &topology)?;

        self.cache
            .store(&request.bytes)
            .map_err(|e| DeployError::Cache(e.to_string()))?;
        self.log.publish_component(&sha, &request.bytes)?;
        let version = VersionRecord {
            version: record.next_version(),
            sha256: sha,
            size: request.bytes.len() as u64,
            deployed_at: now_rfc3339(),
            deployed_by: request.deployed_by.clone(),
            topology,
        };
        record.live = Some(version.version);
        record.push_version(version.clone());
        record.changed_at = version.deployed_at.clone();
        record.changed_by = request.deployed_by;
        self.log.publish_topology(&record)?;
        tracing::info!(
            topology = %record.name, version = version.version, sha256 = %version.sha256,
            by = %version.deployed_by, "deployed"
        );
        Ok(Deployed {
            version,
            created: true,
        })
    }

    /// Makes `version` (default: the one before the live one) live again.
    pub fn rollback(
        &self,
        name: &str,
        version: Option<u32>,
        by: &str,
    ) -> Result<VersionRecord, DeployError> {
        let _writing = self.lock();
        let mut record = self.current(name)?;
        let target = match version {
            Some(v) => v,
            None => record
                .previous_version()
                .ok_or_else(|| DeployError::NothingToRollBackTo(name.to_string()))?,
        };
        let target = record
            .version(target)
            .cloned()
            .ok_or(DeployError::NoSuchVersion {
                name: name.to_string(),
                version: target,
            })?;
        if let Some(live) = record.live_version() {
            // Stores added after the target version are dropped locally;
            // their changelogs stay, so rolling forward restores them.
            compat::check(&live.topology, &target.topology, true).map_err(|reason| {
                DeployError::Incompatible {
                    name: name.to_string(),
                    live: live.version,
                    reason,
                }
            })?;
        }
        // The binary must still be here to be run.
        self.load_version(&target)?;
        record.live = Some(target.version);
        record.changed_at = now_rfc3339();
        record.changed_by = by.to_string();
        self.log.publish_topology(&record)?;
        tracing::info!(topology = name, version = target.version, by, "rolled back");
        Ok(target)
    }

    /// Stops running `name` everywhere; its history stays.
    pub fn delete(&self, name: &str, by: &str) -> Result<TopologyRecord, DeployError> {
        let _writing = self.lock();
        let mut record = self.current(name)?;
        record.live = None;
        record.changed_at = now_rfc3339();
        record.changed_by = by.to_string();
        self.log.publish_topology(&record)?;
        tracing::info!(topology = name, by, "deleted");
        Ok(record)
    }

    /// The record of `name` once the log is read to its end.
    fn current(&self, name: &str) -> Result<TopologyRecord, DeployError> {
        self.log.wait_caught_up(CATCH_UP)?;
        let (_, mut topologies) = self.log.snapshot();
        topologies
            .remove(name)
            .ok_or_else(|| DeployError::NotFound(name.to_string()))
    }

    pub fn list(&self) -> Vec<TopologyRecord> {
        self.log.snapshot().1.into_values().collect()
    }

    pub fn get(&self, name: &str) -> Option<TopologyRecord> {
        self.log.snapshot().1.remove(name)
    }
}
