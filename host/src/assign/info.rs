//! What travels in the group protocol's user data: a member's
//! `SubscriptionInfo` (JoinGroup) and its `AssignmentInfo` (SyncGroup),
//! versioned so a newer Weir can join a group of older ones in a rolling
//! upgrade; and the interactive-query host map built from an assignment.
//!
//! Owns: the meaning and order of the fields of each version. Must never:
//! panic on bytes from the wire (every failure is a `DecodeError`), or
//! decide anything about placement.
//!
//! Layout (big-endian; see `codec`): `u32 version`, `u32 latest supported
//! version`, `u32 body length`, body. Version 2 appends its fields to the
//! version-1 body, so a version-1 reader decodes a version-2 payload's
//! common part and skips the rest. A reader returns the fields of
//! `min(payload version, its own)` and says so in `version`.
//!
//! - Subscription v1: process id (16 bytes), endpoint (flag + string),
//!   threads, topology fingerprint, offset sums (task, i64)*, owned
//!   actives, owned standbys. v2 appends: client tags (string, string)*.
//! - Assignment v1: error code, actives (list, in order), standbys, host
//!   map (endpoint, actives, standbys)*, follow-up flag. v2 appends:
//!   warm-ups, probing rebalance delay in ms (i64, -1 for none).

use std::collections::{BTreeMap, BTreeSet};

use super::codec::{DecodeError, Reader, Writer};
use super::model::{Assignment, ClientState, ProcessId};
use crate::topology::TaskId;

/// The newest user-data version this code writes and reads.
pub const LATEST_VERSION: u32 = 2;

/// `AssignmentInfo::error_code` values.
pub mod error_code {
    pub const NONE: i32 = 0;
    /// The member's topology fingerprint differs from the leader's: it gets
    /// no tasks until it runs the same topology.
    pub const TOPOLOGY_MISMATCH: i32 = 1;
    /// The leader cannot read the member's subscription version.
    pub const UNSUPPORTED_VERSION: i32 = 2;
}

/// A member's subscription user data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// The version of the fields present (see the module doc).
    pub version: u32,
    /// The newest version the member can read: the leader answers every
    /// member in the lowest of these.
    pub latest_supported_version: u32,
    pub process_id: ProcessId,
    pub endpoint: Option<String>,
    pub threads: u32,
    pub task_offset_sums: BTreeMap<TaskId, i64>,
    pub owned_active: BTreeSet<TaskId>,
    pub owned_standby: BTreeSet<TaskId>,
    /// Since version 2.
    pub client_tags: BTreeMap<String, String>,
    pub topology_fingerprint: String,
}

impl SubscriptionInfo {
    /// Encodes at `self.version` (clamped to `1..=LATEST_VERSION`); fields
    /// newer than that version are left out.
    pub fn encode(&self) -> Vec<u8> {
        let version = self.version.clamp(1, LATEST_VERSION);
        let mut w = Writer::default();
        w.bytes(&self.process_id.to_bytes());
        w.opt_string(self.endpoint.as_deref());
        w.u32(self.threads);
        w.string(&self.topology_fingerprint);
        w.len(self.task_offset_sums.len());
        for (task, sum) in &self.task_offset_sums {
            w.task(*task);
            w.i64(*sum);
        }
        w.tasks(self.owned_active.iter());
        w.tasks(self.owned_standby.iter());
        if version >= 2 {
            w.len(self.client_tags.len());
            for (k, v) in &self.client_tags {
                w.string(k);
                w.string(v);
            }
        }
        let latest = self.latest_supported_version.max(version);
        Writer::envelope(version, latest, w)
    }

