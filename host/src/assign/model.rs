//! The assignor's vocabulary: what the leader knows about each process and
//! task (`ClientState`, `TaskSpec`, `AssignorConfig`) and what it hands back
//! (`Assignment`, `ClientAssignment`).
//!
//! Owns: these plain data types and the one lag rule every placement uses
//! (`ClientState::lag`). Must never: compute placements, do I/O, or hold
//! anything whose iteration order is not deterministic (no `HashMap`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::topology::TaskId;

/// A Weir process, identified by the UUID it keeps in its state directory
/// (as Kafka Streams does), so a restarted process is recognised as the
/// owner of the state it left on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessId(pub u128);

impl ProcessId {
    /// The id from the 16 bytes of a UUID (big-endian, as written).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        ProcessId(u128::from_be_bytes(bytes))
    }

    /// The 16 bytes of the UUID, big-endian.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for ProcessId {
    /// The usual `8-4-4-4-12` hex form of a UUID.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xffff_ffff_ffff
        )
    }
}

/// What one process told the leader in its subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientState {
    /// Number of stream threads: the process's capacity. Zero counts as one.
    pub threads: u32,
    /// Tasks this process ran as active before this rebalance.
    pub prev_active: BTreeSet<TaskId>,
    /// Tasks this process kept as standby (or warm-up) before this rebalance.
    pub prev_standby: BTreeSet<TaskId>,
    /// Sum over a task's changelog partitions of the offsets its local state
    /// has reached, for every task with state on this process's disk.
    /// Negative values mean "unknown" and count as no state.
    pub task_offset_sums: BTreeMap<TaskId, i64>,
    /// Client tags (`client.tag.*`), used for rack-aware standby placement.
    pub tags: BTreeMap<String, String>,
    /// `application.server`, for the interactive-query host map.
    pub endpoint: Option<String>,
}

impl ClientState {
    /// A process with `threads` threads and nothing else known.
    #[cfg(test)]
    pub fn with_threads(threads: u32) -> Self {
        ClientState {
            threads,
            ..ClientState::default()
        }
    }

    /// Threads as a capacity weight (never zero).
    pub(crate) fn capacity(&self) -> u64 {
        u64::from(self.threads.max(1))
    }

    /// How far this process's local state of `task` is behind the
    /// changelogs' end: zero where the task was running as active; the end
    /// offset sum where there is no (or unknown) local state; never negative.
    pub fn lag(&self, task: &TaskSpec) -> i64 {
        if self.prev_active.contains(&task.id) {
            return 0;
        }
        let end = task.end_offset_sum.max(0);
        match self.task_offset_sums.get(&task.id) {
            Some(&sum) if sum >= 0 => end.saturating_sub(sum).max(0),
            _ => end,
        }
    }
}

/// One task the assignor must place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSpec {
    pub id: TaskId,
    /// Whether the task has state stores (and so changelogs, standbys and
    /// warm-ups). Stateless tasks are placed by balance and stickiness only.
    pub stateful: bool,
    /// Sum of the end offsets of the task's changelog partitions.
    pub end_offset_sum: i64,
}

impl TaskSpec {
    pub fn stateless(id: TaskId) -> Self {
        TaskSpec {
            id,
            stateful: false,
            end_offset_sum: 0,
        }
    }

    pub fn stateful(id: TaskId, end_offset_sum: i64) -> Self {
        TaskSpec {
            id,
            stateful: true,
            end_offset_sum,
        }
    }
}

/// The assignor's settings, named as in Kafka Streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignorConfig {
    /// `num.standby.replicas`: standbys per stateful task.
    pub num_standby_replicas: u32,
    /// `acceptable.recovery.lag`: a process whose lag on a task is at most
    /// this is "caught up" and may take the task over at once.
    pub acceptable_recovery_lag: i64,
    /// `max.warmup.replicas`: warm-ups placed in one assignment, in total.
    pub max_warmup_replicas: u32,
    /// `rack.aware.assignment.tags`: client tag keys whose values standbys
    /// should differ on.
    pub rack_aware_assignment_tags: Vec<String>,
}

impl Default for AssignorConfig {
    fn default() -> Self {
        AssignorConfig {
            num_standby_replicas: 0,
            acceptable_recovery_lag: 10_000,
            max_warmup_replicas: 2,
            rack_aware_assignment_tags: Vec::new(),
        }
    }
}

/// What one process is to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientAssignment {
    pub active: BTreeSet<TaskId>,
    pub standby: BTreeSet<TaskId>,
    /// Warm-up replicas: standbys placed where balance wants the active to
    /// move once they have caught up (run exactly like standbys).
    pub warmup: BTreeSet<TaskId>,
}

/// The whole group's assignment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    /// One entry for every process that took part, even an idle one.
    pub clients: BTreeMap<ProcessId, ClientAssignment>,
    /// Warm-ups were placed: the leader should schedule a probing rebalance
    /// (`probing.rebalance.interval.ms`) to move tasks once they catch up.
    pub probing_rebalance_needed: bool,
}

impl Assignment {
    /// The process each task is active on.
    #[cfg(test)]
    pub fn active_owners(&self) -> BTreeMap<TaskId, ProcessId> {
        let mut owners = BTreeMap::new();
        for (pid, client) in &self.clients {
            for task in &client.active {
                owners.insert(*task, *pid);
            }
        }
        owners
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(p: i32) -> TaskId {
        TaskId::for_partition(p)
    }

    #[test]
    fn lag_rules() {
        let spec = TaskSpec::stateful(t(0), 500);
        let mut c = ClientState::with_threads(1);
        assert_eq!(c.lag(&spec), 500, "no local state: the whole changelog");
        c.task_offset_sums.insert(t(0), 450);
        assert_eq!(c.lag(&spec), 50);
        c.task_offset_sums.insert(t(0), 900);
        assert_eq!(c.lag(&spec), 0, "clamped at zero");
        c.task_offset_sums.insert(t(0), -1);
        assert_eq!(c.lag(&spec), 500, "unknown counts as no state");
        c.prev_active.insert(t(0));
        assert_eq!(c.lag(&spec), 0, "a running active has no lag");
        let odd = TaskSpec::stateful(t(0), -7);
        assert_eq!(ClientState::default().lag(&odd), 0);
    }

    #[test]
    fn process_id_prints_as_uuid() {
        let id = ProcessId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(id.to_string(), "01234567-89ab-cdef-0011-223344556677");
        assert_eq!(ProcessId::from_bytes(id.to_bytes()), id);
        assert_eq!(ClientState::with_threads(0).capacity(), 1);
    }
}
