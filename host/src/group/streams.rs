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
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::GroupMetadata;
use super::subscription::{
    LeaderSettings, PlanView, assignor_config, leader_assignment, subscription_info,
};
use crate::assign::{
    AssignmentInfo, ClientAssignment, HostTasks, ProcessId, ThreadAssignment, distribute_to_threads,
};
use crate::config::Config;
use crate::lifecycle::Lifecycle;
use crate::member::{
    Generation, LeaderAssignor, MemberMetadata, Membership, MembershipConfig, MembershipError,
    MembershipEvent, Subscription, SubscriptionProvider,
};
use crate::metrics::Metrics;
use crate::query::QueryableStores;
use crate::store::StateDirectory;
use crate::topics::TopicPlan;
use crate::topology::{TaskId, Topology};

/// How long the leader waits for one changelog partition's end offset.
const END_OFFSETS_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Interactive queries follow the plan and the host map.
    pub queries: Arc<QueryableStores>,
}

/// A stream thread's share of a new assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadUpdate {
    pub epoch: u64,
    /// The active tasks this thread should run now.
    pub active: BTreeSet<TaskId>,
    /// The standby and warm-up tasks this thread should keep now.
    pub standby: BTreeSet<TaskId>,
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
    queries: Arc<QueryableStores>,
    plan: Mutex<PlanView>,
    state: Mutex<GroupState>,
    /// The state directory was empty at start and standbys are on: the
    /// first assignment may be the broker's cached one from before the
    /// disk was lost (a static member restarted within its session).
    fresh_state: std::sync::atomic::AtomicBool,
    /// The leader's reader of changelog end offsets, made on first use.
    offsets: Mutex<Option<BaseConsumer>>,
    changed: Condvar,
}

