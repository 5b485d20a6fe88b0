//! Weir's own group membership (`weir::member`) against the real broker:
//! joins, leader election and assignment, rebalances when members come and
//! go, heartbeats that outlive a sleeping caller, static membership across
//! a restart, fencing, and offsets committed with the generation.
//!
//! Every test uses its own group. `RUST_LOG=weir=debug` shows the protocol.

mod support;

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::kafka::{bootstrap, create_topic};
use support::unique;
use weir::member::{
    Generation, LeaderAssignor, MemberMetadata, Membership, MembershipConfig, MembershipEvent,
    Recovery, Subscription, SubscriptionProvider,
};

const JOIN_WAIT: Duration = Duration::from_secs(20);

/// A subscription whose user data the test can change.
struct Sub(Mutex<Vec<u8>>);

impl SubscriptionProvider for Sub {
    fn subscription(&self) -> Subscription {
        Subscription {
            topics: vec!["input".to_string()],
            user_data: self.0.lock().unwrap().clone(),
        }
    }
}

/// What the assignor returned, by member id.
type Assignment = BTreeMap<String, Vec<u8>>;

/// Gives each member `<member id>@<generation>` and records what it saw.
#[derive(Default)]
struct RecordingAssignor(Mutex<Vec<(Generation, Vec<MemberMetadata>, Assignment)>>);

impl LeaderAssignor for RecordingAssignor {
    fn assign(
        &self,
        generation: Generation,
        members: &[MemberMetadata],
    ) -> BTreeMap<String, Vec<u8>> {
        let out: BTreeMap<String, Vec<u8>> = members
            .iter()
            .map(|m| {
                (
                    m.member_id.clone(),
                    format!("{}@{generation}", m.member_id).into_bytes(),
                )
            })
            .collect();
        self.0
            .lock()
            .unwrap()
            .push((generation, members.to_vec(), out.clone()));
        out
    }
}

impl RecordingAssignor {
    fn call(&self, generation: Generation) -> Option<(Vec<MemberMetadata>, Assignment)> {
        let calls = self.0.lock().unwrap();
        calls
            .iter()
            .rev()
            .find(|(g, _, _)| *g == generation)
            .map(|(_, m, a)| (m.clone(), a.clone()))
    }
}

#[derive(Debug, Clone)]
struct Assigned {
    generation: Generation,
    member_id: String,
    leader: bool,
    user_data: Vec<u8>,
}

struct Member {
    membership: Membership,
    events: Receiver<MembershipEvent>,
    assignor: Arc<RecordingAssignor>,
    sub: Arc<Sub>,
}

fn config(group: &str, session_ms: u64, instance: Option<&str>) -> MembershipConfig {
    let mut c = MembershipConfig::new(bootstrap(), group);
    c.client_id = "weir-test".to_string();
    c.group_instance_id = instance.map(str::to_string);
    c.session_timeout = Duration::from_millis(session_ms);
    c.heartbeat_interval = Duration::from_millis(1000);
    c.rebalance_timeout = Duration::from_secs(20);
    c.request_timeout = Duration::from_secs(10);
    c
}

impl Member {
    fn start(config: MembershipConfig, user_data: &str) -> Member {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let assignor = Arc::new(RecordingAssignor::default());
        let sub = Arc::new(Sub(Mutex::new(user_data.as_bytes().to_vec())));
        let (membership, events) =
            Membership::start(config, sub.clone(), assignor.clone()).unwrap();
        Member {
            membership,
            events,
            assignor,
            sub,
        }
    }

    fn next(&self, within: Duration) -> Option<MembershipEvent> {
        match self.events.recv_timeout(within) {
            Ok(e) => Some(e),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => panic!("the membership thread is gone"),
        }
    }

    /// The events up to and including the next `Assigned`.
    fn until_assigned(&self, within: Duration) -> (Vec<MembershipEvent>, Assigned) {
        let mut before = Vec::new();
        loop {
            match self.next(within) {
                Some(MembershipEvent::Assigned {
                    generation,
                    member_id,
                    leader,
                    user_data,
                }) => {
                    let a = Assigned {
                        generation,
                        member_id,
                        leader,
                        user_data,
                    };
                    return (before, a);
                }
                Some(MembershipEvent::Fatal { error }) => panic!("fatal: {error}"),
                Some(other) => before.push(other),
                None => panic!("no Assigned within {within:?}; events so far: {before:?}"),
            }
        }
    }

