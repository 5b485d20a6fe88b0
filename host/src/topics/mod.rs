//! The topics a topology runs on ([`TopicPlan`]) and the names derived
//! for them; creating and checking them on the cluster is `admin`'s (the
//! server's only). Must not talk to Kafka itself.

#[cfg(feature = "server")]
mod admin;

#[cfg(feature = "server")]
pub use admin::{TopicError, check_topics, ensure_internal, prepare};

use crate::topology::{Topology, changelog_topic};

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
    /// (store name, changelog topic) of each logged store; for a store
    /// restored from its source, that source's topic.
    pub changelogs: Vec<(String, String)>,
    /// Stores whose changelog is their source topic: nothing is written
    /// to it, and the offset they record is the input's.
    pub source_changelogs: Vec<String>,
}

impl TopicPlan {
    /// The declared source name of subscribed topic `topic`.
    pub fn source_name(&self, topic: &str) -> Option<&str> {
        let i = self.sources.iter().position(|t| t == topic)?;
        Some(&self.source_names[i])
    }
}

/// (store, changelog topic) of each logged store: its own
/// `<application.id>-<store>-changelog`, or the topic of the source it is
/// restored from (`topic` maps a declared topic to the actual one).
pub fn changelogs<'a>(
    application_id: &str,
    topology: &'a Topology,
    topic: impl Fn(&'a str) -> &'a str,
) -> Vec<(String, String)> {
    topology
        .stores
        .iter()
        .filter(|s| s.logged)
        .map(|s| {
            let changelog = match &s.source_changelog {
                Some(source) => topic(source).to_string(),
                None => changelog_topic(application_id, &s.name),
            };
            (s.name.clone(), changelog)
        })
        .collect()
}

/// The stores of `topology` restored from their source.
pub fn source_changelogs(topology: &Topology) -> Vec<String> {
    topology
        .stores
        .iter()
        .filter(|s| s.source_changelog.is_some())
        .map(|s| s.name.clone())
        .collect()
}
