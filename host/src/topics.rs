//! The topics a topology needs: checks that sources exist and are
//! co-partitioned, and creates missing sink and changelog topics with the
//! sources' partition count (changelogs compacted), and the deployment log's
//! internal topic. Runs before a release's stream threads start or swap,
//! never on a stream thread.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::config::Config;
use crate::topology::{Topology, changelog_topic, repartition_topic};

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("cannot reach Kafka at {servers}: {reason}")]
    Unreachable { servers: String, reason: String },
    #[error(
        "source topic `{topic}` does not exist (create it, or map it with `topics.{declared}` in the config)"
    )]
    MissingSource { topic: String, declared: String },
    #[error(
        "source topics are not co-partitioned: {counts}; every source of one topology needs the same partition count"
    )]
    NotCoPartitioned { counts: String },
    #[error("{role} topic `{topic}` has {actual} partitions but the sources have {expected}")]
    PartitionMismatch {
        role: &'static str,
        topic: String,
        actual: usize,
        expected: usize,
    },
    #[error("cannot create topic `{topic}`: {reason}")]
    Create { topic: String, reason: String },
}

/// The actual topics a topology runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPlan {
    /// Partitions of every source, so tasks `0_0` .. `0_{n-1}`.
    pub partitions: usize,
    /// Topics to subscribe to: sources, then repartition topics.
    pub sources: Vec<String>,
    /// The declared name of each of `sources`, in the same order.
    pub source_names: Vec<String>,
    /// Output topics by output index: sinks, then repartition topics.
    pub sinks: Vec<String>,
    /// (store name, changelog topic) of each logged store.
    pub changelogs: Vec<(String, String)>,
}

impl TopicPlan {
    /// The declared source name of subscribed topic `topic`.
    pub fn source_name(&self, topic: &str) -> Option<&str> {
        let i = self.sources.iter().position(|t| t == topic)?;
        Some(&self.source_names[i])
    }
}

fn admin_client(config: &Config) -> Result<AdminClient<DefaultClientContext>, TopicError> {
    crate::kafka::admin(config)
        .create()
        .map_err(|e| TopicError::Unreachable {
            servers: config.bootstrap_servers.clone(),
            reason: e.to_string(),
        })
}

/// Checks, without changing anything, that the sources exist and are
/// co-partitioned; returns their partition count.
pub fn check_sources(config: &Config, topology: &Topology) -> Result<usize, TopicError> {
    source_partitions(&admin_client(config)?, config, topology)
}

fn source_partitions(
    admin: &AdminClient<DefaultClientContext>,
    config: &Config,
    topology: &Topology,
) -> Result<usize, TopicError> {
    let mut counts = Vec::new();
    for declared in &topology.sources {
        let topic = config.topic(declared);
        match partition_count(admin, config, topic)? {
            Some(n) => counts.push((topic.to_string(), n)),
            None => {
                return Err(TopicError::MissingSource {
                    topic: topic.to_string(),
                    declared: declared.clone(),
                });
            }
        }
    }
    let partitions = counts.first().map_or(0, |(_, n)| *n);
    if counts.iter().any(|(_, n)| *n != partitions) {
        let counts = counts
            .iter()
            .map(|(t, n)| format!("`{t}` has {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(TopicError::NotCoPartitioned { counts });
    }
    Ok(partitions)
}

/// Creates the single-partition compacted topic `topic` the host keeps its
/// own records in (the deployment log) unless it exists.
pub fn ensure_internal(config: &Config, topic: &str) -> Result<(), TopicError> {
    ensure(&admin_client(config)?, config, topic, 1, Role::Internal)
}

/// Checks sources and creates what is missing.
pub fn prepare(config: &Config, topology: &Topology) -> Result<TopicPlan, TopicError> {
    let admin = admin_client(config)?;
    let partitions = source_partitions(&admin, config, topology)?;
    let sources: Vec<String> = topology
        .sources
        .iter()
        .map(|t| config.topic(t).to_string())
        .collect();

    let repartitions: Vec<String> = topology
        .repartitions
        .iter()
        .map(|r| repartition_topic(&config.application_id, r))
        .collect();
    let mut sinks: Vec<String> = topology
        .sinks
        .iter()
        .map(|s| config.topic(&s.topic).to_string())
        .collect();
    let changelogs: Vec<(String, String)> = topology
        .stores
        .iter()
        .filter(|s| s.logged)
        .map(|s| {
            (
                s.name.clone(),
                changelog_topic(&config.application_id, &s.name),
            )
        })
        .collect();
    for sink in &sinks {
        ensure(&admin, config, sink, partitions, Role::Sink)?;
    }
    for (_, changelog) in &changelogs {
        ensure(&admin, config, changelog, partitions, Role::Changelog)?;
    }
    for topic in &repartitions {
        ensure(&admin, config, topic, partitions, Role::Repartition)?;
    }
    let mut source_names = topology.sources.clone();
    source_names.extend(topology.repartitions.iter().cloned());
    let mut sources = sources;
    sources.extend(repartitions.iter().cloned());
    sinks.extend(repartitions);
    Ok(TopicPlan {
        partitions,
        sources,
        source_names,
        sinks,
        changelogs,
    })
}

fn partition_count(
    admin: &AdminClient<DefaultClientContext>,
    config: &Config,
    topic: &str,
) -> Result<Option<usize>, TopicError> {
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(|e| TopicError::Unreachable {
            servers: config.bootstrap_servers.clone(),
            reason: e.to_string(),
        })?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Sink,
    Changelog,
    Repartition,
    Internal,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Sink => "sink",
            Role::Changelog => "changelog",
            Role::Repartition => "repartition",
            Role::Internal => "internal",
        }
    }
}

/// Creates `topic` unless it exists. An existing changelog or repartition
/// topic must have `partitions` partitions (their partition N belongs to
/// task N); a sink may have any count.
fn ensure(
    admin: &AdminClient<DefaultClientContext>,
    config: &Config,
    topic: &str,
    partitions: usize,
    role: Role,
) -> Result<(), TopicError> {
    let compacted = matches!(role, Role::Changelog | Role::Internal);
    if let Some(actual) = partition_count(admin, config, topic)? {
        if role != Role::Sink && actual != partitions {
            let role = role.name();
            return Err(TopicError::PartitionMismatch {
                role,
                topic: topic.to_string(),
                actual,
                expected: partitions,
            });
        }
        return Ok(());
    }
    let mut new = NewTopic::new(
        topic,
        partitions as i32,
        TopicReplication::Fixed(config.replication_factor),
    );
    if compacted {
        new = new.set("cleanup.policy", "compact");
    }
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let results =
        futures_executor::block_on(admin.create_topics([&new], &options)).map_err(|e| {
            TopicError::Create {
                topic: topic.to_string(),
                reason: e.to_string(),
            }
        })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(TopicError::Create {
                    topic: topic.to_string(),
                    reason: code.to_string(),
                });
            }
        }
    }
    tracing::info!(topic, partitions, role = role.name(), "created topic");
    Ok(())
}
