//! What a component declared in `describe()`, checked, and the names derived
//! from it: task ids, changelog topics, store directory names.
//!
//! This is the host's only view of a processor's shape; there is no second
//! manifest. Must not talk to Kafka or touch disk.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A topology that fails validation, naming the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("topology `{topology}` declares no source topic")]
    NoSources { topology: String },
    #[error("topology `{topology}`: {what} `{name}` is declared twice")]
    Duplicate {
        topology: String,
        what: &'static str,
        name: String,
    },
    #[error("topology `{topology}`: store `{store}`: {reason}")]
    BadStore {
        topology: String,
        store: String,
        reason: String,
    },
    #[error("topology `{topology}`: {what} name `{name}` is invalid: {reason}")]
    BadName {
        topology: String,
        what: &'static str,
        name: String,
        reason: &'static str,
    },
}

/// Store kind, as declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    KeyValue,
    Window,
}

/// A window store's windows (see [`crate::store::window`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    pub size_ms: u64,
    pub grace_ms: u64,
    pub retention_ms: u64,
}

/// How a store's keys or values are encoded, as the processor declares
/// it (the guest SDK's codecs): what interactive queries decode them with.
/// Integers are big-endian; signed ones with the sign bit flipped, so byte
/// order is numeric order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    /// Opaque bytes: nothing declared.
    #[default]
    Bytes,
    Utf8,
    Json,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
}