#[derive(Default)]
struct GroupState {
    /// Bumped on every assignment and every loss.
    epoch: u64,
    lost_epoch: u64,
    targets: Vec<ThreadAssignment>,
    /// Per thread: the last epoch applied (`u64::MAX`: thread stopped).
    applied: Vec<u64>,
    /// Per thread: the active tasks it runs after its last update.
    owned: Vec<BTreeSet<TaskId>>,
    /// Per thread: the standbys it keeps, with the changelog offset sums
    /// they have reached.
    standbys: Vec<BTreeMap<TaskId, i64>>,
    /// When to rejoin for a probing rebalance (warm-ups were placed).
    probe_at: Option<Instant>,
    /// Tasks this process was handed with no state on disk, reported as
    /// "state unknown" so the leader places them on warm copies.
    unknown_state: BTreeSet<TaskId>,
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
        let fresh_state = config.num_standby_replicas > 0
            && setup.dirs.as_ref().is_some_and(|d| !d.has_process_id());
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
            queries: setup.queries,
            plan: Mutex::new(PlanView::new(&setup.topology, setup.plan.clone())),
            state: Mutex::new(GroupState {
                targets: vec![ThreadAssignment::default(); threads],
                applied: vec![0; threads],
                owned: vec![BTreeSet::new(); threads],
                standbys: vec![BTreeMap::new(); threads],
                ..GroupState::default()
            }),
            changed: Condvar::new(),
            offsets: Mutex::new(None),
            fresh_state: fresh_state.into(),
        });
        shared
            .queries
            .set_plan(setup.plan.partitions, setup.topology.stores.clone());
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
        let group = Arc::new(StreamsGroup { shared, membership });
        let follower = group.clone();
        std::thread::Builder::new()
            .name("weir-group-events".into())
            .spawn(move || follower.shared.follow(events, &follower.membership))
            .map_err(|e| MembershipError::Config {
                group: config.application_id.clone(),
                detail: format!("cannot start the group event thread: {e}"),
            })?;
        Ok(group)
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
        (state.epoch > seen).then(|| {
            let target = state.targets.get(thread).cloned().unwrap_or_default();
            ThreadUpdate {
                epoch: state.epoch,
                active: target.active,
                standby: target.standby,
                lost: state.lost_epoch > seen,
            }
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
        self.report_standbys(thread, BTreeMap::new());
        self.applied(thread, u64::MAX, BTreeSet::new());
    }

    /// Thread `thread` keeps these standbys, at these changelog offset
    /// sums (the next subscription reports them).
    pub fn report_standbys(&self, thread: usize, offset_sums: BTreeMap<TaskId, i64>) {
        if let Some(slot) = lock(&self.shared.state).standbys.get_mut(thread) {
            *slot = offset_sums;
        }
    }

    /// A new version changed the topic plan or the stores: later
    /// subscriptions carry its fingerprint, and the process rejoins so the
    /// leader sees it.
    pub fn set_plan(&self, topology: &Topology, plan: Arc<TopicPlan>) {
        let changed = {
            let mut view = lock(&self.shared.plan);
            self.shared
                .queries
                .set_plan(plan.partitions, topology.stores.clone());
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
    /// The event thread: turns membership events into thread targets, and
    /// asks for the probing rebalance an assignment with warm-ups scheduled.
    fn follow(&self, events: Receiver<MembershipEvent>, membership: &Membership) {
        // From the join (or the first sign of a rebalance) to the assignment.
        let mut since = Some(Instant::now());
        loop {
            let probe_at = lock(&self.state).probe_at;
            let event = match probe_at {
                Some(at) => match events.recv_timeout(at.saturating_duration_since(Instant::now()))
                {
                    Ok(event) => event,
                    Err(RecvTimeoutError::Timeout) => {
                        lock(&self.state).probe_at = None;
                        self.probe(membership);
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                },
                None => match events.recv() {
                    Ok(event) => event,
                    Err(_) => return,
                },
            };
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
                    self.assigned(generation.0, leader, &user_data, membership);
                }
                MembershipEvent::Rebalancing { generation, reason } => {
                    since.get_or_insert_with(Instant::now);
                    tracing::info!(generation = generation.0, %reason, "group rebalancing; tasks keep running");
                }
                MembershipEvent::Lost { generation, reason } => {
                    since.get_or_insert_with(Instant::now);
                    tracing::warn!(generation = generation.0, %reason,
                        "group membership lost: closing every active task without committing, then rejoining");
                    let mut state = lock(&self.state);
                    state.epoch += 1;
                    state.lost_epoch = state.epoch;
                    // Standbys hold nothing uncommitted: they stay.
                    for target in &mut state.targets {
                        target.active.clear();
                    }
                    state.followup_epoch = None;
                    self.changed.notify_all();
                }
                MembershipEvent::Fatal { error } => {
                    self.lifecycle.fail(format!("group membership: {error}"));
                }
            }
        }
    }

    /// The probing rebalance: warm-ups placed earlier may have caught up,
    /// so the leader may now move their tasks.
    fn probe(&self, membership: &Membership) {
        membership.request_rejoin("probing rebalance: warm-up replicas may have caught up");
    }

    fn assigned(&self, generation: i32, leader: bool, user_data: &[u8], membership: &Membership) {
        let info = match AssignmentInfo::decode(user_data) {
            Ok(info) => info,
            Err(e) => {
                tracing::error!(generation, error = %e, "unreadable assignment from the group leader; running no tasks");
                return self.set_targets(&ClientAssignment::default(), false, BTreeMap::new());
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
        let mut client = ClientAssignment {
            active: info.active.iter().copied().collect(),
            standby: info.standby.clone(),
            warmup: info.warmup.clone(),
        };
        let fresh = self
            .fresh_state
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        lock(&self.state).unknown_state.clear();
        if fresh && !client.active.is_empty() && lock(&self.plan).stateful {
            // Starting these cold would restore them in full while warm
            // standbys may exist elsewhere: hand them back at once.
            tracing::warn!(generation, tasks = ?client.active.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "this process starts with an empty state directory: asking the leader to place its tasks on warm copies");
            lock(&self.state).unknown_state = std::mem::take(&mut client.active);
            membership.request_rejoin("empty state directory: tasks belong on warm copies");
        }
        let names =
            |tasks: &BTreeSet<TaskId>| tasks.iter().map(ToString::to_string).collect::<Vec<_>>();
        tracing::info!(
            generation, leader, tasks = ?names(&client.active), standbys = ?names(&client.standby),
            warmups = ?names(&client.warmup), followup = info.followup_needed,
            probing_in_ms = info.probing_rebalance_in_ms, "assignment received"
        );
        lock(&self.state).probe_at = info
            .probing_rebalance_in_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        self.set_targets(&client, info.followup_needed, info.host_map);
    }

    fn set_targets(
        &self,
        client: &ClientAssignment,
        followup: bool,
        host_map: BTreeMap<String, HostTasks>,
    ) {
        let active = &client.active;
        let mut state = lock(&self.state);
        let kept: usize = state
            .owned
            .iter()
            .map(|o| o.intersection(active).count())
            .sum();
        let owned: usize = state.owned.iter().map(BTreeSet::len).sum();
        // Sticky in any role: a promoted standby becomes active on the
        // thread that has its stores open.
        let previous: Vec<BTreeSet<TaskId>> = state
            .owned
            .iter()
            .zip(&state.standbys)
            .map(|(active, standby)| active.iter().chain(standby.keys()).copied().collect())
            .collect();
        state.targets = distribute_to_threads(client, self.threads, &previous);
        state.epoch += 1;
        state.followup_epoch = followup.then_some(state.epoch);
        self.queries.set_hosts(host_map.clone());
        state.host_map = host_map;
        self.metrics.record_rebalance(
            kept as u64,
            (active.len() - kept) as u64,
            (owned - kept) as u64,
        );
        self.changed.notify_all();
    }
}

impl SubscriptionProvider for Shared {
    fn subscription(&self) -> Subscription {
        let plan = lock(&self.plan).clone();
        // Closed stores by their checkpoints, standbys by what they applied.
        let mut offset_sums = self
            .dirs
            .as_ref()
            .map(|d| d.checkpointed_offset_sums())
            .unwrap_or_default();
        let (owned, standbys) = {
            let state = lock(&self.state);
            for task in &state.unknown_state {
                offset_sums.entry(*task).or_insert(-1);
            }
            let owned: BTreeSet<TaskId> = state.owned.iter().flatten().copied().collect();
            let standbys: BTreeMap<TaskId, i64> = state
                .standbys
                .iter()
                .flatten()
                .map(|(t, o)| (*t, *o))
                .collect();
            (owned, standbys)
        };
        offset_sums.extend(standbys.iter().map(|(t, o)| (*t, *o)));
        let info = subscription_info(
            &self.config,
            self.process_id,
            &plan,
            offset_sums,
            owned,
            standbys.keys().copied().collect(),
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
        let settings = LeaderSettings {
            assignor: assignor_config(&self.config),
            probing_rebalance_interval: self.config.probing_rebalance_interval,
            changelog_ends: self.changelog_ends(&plan),
        };
        leader_assignment(generation.0, &plan, members, &settings)
    }
}

impl Shared {
    /// Per task, the sum of its changelog partitions' end offsets (what a
    /// caught-up copy has reached). A task whose ends cannot be read is
    /// left out: the leader then judges it by the state members report.
    fn changelog_ends(&self, plan: &PlanView) -> BTreeMap<TaskId, i64> {
        let mut ends = BTreeMap::new();
        if !plan.stateful || plan.plan.changelogs.is_empty() {
            return ends;
        }
        let mut slot = lock(&self.offsets);
        if slot.is_none() {
            match crate::kafka::offsets_consumer(&self.config).create::<BaseConsumer>() {
                Ok(consumer) => *slot = Some(consumer),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create the consumer for changelog end offsets");
                    return ends;
                }
            }
        }
        let consumer = slot.as_ref().expect("created above");
        'task: for partition in 0..plan.plan.partitions as i32 {
            let mut sum = 0i64;
            for (_, topic) in &plan.plan.changelogs {
                match consumer.fetch_watermarks(topic, partition, END_OFFSETS_TIMEOUT) {
                    Ok((_, high)) => sum += high,
                    Err(error) => {
                        tracing::warn!(topic, partition, %error, "cannot read a changelog's end offset");
                        continue 'task;
                    }
                }
            }
            ends.insert(TaskId::for_partition(partition), sum);
        }
        ends
    }
}
