//! The cooperative (two-phase) step of the classic group protocol: a task
//! moving from process A to process B is first only revoked from A, and
//! given to B in a follow-up rebalance, once A no longer owns it.
//!
//! Owns: which active tasks of a target assignment may be handed out in
//! this round. Must never: take a task away from a process that keeps it,
//! give a task to a process while another member still owns it, or change
//! standbys and warm-ups (they need no hand-over: several copies may tail
//! a changelog at once). A task withheld from its new owner for a round is
//! made a standby there meanwhile, so the owner opens its stores and
//! tails the changelog while the old owner lets go.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{Assignment, ProcessId};
use crate::topology::TaskId;

/// This round's assignment on the way to `target`, and whether a follow-up
/// rebalance is needed.
///
/// `owned` holds what each member reported owning as active in its
/// subscription. A task in `target` stays in its new owner's actives only
/// if no *other* member of `target` still owns it; otherwise it is left out
/// this round (its old owner's target no longer lists it, so that owner
/// revokes it) and the follow-up flag is set. Owners that are not members
/// of `target` are ignored (they left the group). Applying this again with
/// `owned` set to the result's actives reaches `target` in one more round.
pub fn cooperative(
    target: &Assignment,
    owned: &BTreeMap<ProcessId, BTreeSet<TaskId>>,
) -> (Assignment, bool) {
    let mut owners: BTreeMap<TaskId, Vec<ProcessId>> = BTreeMap::new();
    for (member, tasks) in owned {
        if !target.clients.contains_key(member) {
            continue;
        }
        for task in tasks {
            owners.entry(*task).or_default().push(*member);
        }
    }
    let mut out = target.clone();
    let mut followup = false;
    for (member, client) in out.clients.iter_mut() {
        let mut withheld = Vec::new();
        client.active.retain(|task| {
            let held_elsewhere = owners
                .get(task)
                .is_some_and(|list| list.iter().any(|o| o != member));
            if held_elsewhere {
                withheld.push(*task);
            }
            !held_elsewhere
        });
        followup |= !withheld.is_empty();
        client.standby.extend(withheld);
    }
    (out, followup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assign::model::ClientAssignment;

    fn t(p: i32) -> TaskId {
        TaskId::for_partition(p)
    }

    fn set(ps: &[i32]) -> BTreeSet<TaskId> {
        ps.iter().map(|&p| t(p)).collect()
    }

    fn target(parts: &[(u128, &[i32])]) -> Assignment {
        Assignment {
            clients: parts
                .iter()
                .map(|(id, ps)| {
                    (
                        ProcessId(*id),
                        ClientAssignment {
                            active: set(ps),
                            ..ClientAssignment::default()
                        },
                    )
                })
                .collect(),
            probing_rebalance_needed: false,
        }
    }

    #[test]
    fn moved_task_is_revoked_first_then_assigned() {
        // A owned 0..4; B joined; the target gives 2 and 3 to B.
        let goal = target(&[(1, &[0, 1]), (2, &[2, 3])]);
        let owned: BTreeMap<ProcessId, BTreeSet<TaskId>> =
            [(ProcessId(1), set(&[0, 1, 2, 3])), (ProcessId(2), set(&[]))].into();
        let (round1, followup) = cooperative(&goal, &owned);
        assert!(followup);
        assert_eq!(round1.clients[&ProcessId(1)].active, set(&[0, 1]));
        assert!(round1.clients[&ProcessId(2)].active.is_empty());
        assert_eq!(round1.clients[&ProcessId(2)].standby, set(&[2, 3]));

        let owned: BTreeMap<ProcessId, BTreeSet<TaskId>> = round1
            .clients
            .iter()
            .map(|(id, c)| (*id, c.active.clone()))
            .collect();
        let (round2, followup) = cooperative(&goal, &owned);
        assert!(!followup);
        assert_eq!(round2, goal);
    }

    #[test]
    fn departed_owner_does_not_block() {
        let goal = target(&[(2, &[0])]);
        let owned: BTreeMap<ProcessId, BTreeSet<TaskId>> = [(ProcessId(1), set(&[0]))].into();
        let (out, followup) = cooperative(&goal, &owned);
        assert!(!followup);
        assert_eq!(out, goal);
    }

    #[test]
    fn standbys_and_warmups_pass_through() {
        let mut goal = target(&[(1, &[]), (2, &[0])]);
        if let Some(c) = goal.clients.get_mut(&ProcessId(1)) {
            c.standby.insert(t(0));
            c.warmup.insert(t(1));
        }
        let owned: BTreeMap<ProcessId, BTreeSet<TaskId>> = [(ProcessId(1), set(&[0]))].into();
        let (out, followup) = cooperative(&goal, &owned);
        assert!(followup);
        assert!(out.clients[&ProcessId(2)].active.is_empty());
        assert_eq!(
            out.clients[&ProcessId(2)].standby,
            set(&[0]),
            "withheld: a standby meanwhile"
        );
        assert_eq!(out.clients[&ProcessId(1)].standby, set(&[0]));
        assert_eq!(out.clients[&ProcessId(1)].warmup, set(&[1]));
    }
}
