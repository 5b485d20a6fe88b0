//! Topics on the cluster: checks that sources exist and are
//! co-partitioned, and creates missing sink and changelog topics with the
//! sources' partition count (changelogs compacted), and the deployment log's
//! internal topic. Runs before a release's stream threads start or swap,
//! never on a stream thread.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use super::{TopicPlan, changelogs, source_changelogs};
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
    #[error(
        "sink `{sink}` writes to `{topic}`, one of the application's internal topics \
         (deployment log, changelogs, repartitions); map it to another topic with `topics.{declared}`"
    )]
    InternalSink {
        sink: String,
        topic: String,
        declared: String,
    },
    #[error(
        "{role} topic `{topic}` has cleanup.policy={policy}: retention would delete {what}; \
         set cleanup.policy=compact on it (kafka-configs --alter --add-config cleanup.policy=compact)"
    )]
    NotCompacted {
        role: &'static str,
        topic: String,
        policy: String,
        what: &'static str,
    },
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
/// co-partitioned, that no sink names an internal topic, and that existing
/// changelogs are compacted; returns the sources' partition count. A deploy
/// runs this before it stores anything.
pub fn check_topics(config: &Config, topology: &Topology) -> Result<usize, TopicError> {
    let admin = admin_client(config)?;
    let partitions = source_partitions(&admin, config, topology)?;
    check_sinks(config, topology)?;
    for store in topology
        .stores
        .iter()
        .filter(|s| s.logged && s.source_changelog.is_none())
    {
        let changelog = changelog_topic(&config.application_id, &store.name);
        if partition_count(&admin, config, &changelog)?.is_some() {
            check_compacted(&admin, &changelog, Role::Changelog)?;
        }
    }
    Ok(partitions)
}

/// No sink may write a topic the host writes itself.
fn check_sinks(config: &Config, topology: &Topology) -> Result<(), TopicError> {
    for spec in &topology.sinks {
        let topic = config.topic(&spec.topic);
        if is_internal(&config.application_id, topic) {
            return Err(TopicError::InternalSink {
                sink: spec.name.clone(),
                topic: topic.to_string(),
                declared: spec.topic.clone(),
            });
        }
    }
    Ok(())
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

/// Whether `topic` is one the host writes itself: a processor writing
/// there could forge deployment records or store contents.
fn is_internal(application_id: &str, topic: &str) -> bool {
    topic == crate::deploy::topic_name(application_id)
        || topic.strip_prefix(application_id).is_some_and(|rest| {
            rest.starts_with('-')
                && (rest.ends_with("-changelog") || rest.ends_with("-repartition"))
        })
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
    let changelogs = changelogs(&config.application_id, topology, |t| config.topic(t));
    check_sinks(config, topology)?;
    for sink in sinks.iter().chain(&config.dead_letter_queue) {
        ensure(&admin, config, sink, partitions, Role::Sink)?;
    }
    for (store, changelog) in own_changelogs(topology, &changelogs) {
        // A window store's changelog also expires by time, as Kafka
        // Streams': the store's retention plus a day.
        let role = match topology.store(store).and_then(|s| s.window) {
            Some(w) => Role::WindowChangelog {
                retention_ms: w.retention_ms.saturating_add(86_400_000),
            },
            None => Role::Changelog,
        };
        ensure(&admin, config, changelog, partitions, role)?;
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
        source_changelogs: source_changelogs(topology),
    })
}

/// The changelogs the host creates and writes: not the sources.
fn own_changelogs<'a>(
    topology: &'a Topology,
    changelogs: &'a [(String, String)],
) -> impl Iterator<Item = &'a (String, String)> {
    changelogs.iter().filter(|(store, _)| {
        topology
            .store(store)
            .is_some_and(|s| s.source_changelog.is_none())
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
    WindowChangelog { retention_ms: u64 },
    Repartition,
    Internal,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Sink => "sink",
            Role::Changelog | Role::WindowChangelog { .. } => "changelog",
            Role::Repartition => "repartition",
            Role::Internal => "internal",
        }
    }
}

/// An existing changelog or deployment log must be compacted: with
/// `delete` alone, retention would drop store contents (a restore would
/// miss keys) or component chunks and version history.
fn check_compacted(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    role: Role,
) -> Result<(), TopicError> {
    let options = AdminOptions::new().request_timeout(Some(TIMEOUT));
    let unreachable = |reason: String| TopicError::Create {
        topic: topic.to_string(),
        reason: format!("cannot read its configuration: {reason}"),
    };
    let results = futures_executor::block_on(
        admin.describe_configs([&ResourceSpecifier::Topic(topic)], &options),
    )
    .map_err(|e| unreachable(e.to_string()))?;
    for result in results {
        let resource = result.map_err(|e| unreachable(e.to_string()))?;
        let policy = resource
            .get("cleanup.policy")
            .and_then(|e| e.value.clone())
            .unwrap_or_else(|| "delete".into());
        if !policy.split(',').any(|p| p.trim() == "compact") {
            return Err(TopicError::NotCompacted {
                role: role.name(),
                topic: topic.to_string(),
                policy,
                what: match role {
                    Role::Internal => "component chunks and the version history",
                    _ => "store contents a restore needs",
                },
            });
        }
    }
    Ok(())
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
    let compacted = matches!(
        role,
        Role::Changelog | Role::WindowChangelog { .. } | Role::Internal
    );
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
        if compacted {
            check_compacted(admin, topic, role)?;
        }
        return Ok(());
    }
    let mut new = NewTopic::new(
        topic,
        partitions as i32,
        TopicReplication::Fixed(config.replication_factor),
    );
    let retention;
    if let Role::WindowChangelog { retention_ms } = role {
        retention = retention_ms.to_string();
        new = new
            .set("cleanup.policy", "compact,delete")
            .set("retention.ms", &retention);
    } else if compacted {
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

#[cfg(test)]
mod tests {
    use super::is_internal;

    #[test]
    fn internal_topics_are_recognised() {
        assert!(is_internal("wc", &crate::deploy::topic_name("wc")));
        assert!(is_internal("wc", "wc-counts-changelog"));
        assert!(is_internal("wc", "wc-words-repartition"));
        assert!(!is_internal("wc", "wc-counts"));
        assert!(!is_internal("wc", "other-counts-changelog"));
        assert!(!is_internal("wc", "word-counts"));
    }
}
