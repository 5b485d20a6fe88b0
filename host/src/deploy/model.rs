//! What the deployment log records: per topology name, every version ever
//! deployed and which one is live. Serialized as JSON in the log, so field
//! names are part of the on-disk format: add fields, never rename them.

use serde::{Deserialize, Serialize};

use crate::topology::Topology;

/// Versions kept in a topology's history record: the record is one Kafka
/// message, so an unbounded history would pass the producer's 1 MB limit
/// after some hundreds of deploys. The oldest go first; the live one stays.
pub const HISTORY_LIMIT: usize = 50;

/// One uploaded version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: u32,
    pub sha256: String,
    pub size: u64,
    /// RFC 3339, UTC.
    pub deployed_at: String,
    pub deployed_by: String,
    /// What `describe()` returned.
    pub topology: Topology,
}

/// The history of one topology name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyRecord {
    pub name: String,
    pub versions: Vec<VersionRecord>,
    /// The version every instance should run; `None` after a delete.
    pub live: Option<u32>,
    /// When and by whom `live` last changed (deploy, rollback or delete).
    pub changed_at: String,
    pub changed_by: String,
    /// Why, when the host changed it itself (an automatic rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Bumped by every write of this record: a deploy validated against
    /// revision N is refused if the record is no longer at N when it is
    /// written (someone else changed it meanwhile).
    #[serde(default)]
    pub revision: u64,
}

impl TopologyRecord {
    pub fn version(&self, version: u32) -> Option<&VersionRecord> {
        self.versions.iter().find(|v| v.version == version)
    }

    pub fn live_version(&self) -> Option<&VersionRecord> {
        self.live.and_then(|v| self.version(v))
    }

    /// Adds `version`, dropping the oldest versions beyond
    /// [`HISTORY_LIMIT`] (never the live one). Version numbers keep
    /// growing: the newest versions are the ones kept.
    pub fn push_version(&mut self, version: VersionRecord) {
        self.versions.push(version);
        while self.versions.len() > HISTORY_LIMIT {
            let Some(oldest) = self
                .versions
                .iter()
                .enumerate()
                .filter(|(_, v)| Some(v.version) != self.live)
                .min_by_key(|(_, v)| v.version)
                .map(|(i, _)| i)
            else {
                break;
            };
            self.versions.remove(oldest);
        }
    }

    pub fn next_version(&self) -> u32 {
        self.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1
    }

    /// The version a plain rollback goes to: the newest one older than live.
    pub fn previous_version(&self) -> Option<u32> {
        let live = self.live?;
        self.versions
            .iter()
            .map(|v| v.version)
            .filter(|v| *v < live)
            .max()
    }
}

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::StoreSpec;

    fn version(n: u32) -> VersionRecord {
        VersionRecord {
            version: n,
            sha256: "ab".repeat(32),
            size: 45_000,
            deployed_at: now_rfc3339(),
            deployed_by: "weir deploy".into(),
            topology: Topology {
                name: "word-count".into(),
                sources: vec!["text-lines".into()],
                sinks: vec![],
                stores: vec![StoreSpec::key_value("counts", true)],
                repartitions: vec!["words".into()],
            },
        }
    }

    #[test]
    fn deploy_number_1000_still_fits_one_message() {
        let mut record = TopologyRecord {
            name: "word-count".into(),
            versions: Vec::new(),
            live: None,
            changed_at: now_rfc3339(),
            changed_by: "test".into(),
            reason: None,
            revision: 0,
        };
        for n in 1..=1000 {
            let v = version(record.next_version());
            assert_eq!(v.version, n);
            // Version 3 was rolled back to and stays live a while.
            if n <= 3 || n == 1000 {
                record.live = Some(n);
            }
            record.push_version(v);
            if n == 999 {
                assert!(record.version(3).is_some(), "the live version is kept");
            }
        }
        assert_eq!(record.versions.len(), HISTORY_LIMIT);
        assert_eq!(record.next_version(), 1001);
        assert!(record.version(1000).is_some());
        assert!(record.version(3).is_none(), "no longer live: pruned");
        let bytes = serde_json::to_vec(&record).unwrap();
        assert!(bytes.len() < 100_000, "{} bytes", bytes.len());
    }
}
