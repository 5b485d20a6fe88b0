//! The leader's task assignor (KIP-441, as Kafka Streams'
//! `HighAvailabilityTaskAssignor`): places every task's active, its
//! warm-up when a move must wait for state, and (through `standby`) its
//! standbys.
//!
//! Owns: the order of the placement steps and the active/warm-up rules.
//! Must never: do I/O, read clocks or randomness, or iterate a `HashMap`;
//! the same input always gives the same output.
//!
//! Steps:
//! 1. Stateful actives, state-constrained: a task stays on the process that
//!    ran it; a task without a (present) owner goes to an *eligible* process
//!    (caught up: lag <= `acceptable.recovery.lag`; if none is, the least
//!    lagging ones): the one with the least lag, then the least loaded.
//! 2. A balanced target: from step 1, tasks move from the fullest process
//!    (per thread) to the emptiest until loads per thread differ by at most
//!    one task, preferring tasks the receiver is eligible for, tasks not yet
//!    running, then the smallest lag.
//! 3. Each target move to an eligible process happens now. A move to a
//!    process that is not caught up does not: the task stays active where
//!    step 1 put it and, within `max.warmup.replicas` (tasks with the fewest
//!    caught-up copies first), a warm-up goes to the target, and a probing
//!    rebalance is requested. A task never moves cold while a caught-up
//!    copy exists.
//! 4. Stateless actives: sticky, then balanced over the total active load.
//! 5. Standbys (`standby`): never beside the task's active or warm-up.

use std::collections::{BTreeMap, BTreeSet};

use super::balance::{self, PerThread};
use super::model::{
    Assignment, AssignorConfig, ClientAssignment, ClientState, ProcessId, TaskSpec,
};
use super::standby;
use crate::topology::TaskId;

/// The processes of one rebalance, indexed by position in `ProcessId`
/// order (every per-client vector below uses these indices).
pub(crate) struct Group<'a> {
    pub ids: Vec<ProcessId>,
    pub states: Vec<&'a ClientState>,
    pub capacity: Vec<u64>,
}