    /// Skips assignments until one of at least `generation`.
    fn assigned_at_least(&self, generation: Generation) -> Assigned {
        loop {
            let (_, a) = self.until_assigned(JOIN_WAIT);
            if a.generation >= generation {
                return a;
            }
        }
    }

    fn assert_quiet(&self, for_: Duration, who: &str) {
        if let Some(e) = self.next(for_) {
            panic!("{who} should have seen no event for {for_:?}, got {e:?}");
        }
    }
}

/// Two members joined into the same generation: `(a, b, their assignments)`.
fn two_members(
    group: &str,
    session_ms: u64,
    instances: [Option<&str>; 2],
) -> (Member, Member, Assigned, Assigned) {
    let a = Member::start(config(group, session_ms, instances[0]), "a-data");
    let (_, first) = a.until_assigned(JOIN_WAIT);
    let b = Member::start(config(group, session_ms, instances[1]), "b-data");
    let (_, b_assigned) = b.until_assigned(JOIN_WAIT);
    let a_assigned = a.assigned_at_least(b_assigned.generation);
    assert!(b_assigned.generation > first.generation);
    assert_eq!(
        a_assigned.generation, b_assigned.generation,
        "a and b end in one generation"
    );
    (a, b, a_assigned, b_assigned)
}

fn leader_of<'a>(pairs: &'a [(&'a Member, &'a Assigned)]) -> &'a (&'a Member, &'a Assigned) {
    let leaders: Vec<_> = pairs.iter().filter(|(_, a)| a.leader).collect();
    assert_eq!(
        leaders.len(),
        1,
        "exactly one leader: {:?}",
        pairs.iter().map(|p| p.1).collect::<Vec<_>>()
    );
    leaders[0]
}

#[test]
fn two_members_share_a_generation_and_get_what_the_leader_assigned() {
    let group = unique("member-two");
    let (a, b, a_assigned, b_assigned) = two_members(&group, 10_000, [None, None]);
    let generation = a_assigned.generation;
    assert_ne!(a_assigned.member_id, b_assigned.member_id);

    let pairs = [(&a, &a_assigned), (&b, &b_assigned)];
    let (leader, _) = leader_of(&pairs);
    let (members, returned) = leader
        .assignor
        .call(generation)
        .expect("the leader ran its assignor");
    let seen: BTreeMap<_, _> = members
        .iter()
        .map(|m| (m.member_id.clone(), m.user_data.clone()))
        .collect();
    assert_eq!(
        seen,
        BTreeMap::from([
            (a_assigned.member_id.clone(), b"a-data".to_vec()),
            (b_assigned.member_id.clone(), b"b-data".to_vec()),
        ]),
        "the leader saw both members' user data"
    );
    assert!(
        members
            .iter()
            .all(|m| m.topics == ["input"] && m.group_instance_id.is_none())
    );
    for (_, assigned) in &pairs {
        assert_eq!(Some(&assigned.user_data), returned.get(&assigned.member_id));
    }
    assert_eq!(
        a.membership.current(),
        Some((generation, a_assigned.member_id.clone()))
    );
    a.membership.close(true);
    b.membership.close(true);
}

#[test]
fn a_third_member_rebalances_the_group_and_heartbeats_outlive_a_sleeping_caller() {
    let group = unique("member-three");
    let (a, b, before, _) = two_members(&group, 6_000, [None, None]);

    let c = Member::start(config(&group, 6_000, None), "c-data");
    let (_, c_assigned) = c.until_assigned(JOIN_WAIT);
    assert!(c_assigned.generation > before.generation);
    for (who, m) in [("a", &a), ("b", &b)] {
        let (events, assigned) = m.until_assigned(JOIN_WAIT);
        assert!(
            matches!(events.as_slice(), [MembershipEvent::Rebalancing { generation, .. }] if *generation == before.generation),
            "{who} saw Rebalancing of the old generation first: {events:?}"
        );
        assert_eq!(
            assigned.generation, c_assigned.generation,
            "{who} joined the new generation"
        );
    }

    // The caller does nothing for longer than the session timeout; only the
    // membership threads' heartbeats keep the three members in the group.
    std::thread::sleep(Duration::from_secs(10));
    for (who, m) in [("a", &a), ("b", &b), ("c", &c)] {
        if let Ok(e) = m.events.try_recv() {
            panic!("{who} saw {e:?} while the caller slept");
        }
        assert_eq!(
            m.membership.current().map(|c| c.0),
            Some(c_assigned.generation),
            "{who}"
        );
    }
    for m in [a, b, c] {
        m.membership.close(true);
    }
}

