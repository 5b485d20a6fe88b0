//! What the deployment log records: per topology name, every version ever
//! deployed and which one is live. Serialized as JSON in the log, so field
//! names are part of the on-disk format: add fields, never rename them.

use serde::{Deserialize, Serialize};

use crate::topology::Topology;

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
}

impl TopologyRecord {
    pub fn version(&self, version: u32) -> Option<&VersionRecord> {
        self.versions.iter().find(|v| v.version == version)
    }

    pub fn live_version(&self) -> Option<&VersionRecord> {
        self.live.and_then(|v| self.version(v))
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