    /// Decodes with this code's `LATEST_VERSION`.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_as(bytes, LATEST_VERSION)
    }

    /// Decodes as a reader that knows versions up to `reader_version`.
    pub fn decode_as(bytes: &[u8], reader_version: u32) -> Result<Self, DecodeError> {
        let (payload_version, latest, mut r) = Reader::envelope(bytes)?;
        let version = payload_version.min(reader_version.clamp(1, LATEST_VERSION));
        let process_id = ProcessId::from_bytes(r.bytes16("process id")?);
        let endpoint = r.opt_string("endpoint")?;
        let threads = r.u32("threads")?;
        let topology_fingerprint = r.string("topology fingerprint")?;
        let n = r.len("offset sums", 16)?;
        let mut task_offset_sums = BTreeMap::new();
        for _ in 0..n {
            let task = r.task("offset sums")?;
            let sum = r.i64("offset sums")?;
            if task_offset_sums.insert(task, sum).is_some() {
                return Err(DecodeError::Duplicate {
                    what: "offset sums",
                });
            }
        }
        let owned_active = r.task_set("owned active tasks")?;
        let owned_standby = r.task_set("owned standby tasks")?;
        let client_tags = if version >= 2 {
            r.string_map("client tags")?
        } else {
            BTreeMap::new()
        };
        Ok(SubscriptionInfo {
            version,
            latest_supported_version: latest,
            process_id,
            endpoint,
            threads,
            task_offset_sums,
            owned_active,
            owned_standby,
            client_tags,
            topology_fingerprint,
        })
    }

    /// The assignor's view of this member.
    pub fn client_state(&self) -> ClientState {
        ClientState {
            threads: self.threads,
            prev_active: self.owned_active.clone(),
            prev_standby: self.owned_standby.clone(),
            task_offset_sums: self.task_offset_sums.clone(),
            tags: self.client_tags.clone(),
            endpoint: self.endpoint.clone(),
        }
    }
}

/// The tasks one endpoint serves, for interactive queries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostTasks {
    pub active: BTreeSet<TaskId>,
    pub standby: BTreeSet<TaskId>,
}

/// A member's assignment user data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentInfo {
    /// The version of the fields present (see the module doc).
    pub version: u32,
    pub latest_supported_version: u32,
    /// Active tasks, in the order the member should create them.
    pub active: Vec<TaskId>,
    pub standby: BTreeSet<TaskId>,
    /// Since version 2.
    pub warmup: BTreeSet<TaskId>,
    /// Endpoint → tasks, for every member that set `application.server`.
    pub host_map: BTreeMap<String, HostTasks>,
    /// Tasks were held back to be handed over: rejoin at once.
    pub followup_needed: bool,
    /// Since version 2: rejoin after this many ms for a probing rebalance.
    pub probing_rebalance_in_ms: Option<u64>,
    /// `error_code::*`.
    pub error_code: i32,
}

impl AssignmentInfo {
    /// Encodes at `self.version` (clamped to `1..=LATEST_VERSION`).
    pub fn encode(&self) -> Vec<u8> {
        let version = self.version.clamp(1, LATEST_VERSION);
        let mut w = Writer::default();
        w.i32(self.error_code);
        w.tasks(self.active.iter());
        w.tasks(self.standby.iter());
        w.len(self.host_map.len());
        for (endpoint, tasks) in &self.host_map {
            w.string(endpoint);
            w.tasks(tasks.active.iter());
            w.tasks(tasks.standby.iter());
        }
        w.bool(self.followup_needed);
        if version >= 2 {
            w.tasks(self.warmup.iter());
            let delay = self
                .probing_rebalance_in_ms
                .map_or(-1, |ms| i64::try_from(ms).unwrap_or(i64::MAX));
            w.i64(delay);
        }
        let latest = self.latest_supported_version.max(version);
        Writer::envelope(version, latest, w)
    }

