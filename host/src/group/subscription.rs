//! What travels through the group protocol for Weir: this process's
//! subscription (process id, endpoint, threads, offset sums of local
//! state, owned tasks, topology fingerprint) and, in the leader, the
//! assignment of every member computed by [`crate::assign`].
//!
//! Pure functions over plain data (no I/O, no locks), so the leader's
//! decisions are unit-tested here without a broker.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::assign::{
    AssignmentInfo, AssignorConfig, ClientState, LATEST_VERSION, ProcessId, SubscriptionInfo,
    TaskSpec, assign, cooperative, error_code, host_map,
};
use crate::config::Config;
use crate::member::MemberMetadata;
use crate::topics::TopicPlan;
use crate::topology::{TaskId, Topology};

/// What the group needs to know of the running version.
#[derive(Debug, Clone)]
pub(crate) struct PlanView {
    pub plan: Arc<TopicPlan>,
    /// Members running another topology are reported, never mixed in.
    pub fingerprint: String,
    /// Whether tasks have state (and so a placement to keep).
    pub stateful: bool,
}

impl PlanView {
    pub fn new(topology: &Topology, plan: Arc<TopicPlan>) -> Self {
        PlanView {
            fingerprint: fingerprint(topology, &plan),
            stateful: !topology.stores.is_empty(),
            plan,
        }
    }
}

/// Name, actual source and repartition topics, and stores with their kind
/// and logging, hashed: what two members must agree on to share tasks.
/// Sinks and code are left out, so a new version with the same shape
/// (most deployments) keeps the fingerprint.
pub(crate) fn fingerprint(topology: &Topology, plan: &TopicPlan) -> String {
    let mut h = Sha256::new();
    h.update(topology.name.as_bytes());
    for source in &plan.sources {
        h.update(b"\0source\0");
        h.update(source.as_bytes());
    }
    h.update(b"\0partitions\0");
    h.update(plan.partitions.to_be_bytes());
    for store in &topology.stores {
        h.update(b"\0store\0");
        h.update(store.name.as_bytes());
        h.update(format!("{:?}/{}/{}", store.kind, store.logged, store.persistent).as_bytes());
        // Only when set, so topologies without one keep their fingerprint.
        if let Some(source) = &store.source_changelog {
            h.update(b"\0restored-from\0");
            h.update(source.as_bytes());
        }
    }
    format!("{}:{}", topology.name, &hex::encode(h.finalize())[..16])
}

/// This process's subscription user data.
pub(crate) fn subscription_info(
    config: &Config,
    process_id: ProcessId,
    plan: &PlanView,
    task_offset_sums: BTreeMap<TaskId, i64>,
    owned_active: BTreeSet<TaskId>,
    owned_standby: BTreeSet<TaskId>,
) -> SubscriptionInfo {
    SubscriptionInfo {
        version: LATEST_VERSION,
        latest_supported_version: LATEST_VERSION,
        process_id,
        endpoint: config.application_server.clone(),
        threads: config.num_stream_threads as u32,
        task_offset_sums,
        owned_active,
        owned_standby,
        client_tags: config.client_tags.clone(),
        topology_fingerprint: plan.fingerprint.clone(),
    }
}

/// The assignor settings from the config, named as in Kafka Streams.
pub(crate) fn assignor_config(config: &Config) -> AssignorConfig {
    AssignorConfig {
        num_standby_replicas: config.num_standby_replicas,
        acceptable_recovery_lag: config.acceptable_recovery_lag,
        max_warmup_replicas: config.max_warmup_replicas,
        rack_aware_assignment_tags: config.rack_aware_assignment_tags.clone(),
    }
}

/// What the leader decides with besides the members' subscriptions.
#[derive(Debug, Clone)]
pub(crate) struct LeaderSettings {
    pub assignor: AssignorConfig,
    pub probing_rebalance_interval: Duration,
    /// Per task, the sum of its changelogs' end offsets; a task missing
    /// here is judged by the most state any member reports.
    pub changelog_ends: BTreeMap<TaskId, i64>,
}

