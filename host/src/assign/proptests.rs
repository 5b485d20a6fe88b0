//! Property tests of the assignor, the cooperative step and the thread
//! spread, over small random groups (few cases, so the set runs in
//! seconds).
//!
//! Owns: the random-group strategies and the properties. Must never: be
//! compiled outside tests.

use std::collections::{BTreeMap, BTreeSet};

use proptest::collection::vec;
use proptest::prelude::*;

use super::cooperative::cooperative;
use super::fixtures::{balanced_per_thread, check_invariants, feed_back, pid};
use super::model::{
    Assignment, AssignorConfig, ClientAssignment, ClientState, ProcessId, TaskSpec,
};
use super::task_assignor::assign;
use super::threads::distribute_to_threads;
use crate::topology::TaskId;

const MAX_CLIENTS: usize = 5;
const MAX_TASKS: usize = 14;

/// One random rebalance input.
#[derive(Debug, Clone)]
struct Case {
    tasks: Vec<TaskSpec>,
    clients: BTreeMap<ProcessId, ClientState>,
    config: AssignorConfig,
}

fn config_strategy() -> impl Strategy<Value = AssignorConfig> {
    (
        0u32..=2,
        0u32..=3,
        prop_oneof![Just(0i64), Just(10_000), Just(100_000)],
        any::<bool>(),
    )
        .prop_map(|(standbys, warmups, lag, tags)| AssignorConfig {
            num_standby_replicas: standbys,
            acceptable_recovery_lag: lag,
            max_warmup_replicas: warmups,
            rack_aware_assignment_tags: if tags {
                vec!["zone".into()]
            } else {
                Vec::new()
            },
        })
}

fn task_strategy() -> impl Strategy<Value = TaskSpec> {
    (
        0u32..2,
        0i32..8,
        any::<bool>(),
        prop_oneof![1 => Just(0i64), 1 => 0i64..20_000, 2 => 200_000i64..1_000_000],
    )
        .prop_map(|(subtopology, partition, stateful, end)| TaskSpec {
            id: TaskId {
                subtopology,
                partition,
            },
            stateful,
            end_offset_sum: end,
        })
}

/// Per task and client: previous role (0 none, 1 active, 2 standby) and
/// local state as a percentage of the changelog (None: no state).
type Seeds = Vec<Vec<(u8, Option<u8>)>>;

/// A random group, half the time skewed (every previous active on the
/// first process, as after a scale-out). With `caught_up`, every changelog is short enough that
/// every process is caught up on every task (so balance is never held
/// back by warm-ups).
fn case_strategy(caught_up: bool) -> impl Strategy<Value = Case> {
    (
        vec(task_strategy(), 0..MAX_TASKS),
        vec((1u32..=3, 0u8..4), 1..=MAX_CLIENTS),
        vec(
            vec((0u8..3, proptest::option::of(0u8..=100)), MAX_CLIENTS),
            MAX_TASKS,
        ),
        config_strategy(),
        any::<bool>(),
    )
        .prop_map(
            move |(mut tasks, shapes, seeds, config, skew): (_, _, Seeds, _, _)| {
                let mut seen = BTreeSet::new();
                tasks.retain(|t: &TaskSpec| seen.insert(t.id));
                if caught_up {
                    for t in &mut tasks {
                        t.end_offset_sum = t.end_offset_sum.min(config.acceptable_recovery_lag);
                    }
                }
                let mut clients: BTreeMap<ProcessId, ClientState> = BTreeMap::new();
                for (i, (threads, zone)) in shapes.iter().enumerate() {
                    let mut c = ClientState::with_threads(*threads);
                    if *zone > 0 {
                        c.tags.insert("zone".into(), format!("z{zone}"));
                    }
                    c.endpoint = Some(format!("host{i}:8080"));
                    for (task, per_client) in tasks.iter().zip(&seeds) {
                        let (mut role, state) = per_client[i];
                        if skew && role == 1 {
                            // Scale-out: the first process ran everything.
                            role = 0;
                        }
                        if skew && i == 0 && per_client.iter().any(|(r, _)| *r == 1) {
                            role = 1;
                        }
                        match role {
                            1 => {
                                c.prev_active.insert(task.id);
                            }
                            2 => {
                                c.prev_standby.insert(task.id);
                            }
                            _ => {}
                        }
                        if let Some(pct) = state {
                            let sum = task.end_offset_sum / 100 * i64::from(pct);
                            c.task_offset_sums.insert(task.id, sum);
                        }
                    }
                    clients.insert(pid(i as u128 + 1), c);
                }
                Case {
                    tasks,
                    clients,
                    config,
                }
            },
        )
}