    /// Decodes with this code's `LATEST_VERSION`.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_as(bytes, LATEST_VERSION)
    }

    /// Decodes as a reader that knows versions up to `reader_version`.
    pub fn decode_as(bytes: &[u8], reader_version: u32) -> Result<Self, DecodeError> {
        let (payload_version, latest, mut r) = Reader::envelope(bytes)?;
        let version = payload_version.min(reader_version.clamp(1, LATEST_VERSION));
        let error_code = r.i32("error code")?;
        let active = r.task_list("active tasks")?;
        let standby = r.task_set("standby tasks")?;
        let n = r.len("host map", 12)?;
        let mut host_map = BTreeMap::new();
        for _ in 0..n {
            let endpoint = r.string("host map endpoint")?;
            let tasks = HostTasks {
                active: r.task_set("host map actives")?,
                standby: r.task_set("host map standbys")?,
            };
            if host_map.insert(endpoint, tasks).is_some() {
                return Err(DecodeError::Duplicate { what: "host map" });
            }
        }
        let followup_needed = r.bool("follow-up flag")?;
        let (warmup, probing_rebalance_in_ms) = if version >= 2 {
            let warmup = r.task_set("warm-up tasks")?;
            let delay = r.i64("probing rebalance delay")?;
            let delay = match delay {
                -1 => None,
                ms if ms >= 0 => Some(ms as u64),
                other => {
                    return Err(DecodeError::InvalidValue {
                        what: "probing rebalance delay",
                        value: other,
                    });
                }
            };
            (warmup, delay)
        } else {
            (BTreeSet::new(), None)
        };
        Ok(AssignmentInfo {
            version,
            latest_supported_version: latest,
            active,
            standby,
            warmup,
            host_map,
            followup_needed,
            probing_rebalance_in_ms,
            error_code,
        })
    }
}

/// The interactive-query map: for every member with an endpoint, the tasks
/// it serves as active and as standby (warm-ups are left out: they are
/// far behind by definition). Members sharing an endpoint are merged.
pub fn host_map(
    assignment: &Assignment,
    clients: &BTreeMap<ProcessId, ClientState>,
) -> BTreeMap<String, HostTasks> {
    let mut map: BTreeMap<String, HostTasks> = BTreeMap::new();
    for (id, tasks) in &assignment.clients {
        let Some(endpoint) = clients.get(id).and_then(|c| c.endpoint.as_ref()) else {
            continue;
        };
        let entry = map.entry(endpoint.clone()).or_default();
        entry.active.extend(tasks.active.iter().copied());
        entry.standby.extend(tasks.standby.iter().copied());
    }
    map
}

#[cfg(test)]
mod tests {
    use proptest::collection::{btree_map, btree_set, vec};
    use proptest::prelude::*;

    use super::*;
    use crate::assign::model::ClientAssignment;

    fn t(s: u32, p: i32) -> TaskId {
        TaskId {
            subtopology: s,
            partition: p,
        }
    }

    fn subscription() -> SubscriptionInfo {
        SubscriptionInfo {
            version: 2,
            latest_supported_version: 2,
            process_id: ProcessId(0xfeed_0000_0000_0000_0000_0000_0000_beef),
            endpoint: Some("weir-0.weir:8080".into()),
            threads: 4,
            task_offset_sums: [(t(0, 1), 1234), (t(1, 0), -1)].into(),
            owned_active: [t(0, 1)].into(),
            owned_standby: [t(1, 0), t(1, 3)].into(),
            client_tags: [("zone".to_string(), "eu-1a".to_string())].into(),
            topology_fingerprint: "wc:9f86d081".into(),
        }
    }

    fn assignment() -> AssignmentInfo {
        let mut host_map = BTreeMap::new();
        host_map.insert(
            "weir-0.weir:8080".to_string(),
            HostTasks {
                active: [t(0, 1), t(0, 0)].into(),
                standby: [t(0, 2)].into(),
            },
        );
        AssignmentInfo {
            version: 2,
            latest_supported_version: 2,
            active: vec![t(0, 1), t(0, 0)],
            standby: [t(0, 2)].into(),
            warmup: [t(0, 3)].into(),
            host_map,
            followup_needed: true,
            probing_rebalance_in_ms: Some(600_000),
            error_code: error_code::NONE,
        }
    }

    #[test]
    fn subscription_round_trips() {
        let s = subscription();
        assert_eq!(SubscriptionInfo::decode(&s.encode()), Ok(s.clone()));
        let v1 = SubscriptionInfo {
            version: 1,
            client_tags: BTreeMap::new(),
            ..s
        };
        assert_eq!(SubscriptionInfo::decode(&v1.encode()), Ok(v1));
    }

