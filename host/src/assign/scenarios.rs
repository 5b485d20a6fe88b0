//! Named scenarios of the assignor (KIP-441 behaviour), one test each.
//!
//! Owns: example-based tests of `assign`. Must never: be compiled outside
//! tests.

use std::collections::BTreeMap;

use super::fixtures::{
    active_counts, balanced_per_thread, check_invariants, feed_back, group, pid, set, stateful,
    stateless, t,
};
use super::model::{Assignment, AssignorConfig, ClientState, ProcessId, TaskSpec};
use super::task_assignor::assign;

const BIG: i64 = 1_000_000;

fn run(
    tasks: &[TaskSpec],
    clients: &BTreeMap<ProcessId, ClientState>,
    config: &AssignorConfig,
) -> Assignment {
    let a = assign(tasks, clients, config);
    if let Err(e) = check_invariants(&a, tasks, clients, config) {
        panic!("invariant broken: {e}\n{a:#?}");
    }
    a
}

fn owner_of(a: &Assignment, p: i32) -> ProcessId {
    a.active_owners()[&t(p)]
}

#[test]
fn fresh_group_is_balanced_by_threads() {
    let clients = group(&[3, 1]);
    let tasks = stateless(8);
    let a = run(&tasks, &clients, &AssignorConfig::default());
    assert_eq!(active_counts(&a)[&pid(1)], 6);
    assert_eq!(active_counts(&a)[&pid(2)], 2);
    assert!(!a.probing_rebalance_needed);
}

#[test]
fn cold_start_spreads_stateful_tasks_without_warmups() {
    // Nobody has state: all equally far behind, so all eligible.
    let clients = group(&[1, 1, 1]);
    let tasks = stateful(6, BIG);
    let a = run(&tasks, &clients, &AssignorConfig::default());
    assert!(active_counts(&a).values().all(|&n| n == 2));
    assert!(!a.probing_rebalance_needed);
}

#[test]
fn unchanged_group_gets_unchanged_assignment() {
    let clients = group(&[2, 1, 1]);
    let mut tasks = stateful(5, BIG);
    tasks.extend((5..9).map(|p| TaskSpec::stateless(t(p))));
    let config = AssignorConfig {
        num_standby_replicas: 1,
        ..AssignorConfig::default()
    };
    let first = run(&tasks, &clients, &config);
    let again = feed_back(&first, &clients);
    let second = run(&tasks, &again, &config);
    assert_eq!(first, second);
}

#[test]
fn warmup_placed_instead_of_a_cold_move() {
    // A ran all four tasks; B joins with no state.
    let mut clients = group(&[1, 1]);
    clients.get_mut(&pid(1)).unwrap().prev_active = set(&[0, 1, 2, 3]);
    let tasks = stateful(4, BIG);
    let a = run(&tasks, &clients, &AssignorConfig::default());
    assert_eq!(a.clients[&pid(1)].active, set(&[0, 1, 2, 3]));
    assert!(a.clients[&pid(2)].active.is_empty());
    assert_eq!(a.clients[&pid(2)].warmup.len(), 2);
    assert!(a.probing_rebalance_needed);

    // The probing rebalance after the warm-ups caught up moves them.
    let mut later = feed_back(&a, &clients);
    for task in &a.clients[&pid(2)].warmup {
        later
            .get_mut(&pid(2))
            .unwrap()
            .task_offset_sums
            .insert(*task, BIG - 5);
    }
    let b = run(&tasks, &later, &AssignorConfig::default());
    assert_eq!(b.clients[&pid(2)].active, a.clients[&pid(2)].warmup);
    assert!(!b.probing_rebalance_needed);
}

#[test]
fn max_warmup_replicas_respected() {
    let mut clients = group(&[1, 1, 1]);
    clients.get_mut(&pid(1)).unwrap().prev_active = set(&[0, 1, 2, 3, 4, 5, 6, 7]);
    let tasks = stateful(8, BIG);
    for max in [0u32, 1, 2, 3] {
        let config = AssignorConfig {
            max_warmup_replicas: max,
            ..AssignorConfig::default()
        };
        let a = run(&tasks, &clients, &config);
        let warmups: usize = a.clients.values().map(|c| c.warmup.len()).sum();
        assert_eq!(warmups, max as usize);
        assert_eq!(a.clients[&pid(1)].active.len(), 8, "nothing moves cold");
    }
}