/// The leader's answer: every member's assignment user data.
pub(crate) fn leader_assignment(
    generation: i32,
    plan: &PlanView,
    members: &[MemberMetadata],
    settings: &LeaderSettings,
) -> BTreeMap<String, Vec<u8>> {
    let mut clients: BTreeMap<ProcessId, ClientState> = BTreeMap::new();
    let mut owned: BTreeMap<ProcessId, BTreeSet<TaskId>> = BTreeMap::new();
    let mut process_of: BTreeMap<String, ProcessId> = BTreeMap::new();
    let mut refused: BTreeMap<String, i32> = BTreeMap::new();
    let mut version = LATEST_VERSION;
    for member in members {
        let info = match SubscriptionInfo::decode(&member.user_data) {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!(generation, member = %member.member_id, error = %e,
                    "unreadable subscription: the member gets no tasks");
                refused.insert(member.member_id.clone(), error_code::UNSUPPORTED_VERSION);
                continue;
            }
        };
        if info.topology_fingerprint != plan.fingerprint {
            tracing::warn!(generation, member = %member.member_id,
                theirs = %info.topology_fingerprint, ours = %plan.fingerprint,
                "member runs another topology: it gets no tasks until it runs this one");
            refused.insert(member.member_id.clone(), error_code::TOPOLOGY_MISMATCH);
            continue;
        }
        version = version.min(info.latest_supported_version.max(1));
        let mut pid = info.process_id;
        if clients.contains_key(&pid) {
            // Two processes on one copied state directory: keep them apart.
            pid = ProcessId(u128::from_be_bytes(
                Sha256::digest(member.member_id.as_bytes())[..16]
                    .try_into()
                    .unwrap_or([0; 16]),
            ));
            tracing::warn!(generation, member = %member.member_id, process_id = %info.process_id,
                "two members report the same process id (copied state directory?)");
        }
        owned.insert(pid, info.owned_active.clone());
        clients.insert(pid, info.client_state());
        process_of.insert(member.member_id.clone(), pid);
    }

    let end = |task: TaskId| match settings.changelog_ends.get(&task) {
        Some(end) => *end,
        None => clients
            .values()
            .filter_map(|c| c.task_offset_sums.get(&task).copied())
            .max()
            .unwrap_or(0),
    };
    let tasks: Vec<TaskSpec> = (0..plan.plan.partitions as i32)
        .map(TaskId::for_partition)
        .map(|id| match plan.stateful {
            true => TaskSpec::stateful(id, end(id)),
            false => TaskSpec::stateless(id),
        })
        .collect();
    let target = assign(&tasks, &clients, &settings.assignor);
    let (mut round, followup) = cooperative(&target, &owned);
    if !plan.stateful {
        // A task withheld for the hand-over waits as a standby; stateless
        // tasks have nothing to keep warm.
        for client in round.clients.values_mut() {
            client.standby.clear();
        }
    }
    let hosts = host_map(&round, &clients);
    tracing::info!(
        generation,
        members = members.len(),
        tasks = tasks.len(),
        followup,
        probing = target.probing_rebalance_needed,
        "leader computed the assignment"
    );
    let probing_rebalance_in_ms = target
        .probing_rebalance_needed
        .then_some(settings.probing_rebalance_interval.as_millis() as u64);

    let mut out = BTreeMap::new();
    for member in members {
        let mut info = AssignmentInfo {
            version,
            latest_supported_version: LATEST_VERSION,
            active: Vec::new(),
            standby: BTreeSet::new(),
            warmup: BTreeSet::new(),
            host_map: hosts.clone(),
            followup_needed: false,
            probing_rebalance_in_ms,
            error_code: refused
                .get(&member.member_id)
                .copied()
                .unwrap_or(error_code::NONE),
        };
        if let Some(client) = process_of
            .get(&member.member_id)
            .and_then(|pid| round.clients.get(pid))
        {
            info.active = client.active.iter().copied().collect();
            info.standby = client.standby.clone();
            info.warmup = client.warmup.clone();
            info.followup_needed = followup;
        }
        out.insert(member.member_id.clone(), info.encode());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::StoreSpec;

    fn plan(partitions: usize) -> PlanView {
        let topology = Topology {
            name: "wc".into(),
            sources: vec!["lines".into()],
            sinks: vec![],
            stores: vec![StoreSpec::key_value("counts", true)],
            repartitions: vec![],
        };
        let plan = TopicPlan {
            partitions,
            sources: vec!["lines".into()],
            source_names: vec!["lines".into()],
            sinks: vec![],
            changelogs: vec![],
            source_changelogs: vec![],
        };
        PlanView::new(&topology, Arc::new(plan))
    }

    fn member(id: &str, pid: u128, plan: &PlanView, owned: &[i32]) -> MemberMetadata {
        let info = SubscriptionInfo {
            version: LATEST_VERSION,
            latest_supported_version: LATEST_VERSION,
            process_id: ProcessId(pid),
            endpoint: Some(format!("{id}:8080")),
            threads: 1,
            task_offset_sums: BTreeMap::new(),
            owned_active: owned.iter().map(|p| TaskId::for_partition(*p)).collect(),
            owned_standby: BTreeSet::new(),
            client_tags: BTreeMap::new(),
            topology_fingerprint: plan.fingerprint.clone(),
        };
        MemberMetadata {
            member_id: id.into(),
            group_instance_id: None,
            topics: vec!["lines".into()],
            user_data: info.encode(),
        }
    }

    fn settings(standbys: u32) -> LeaderSettings {
        LeaderSettings {
            assignor: AssignorConfig {
                num_standby_replicas: standbys,
                ..AssignorConfig::default()
            },
            probing_rebalance_interval: Duration::from_secs(5),
            changelog_ends: BTreeMap::new(),
        }
    }

    fn decode(out: &BTreeMap<String, Vec<u8>>, id: &str) -> AssignmentInfo {
        AssignmentInfo::decode(&out[id]).unwrap()
    }

    #[test]
    fn every_partition_is_assigned_once_and_the_host_map_names_the_owners() {
        let plan = plan(4);
        let members = [member("a", 1, &plan, &[]), member("b", 2, &plan, &[])];
        let out = leader_assignment(1, &plan, &members, &settings(0));
        let (a, b) = (decode(&out, "a"), decode(&out, "b"));
        let mut all: Vec<TaskId> = a.active.iter().chain(&b.active).copied().collect();
        all.sort();
        assert_eq!(all, (0..4).map(TaskId::for_partition).collect::<Vec<_>>());
        assert_eq!((a.active.len(), b.active.len()), (2, 2));
        assert!(!a.followup_needed);
        assert_eq!(a.host_map["a:8080"].active.len(), 2);
        assert_eq!(a.host_map, b.host_map);
    }

    #[test]
    fn a_moved_task_is_revoked_first_and_handed_over_in_a_follow_up() {
        let plan = plan(4);
        // `a` owned everything; `b` just joined.
        let members = [
            member("a", 1, &plan, &[0, 1, 2, 3]),
            member("b", 2, &plan, &[]),
        ];
        let first = leader_assignment(2, &plan, &members, &settings(0));
        let (a, b) = (decode(&first, "a"), decode(&first, "b"));
        assert_eq!(a.active.len(), 2, "a keeps two and lets two go");
        assert!(b.active.is_empty(), "b waits until a has let them go");
        assert!(a.followup_needed && b.followup_needed);
        // The follow-up: `a` reports only what it kept.
        let kept: Vec<i32> = a.active.iter().map(|t| t.partition).collect();
        let members = [member("a", 1, &plan, &kept), member("b", 2, &plan, &[])];
        let second = leader_assignment(3, &plan, &members, &settings(0));
        let (a2, b2) = (decode(&second, "a"), decode(&second, "b"));
        assert_eq!(a2.active, a.active, "kept tasks never move");
        assert_eq!(b2.active.len(), 2);
        assert!(!a2.followup_needed);
    }

    #[test]
    fn a_member_with_another_topology_gets_no_tasks() {
        let plan = plan(2);
        let mut other = plan.clone();
        other.fingerprint = "wc:different".into();
        let members = [member("a", 1, &plan, &[]), member("b", 2, &other, &[])];
        let out = leader_assignment(1, &plan, &members, &settings(0));
        assert_eq!(decode(&out, "a").active.len(), 2);
        let b = decode(&out, "b");
        assert!(b.active.is_empty());
        assert_eq!(b.error_code, error_code::TOPOLOGY_MISMATCH);
        let garbage = MemberMetadata {
            user_data: b"not a subscription".to_vec(),
            ..member("c", 3, &plan, &[])
        };
        let out = leader_assignment(
            2,
            &plan,
            &[member("a", 1, &plan, &[]), garbage],
            &settings(0),
        );
        assert_eq!(
            decode(&out, "c").error_code,
            error_code::UNSUPPORTED_VERSION
        );
    }

    #[test]
    fn the_fingerprint_follows_stores_and_topics_not_sinks() {
        let a = plan(4);
        assert_eq!(a.fingerprint, plan(4).fingerprint);
        assert_ne!(a.fingerprint, plan(8).fingerprint);
    }

    #[test]
    fn standbys_go_to_the_other_process_and_lagging_moves_wait_for_warm_ups() {
        let plan = plan(2);
        let fresh = [member("a", 1, &plan, &[]), member("b", 2, &plan, &[])];
        let out = leader_assignment(1, &plan, &fresh, &settings(1));
        let (a, b) = (decode(&out, "a"), decode(&out, "b"));
        for task in [0, 1].map(TaskId::for_partition) {
            let active_on_a = a.active.contains(&task);
            assert_ne!(
                active_on_a,
                b.active.contains(&task),
                "one active for {task}"
            );
            let standby_on = if active_on_a { &b.standby } else { &a.standby };
            assert!(
                standby_on.contains(&task),
                "{task} has a standby on the other process"
            );
        }
        assert_eq!(b.host_map["a:8080"], a.host_map["a:8080"]);

        // `a` ran both; `b`, far behind on large changelogs, gets a
        // warm-up, `a` keeps both tasks, and a probing rebalance is set.
        let members = [member("a", 1, &plan, &[0, 1]), member("b", 2, &plan, &[])];
        let mut lagging = settings(0);
        lagging.changelog_ends = [
            (TaskId::for_partition(0), 500_000),
            (TaskId::for_partition(1), 500_000),
        ]
        .into();
        let out = leader_assignment(2, &plan, &members, &lagging);
        let (a, b) = (decode(&out, "a"), decode(&out, "b"));
        assert_eq!(a.active.len(), 2, "no task moves cold");
        assert!(b.active.is_empty());
        assert_eq!(b.warmup.len(), 1);
        assert_eq!(a.probing_rebalance_in_ms, Some(5_000));
    }

    #[test]
    fn standbys_go_to_another_zone_when_the_tags_ask_for_it() {
        let plan = plan(1);
        let zone = |id: &str, pid: u128, z: &str| {
            let mut m = member(id, pid, &plan, &[]);
            let mut info = SubscriptionInfo::decode(&m.user_data).unwrap();
            info.client_tags = [("zone".to_string(), z.to_string())].into();
            m.user_data = info.encode();
            m
        };
        let members = [zone("a", 1, "x"), zone("b", 2, "x"), zone("c", 3, "y")];
        let mut settings = settings(1);
        settings.assignor.rack_aware_assignment_tags = vec!["zone".into()];
        let out = leader_assignment(1, &plan, &members, &settings);
        let task = TaskId::for_partition(0);
        let zone_of = |id: &str| if id == "c" { "y" } else { "x" };
        let with = |pick: fn(&AssignmentInfo) -> bool| {
            ["a", "b", "c"]
                .into_iter()
                .find(|id| pick(&decode(&out, id)))
                .unwrap()
        };
        let active = with(|i| i.active.contains(&TaskId::for_partition(0)));
        let standby = with(|i| i.standby.contains(&TaskId::for_partition(0)));
        assert_ne!(
            zone_of(active),
            zone_of(standby),
            "{task}: active on {active}, standby on {standby}"
        );
    }
}