    #[test]
    fn assignment_round_trips() {
        let a = assignment();
        assert_eq!(AssignmentInfo::decode(&a.encode()), Ok(a.clone()));
        let none = AssignmentInfo {
            probing_rebalance_in_ms: None,
            ..a.clone()
        };
        assert_eq!(AssignmentInfo::decode(&none.encode()), Ok(none));
        let v1 = AssignmentInfo {
            version: 1,
            warmup: BTreeSet::new(),
            probing_rebalance_in_ms: None,
            ..a
        };
        assert_eq!(AssignmentInfo::decode(&v1.encode()), Ok(v1));
    }

    #[test]
    fn version_1_reader_reads_the_common_part_of_version_2() {
        let s = subscription();
        let old = SubscriptionInfo::decode_as(&s.encode(), 1).unwrap();
        assert_eq!(
            old,
            SubscriptionInfo {
                version: 1,
                client_tags: BTreeMap::new(),
                ..s
            }
        );
        assert_eq!(old.latest_supported_version, 2, "the leader learns it");

        let a = assignment();
        let old = AssignmentInfo::decode_as(&a.encode(), 1).unwrap();
        assert_eq!(
            old,
            AssignmentInfo {
                version: 1,
                warmup: BTreeSet::new(),
                probing_rebalance_in_ms: None,
                ..a
            }
        );
    }

