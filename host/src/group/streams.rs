//! This process's place in the streams group: the one [`Membership`] of
//! the process, what its subscription says, what the leader's assignment
//! gave it, and which stream thread runs which of its tasks.
//!
//! ```text
//! Membership ──events──▶ event thread ──▶ GroupState { epoch, per-thread targets, lost }
//!     ▲                                          │ update_for(thread, seen)
//!     │ subscription(): owned tasks, offset sums  ▼
//!     └──────────────── applied(thread, epoch, owned) ◀── stream threads
//!                        (last one to apply a follow-up epoch asks to rejoin)
//! ```
//!
//! Cooperative: a thread keeps every task that stays in its target and
//! never stops it; tasks that leave are committed and closed first, and the
//! process rejoins (the follow-up rebalance) only once every thread has let
//! them go, so the leader can hand them to their new owner.
//!
//! Must never touch tasks, consumers or stores itself: threads apply their
//! targets in their own loop, between batches.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::GroupMetadata;
use super::subscription::{PlanView, leader_assignment, subscription_info};
use crate::assign::{
    AssignmentInfo, ClientAssignment, HostTasks, ProcessId, distribute_to_threads,
};
use crate::config::Config;
use crate::lifecycle::Lifecycle;
use crate::member::{
    Generation, LeaderAssignor, MemberMetadata, Membership, MembershipConfig, MembershipError,
    MembershipEvent, Subscription, SubscriptionProvider,
};
use crate::metrics::Metrics;
use crate::store::StateDirectory;
use crate::topics::TopicPlan;
use crate::topology::{TaskId, Topology};

/// What the group is built from.
pub struct StreamsGroupSetup {
    pub config: Arc<Config>,
    pub topology: Topology,
    pub plan: Arc<TopicPlan>,
    /// Where offset sums and the process id come from (`None`: in-memory
    /// state only, nothing to report).
    pub dirs: Option<Arc<StateDirectory>>,
    pub lifecycle: Arc<Lifecycle>,
    pub metrics: Arc<Metrics>,
}

/// A stream thread's share of a new assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadUpdate {
    pub epoch: u64,
    /// The active tasks this thread should run now.
    pub active: BTreeSet<TaskId>,
    /// Membership was lost since the thread's last update: close every task
    /// without committing before taking `active`.
    pub lost: bool,
}

/// The group as this process's stream threads see it.
pub struct StreamsGroup {
    shared: Arc<Shared>,
    membership: Membership,
}

/// What the membership thread's callbacks and the event thread share.
struct Shared {
    config: Arc<Config>,
    threads: usize,
    process_id: ProcessId,
    dirs: Option<Arc<StateDirectory>>,
    lifecycle: Arc<Lifecycle>,
    metrics: Arc<Metrics>,
    plan: Mutex<PlanView>,
    state: Mutex<GroupState>,
    changed: Condvar,
}

#[derive(Default)]
struct GroupState {
    /// Bumped on every assignment and every loss.
    epoch: u64,
    lost_epoch: u64,
    targets: Vec<BTreeSet<TaskId>>,
    /// Per thread: the last epoch applied (`u64::MAX`: thread stopped).
    applied: Vec<u64>,
    /// Per thread: the tasks it runs after its last update.
    owned: Vec<BTreeSet<TaskId>>,
    /// Rejoin once every thread has applied this epoch.
    followup_epoch: Option<u64>,
    host_map: BTreeMap<String, HostTasks>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn millis(config: &Config, key: &str, default: u64) -> Duration {
    Duration::from_millis(
        config
            .kafka
            .get(key)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default),
    )
}

