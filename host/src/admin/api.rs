//! The admin API's bodies, one type per answer, shared by the server
//! (`admin`), the `weir` CLI and tests: a field renamed here is renamed for
//! all of them. JSON field names are part of the public API: add fields,
//! never rename them.

use serde::{Deserialize, Serialize};

use crate::deploy::TopologyRecord;
pub use crate::lifecycle::State;
pub use crate::task::TaskStatus;
pub use crate::topology::Topology;

/// Any refused request: what was wrong, naming the topology, version or
/// setting involved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
}

/// `GET /v1/tasks`: this instance and the tasks it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TasksReply {
    pub application_id: String,
    pub client_id: String,
    pub state: State,
    pub tasks: Vec<TaskStatus>,
}

/// One version of a topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionReply {
    pub version: u32,
    pub sha256: String,
    pub size: u64,
    /// RFC 3339, UTC.
    pub deployed_at: String,
    pub deployed_by: String,
    /// The version every instance runs.
    pub live: bool,
    /// What the component's `describe()` returned.
    pub topology: Topology,
}

/// A topology's history: `GET /v1/topologies/{name}`, the items of
/// `GET /v1/topologies`, and `DELETE`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyReply {
    pub name: String,
    /// `None` after a delete.
    pub live_version: Option<u32>,
    pub changed_at: String,
    pub changed_by: String,
    /// Why, when the host changed it itself (an automatic rollback).
    pub change_reason: Option<String>,
    pub revision: u64,
    pub versions: Vec<VersionReply>,
    /// This instance's tasks, in `GET /v1/topologies/{name}` of the live
    /// topology only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TaskStatus>>,
}

impl From<&TopologyRecord> for TopologyReply {
    fn from(record: &TopologyRecord) -> Self {
        TopologyReply {
            name: record.name.clone(),
            live_version: record.live,
            changed_at: record.changed_at.clone(),
            changed_by: record.changed_by.clone(),
            change_reason: record.reason.clone(),
            revision: record.revision,
            versions: record
                .versions
                .iter()
                .map(|v| VersionReply {
                    version: v.version,
                    sha256: v.sha256.clone(),
                    size: v.size,
                    deployed_at: v.deployed_at.clone(),
                    deployed_by: v.deployed_by.clone(),
                    live: record.live == Some(v.version),
                    topology: v.topology.clone(),
                })
                .collect(),
            tasks: None,
        }
    }
}

/// `GET /v1/topologies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologiesReply {
    pub topologies: Vec<TopologyReply>,
}

/// `PUT /v1/topologies/{name}`: 201 with `created`, or 200 when the same
/// bytes were already live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployReply {
    pub version: u32,
    pub sha256: String,
    pub created: bool,
    pub topology: Topology,
}

/// `POST /v1/topologies/{name}/rollback`: the version live now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackReply {
    pub version: u32,
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::VersionRecord;

    #[test]
    fn a_topology_reply_marks_the_live_version_and_round_trips() {
        let version = |n: u32| VersionRecord {
            version: n,
            sha256: format!("{n:064}"),
            size: 10,
            deployed_at: "2026-11-26T12:00:00Z".into(),
            deployed_by: "ci".into(),
            topology: Topology {
                name: "word-count".into(),
                sources: vec!["text-lines".into()],
                sinks: Vec::new(),
                stores: Vec::new(),
                repartitions: Vec::new(),
            },
        };
        let record = TopologyRecord {
            name: "word-count".into(),
            versions: vec![version(1), version(2)],
            live: Some(1),
            changed_at: "2026-11-26T12:01:00Z".into(),
            changed_by: "rollback".into(),
            reason: Some("version 2 failed on every task".into()),
            revision: 3,
        };
        let reply = TopologyReply::from(&record);
        assert_eq!(
            reply.versions.iter().map(|v| v.live).collect::<Vec<_>>(),
            vec![true, false]
        );
        let json = serde_json::to_value(&reply).unwrap();
        assert_eq!(json["live_version"], 1);
        assert_eq!(json["change_reason"], "version 2 failed on every task");
        assert!(json.get("tasks").is_none());
        let back: TopologyReply = serde_json::from_value(json).unwrap();
        assert_eq!(back, reply);
    }
}