impl DataFormat {
    pub const ALL: [DataFormat; 11] = [
        DataFormat::Bytes,
        DataFormat::Utf8,
        DataFormat::Json,
        DataFormat::U8,
        DataFormat::U16,
        DataFormat::U32,
        DataFormat::U64,
        DataFormat::I8,
        DataFormat::I16,
        DataFormat::I32,
        DataFormat::I64,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DataFormat::Bytes => "bytes",
            DataFormat::Utf8 => "utf8",
            DataFormat::Json => "json",
            DataFormat::U8 => "u8",
            DataFormat::U16 => "u16",
            DataFormat::U32 => "u32",
            DataFormat::U64 => "u64",
            DataFormat::I8 => "i8",
            DataFormat::I16 => "i16",
            DataFormat::I32 => "i32",
            DataFormat::I64 => "i64",
        }
    }

    /// The format called `name` (as [`DataFormat::name`] gives it).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Bytes of an integer format, and whether it is signed.
    pub fn integer(self) -> Option<(usize, bool)> {
        match self {
            DataFormat::U8 => Some((1, false)),
            DataFormat::U16 => Some((2, false)),
            DataFormat::U32 => Some((4, false)),
            DataFormat::U64 => Some((8, false)),
            DataFormat::I8 => Some((1, true)),
            DataFormat::I16 => Some((2, true)),
            DataFormat::I32 => Some((4, true)),
            DataFormat::I64 => Some((8, true)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreSpec {
    pub name: String,
    pub kind: StoreKind,
    pub logged: bool,
    pub persistent: bool,
    /// Declared encodings (older deployment records have none: bytes).
    #[serde(default)]
    pub key_format: DataFormat,
    #[serde(default)]
    pub value_format: DataFormat,
    /// For window stores only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowSpec>,
    /// The declared source this table's store is restored from, instead
    /// of a changelog topic of its own (Kafka Streams' source-topic
    /// reuse): the store holds that source's records as they arrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_changelog: Option<String>,
}

impl StoreSpec {
    /// A logged key-value store `name` of bytes (no declared formats), on
    /// disk when `persistent`.
    pub fn key_value(name: &str, persistent: bool) -> Self {
        StoreSpec {
            name: name.to_string(),
            kind: StoreKind::KeyValue,
            logged: true,
            persistent,
            key_format: DataFormat::default(),
            value_format: DataFormat::default(),
            window: None,
            source_changelog: None,
        }
    }

    /// What is wrong with this store's source changelog, if anything.
    fn source_changelog_problem(&self, topology: &Topology) -> Option<String> {
        let source = self.source_changelog.as_ref()?;
        if !topology.sources.contains(source) {
            Some(format!(
                "its source changelog `{source}` is not one of the topology's sources"
            ))
        } else if !self.logged {
            Some("a store restored from its source must be logged".into())
        } else if self.kind != StoreKind::KeyValue {
            Some("only a key-value store can be restored from its source".into())
        } else {
            let shared = topology
                .stores
                .iter()
                .any(|s| s.name != self.name && s.source_changelog.as_ref() == Some(source));
            shared.then(|| format!("source `{source}` is the changelog of another store too"))
        }
    }

    /// What is wrong with this store's window declaration, if anything.
    fn window_problem(&self) -> Option<String> {
        match (self.kind, &self.window) {
            (StoreKind::KeyValue, None) => None,
            (StoreKind::KeyValue, Some(_)) => {
                Some("a key-value store cannot have a window declaration".into())
            }
            (StoreKind::Window, None) => Some("a window store needs its window size".into()),
            (StoreKind::Window, Some(w)) if w.size_ms == 0 => {
                Some("window size must be at least 1 ms".into())
            }
            (StoreKind::Window, Some(w))
                if w.retention_ms < w.size_ms.saturating_add(w.grace_ms) =>
            {
                Some(format!(
                    "retention {} ms is shorter than window size {} ms + grace {} ms",
                    w.retention_ms, w.size_ms, w.grace_ms
                ))
            }
            (StoreKind::Window, Some(_)) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkSpec {
    pub name: String,
    pub topic: String,
}

/// A processor's declared shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    pub name: String,
    pub sources: Vec<String>,
    pub sinks: Vec<SinkSpec>,
    pub stores: Vec<StoreSpec>,
    /// Repartition names; each is both a sink and a source of this topology.
    #[serde(default)]
    pub repartitions: Vec<String>,
}

impl Topology {
    /// Checks names and uniqueness. Names become topic names and directory
    /// names, so they are held to Kafka's topic-name alphabet.
    pub fn validate(&self) -> Result<(), TopologyError> {
        let topology = || self.name.clone();
        check_name(&self.name, "topology", &self.name)?;
        if self.sources.is_empty() {
            return Err(TopologyError::NoSources {
                topology: topology(),
            });
        }
        let unique = |what: &'static str, names: Vec<&String>| -> Result<(), TopologyError> {
            let mut seen = BTreeSet::new();
            for name in names {
                check_name(&self.name, what, name)?;
                if !seen.insert(name) {
                    return Err(TopologyError::Duplicate {
                        topology: topology(),
                        what,
                        name: name.clone(),
                    });
                }
            }
            Ok(())
        };
        unique("source topic", self.sources.iter().collect())?;
        unique(
            "sink or repartition",
            self.sinks
                .iter()
                .map(|s| &s.name)
                .chain(&self.repartitions)
                .collect(),
        )?;
        unique(
            "source or repartition",
            self.sources.iter().chain(&self.repartitions).collect(),
        )?;
        unique("sink topic", self.sinks.iter().map(|s| &s.topic).collect())?;
        unique("store", self.stores.iter().map(|s| &s.name).collect())?;
        // Store names are directories beside the state directory's own
        // dot-files (`.lock`, `.process-id`, `.components`).
        if let Some(store) = self.stores.iter().find(|s| s.name.starts_with('.')) {
            return Err(TopologyError::BadName {
                topology: topology(),
                what: "store",
                name: store.name.clone(),
                reason: "must not start with `.`",
            });
        }
        for store in &self.stores {
            let problem = store
                .window_problem()
                .or_else(|| store.source_changelog_problem(self));
            if let Some(reason) = problem {
                return Err(TopologyError::BadStore {
                    topology: topology(),
                    store: store.name.clone(),
                    reason,
                });
            }
        }
        Ok(())
    }

    pub fn store(&self, name: &str) -> Option<&StoreSpec> {
        self.stores.iter().find(|s| s.name == name)
    }

    /// Names a processor may forward to: sinks, then repartitions.
    pub fn output_names(&self) -> impl Iterator<Item = &str> {
        self.sinks
            .iter()
            .map(|s| s.name.as_str())
            .chain(self.repartitions.iter().map(String::as_str))
    }
}

/// Why `name` cannot be a topic or directory name part, if it cannot: the
/// one rule for application ids, topology, store, sink and deployment names.
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty")
    } else if name.len() > 200 {
        Some("longer than 200 characters")
    } else if name == "." || name == ".." {
        Some("`.` and `..` are not allowed")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Some("only [A-Za-z0-9._-] are allowed")
    } else {
        None
    }
}

fn check_name(topology: &str, what: &'static str, name: &str) -> Result<(), TopologyError> {
    match name_problem(name) {
        None => Ok(()),
        Some(reason) => Err(TopologyError::BadName {
            topology: topology.to_string(),
            what,
            name: name.to_string(),
            reason,
        }),
    }
}

/// The changelog topic of `store`: `<application.id>-<store>-changelog`.
pub fn changelog_topic(application_id: &str, store: &str) -> String {
    format!("{application_id}-{store}-changelog")
}

/// The repartition topic `name`: `<application.id>-<name>-repartition`.
pub fn repartition_topic(application_id: &str, name: &str) -> String {
    format!("{application_id}-{name}-repartition")
}

/// A task: one sub-topology on one partition of its sources. Displayed and
/// parsed Kafka Streams' way, `<subtopology>_<partition>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct TaskId {
    pub subtopology: u32,
    pub partition: i32,
}

impl TaskId {
    /// Weir runs one sub-topology per component, numbered 0.
    pub fn for_partition(partition: i32) -> Self {
        TaskId {
            subtopology: 0,
            partition,
        }
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

impl FromStr for TaskId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once('_')
            .ok_or_else(|| format!("`{s}` is not a task id"))?;
        let subtopology = a.parse().map_err(|_| format!("`{s}` is not a task id"))?;
        let partition: i32 = b.parse().map_err(|_| format!("`{s}` is not a task id"))?;
        if partition < 0 {
            return Err(format!("`{s}` is not a task id"));
        }
        Ok(TaskId {
            subtopology,
            partition,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        Topology {
            name: "wc".into(),
            sources: vec!["in".into()],
            sinks: vec![SinkSpec {
                name: "out".into(),
                topic: "out-topic".into(),
            }],
            stores: vec![StoreSpec::key_value("counts", true)],
            repartitions: vec!["words".into()],
        }
    }

    #[test]
    fn a_well_formed_topology_passes() {
        topology().validate().unwrap();
    }

    #[test]
    fn problems_are_named() {
        let mut t = topology();
        t.sources.clear();
        assert_eq!(
            t.validate().unwrap_err().to_string(),
            "topology `wc` declares no source topic"
        );
        let mut t = topology();
        t.stores.push(t.stores[0].clone());
        assert_eq!(
            t.validate().unwrap_err().to_string(),
            "topology `wc`: store `counts` is declared twice"
        );
        let mut t = topology();
        t.repartitions.push("out".into());
        assert_eq!(
            t.validate().unwrap_err().to_string(),
            "topology `wc`: sink or repartition `out` is declared twice"
        );
        let mut t = topology();
        t.stores[0].name = "../etc".into();
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("store name `../etc` is invalid")
        );
        let mut t = topology();
        t.stores[0].name = ".process-id".into();
        let err = t.validate().unwrap_err().to_string();
        assert!(err.contains("must not start with `.`"), "{err}");
    }

    #[test]
    fn a_source_changelog_must_be_a_logged_key_value_stores_own_source() {
        let reuse = |source: &str| StoreSpec {
            source_changelog: Some(source.into()),
            ..StoreSpec::key_value("customers", true)
        };
        let mut t = topology();
        t.stores.push(reuse("in"));
        t.validate().unwrap();
        let problem = |t: &Topology| t.validate().unwrap_err().to_string();

        let mut bad = t.clone();
        bad.stores[1] = reuse("words");
        assert_eq!(
            problem(&bad),
            "topology `wc`: store `customers`: its source changelog `words` is not one of the topology's sources"
        );
        let mut bad = t.clone();
        bad.stores[1].logged = false;
        assert!(
            problem(&bad).contains("must be logged"),
            "{}",
            problem(&bad)
        );
        let mut bad = t.clone();
        bad.stores.push(StoreSpec {
            name: "again".into(),
            ..reuse("in")
        });
        assert!(problem(&bad).contains("the changelog of another store too"));
    }

    #[test]
    fn task_ids_round_trip() {
        let id: TaskId = "0_12".parse().unwrap();
        assert_eq!(id, TaskId::for_partition(12));
        assert_eq!(id.to_string(), "0_12");
        assert!("0-1".parse::<TaskId>().is_err());
        assert!("0_-1".parse::<TaskId>().is_err());
    }

    #[test]
    fn changelog_names_follow_kafka_streams() {
        assert_eq!(changelog_topic("app", "counts"), "app-counts-changelog");
        assert_eq!(repartition_topic("app", "words"), "app-words-repartition");
    }
}
