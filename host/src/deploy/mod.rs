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
//!
//! Every change is a compare-and-set on the topology record's `revision`:
//! decided against the revision seen when the request arrived, written in
//! a log transaction that fences concurrent writers, and refused as a
//! [`DeployError::Conflict`] if anyone else changed the record meanwhile.

mod cache;
pub mod canary;
pub mod compat;
mod log;
pub mod model;

use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use cache::ComponentCache;
pub use log::{DeploymentLog, LogError, LogWrite, topic_name};
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
    #[error(
        "topology `{name}` changed while this request was handled: {now}; \
         check what is live and try again"
    )]
    Conflict { name: String, now: String },
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

/// What a conflicting writer left live, for the loser's error.
fn describe_live(record: Option<&TopologyRecord>) -> String {
    match record {
        None => "it was created by another deploy".into(),
        Some(r) => match r.live_version() {
            Some(v) => format!(
                "version {} (sha256 {}) is live, set by {} at {}",
                v.version,
                &v.sha256[..12.min(v.sha256.len())],
                r.changed_by,
                r.changed_at
            ),
            None => format!("it was deleted by {} at {}", r.changed_by, r.changed_at),
        },
    }
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

    /// The revision of `name`'s record once the log is read to its end
    /// (0 when there is none): what a request arriving now is based on.
    fn base_revision(&self, name: &str) -> Result<u64, DeployError> {
        self.log.wait_caught_up(CATCH_UP)?;
        Ok(self.log.snapshot().1.get(name).map_or(0, |r| r.revision))
    }

    /// Runs `change` on `name`'s record (None when there is none) inside a
    /// log write, and commits what it returns, as one compare-and-set on
    /// `base`: refused with [`DeployError::Conflict`] if the record is no
    /// longer at `base` or a concurrent writer fences this one. `change`
    /// may answer without writing (`Ok(None)`).
    fn write<T>(
        &self,
        name: &str,
        base: u64,
        mut change: impl FnMut(
            Option<TopologyRecord>,
            &LogWrite<'_>,
        ) -> Result<Result<(TopologyRecord, T), T>, DeployError>,
    ) -> Result<T, DeployError> {
        const ATTEMPTS: u32 = 3;
        let _writing = self.lock();
        for attempt in 1.. {
            let outcome = (|| {
                let write = self.log.begin_write()?;
                let current = self.log.snapshot().1.remove(name);
                if current.as_ref().map_or(0, |r| r.revision) != base {
                    return Err(DeployError::Conflict {
                        name: name.to_string(),
                        now: describe_live(current.as_ref()),
                    });
                }
                match change(current, &write)? {
                    Err(answer) => Ok(answer),
                    Ok((mut record, answer)) => {
                        record.revision = base + 1;
                        write.commit(&record)?;
                        Ok(answer)
                    }
                }
            })();
            match outcome {
                // Another instance began a write meanwhile. If it changed
                // this record, that is the conflict; if it wrote nothing
                // here (a refused deploy, another name), try again.
                Err(DeployError::Log(LogError::Fenced { .. })) => {
                    if let Some(conflict) = self.changed_since(name, base) {
                        return Err(conflict);
                    }
                    if attempt == ATTEMPTS {
                        return Err(DeployError::Conflict {
                            name: name.to_string(),
                            now: "other instances kept writing to the deployment log".into(),
                        });
                    }
                }
                other => return other,
            }
        }
        unreachable!("the loop returns")
    }

    /// The conflict a fenced write reports if the fencing writer changed
    /// `name`'s record (waiting briefly for its write to land).
    fn changed_since(&self, name: &str, base: u64) -> Option<DeployError> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let (seen, topologies) = self.log.snapshot();
            let record = topologies.get(name);
            if record.map_or(0, |r| r.revision) != base {
                return Some(DeployError::Conflict {
                    name: name.to_string(),
                    now: describe_live(record),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.log.wait_for_change(seen, left);
        }
    }

    /// Validates and records a new version; every instance then swaps to it.
    pub fn deploy(&self, request: DeployRequest) -> Result<Deployed, DeployError> {
        check_name(&request.name)?;
        // Decided against the record as it is now; compiling takes a while,
        // and a deploy that lands meanwhile makes this one a conflict.
        let base = self.base_revision(&request.name)?;
        let sha = hex::encode(Sha256::digest(&request.bytes));
        if let Some(live) = self
            .get(&request.name)
            .and_then(|r| r.live_version().cloned())
            && live.sha256 == sha
        {
            return Ok(Deployed {
                version: live,
                created: false,
            });
        }
        let component = self.load(&format!("{}.wasm", request.name), &request.bytes, &sha)?;
        let topology = component.topology().as_ref().clone();
        let name = request.name.clone();
        self.write(&name, base, |current, write| {
            let (_, topologies) = self.log.snapshot();
            if let Some(other) = topologies
                .values()
                .find(|t| t.live.is_some() && t.name != request.name)
            {
                return Err(DeployError::OtherTopologyLive {
                    application: self.config.application_id.clone(),
                    live: other.name.clone(),
                    name: request.name.clone(),
                });
            }
            let mut record = current.unwrap_or_else(|| TopologyRecord {
                name: request.name.clone(),
                versions: Vec::new(),
                live: None,
                changed_at: String::new(),
                changed_by: String::new(),
                reason: None,
                revision: 0,
            });
            if let Some(live) = record.live_version() {
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
            write.publish_component(&sha, &request.bytes)?;
            let version = VersionRecord {
                version: record.next_version(),
                sha256: sha.clone(),
                size: request.bytes.len() as u64,
                deployed_at: now_rfc3339(),
                deployed_by: request.deployed_by.clone(),
                topology: topology.clone(),
            };
            record.live = Some(version.version);
            record.push_version(version.clone());
            record.changed_at = version.deployed_at.clone();
            record.changed_by = request.deployed_by.clone();
            record.reason = None;
            Ok(Ok((
                record,
                Deployed {
                    version,
                    created: true,
                },
            )))
        })
        .inspect(|d| {
            if d.created {
                let v = &d.version;
                tracing::info!(
                    topology = %name, version = v.version, sha256 = %v.sha256,
                    by = %v.deployed_by, "deployed"
                );
            }
        })
    }

    /// Makes `version` (default: the one before the live one) live again.
    pub fn rollback(
        &self,
        name: &str,
        version: Option<u32>,
        by: &str,
    ) -> Result<VersionRecord, DeployError> {
        let base = self.base_revision(name)?;
        self.rollback_from(name, base, version, by, None)
    }

    /// A rollback decided against revision `base` of `name`'s record, with
    /// the reason recorded when the host does it itself.
    pub fn rollback_from(
        &self,
        name: &str,
        base: u64,
        version: Option<u32>,
        by: &str,
        reason: Option<String>,
    ) -> Result<VersionRecord, DeployError> {
        let target = self.write(name, base, |current, _| {
            let mut record = current.ok_or_else(|| DeployError::NotFound(name.to_string()))?;
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
            record.reason = reason.clone();
            Ok(Ok((record, target)))
        })?;
        tracing::info!(topology = name, version = target.version, by, reason = ?reason, "rolled back");
        Ok(target)
    }

    /// Stops running `name` everywhere; its history stays.
    pub fn delete(&self, name: &str, by: &str) -> Result<TopologyRecord, DeployError> {
        let base = self.base_revision(name)?;
        self.write(name, base, |current, _| {
            let mut record = current.ok_or_else(|| DeployError::NotFound(name.to_string()))?;
            record.live = None;
            record.changed_at = now_rfc3339();
            record.changed_by = by.to_string();
            record.reason = None;
            Ok(Ok((record, ())))
        })?;
        tracing::info!(topology = name, by, "deleted");
        self.get(name)
            .ok_or_else(|| DeployError::NotFound(name.to_string()))
    }

    pub fn list(&self) -> Vec<TopologyRecord> {
        self.log.snapshot().1.into_values().collect()
    }

    pub fn get(&self, name: &str) -> Option<TopologyRecord> {
        self.log.snapshot().1.remove(name)
    }
}
