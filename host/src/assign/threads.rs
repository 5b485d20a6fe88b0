//! Spreading one process's assignment over its stream threads.
//!
//! Owns: which thread runs which active task and keeps which standby (or
//! warm-up). Must never: change what the process was assigned, or do I/O.
//!
//! Sticky first: a task stays on the thread that had it before, in any
//! role (so a promoted standby becomes active on the thread that already
//! has its store open). New tasks go to the thread with the fewest of that
//! kind. Then actives and standbys are balanced separately: per thread they
//! differ by at most one, moving tasks new to their thread first.

use std::collections::{BTreeMap, BTreeSet};

use super::balance;
use super::model::ClientAssignment;
use crate::topology::TaskId;

/// What one stream thread runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadAssignment {
    pub active: BTreeSet<TaskId>,
    /// Standbys and warm-ups alike (a thread runs both the same way).
    pub standby: BTreeSet<TaskId>,
}

/// Spreads `client`'s tasks over `threads` threads (zero counts as one).
/// `previous[i]` holds the tasks thread `i` had before, in any role;
/// entries beyond `threads` are ignored, missing ones count as empty.
pub fn distribute_to_threads(
    client: &ClientAssignment,
    threads: usize,
    previous: &[BTreeSet<TaskId>],
) -> Vec<ThreadAssignment> {
    let threads = threads.max(1);
    let mut prev_thread: BTreeMap<TaskId, usize> = BTreeMap::new();
    for (index, tasks) in previous.iter().enumerate().take(threads) {
        for task in tasks {
            prev_thread.entry(*task).or_insert(index);
        }
    }
    let active = spread(&client.active, threads, &prev_thread, &vec![0; threads]);
    let active_counts: Vec<u64> = active.iter().map(|s| s.len() as u64).collect();
    let standby_tasks: BTreeSet<TaskId> = client
        .standby
        .iter()
        .chain(&client.warmup)
        .filter(|t| !client.active.contains(t))
        .copied()
        .collect();
    let standby = spread(&standby_tasks, threads, &prev_thread, &active_counts);
    active
        .into_iter()
        .zip(standby)
        .map(|(active, standby)| ThreadAssignment { active, standby })
        .collect()
}

/// One kind of task over the threads: sticky, then balanced. `tie` breaks
/// ties when placing new tasks (the other kind's counts).
fn spread(
    tasks: &BTreeSet<TaskId>,
    threads: usize,
    prev_thread: &BTreeMap<TaskId, usize>,
    tie: &[u64],
) -> Vec<BTreeSet<TaskId>> {
    let mut sets: Vec<BTreeSet<TaskId>> = vec![BTreeSet::new(); threads];
    let mut counts = vec![0u64; threads];
    for task in tasks {
        if let Some(&thread) = prev_thread.get(task) {
            sets[thread].insert(*task);
            counts[thread] += 1;
        }
    }
    for task in tasks {
        if prev_thread.contains_key(task) {
            continue;
        }
        let thread = (0..threads)
            .min_by_key(|&t| (counts[t], tie[t], t))
            .unwrap_or(0);
        sets[thread].insert(*task);
        counts[thread] += 1;
    }
    let capacity = vec![1u64; threads];
    balance::rebalance(
        &mut counts,
        &capacity,
        &mut sets,
        |from, _, task| Some((prev_thread.get(&task) == Some(&from), task)),
        |_| {},
    );
    sets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(p: i32) -> TaskId {
        TaskId::for_partition(p)
    }

    fn set(ps: &[i32]) -> BTreeSet<TaskId> {
        ps.iter().map(|&p| t(p)).collect()
    }

    fn client(active: &[i32], standby: &[i32], warmup: &[i32]) -> ClientAssignment {
        ClientAssignment {
            active: set(active),
            standby: set(standby),
            warmup: set(warmup),
        }
    }

    #[test]
    fn balances_actives_and_standbys_separately() {
        let c = client(&[0, 1, 2, 3, 4], &[5, 6], &[7]);
        let out = distribute_to_threads(&c, 2, &[]);
        assert_eq!(out.len(), 2);
        let a: Vec<usize> = out.iter().map(|t| t.active.len()).collect();
        let s: Vec<usize> = out.iter().map(|t| t.standby.len()).collect();
        assert!(a.iter().max().unwrap() - a.iter().min().unwrap() <= 1);
        assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1);
        let all_active: BTreeSet<TaskId> = out.iter().flat_map(|t| t.active.clone()).collect();
        let all_standby: BTreeSet<TaskId> = out.iter().flat_map(|t| t.standby.clone()).collect();
        assert_eq!(all_active, c.active);
        assert_eq!(all_standby, set(&[5, 6, 7]));
    }

    #[test]
    fn sticky_to_previous_thread_and_promotes_in_place() {
        // Thread 1 had 2 as standby: promoted, it stays on thread 1.
        let previous = vec![set(&[0, 1]), set(&[2, 3])];
        let c = client(&[0, 1, 2, 3], &[], &[]);
        let out = distribute_to_threads(&c, 2, &previous);
        assert_eq!(out[0].active, set(&[0, 1]));
        assert_eq!(out[1].active, set(&[2, 3]));
    }

    #[test]
    fn moves_only_what_balance_needs() {
        // Thread 0 had everything; a new thread takes half, the rest stay.
        let previous = vec![set(&[0, 1, 2, 3])];
        let c = client(&[0, 1, 2, 3], &[], &[]);
        let out = distribute_to_threads(&c, 2, &previous);
        assert_eq!(out[0].active.len(), 2);
        assert_eq!(out[1].active.len(), 2);
        assert!(out[0].active.is_subset(&set(&[0, 1, 2, 3])));
        // Fewer threads than before: the tasks of the lost thread spread.
        let previous = vec![set(&[0]), set(&[1]), set(&[2, 3])];
        let out = distribute_to_threads(&c, 2, &previous);
        assert!(out[0].active.contains(&t(0)));
        assert!(out[1].active.contains(&t(1)));
        assert_eq!(out[0].active.len() + out[1].active.len(), 4);
    }

    #[test]
    fn zero_threads_counts_as_one() {
        let out = distribute_to_threads(&client(&[0], &[1], &[]), 0, &[]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].active, set(&[0]));
        assert_eq!(out[0].standby, set(&[1]));
    }
}