impl StreamsGroup {
    /// Joins the group `application.id` as this process (static member
    /// `group.instance.id`) and starts following its assignments.
    pub fn start(setup: StreamsGroupSetup) -> Result<Arc<StreamsGroup>, MembershipError> {
        let config = setup.config.clone();
        let threads = config.num_stream_threads;
        let process_id = match &setup.dirs {
            Some(dirs) => dirs.process_id().map_err(|e| MembershipError::Config {
                group: config.application_id.clone(),
                detail: format!("cannot read or create the process id: {e}"),
            })?,
            None => u128::from(std::process::id()) << 64 | u128::from(rand_seed()),
        };
        let shared = Arc::new(Shared {
            config: config.clone(),
            threads,
            process_id: ProcessId(process_id),
            dirs: setup.dirs,
            lifecycle: setup.lifecycle,
            metrics: setup.metrics,
            plan: Mutex::new(PlanView::new(&setup.topology, setup.plan)),
            state: Mutex::new(GroupState {
                targets: vec![BTreeSet::new(); threads],
                applied: vec![0; threads],
                owned: vec![BTreeSet::new(); threads],
                ..GroupState::default()
            }),
            changed: Condvar::new(),
        });
        let mut member = MembershipConfig::new(&config.bootstrap_servers, &config.application_id);
        member.client_id = config.client_id.clone();
        member.group_instance_id = Some(config.group_instance_id.clone());
        member.session_timeout = millis(&config, "session.timeout.ms", 45_000);
        member.heartbeat_interval = millis(&config, "heartbeat.interval.ms", 3_000);
        member.rebalance_timeout = millis(&config, "max.poll.interval.ms", 300_000);
        let (membership, events) = Membership::start(member, shared.clone(), shared.clone())?;
        tracing::info!(
            group = %config.application_id, process_id = %shared.process_id,
            instance = %config.group_instance_id, "joining the streams group"
        );
        let follower = shared.clone();
        std::thread::Builder::new()
            .name("weir-group-events".into())
            .spawn(move || follower.follow(events))
            .map_err(|e| MembershipError::Config {
                group: config.application_id.clone(),
                detail: format!("cannot start the group event thread: {e}"),
            })?;
        Ok(Arc::new(StreamsGroup { shared, membership }))
    }

    pub(crate) fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The group identity for a transactional offset commit.
    pub fn metadata(&self) -> Option<GroupMetadata> {
        let (generation, member_id) = self.membership.current()?;
        Some(GroupMetadata {
            group_id: self.membership.group_id().to_string(),
            generation: generation.0,
            member_id,
            group_instance_id: Some(self.shared.config.group_instance_id.clone()),
        })
    }

    /// Thread `thread`'s target if it changed since epoch `seen`.
    pub fn update_for(&self, thread: usize, seen: u64) -> Option<ThreadUpdate> {
        let state = lock(&self.shared.state);
        (state.epoch > seen).then(|| ThreadUpdate {
            epoch: state.epoch,
            active: state.targets.get(thread).cloned().unwrap_or_default(),
            lost: state.lost_epoch > seen,
        })
    }

    /// Thread `thread` now runs `owned`, as of `epoch`. The last thread to
    /// apply an epoch that held tasks back for a hand-over triggers the
    /// follow-up rebalance.
    pub fn applied(&self, thread: usize, epoch: u64, owned: BTreeSet<TaskId>) {
        let rejoin = {
            let mut state = lock(&self.shared.state);
            state.applied[thread] = epoch;
            state.owned[thread] = owned;
            match state.followup_epoch {
                Some(e) if state.applied.iter().all(|a| *a >= e) => {
                    state.followup_epoch = None;
                    true
                }
                _ => false,
            }
        };
        if rejoin {
            self.membership
                .request_rejoin("cooperative follow-up: revoked tasks are free to move");
        }
    }

    /// Thread `thread` stopped: it owns nothing and holds no follow-up back.
    pub fn thread_stopped(&self, thread: usize) {
        self.applied(thread, u64::MAX, BTreeSet::new());
    }

    /// A new version changed the topic plan or the stores: later
    /// subscriptions carry its fingerprint, and the process rejoins so the
    /// leader sees it.
    pub fn set_plan(&self, topology: &Topology, plan: Arc<TopicPlan>) {
        let changed = {
            let mut view = lock(&self.shared.plan);
            let next = PlanView::new(topology, plan);
            let changed = next.fingerprint != view.fingerprint;
            *view = next;
            changed
        };
        if changed {
            self.membership
                .request_rejoin("the topology changed with a new version");
        }
    }

    /// Endpoint → tasks of the last assignment (for interactive queries).
    pub fn host_map(&self) -> BTreeMap<String, HostTasks> {
        lock(&self.shared.state).host_map.clone()
    }

    /// Leaves the group's heartbeat loop. Static members do not send
    /// LeaveGroup: a restart within `session.timeout.ms` gets the same
    /// tasks back without a rebalance.
    pub fn close(&self) {
        self.membership.close(false);
    }
}

