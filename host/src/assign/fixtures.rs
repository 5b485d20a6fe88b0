//! Test helpers shared by the assignor's scenario and property tests.
//!
//! Owns: short constructors and the invariant checker. Must never: be
//! compiled outside tests.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{Assignment, AssignorConfig, ClientState, ProcessId, TaskSpec};
use crate::topology::TaskId;

pub(super) fn t(p: i32) -> TaskId {
    TaskId {
        subtopology: 0,
        partition: p,
    }
}

pub(super) fn pid(n: u128) -> ProcessId {
    ProcessId(n)
}

pub(super) fn set(ps: &[i32]) -> BTreeSet<TaskId> {
    ps.iter().map(|&p| t(p)).collect()
}

/// Processes `1..=threads.len()` with the given thread counts.
pub(super) fn group(threads: &[u32]) -> BTreeMap<ProcessId, ClientState> {
    threads
        .iter()
        .enumerate()
        .map(|(i, &n)| (pid(i as u128 + 1), ClientState::with_threads(n)))
        .collect()
}

pub(super) fn stateless(n: i32) -> Vec<TaskSpec> {
    (0..n).map(|p| TaskSpec::stateless(t(p))).collect()
}

pub(super) fn stateful(n: i32, end: i64) -> Vec<TaskSpec> {
    (0..n).map(|p| TaskSpec::stateful(t(p), end)).collect()
}

/// The group as it would subscribe after running `a`: actives become
/// previous actives, standbys and warm-ups previous standbys; offset sums
/// and everything else unchanged.
pub(super) fn feed_back(
    a: &Assignment,
    clients: &BTreeMap<ProcessId, ClientState>,
) -> BTreeMap<ProcessId, ClientState> {
    clients
        .iter()
        .map(|(id, c)| {
            let mine = a.clients.get(id).cloned().unwrap_or_default();
            let mut c = c.clone();
            c.prev_active = mine.active;
            c.prev_standby = mine.standby.union(&mine.warmup).copied().collect();
            (*id, c)
        })
        .collect()
}

/// The number of active tasks per process.
pub(super) fn active_counts(a: &Assignment) -> BTreeMap<ProcessId, usize> {
    a.clients
        .iter()
        .map(|(id, c)| (*id, c.active.len()))
        .collect()
}

/// Loads per thread differ by at most one task: for every pair,
/// `n_c / t_c <= n_d / t_d + 1`. `count` picks the tasks counted.
pub(super) fn balanced_per_thread(
    a: &Assignment,
    clients: &BTreeMap<ProcessId, ClientState>,
    count: impl Fn(&TaskId) -> bool,
) -> bool {
    let loads: Vec<(u64, u64)> = a
        .clients
        .iter()
        .map(|(id, c)| {
            let n = c.active.iter().filter(|t| count(t)).count() as u64;
            let threads = clients.get(id).map_or(1, |c| u64::from(c.threads.max(1)));
            (n, threads)
        })
        .collect();
    loads
        .iter()
        .all(|&(nc, tc)| loads.iter().all(|&(nd, td)| nc * td <= (nd + td) * tc))
}

/// The invariants every assignment keeps, whatever the input. Returns the
/// first violation.
pub(super) fn check_invariants(
    a: &Assignment,
    tasks: &[TaskSpec],
    clients: &BTreeMap<ProcessId, ClientState>,
    config: &AssignorConfig,
) -> Result<(), String> {
    if a.clients.keys().ne(clients.keys()) {
        return Err("assignment does not list exactly the group's processes".into());
    }
    let specs: BTreeMap<TaskId, TaskSpec> = tasks.iter().rev().map(|s| (s.id, *s)).collect();
    if clients.is_empty() {
        return Ok(());
    }
    let mut warmups = 0usize;
    for (id, spec) in &specs {
        let active: Vec<ProcessId> = a
            .clients
            .iter()
            .filter(|(_, c)| c.active.contains(id))
            .map(|(p, _)| *p)
            .collect();
        if active.len() != 1 {
            return Err(format!("{id} active on {} processes", active.len()));
        }
        let owner = active[0];
        let standbys = a
            .clients
            .values()
            .filter(|c| c.standby.contains(id))
            .count();
        let warm = a.clients.values().filter(|c| c.warmup.contains(id)).count();
        warmups += warm;
        for (p, c) in &a.clients {
            let roles = [
                c.active.contains(id),
                c.standby.contains(id),
                c.warmup.contains(id),
            ];
            if roles.iter().filter(|&&r| r).count() > 1 {
                return Err(format!("{p} holds {id} in two roles"));
            }
        }
        if !spec.stateful {
            if standbys + warm > 0 {
                return Err(format!("stateless {id} has standbys or warm-ups"));
            }
            continue;
        }
        if warm > 1 {
            return Err(format!("{id} has {warm} warm-ups"));
        }
        let room = clients.len() - 1 - warm;
        let want = (config.num_standby_replicas as usize).min(room);
        if standbys != want {
            return Err(format!("{id} has {standbys} standbys, wanted {want}"));
        }
        // Never cold while a caught-up copy exists; else the least lagging.
        let lags: BTreeMap<ProcessId, i64> =
            clients.iter().map(|(p, c)| (*p, c.lag(spec))).collect();
        let acceptable = config.acceptable_recovery_lag.max(0);
        let any_caught_up = lags.values().any(|&l| l <= acceptable);
        let least = lags.values().copied().min().unwrap_or(0);
        let owner_lag = lags[&owner];
        if any_caught_up && owner_lag > acceptable {
            return Err(format!("{id} moved cold to {owner} (lag {owner_lag})"));
        }
        if !any_caught_up && owner_lag != least {
            return Err(format!(
                "{id} on {owner} (lag {owner_lag}), least lag is {least}"
            ));
        }
    }
    for c in a.clients.values() {
        if c.active
            .iter()
            .chain(&c.standby)
            .chain(&c.warmup)
            .any(|t| !specs.contains_key(t))
        {
            return Err("an unknown task was assigned".into());
        }
    }
    if warmups > config.max_warmup_replicas as usize {
        return Err(format!(
            "{warmups} warm-ups, max {}",
            config.max_warmup_replicas
        ));
    }
    if a.probing_rebalance_needed != (warmups > 0) {
        return Err("probing flag disagrees with the warm-ups".into());
    }
    Ok(())
}