#[test]
fn a_static_member_restarted_within_its_session_gets_its_assignment_back_without_a_rebalance() {
    let group = unique("member-static");
    let (a, b, a_assigned, b_assigned) = two_members(&group, 10_000, [Some("a"), Some("b")]);
    let generation = a_assigned.generation;

    a.membership.close(false);
    drop(a);
    let a2 = Member::start(config(&group, 10_000, Some("a")), "a-data");
    let (events, again) = a2.until_assigned(JOIN_WAIT);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(
        again.generation, generation,
        "same generation: no rebalance"
    );
    assert_eq!(
        again.user_data, a_assigned.user_data,
        "the assignment of the instance, not a new one"
    );
    assert_ne!(
        again.member_id, a_assigned.member_id,
        "a new member id replaces the old one"
    );
    assert_eq!(again.leader, a_assigned.leader);
    assert!(
        a2.assignor.0.lock().unwrap().is_empty(),
        "nobody reassigned"
    );

    b.assert_quiet(Duration::from_secs(3), "b");

    // The same for the follower; then nobody sees anything, even after both
    // old member ids' sessions would have expired.
    b.membership.close(false);
    drop(b);
    let b2 = Member::start(config(&group, 10_000, Some("b")), "b-data");
    let (events, again) = b2.until_assigned(JOIN_WAIT);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(again.generation, generation);
    assert_eq!(again.user_data, b_assigned.user_data);
    assert_eq!(again.leader, b_assigned.leader);
    // The restarted instances commit with their new member ids and the
    // generation they inherited (OffsetCommit carries group.instance.id).
    let topic = unique("member-static");
    create_topic(&topic, 1);
    a2.membership
        .commit_offsets(&[(topic.clone(), 0, 5)])
        .unwrap();
    b2.membership
        .commit_offsets(&[(topic.clone(), 0, 6)])
        .unwrap();
    a2.assert_quiet(Duration::from_secs(11), "a2");
    b2.assert_quiet(Duration::ZERO, "b2");
    assert_eq!(a2.membership.current().map(|c| c.0), Some(generation));
    assert_eq!(b2.membership.current().map(|c| c.0), Some(generation));
    a2.membership.close(true);
    b2.membership.close(true);
}

#[test]
fn a_second_instance_with_the_same_instance_id_fences_the_first() {
    let group = unique("member-fenced");
    let first = Member::start(config(&group, 10_000, Some("x")), "first");
    let (_, assigned) = first.until_assigned(JOIN_WAIT);
    let second = Member::start(config(&group, 10_000, Some("x")), "second");
    let (_, replaced) = second.until_assigned(JOIN_WAIT);
    assert_eq!(replaced.generation, assigned.generation);

    let error = loop {
        match first.next(Duration::from_secs(10)) {
            Some(MembershipEvent::Fatal { error }) => break error,
            Some(_) => continue,
            None => panic!("the first instance was not fenced"),
        }
    };
    assert_eq!(error.code(), Some(82), "FENCED_INSTANCE_ID: {error}");
    assert_eq!(error.recovery(), Recovery::Fatal);
    assert!(error.to_string().contains(&group), "{error}");
    assert_eq!(first.membership.current(), None);
    assert!(first.membership.commit_offsets(&[]).is_err());
    second.membership.close(true);
}