#[test]
fn within_acceptable_lag_moves_at_once() {
    let mut clients = group(&[1, 1]);
    clients.get_mut(&pid(1)).unwrap().prev_active = set(&[0, 1]);
    let b = clients.get_mut(&pid(2)).unwrap();
    b.task_offset_sums.insert(t(0), BIG - 10_000);
    b.task_offset_sums.insert(t(1), BIG - 10_001);
    let tasks = stateful(2, BIG);
    let a = run(&tasks, &clients, &AssignorConfig::default());
    assert_eq!(a.clients[&pid(2)].active, set(&[0]));
    assert!(!a.probing_rebalance_needed);
}

#[test]
fn caught_up_standby_preferred() {
    // B has a caught-up copy of task 2 only: balance takes task 2 to B at
    // once and warms up one more.
    let mut clients = group(&[1, 1]);
    clients.get_mut(&pid(1)).unwrap().prev_active = set(&[0, 1, 2, 3]);
    let b = clients.get_mut(&pid(2)).unwrap();
    b.prev_standby = set(&[2]);
    b.task_offset_sums.insert(t(2), BIG - 3);
    let tasks = stateful(4, BIG);
    let a = run(&tasks, &clients, &AssignorConfig::default());
    assert_eq!(a.clients[&pid(2)].active, set(&[2]));
    assert_eq!(a.clients[&pid(2)].warmup.len(), 1);
    assert_eq!(a.clients[&pid(1)].active.len(), 3);
}

#[test]
fn standby_promoted_when_the_active_disappears() {
    // A ran task 0, B kept its standby, C has nothing; A is gone.
    let mut clients = group(&[1, 1, 1]);
    clients.remove(&pid(1));
    let b = clients.get_mut(&pid(2)).unwrap();
    b.prev_standby = set(&[0]);
    b.task_offset_sums.insert(t(0), BIG - 100);
    let tasks = stateful(1, BIG);
    let config = AssignorConfig {
        num_standby_replicas: 1,
        ..AssignorConfig::default()
    };
    let a = run(&tasks, &clients, &config);
    assert_eq!(owner_of(&a, 0), pid(2));
    assert_eq!(a.clients[&pid(3)].standby, set(&[0]), "a new standby");
    assert!(!a.probing_rebalance_needed);
}

#[test]
fn hot_standby_preferred_over_a_less_loaded_caught_up_copy() {
    // Task 0's active is gone. 2 has an older copy (within the acceptable
    // lag) and nothing to do; 3 runs task 1 and has a hot standby of 0.
    let mut clients = group(&[2, 2, 2]);
    clients.remove(&pid(1));
    clients
        .get_mut(&pid(2))
        .unwrap()
        .task_offset_sums
        .insert(t(0), BIG - 9_000);
    let c = clients.get_mut(&pid(3)).unwrap();
    c.prev_active = set(&[1]);
    c.prev_standby = set(&[0]);
    c.task_offset_sums.insert(t(0), BIG);
    let a = run(&stateful(2, BIG), &clients, &AssignorConfig::default());
    assert_eq!(a.clients[&pid(3)].active, set(&[0, 1]));
}

#[test]
fn least_lagging_takes_a_task_nobody_is_caught_up_on() {
    let mut clients = group(&[1, 1, 1]);
    clients
        .get_mut(&pid(2))
        .unwrap()
        .task_offset_sums
        .insert(t(0), BIG / 2);
    clients
        .get_mut(&pid(3))
        .unwrap()
        .task_offset_sums
        .insert(t(0), BIG / 10);
    let a = run(&stateful(1, BIG), &clients, &AssignorConfig::default());
    assert_eq!(owner_of(&a, 0), pid(2));
}

#[test]
fn removing_a_member_moves_only_its_tasks() {
    let clients = group(&[1, 1, 1]);
    let tasks = stateless(9);
    let first = run(&tasks, &clients, &AssignorConfig::default());
    let mut rest = feed_back(&first, &clients);
    rest.remove(&pid(3));
    let second = run(&tasks, &rest, &AssignorConfig::default());
    for p in [pid(1), pid(2)] {
        assert!(
            first.clients[&p]
                .active
                .is_subset(&second.clients[&p].active)
        );
    }
    assert!(balanced_per_thread(&second, &rest, |_| true));
}

#[test]
fn adding_a_member_moves_only_what_balance_needs() {
    let clients = group(&[1, 1]);
    let tasks = stateless(6);
    let first = run(&tasks, &clients, &AssignorConfig::default());
    let mut more = feed_back(&first, &clients);
    more.insert(pid(3), ClientState::with_threads(1));
    let second = run(&tasks, &more, &AssignorConfig::default());
    assert_eq!(second.clients[&pid(3)].active.len(), 2);
    for p in [pid(1), pid(2)] {
        assert!(
            second.clients[&p]
                .active
                .is_subset(&first.clients[&p].active)
        );
    }
}