fn owners(a: &Assignment) -> BTreeMap<TaskId, ProcessId> {
    a.active_owners()
}

fn actives(a: &Assignment) -> BTreeMap<ProcessId, BTreeSet<TaskId>> {
    a.clients
        .iter()
        .map(|(p, c)| (*p, c.active.clone()))
        .collect()
}

/// A new, empty process with an id after all the others.
fn with_new_member(
    clients: &BTreeMap<ProcessId, ClientState>,
    threads: u32,
) -> (ProcessId, BTreeMap<ProcessId, ClientState>) {
    let id = pid(clients.keys().map(|p| p.0).max().unwrap_or(0) + 1);
    let mut more = clients.clone();
    more.insert(id, ClientState::with_threads(threads));
    (id, more)
}

/// No process both gains and loses tasks of one kind (stateful or
/// stateless) between two assignments: every move is one that the new
/// per-process counts need.
fn no_churn(
    before: &Assignment,
    after: &Assignment,
    stateful: &BTreeSet<TaskId>,
) -> Result<(), TestCaseError> {
    for (p, now) in &after.clients {
        let Some(was) = before.clients.get(p) else {
            continue;
        };
        for kind in [true, false] {
            let of_kind = |s: &BTreeSet<TaskId>| -> BTreeSet<TaskId> {
                s.iter()
                    .filter(|t| stateful.contains(t) == kind)
                    .copied()
                    .collect()
            };
            let (was, now) = (of_kind(&was.active), of_kind(&now.active));
            let gained = now.difference(&was).count();
            let lost = was.difference(&now).count();
            prop_assert!(
                gained == 0 || lost == 0,
                "{} gained {} and lost {}",
                p,
                gained,
                lost
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn invariants_hold(case in case_strategy(false)) {
        let a = assign(&case.tasks, &case.clients, &case.config);
        let checked = check_invariants(&a, &case.tasks, &case.clients, &case.config);
        prop_assert!(checked.is_ok(), "{:?}\n{:#?}", checked, a);
    }

    #[test]
    fn deterministic_and_stable_when_fed_back(case in case_strategy(false)) {
        let first = assign(&case.tasks, &case.clients, &case.config);
        prop_assert_eq!(&first, &assign(&case.tasks, &case.clients, &case.config));
        let again = feed_back(&first, &case.clients);
        let second = assign(&case.tasks, &again, &case.config);
        // Nothing moves again until the warm-ups report progress; without
        // warm-ups nothing changes at all. (With warm-ups, a copy whose
        // offsets did not advance may trade places with another as the
        // warm-up: the test data does not move offsets.)
        prop_assert_eq!(actives(&first), actives(&second));
        if !first.probing_rebalance_needed {
            prop_assert_eq!(&first, &second);
        }
        let third = assign(&case.tasks, &feed_back(&second, &again), &case.config);
        prop_assert_eq!(&second, &third);
    }

    #[test]
    fn balanced_when_caught_up(case in case_strategy(true)) {
        let a = assign(&case.tasks, &case.clients, &case.config);
        let stateful: BTreeSet<TaskId> =
            case.tasks.iter().filter(|t| t.stateful).map(|t| t.id).collect();
        prop_assert!(!a.probing_rebalance_needed);
        prop_assert!(balanced_per_thread(&a, &case.clients, |t| stateful.contains(t)));
        prop_assert!(balanced_per_thread(&a, &case.clients, |_| true));
    }

    #[test]
    fn adding_a_member_moves_only_what_balance_needs(case in case_strategy(true), threads in 1u32..=3) {
        let settled = feed_back(&assign(&case.tasks, &case.clients, &case.config), &case.clients);
        let before = assign(&case.tasks, &settled, &case.config);
        let (new, more) = with_new_member(&settled, threads);
        let after = assign(&case.tasks, &more, &case.config);
        let stateful: BTreeSet<TaskId> =
            case.tasks.iter().filter(|t| t.stateful).map(|t| t.id).collect();
        let (old_owners, new_owners) = (owners(&before), owners(&after));
        for (task, owner) in &new_owners {
            if stateful.contains(task) {
                prop_assert!(old_owners[task] == *owner || *owner == new,
                    "{} moved from {} to {}", task, old_owners[task], owner);
            }
        }
        no_churn(&before, &after, &stateful)?;
        prop_assert!(balanced_per_thread(&after, &more, |_| true));
    }

    #[test]
    fn removing_a_member_moves_only_what_balance_needs(case in case_strategy(true), pick in 0usize..MAX_CLIENTS) {
        let settled = feed_back(&assign(&case.tasks, &case.clients, &case.config), &case.clients);
        let before = assign(&case.tasks, &settled, &case.config);
        let gone = *settled.keys().nth(pick % settled.len()).unwrap();
        let mut fewer = settled.clone();
        fewer.remove(&gone);
        let after = assign(&case.tasks, &fewer, &case.config);
        let stateful: BTreeSet<TaskId> =
            case.tasks.iter().filter(|t| t.stateful).map(|t| t.id).collect();
        for (p, c) in &after.clients {
            let kept: BTreeSet<TaskId> =
                before.clients[p].active.intersection(&stateful).copied().collect();
            prop_assert!(kept.is_subset(&c.active), "{} lost stateful tasks", p);
        }
        no_churn(&before, &after, &stateful)?;
        prop_assert!(balanced_per_thread(&after, &fewer, |_| true));
    }

    #[test]
    fn cooperative_never_double_assigns_and_converges(case in case_strategy(false)) {
        let target = assign(&case.tasks, &case.clients, &case.config);
        let mut owned: BTreeMap<ProcessId, BTreeSet<TaskId>> = case
            .clients
            .iter()
            .map(|(p, c)| (*p, c.prev_active.clone()))
            .collect();
        for round in 0..3 {
            let (now, followup) = cooperative(&target, &owned);
            for (p, c) in &now.clients {
                let goal = &target.clients[p];
                prop_assert!(c.active.is_subset(&goal.active));
                // Withheld actives wait as standbys of their new owner.
                let withheld: BTreeSet<TaskId> = goal.active.difference(&c.active).copied().collect();
                let standby: BTreeSet<TaskId> = goal.standby.union(&withheld).copied().collect();
                prop_assert_eq!(&c.standby, &standby);
                prop_assert_eq!(&c.warmup, &goal.warmup);
                // Kept tasks never leave their owner (unless another
                // member claims them too: then both must let go first).
                let claimed_elsewhere = |t: &TaskId| {
                    owned.iter().any(|(o, ts)| o != p && target.clients.contains_key(o) && ts.contains(t))
                };
                let kept: BTreeSet<TaskId> = goal
                    .active
                    .intersection(&owned[p])
                    .filter(|t| !claimed_elsewhere(t))
                    .copied()
                    .collect();
                prop_assert!(kept.is_subset(&c.active));
                // A task handed out is owned by nobody else.
                for task in &c.active {
                    for (other, tasks) in &owned {
                        prop_assert!(other == p || !tasks.contains(task),
                            "{} given to {} while {} owns it", task, p, other);
                    }
                }
            }
            if !followup {
                prop_assert_eq!(&now, &target);
                break;
            }
            prop_assert!(round < 1, "no convergence after two rounds");
            owned = actives(&now);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// Scale-out: one process ran every stateful task, the others join
    /// with no state. Nothing moves cold; each probing rebalance (after
    /// the warm-ups caught up) moves what warmed up, and the loop ends
    /// balanced.
    #[test]
    fn probing_rebalances_converge_to_balance(
        threads in vec(1u32..=3, 2..=4),
        tasks in 1i32..12,
        max_warmups in 1u32..=3,
        standbys in 0u32..=1,
    ) {
        let end = 1_000_000;
        let tasks: Vec<TaskSpec> = (0..tasks)
            .map(|p| TaskSpec::stateful(TaskId { subtopology: 0, partition: p }, end))
            .collect();
        let config = AssignorConfig {
            num_standby_replicas: standbys,
            max_warmup_replicas: max_warmups,
            ..AssignorConfig::default()
        };
        let mut clients: BTreeMap<ProcessId, ClientState> = threads
            .iter()
            .enumerate()
            .map(|(i, &n)| (pid(i as u128 + 1), ClientState::with_threads(n)))
            .collect();
        if let Some(first) = clients.get_mut(&pid(1)) {
            first.prev_active = tasks.iter().map(|t| t.id).collect();
        }
        let rounds = tasks.len() / max_warmups as usize + 2;
        let mut last = None;
        for _ in 0..rounds {
            let a = assign(&tasks, &clients, &config);
            let checked = check_invariants(&a, &tasks, &clients, &config);
            prop_assert!(checked.is_ok(), "{:?}", checked);
            if let Some(prev) = &last {
                // Only tasks that warmed up moved.
                for (task, owner) in owners(&a) {
                    let before: &BTreeMap<TaskId, ProcessId> = prev;
                    let warmed = clients[&owner].task_offset_sums.get(&task) == Some(&end);
                    prop_assert!(before[&task] == owner || warmed);
                }
            }
            if !a.probing_rebalance_needed {
                prop_assert!(balanced_per_thread(&a, &clients, |_| true));
                return Ok(());
            }
            last = Some(owners(&a));
            // The warm-ups (and standbys) catch up before the next probe.
            clients = feed_back(&a, &clients);
            for (p, c) in &a.clients {
                let state = clients.get_mut(p).unwrap();
                for task in c.warmup.iter().chain(&c.standby) {
                    state.task_offset_sums.insert(*task, end);
                }
            }
        }
        prop_assert!(false, "still warming up after {} rounds", rounds);
    }
}

fn client_strategy() -> impl Strategy<Value = (ClientAssignment, usize, Vec<BTreeSet<TaskId>>)> {
    (vec(0u8..4, 0..24), 1usize..=4, vec(0usize..6, 24)).prop_map(|(roles, threads, prev)| {
        let mut c = ClientAssignment::default();
        let mut previous = vec![BTreeSet::new(); 5];
        for (i, role) in roles.iter().enumerate() {
            let task = TaskId {
                subtopology: 0,
                partition: i as i32,
            };
            match role {
                1 => c.active.insert(task),
                2 => c.standby.insert(task),
                3 => c.warmup.insert(task),
                _ => false,
            };
            if prev[i] < previous.len() {
                previous[prev[i]].insert(task);
            }
        }
        (c, threads, previous)
    })
}

fn spread_ok(values: impl Iterator<Item = usize> + Clone) -> bool {
    let max = values.clone().max().unwrap_or(0);
    let min = values.min().unwrap_or(0);
    max - min <= 1
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn threads_cover_balance_and_stick((client, threads, previous) in client_strategy()) {
        let out = distribute_to_threads(&client, threads, &previous);
        prop_assert_eq!(out.len(), threads);
        let mut seen = BTreeSet::new();
        for th in &out {
            for task in th.active.iter().chain(&th.standby) {
                prop_assert!(seen.insert(*task), "{} on two threads", task);
            }
        }
        let all: BTreeSet<TaskId> =
            client.active.iter().chain(&client.standby).chain(&client.warmup).copied().collect();
        prop_assert_eq!(seen, all);
        let want_active: BTreeSet<TaskId> = out.iter().flat_map(|t| t.active.clone()).collect();
        prop_assert_eq!(want_active, client.active.clone());
        prop_assert!(spread_ok(out.iter().map(|t| t.active.len())));
        prop_assert!(spread_ok(out.iter().map(|t| t.standby.len())));
        let as_previous: Vec<BTreeSet<TaskId>> =
            out.iter().map(|t| t.active.union(&t.standby).copied().collect()).collect();
        prop_assert_eq!(distribute_to_threads(&client, threads, &as_previous), out);
    }
}