    #[test]
    fn a_future_version_is_read_as_far_as_known() {
        // A version-3 writer appends a field this code does not know.
        let bytes = subscription().encode();
        let body = &bytes[12..];
        let mut body = body.to_vec();
        body.extend_from_slice(b"\x00\x00\x00\x07future!");
        let mut w = Writer::default();
        w.bytes(&body);
        let future = Writer::envelope(3, 3, w);
        let read = SubscriptionInfo::decode(&future).unwrap();
        assert_eq!(read.version, 2);
        assert_eq!(read.latest_supported_version, 3);
        assert_eq!(read.client_tags, subscription().client_tags);
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let good = subscription().encode();
        for cut in 0..good.len() {
            assert!(
                SubscriptionInfo::decode(&good[..cut]).is_err(),
                "prefix {cut}"
            );
        }
        let good_a = assignment().encode();
        for cut in 0..good_a.len() {
            assert!(
                AssignmentInfo::decode(&good_a[..cut]).is_err(),
                "prefix {cut}"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            SubscriptionInfo::decode(&trailing),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
        assert_eq!(
            SubscriptionInfo::decode(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(DecodeError::UnsupportedVersion { version: 0 })
        );
        // A count of 2^32 - 1 tasks in a tiny payload: refused, not allocated.
        let mut w = Writer::default();
        w.i32(0);
        w.u32(u32::MAX);
        let huge = Writer::envelope(1, 1, w);
        assert!(matches!(
            AssignmentInfo::decode(&huge),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn invalid_values_are_refused() {
        let mut w = Writer::default();
        w.i32(0);
        w.len(1);
        w.task(t(0, 0));
        w.len(0);
        w.len(0);
        w.u8(2); // not a bool
        let bad_bool = Writer::envelope(1, 1, w);
        assert!(matches!(
            AssignmentInfo::decode(&bad_bool),
            Err(DecodeError::InvalidValue { .. })
        ));

        let mut w = Writer::default();
        w.i32(0);
        w.len(1);
        w.u32(0);
        w.i32(-4); // negative partition
        let bad_task = Writer::envelope(1, 1, w);
        assert!(matches!(
            AssignmentInfo::decode(&bad_task),
            Err(DecodeError::InvalidValue { .. })
        ));

        let mut w = Writer::default();
        w.bytes(&[0; 16]);
        w.bool(true);
        w.len(2);
        w.bytes(&[0xff, 0xfe]); // not UTF-8
        let bad_text = Writer::envelope(1, 1, w);
        assert!(matches!(
            SubscriptionInfo::decode(&bad_text),
            Err(DecodeError::NotUtf8 { .. })
        ));

        let mut dup = Writer::default();
        dup.i32(0);
        dup.len(0);
        dup.len(2);
        dup.task(t(0, 1));
        dup.task(t(0, 1));
        let dup_standby = Writer::envelope(1, 1, dup);
        assert!(matches!(
            AssignmentInfo::decode(&dup_standby),
            Err(DecodeError::Duplicate { .. })
        ));
    }

    #[test]
    fn host_map_lists_members_with_endpoints() {
        let mut clients = BTreeMap::new();
        let mut a = ClientState::with_threads(1);
        a.endpoint = Some("a:1".into());
        clients.insert(ProcessId(1), a);
        clients.insert(ProcessId(2), ClientState::with_threads(1));
        let mut assignment = Assignment::default();
        assignment.clients.insert(
            ProcessId(1),
            ClientAssignment {
                active: [t(0, 0)].into(),
                standby: [t(0, 1)].into(),
                warmup: [t(0, 2)].into(),
            },
        );
        assignment.clients.insert(
            ProcessId(2),
            ClientAssignment {
                active: [t(0, 1)].into(),
                ..ClientAssignment::default()
            },
        );
        let map = host_map(&assignment, &clients);
        assert_eq!(map.len(), 1);
        assert_eq!(map["a:1"].active, [t(0, 0)].into());
        assert_eq!(map["a:1"].standby, [t(0, 1)].into());
        let s = subscription();
        assert_eq!(s.client_state().prev_active, s.owned_active);
    }

    fn task() -> impl Strategy<Value = TaskId> {
        (0u32..4, 0i32..64).prop_map(|(s, p)| t(s, p))
    }

    fn text() -> impl Strategy<Value = String> {
        "[a-z0-9.:é-]{0,12}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn any_bytes_decode_without_panic(bytes in vec(any::<u8>(), 0..96), as_v1 in any::<bool>()) {
            let reader = if as_v1 { 1 } else { LATEST_VERSION };
            let _ = SubscriptionInfo::decode_as(&bytes, reader);
            let _ = AssignmentInfo::decode_as(&bytes, reader);
        }

        #[test]
        fn random_subscriptions_round_trip(
            version in 1u32..=2,
            id in any::<u128>(),
            endpoint in proptest::option::of(text()),
            threads in any::<u32>(),
            sums in btree_map(task(), any::<i64>(), 0..8),
            owned_active in btree_set(task(), 0..8),
            owned_standby in btree_set(task(), 0..8),
            tags in btree_map(text(), text(), 0..3),
            fingerprint in text(),
        ) {
            let s = SubscriptionInfo {
                version,
                latest_supported_version: LATEST_VERSION,
                process_id: ProcessId(id),
                endpoint,
                threads,
                task_offset_sums: sums,
                owned_active,
                owned_standby,
                client_tags: if version >= 2 { tags } else { BTreeMap::new() },
                topology_fingerprint: fingerprint,
            };
            prop_assert_eq!(SubscriptionInfo::decode(&s.encode()), Ok(s));
        }

        #[test]
        fn random_assignments_round_trip(
            version in 1u32..=2,
            active in vec(task(), 0..8),
            standby in btree_set(task(), 0..8),
            warmup in btree_set(task(), 0..4),
            hosts in btree_map(text(), (btree_set(task(), 0..4), btree_set(task(), 0..4)), 0..3),
            followup in any::<bool>(),
            probe in proptest::option::of(0u64..(1 << 40)),
            error in any::<i32>(),
        ) {
            let v2 = version >= 2;
            let a = AssignmentInfo {
                version,
                latest_supported_version: LATEST_VERSION,
                active,
                standby,
                warmup: if v2 { warmup } else { BTreeSet::new() },
                host_map: hosts
                    .into_iter()
                    .map(|(k, (active, standby))| (k, HostTasks { active, standby }))
                    .collect(),
                followup_needed: followup,
                probing_rebalance_in_ms: if v2 { probe } else { None },
                error_code: error,
            };
            prop_assert_eq!(AssignmentInfo::decode(&a.encode()), Ok(a));
        }
    }
}