#[test]
fn too_few_processes_for_the_standbys() {
    let clients = group(&[1, 1]);
    let config = AssignorConfig {
        num_standby_replicas: 2,
        ..AssignorConfig::default()
    };
    let a = run(&stateful(4, BIG), &clients, &config);
    let standbys: usize = a.clients.values().map(|c| c.standby.len()).sum();
    assert_eq!(standbys, 4, "one each, on the other process");
    let alone = group(&[1]);
    let a = run(&stateful(2, BIG), &alone, &config);
    assert!(a.clients[&pid(1)].standby.is_empty());
}

#[test]
fn standbys_go_to_other_racks() {
    let mut clients = group(&[1, 1, 1, 1]);
    for (n, zone) in [(1, "a"), (2, "a"), (3, "b"), (4, "b")] {
        clients
            .get_mut(&pid(n))
            .unwrap()
            .tags
            .insert("zone".into(), zone.into());
    }
    let zone_of = |p: &ProcessId| clients[p].tags["zone"].clone();
    let config = AssignorConfig {
        num_standby_replicas: 1,
        rack_aware_assignment_tags: vec!["zone".into()],
        ..AssignorConfig::default()
    };
    let tasks = stateful(8, BIG);
    let a = run(&tasks, &clients, &config);
    for (task, owner) in a.active_owners() {
        let holder = a
            .clients
            .iter()
            .find(|(_, c)| c.standby.contains(&task))
            .map(|(p, _)| *p)
            .unwrap();
        assert_ne!(zone_of(&owner), zone_of(&holder), "{task}");
    }
}

#[test]
fn standbys_stick_to_processes_with_the_state() {
    // Without history, task 0's standby would go to 2 and task 2's to 1.
    let mut clients = group(&[1, 1, 1]);
    for (n, active, standby) in [(1, 0, 1), (2, 1, 2), (3, 2, 0)] {
        let c = clients.get_mut(&pid(n)).unwrap();
        c.prev_active = set(&[active]);
        c.prev_standby = set(&[standby]);
    }
    let config = AssignorConfig {
        num_standby_replicas: 1,
        ..AssignorConfig::default()
    };
    let tasks = stateful(3, BIG);
    let a = run(&tasks, &clients, &config);
    assert_eq!(a.clients[&pid(1)].standby, set(&[1]));
    assert_eq!(a.clients[&pid(2)].standby, set(&[2]));
    assert_eq!(a.clients[&pid(3)].standby, set(&[0]));
    let fresh = run(&tasks, &group(&[1, 1, 1]), &config);
    assert_ne!(fresh.clients[&pid(3)].standby, set(&[0]));
}

#[test]
fn stateless_tasks_balance_the_total_load() {
    // Warm-ups keep A overloaded with stateful tasks; stateless ones go to B.
    let mut clients = group(&[1, 1]);
    clients.get_mut(&pid(1)).unwrap().prev_active = set(&[0, 1, 2, 3, 4, 5]);
    let mut tasks = stateful(4, BIG);
    tasks.extend([4, 5].map(|p| TaskSpec::stateless(t(p))));
    let a = run(&tasks, &clients, &AssignorConfig::default());
    assert_eq!(a.clients[&pid(1)].active, set(&[0, 1, 2, 3]));
    assert_eq!(a.clients[&pid(2)].active, set(&[4, 5]));
}

#[test]
fn empty_inputs() {
    let a = run(&stateless(3), &BTreeMap::new(), &AssignorConfig::default());
    assert!(a.clients.is_empty());
    let a = run(&[], &group(&[1, 2]), &AssignorConfig::default());
    assert!(a.clients.values().all(|c| c.active.is_empty()));
}

#[test]
fn duplicate_claims_and_unknown_tasks_are_tolerated() {
    let mut clients = group(&[1, 1]);
    clients.get_mut(&pid(1)).unwrap().prev_active = set(&[0, 9]);
    clients.get_mut(&pid(2)).unwrap().prev_active = set(&[0, 1]);
    let mut tasks = stateful(2, BIG);
    tasks.push(TaskSpec::stateless(t(0)));
    let a = run(&tasks, &clients, &AssignorConfig::default());
    assert_eq!(owner_of(&a, 0), pid(1));
    assert_eq!(owner_of(&a, 1), pid(2));
}