#[test]
fn offsets_are_committed_with_the_generation_and_a_stale_one_is_refused() {
    let group = unique("member-offsets");
    let topic = unique("member-offsets");
    create_topic(&topic, 3);

    let a = Member::start(config(&group, 10_000, None), "a-data");
    let (_, first) = a.until_assigned(JOIN_WAIT);
    a.membership
        .commit_offsets(&[(topic.clone(), 0, 42), (topic.clone(), 1, 7)])
        .unwrap();
    let all = [(topic.clone(), 0), (topic.clone(), 1), (topic.clone(), 2)];
    assert_eq!(
        a.membership.fetch_offsets(&all).unwrap(),
        BTreeMap::from([
            ((topic.clone(), 0), Some(42)),
            ((topic.clone(), 1), Some(7)),
            ((topic.clone(), 2), None),
        ])
    );

    // b joins: the group moves to a new generation.
    let b = Member::start(config(&group, 10_000, None), "b-data");
    let (_, second) = b.until_assigned(JOIN_WAIT);
    a.assigned_at_least(second.generation);
    let stale = a
        .membership
        .commit_offsets_at(first.generation, &[(topic.clone(), 0, 99)])
        .unwrap_err();
    assert_eq!(stale.recovery(), Recovery::Rejoin, "{stale}");
    assert_eq!(stale.code(), Some(22), "ILLEGAL_GENERATION: {stale}");
    assert!(stale.to_string().contains("OffsetCommit") && stale.to_string().contains(&group));

    a.membership
        .commit_offsets(&[(topic.clone(), 0, 50)])
        .unwrap();
    b.membership
        .commit_offsets(&[(topic.clone(), 2, 3)])
        .unwrap();
    assert_eq!(
        b.membership.fetch_offsets(&all).unwrap(),
        BTreeMap::from([
            ((topic.clone(), 0), Some(50)),
            ((topic.clone(), 1), Some(7)),
            ((topic.clone(), 2), Some(3)),
        ])
    );
    a.membership.close(true);
    b.membership.close(true);
}

#[test]
fn a_dynamic_member_that_leaves_triggers_a_prompt_rebalance() {
    let group = unique("member-leave");
    // A long session: only the LeaveGroup can explain a prompt rebalance.
    let (a, b, before, _) = two_members(&group, 30_000, [None, None]);
    b.membership.close(true);
    let (events, after) = a.until_assigned(Duration::from_secs(5));
    assert!(
        matches!(events.as_slice(), [MembershipEvent::Rebalancing { .. }]),
        "{events:?}"
    );
    assert!(after.generation > before.generation);
    assert!(after.leader, "the only member leads");
    let (members, _) = a.assignor.call(after.generation).unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].member_id, before.member_id);
    a.membership.close(true);
}

#[test]
fn a_requested_rejoin_rebalances_with_fresh_subscriptions_while_keeping_the_assignment() {
    let group = unique("member-rejoin");
    let (a, b, a_assigned, b_assigned) = two_members(&group, 10_000, [None, None]);
    let pairs = [(&a, &a_assigned), (&b, &b_assigned)];
    let (_, leader_assigned) = leader_of(&pairs);
    let (leader, follower, follower_assigned) = if leader_assigned.member_id == a_assigned.member_id
    {
        (&a, &b, &b_assigned)
    } else {
        (&b, &a, &a_assigned)
    };

    // A follower whose subscription changed (it revoked tasks) rejoins: the
    // leader sees the new user data in a new generation.
    *follower.sub.0.lock().unwrap() = b"revoked some".to_vec();
    follower.membership.request_rejoin("follow-up rebalance");
    let (events, next) = follower.until_assigned(JOIN_WAIT);
    assert!(
        matches!(events.as_slice(), [MembershipEvent::Rebalancing { .. }]),
        "{events:?}"
    );
    assert!(next.generation > follower_assigned.generation);
    // It kept its generation (for commits) until the new one was assigned.
    let (members, _) = leader.assignor.call(next.generation).unwrap();
    let mine = members
        .iter()
        .find(|m| m.member_id == follower_assigned.member_id)
        .unwrap();
    assert_eq!(mine.user_data, b"revoked some");
    leader.assigned_at_least(next.generation);

    // The leader's rejoin (a probing rebalance) always starts a generation.
    leader.membership.request_rejoin("probing rebalance");
    let (_, probed) = leader.until_assigned(JOIN_WAIT);
    assert!(probed.generation > next.generation);
    follower.assigned_at_least(probed.generation);

    // A follower rejoining with an unchanged subscription gets the current
    // generation back: the coordinator starts no rebalance for it.
    follower.membership.request_rejoin("nothing changed");
    let (events, same) = follower.until_assigned(JOIN_WAIT);
    assert!(
        matches!(events.as_slice(), [MembershipEvent::Rebalancing { .. }]),
        "{events:?}"
    );
    assert_eq!(same.generation, probed.generation);
    leader.assert_quiet(Duration::from_secs(2), "the leader");
    a.membership.close(true);
    b.membership.close(true);
}
