//! Standby placement: `num.standby.replicas` copies of every stateful task,
//! each on a process other than the task's active, its warm-up and its
//! other standbys.
//!
//! Owns: which processes keep standbys, rack awareness (client tags) and
//! standby balance. Must never: touch actives or warm-ups (they are decided
//! before it runs), fail when there are too few processes (it places what
//! fits), or do I/O.
//!
//! Each task's standbys are chosen greedily, best first by: fewest client
//! tag values shared with the task's other copies (for the configured
//! `rack.aware.assignment.tags`), a previous standby of the task, caught up,
//! least loaded per thread (actives, warm-ups and standbys together),
//! smallest lag, `ProcessId`. Then standbys move from the fullest process
//! (per thread, total load) to the emptiest until loads per thread differ
//! by at most one where standbys can move, never to a process holding the
//! task and never to one sharing more tag values than the process it
//! leaves.

use std::collections::{BTreeMap, BTreeSet};

use super::balance::{self, PerThread};
use super::model::AssignorConfig;
use super::task_assignor::{Group, StatefulView};
use crate::topology::TaskId;

/// The standbys of every process, by group index. `active` and `warmup`
/// map each stateful task to its process; `load` is each process's task
/// count so far (all actives, stateless ones included, and warm-ups).
pub(crate) fn place_standbys(
    group: &Group<'_>,
    stateful: &BTreeMap<TaskId, StatefulView>,
    active: &BTreeMap<TaskId, usize>,
    warmup: &BTreeMap<TaskId, usize>,
    load: Vec<u64>,
    config: &AssignorConfig,
) -> Vec<BTreeSet<TaskId>> {
    let n = group.len();
    let mut standby: Vec<BTreeSet<TaskId>> = vec![BTreeSet::new(); n];
    let wanted = config.num_standby_replicas as usize;
    if wanted == 0 {
        return standby;
    }
    let tags = Tags {
        group,
        keys: &config.rack_aware_assignment_tags,
    };
    // Total task load (actives, warm-ups, standbys) per process; only
    // standbys move, as in Kafka Streams.
    let mut counts = load;
    // Standby holders of each task, in placement order.
    let mut holders: BTreeMap<TaskId, Vec<usize>> = BTreeMap::new();

    for (task, view) in stateful {
        let Some(&owner) = active.get(task) else {
            continue;
        };
        let warm = warmup.get(task).copied();
        let mut chosen: Vec<usize> = Vec::new();
        for _ in 0..wanted {
            let mut copies = vec![owner];
            copies.extend_from_slice(&chosen);
            let best = (0..n)
                .filter(|&c| c != owner && Some(c) != warm && !chosen.contains(&c))
                .min_by_key(|&c| {
                    (
                        tags.shared(c, &copies),
                        !group.states[c].prev_standby.contains(task),
                        !view.caught_up[c],
                        PerThread::after_one_more(counts[c], group.capacity[c]),
                        view.lag[c],
                        c,
                    )
                });
            let Some(client) = best else {
                break;
            };
            chosen.push(client);
            counts[client] += 1;
            standby[client].insert(*task);
        }
        holders.insert(*task, chosen);
    }

    let items: usize = standby.iter().map(BTreeSet::len).sum();
    for _ in 0..balance::move_budget(items, n) {
        let next = balance::next_move(&counts, &group.capacity, &standby, |from, to, task| {
            let view = stateful.get(&task)?;
            let owner = *active.get(&task)?;
            let others = holders.get(&task)?;
            if to == owner || warmup.get(&task) == Some(&to) || others.contains(&to) {
                return None;
            }
            let mut copies = vec![owner];
            copies.extend(others.iter().copied().filter(|&c| c != from));
            let shared_to = tags.shared(to, &copies);
            if shared_to > tags.shared(from, &copies) {
                return None;
            }
            let had_it = group.states[to].prev_standby.contains(&task);
            Some((shared_to, !had_it, !view.caught_up[to], view.lag[to], task))
        });
        let Some(m) = next else {
            break;
        };
        standby[m.from].remove(&m.task);
        standby[m.to].insert(m.task);
        counts[m.from] -= 1;
        counts[m.to] += 1;
        if let Some(list) = holders.get_mut(&m.task) {
            for c in list.iter_mut() {
                if *c == m.from {
                    *c = m.to;
                }
            }
        }
    }
    standby
}

/// Client tags as seen by rack awareness.
struct Tags<'g, 'a> {
    group: &'g Group<'a>,
    keys: &'g [String],
}

impl Tags<'_, '_> {
    /// How many configured tag keys have, on `client`, a value that one of
    /// `copies` also has. A missing tag shares nothing.
    fn shared(&self, client: usize, copies: &[usize]) -> usize {
        let mine = &self.group.states[client].tags;
        self.keys
            .iter()
            .filter(|key| {
                mine.get(*key).is_some_and(|value| {
                    copies
                        .iter()
                        .any(|&c| self.group.states[c].tags.get(*key) == Some(value))
                })
            })
            .count()
    }
}