/// Some bits for a process id when there is no state directory to keep one.
fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Shared {
    /// The event thread: turns membership events into thread targets.
    fn follow(&self, events: Receiver<MembershipEvent>) {
        // From the join (or the first sign of a rebalance) to the assignment.
        let mut since = Some(Instant::now());
        for event in events {
            match event {
                MembershipEvent::Assigned {
                    generation,
                    leader,
                    user_data,
                    ..
                } => {
                    let took = since.take().map(|t| t.elapsed()).unwrap_or_default();
                    self.metrics.record_rebalance_time(took.as_micros() as u64);
                    tracing::info!(
                        generation = generation.0,
                        took_ms = took.as_millis() as u64,
                        "rebalance complete"
                    );
                    self.assigned(generation.0, leader, &user_data);
                }
                MembershipEvent::Rebalancing { generation, reason } => {
                    since.get_or_insert_with(Instant::now);
                    tracing::info!(generation = generation.0, %reason, "group rebalancing; tasks keep running");
                }
                MembershipEvent::Lost { generation, reason } => {
                    since.get_or_insert_with(Instant::now);
                    tracing::warn!(generation = generation.0, %reason,
                        "group membership lost: closing every task without committing, then rejoining");
                    let mut state = lock(&self.state);
                    state.epoch += 1;
                    state.lost_epoch = state.epoch;
                    state.targets = vec![BTreeSet::new(); self.threads];
                    state.followup_epoch = None;
                    self.changed.notify_all();
                }
                MembershipEvent::Fatal { error } => {
                    self.lifecycle.fail(format!("group membership: {error}"));
                }
            }
        }
    }

    fn assigned(&self, generation: i32, leader: bool, user_data: &[u8]) {
        let info = match AssignmentInfo::decode(user_data) {
            Ok(info) => info,
            Err(e) => {
                tracing::error!(generation, error = %e, "unreadable assignment from the group leader; running no tasks");
                return self.set_targets(&BTreeSet::new(), false, BTreeMap::new());
            }
        };
        if info.error_code != crate::assign::error_code::NONE {
            tracing::error!(
                generation,
                code = info.error_code,
                "the group leader gave this process no tasks: {}",
                match info.error_code {
                    crate::assign::error_code::TOPOLOGY_MISMATCH =>
                        "its topology differs from the leader's (a version not yet rolled out everywhere?)",
                    _ => "it cannot read this process's subscription version",
                }
            );
        }
        let active: BTreeSet<TaskId> = info.active.iter().copied().collect();
        tracing::info!(
            generation, leader, tasks = ?active.iter().map(ToString::to_string).collect::<Vec<_>>(),
            followup = info.followup_needed, "assignment received"
        );
        self.set_targets(&active, info.followup_needed, info.host_map);
    }

    fn set_targets(
        &self,
        active: &BTreeSet<TaskId>,
        followup: bool,
        host_map: BTreeMap<String, HostTasks>,
    ) {
        let client = ClientAssignment {
            active: active.clone(),
            ..ClientAssignment::default()
        };
        let mut state = lock(&self.state);
        let kept: usize = state
            .owned
            .iter()
            .map(|o| o.intersection(active).count())
            .sum();
        let owned: usize = state.owned.iter().map(BTreeSet::len).sum();
        let per_thread = distribute_to_threads(&client, self.threads, &state.owned);
        state.targets = per_thread.into_iter().map(|t| t.active).collect();
        state.epoch += 1;
        state.followup_epoch = followup.then_some(state.epoch);
        state.host_map = host_map;
        self.metrics.record_rebalance(
            kept as u64,
            (active.len() - kept) as u64,
            (owned - kept) as u64,
        );
        self.changed.notify_all();
    }

    fn owned(&self) -> BTreeSet<TaskId> {
        lock(&self.state).owned.iter().flatten().copied().collect()
    }
}

impl SubscriptionProvider for Shared {
    fn subscription(&self) -> Subscription {
        let plan = lock(&self.plan).clone();
        let offset_sums = self
            .dirs
            .as_ref()
            .map(|d| d.checkpointed_offset_sums())
            .unwrap_or_default();
        let info = subscription_info(
            &self.config,
            self.process_id,
            &plan,
            offset_sums,
            self.owned(),
        );
        Subscription {
            topics: plan.plan.sources.clone(),
            user_data: info.encode(),
        }
    }
}

impl LeaderAssignor for Shared {
    fn assign(
        &self,
        generation: Generation,
        members: &[MemberMetadata],
    ) -> BTreeMap<String, Vec<u8>> {
        let plan = lock(&self.plan).clone();
        leader_assignment(generation.0, &plan, members)
    }
}