impl<'a> Group<'a> {
    fn new(clients: &'a BTreeMap<ProcessId, ClientState>) -> Self {
        Group {
            ids: clients.keys().copied().collect(),
            states: clients.values().collect(),
            capacity: clients.values().map(ClientState::capacity).collect(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The process that would be least loaded per thread after receiving
    /// one more task; ties by index.
    fn least_loaded(&self, counts: &[u64]) -> Option<usize> {
        (0..self.len()).min_by_key(|&c| (PerThread::after_one_more(counts[c], self.capacity[c]), c))
    }
}

/// What every placement needs to know about one stateful task, per client.
pub(crate) struct StatefulView {
    /// Lag of each client's local state.
    pub lag: Vec<i64>,
    /// Caught up (lag <= acceptable.recovery.lag).
    pub caught_up: Vec<bool>,
    /// May take the active now: the caught-up clients, or the least lagging
    /// ones when none is caught up.
    pub eligible: Vec<bool>,
}

impl StatefulView {
    fn new(group: &Group<'_>, spec: &TaskSpec, acceptable_lag: i64) -> Self {
        let lag: Vec<i64> = group.states.iter().map(|s| s.lag(spec)).collect();
        let caught_up: Vec<bool> = lag.iter().map(|&l| l <= acceptable_lag).collect();
        let eligible = if caught_up.iter().any(|&c| c) {
            caught_up.clone()
        } else {
            let least = lag.iter().copied().min().unwrap_or(0);
            lag.iter().map(|&l| l == least).collect()
        };
        StatefulView {
            lag,
            caught_up,
            eligible,
        }
    }

    fn eligible_count(&self) -> usize {
        self.eligible.iter().filter(|&&e| e).count()
    }
}

/// Computes the group's assignment. Tasks listed twice count once (the
/// first spec wins); a task listed as previously active by several
/// processes counts as owned by the first of them in `ProcessId` order. An
/// empty group gets an empty assignment.
pub fn assign(
    tasks: &[TaskSpec],
    clients: &BTreeMap<ProcessId, ClientState>,
    config: &AssignorConfig,
) -> Assignment {
    let mut out = Assignment {
        clients: clients
            .keys()
            .map(|id| (*id, ClientAssignment::default()))
            .collect(),
        probing_rebalance_needed: false,
    };
    if clients.is_empty() {
        return out;
    }
    let group = Group::new(clients);

    let mut specs: BTreeMap<TaskId, TaskSpec> = BTreeMap::new();
    for spec in tasks {
        specs.entry(spec.id).or_insert(*spec);
    }
    let mut prev_owner: BTreeMap<TaskId, usize> = BTreeMap::new();
    for (index, state) in group.states.iter().enumerate() {
        for task in &state.prev_active {
            if specs.contains_key(task) {
                prev_owner.entry(*task).or_insert(index);
            }
        }
    }
    let acceptable_lag = config.acceptable_recovery_lag.max(0);
    let stateful: BTreeMap<TaskId, StatefulView> = specs
        .values()
        .filter(|s| s.stateful)
        .map(|s| (s.id, StatefulView::new(&group, s, acceptable_lag)))
        .collect();
    let stateless: Vec<TaskId> = specs
        .values()
        .filter(|s| !s.stateful)
        .map(|s| s.id)
        .collect();

    let placed = place_stateful(&group, &stateful, &prev_owner, config.max_warmup_replicas);
    let mut counts = vec![0u64; group.len()];
    for &owner in placed.active.values() {
        counts[owner] += 1;
    }
    let stateless_active = place_stateless(&group, &stateless, &prev_owner, counts.clone());
    for &owner in stateless_active.values() {
        counts[owner] += 1;
    }
    for &client in placed.warmup.values() {
        counts[client] += 1;
    }
    let standbys = standby::place_standbys(
        &group,
        &stateful,
        &placed.active,
        &placed.warmup,
        counts,
        config,
    );

    let mut clients_out: Vec<&mut ClientAssignment> = out.clients.values_mut().collect();
    for (task, &owner) in placed.active.iter().chain(stateless_active.iter()) {
        clients_out[owner].active.insert(*task);
    }
    for (task, &client) in &placed.warmup {
        clients_out[client].warmup.insert(*task);
    }
    for (client, tasks) in standbys.into_iter().enumerate() {
        clients_out[client].standby = tasks;
    }
    out.probing_rebalance_needed = !placed.warmup.is_empty();
    out
}

/// Where the stateful tasks run now, and their warm-ups.
struct StatefulPlacement {
    active: BTreeMap<TaskId, usize>,
    warmup: BTreeMap<TaskId, usize>,
}

fn place_stateful(
    group: &Group<'_>,
    stateful: &BTreeMap<TaskId, StatefulView>,
    prev_owner: &BTreeMap<TaskId, usize>,
    max_warmups: u32,
) -> StatefulPlacement {
    // Step 1: state-constrained, sticky.
    let mut counts = vec![0u64; group.len()];
    let mut initial: BTreeMap<TaskId, usize> = BTreeMap::new();
    for task in stateful.keys() {
        if let Some(&owner) = prev_owner.get(task) {
            initial.insert(*task, owner);
            counts[owner] += 1;
        }
    }
    for (task, view) in stateful {
        if initial.contains_key(task) {
            continue;
        }
        // The freshest copy first (a hot standby), then the least loaded.
        let freshest = (0..group.len())
            .filter(|&c| view.eligible[c])
            .min_by_key(|&c| {
                (
                    view.lag[c],
                    PerThread::after_one_more(counts[c], group.capacity[c]),
                    c,
                )
            });
        if let Some(client) = freshest {
            initial.insert(*task, client);
            counts[client] += 1;
        }
    }

    // Step 2: the balanced target.
    let mut movable: Vec<BTreeSet<TaskId>> = vec![BTreeSet::new(); group.len()];
    for (task, &client) in &initial {
        movable[client].insert(*task);
    }
    let mut target = initial.clone();
    balance::rebalance(
        &mut counts,
        &group.capacity,
        &mut movable,
        |from, to, task| {
            let view = stateful.get(&task)?;
            let running = prev_owner.get(&task) == Some(&from);
            let has_copy = group.states[to].prev_standby.contains(&task);
            Some((!view.eligible[to], running, view.lag[to], !has_copy, task))
        },
        |m| {
            target.insert(m.task, m.to);
        },
    );

    // Step 3: move now where the target is eligible; warm up otherwise.
    let mut active = BTreeMap::new();
    let mut waiting: Vec<(usize, TaskId, usize)> = Vec::new();
    for (task, &to) in &target {
        let from = initial.get(task).copied().unwrap_or(to);
        let now_ok = to == from || stateful.get(task).is_some_and(|v| v.eligible[to]);
        if now_ok {
            active.insert(*task, to);
        } else {
            active.insert(*task, from);
            let copies = stateful.get(task).map_or(0, StatefulView::eligible_count);
            waiting.push((copies, *task, to));
        }
    }
    waiting.sort();
    let warmup = waiting
        .into_iter()
        .take(max_warmups as usize)
        .map(|(_, task, to)| (task, to))
        .collect();
    StatefulPlacement { active, warmup }
}

/// Stateless tasks: kept by their previous owner, orphans to the least
/// loaded process, then balanced over the total active load (`counts`
/// starts as the stateful actives per process). Only stateless tasks move.
fn place_stateless(
    group: &Group<'_>,
    stateless: &[TaskId],
    prev_owner: &BTreeMap<TaskId, usize>,
    mut counts: Vec<u64>,
) -> BTreeMap<TaskId, usize> {
    let mut movable: Vec<BTreeSet<TaskId>> = vec![BTreeSet::new(); group.len()];
    let mut owner: BTreeMap<TaskId, usize> = BTreeMap::new();
    for task in stateless {
        if let Some(&client) = prev_owner.get(task) {
            owner.insert(*task, client);
            movable[client].insert(*task);
            counts[client] += 1;
        }
    }
    for task in stateless {
        if owner.contains_key(task) {
            continue;
        }
        if let Some(client) = group.least_loaded(&counts) {
            owner.insert(*task, client);
            movable[client].insert(*task);
            counts[client] += 1;
        }
    }
    balance::rebalance(
        &mut counts,
        &group.capacity,
        &mut movable,
        |from, _, task| Some((prev_owner.get(&task) == Some(&from), task)),
        |m| {
            owner.insert(m.task, m.to);
        },
    );
    owner
}
