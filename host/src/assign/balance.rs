//! The one balancing rule shared by every placement (actives over
//! processes, standbys over processes, tasks over threads): exact
//! per-capacity load comparison and the "move one item from a fuller bin to
//! an emptier one" step.
//!
//! Owns: load arithmetic (integers only, no floats) and the choice of the
//! next move. Must never: know what an item is for (state, lag, tags: the
//! caller's `key` decides which item may move and which is best), mutate
//! the caller's state, or iterate anything in a non-deterministic order.
//!
//! Invariant: a move goes from bin `c` to bin `d` only when
//! `n_c / t_c > n_d / t_d + 1` (more than one item per thread apart), so
//! when no move is left every bin that still holds a movable item
//! satisfies `n_c / t_c <= n_d / t_d + 1` for every `d`: loads per thread
//! differ by at most one item. Nothing moves inside that band, which is
//! what keeps placements sticky. Each move replaces the value `n_c / t_c`
//! by two smaller ones, so the sorted vector of loads falls
//! lexicographically and the loop ends.

use std::cmp::{Ordering, Reverse};
use std::collections::BTreeSet;

use crate::topology::TaskId;

/// Compares `a.0 / a.1` with `b.0 / b.1` exactly (capacities are non-zero).
pub(crate) fn cmp_ratio(a: (u64, u64), b: (u64, u64)) -> Ordering {
    (u128::from(a.0) * u128::from(b.1)).cmp(&(u128::from(b.0) * u128::from(a.1)))
}

/// A load per thread as an orderable key: `count / capacity`, compared
/// exactly (so `1/2 == 2/4`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PerThread {
    pub count: u64,
    pub capacity: u64,
}

impl PerThread {
    /// The load a bin would have after receiving one more item.
    pub(crate) fn after_one_more(count: u64, capacity: u64) -> Self {
        PerThread {
            count: count + 1,
            capacity,
        }
    }
}

impl PartialEq for PerThread {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PerThread {}

impl PartialOrd for PerThread {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PerThread {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_ratio((self.count, self.capacity), (other.count, other.capacity))
    }
}

/// One item moving between two bins (indices into the caller's slices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Move {
    pub task: TaskId,
    pub from: usize,
    pub to: usize,
}

/// The next move that lowers the imbalance, or `None` when the bins are
/// balanced as far as the movable items allow.
///
/// `counts[i]` is bin `i`'s whole load (fixed and movable items),
/// `capacity[i]` its weight (> 0), `movable[i]` the items that may leave it.
/// `key(from, to, task)` says whether `task` may go from `from` to `to`
/// (`None`: no) and how good that is (smaller is better). Senders are tried
/// fullest first, receivers emptiest first, ties by index; for the first
/// pair more than one item per thread apart with an allowed item, the best
/// item is moved.
pub(crate) fn next_move<K: Ord>(
    counts: &[u64],
    capacity: &[u64],
    movable: &[BTreeSet<TaskId>],
    mut key: impl FnMut(usize, usize, TaskId) -> Option<K>,
) -> Option<Move> {
    let bins = counts.len();
    let mut senders: Vec<usize> = (0..bins).filter(|&i| !movable[i].is_empty()).collect();
    senders.sort_by_key(|&i| {
        let load = PerThread {
            count: counts[i],
            capacity: capacity[i],
        };
        (Reverse(load), i)
    });
    let mut receivers: Vec<usize> = (0..bins).collect();
    receivers.sort_by_key(|&i| (PerThread::after_one_more(counts[i], capacity[i]), i));
    for &from in &senders {
        for &to in &receivers {
            if to == from {
                continue;
            }
            let apart = cmp_ratio(
                (counts[from], capacity[from]),
                (counts[to] + capacity[to], capacity[to]),
            ) == Ordering::Greater;
            if !apart {
                continue;
            }
            let best = movable[from]
                .iter()
                .filter_map(|&task| key(from, to, task).map(|k| (k, task)))
                .min();
            if let Some((_, task)) = best {
                return Some(Move { task, from, to });
            }
        }
    }
    None
}

/// An upper bound on the number of moves a balancing loop may make; the
/// potential argument above guarantees far fewer, this only keeps a logic
/// error from spinning forever.
pub(crate) fn move_budget(items: usize, bins: usize) -> usize {
    (items + 1).saturating_mul(bins + 1)
}

/// Applies `next_move` until balanced, keeping `counts` and `movable` in
/// step, and calls `on_move` after each move. For callers whose `key` needs
/// no state beyond the item sets.
pub(crate) fn rebalance<K: Ord>(
    counts: &mut [u64],
    capacity: &[u64],
    movable: &mut [BTreeSet<TaskId>],
    mut key: impl FnMut(usize, usize, TaskId) -> Option<K>,
    mut on_move: impl FnMut(Move),
) {
    let items: usize = movable.iter().map(BTreeSet::len).sum();
    for _ in 0..move_budget(items, counts.len()) {
        let Some(m) = next_move(counts, capacity, movable, &mut key) else {
            return;
        };
        movable[m.from].remove(&m.task);
        movable[m.to].insert(m.task);
        counts[m.from] -= 1;
        counts[m.to] += 1;
        on_move(m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(p: i32) -> TaskId {
        TaskId::for_partition(p)
    }

    #[test]
    fn ratios_compare_exactly() {
        assert_eq!(cmp_ratio((1, 3), (2, 6)), Ordering::Equal);
        assert_eq!(cmp_ratio((2, 3), (1, 2)), Ordering::Greater);
        assert_eq!(cmp_ratio((u64::MAX, 1), (u64::MAX, 2)), Ordering::Greater);
    }

    #[test]
    fn moves_from_fullest_to_emptiest_until_balanced() {
        let mut counts = vec![5, 0, 1];
        let capacity = vec![1, 1, 1];
        let mut movable: Vec<BTreeSet<TaskId>> = vec![
            (0..5).map(t).collect(),
            BTreeSet::new(),
            [t(9)].into_iter().collect(),
        ];
        let mut moves = Vec::new();
        rebalance(
            &mut counts,
            &capacity,
            &mut movable,
            |_, _, task| Some(task),
            |m| moves.push(m),
        );
        assert_eq!(counts, vec![2, 2, 2]);
        assert_eq!(moves.len(), 3);
        assert!(moves.iter().all(|m| m.from == 0));
    }

    #[test]
    fn weighs_by_capacity_and_respects_refusals() {
        // Bin 1 has three threads: 6 items end 2 : 4 (2 and 4/3 per
        // thread, within one item of each other); bin 2 refuses all.
        let mut counts = vec![6, 0, 0];
        let capacity = vec![1, 3, 1];
        let mut movable: Vec<BTreeSet<TaskId>> =
            vec![(0..6).map(t).collect(), BTreeSet::new(), BTreeSet::new()];
        rebalance(
            &mut counts,
            &capacity,
            &mut movable,
            |_, to, task| (to != 2).then_some(task),
            |_| {},
        );
        assert_eq!(counts, vec![2, 4, 0]);
    }
}
