//! The group APIs as this client speaks them: which `kafka-protocol` message
//! answers which [`Api`], how each request is built for the version the
//! connection negotiated, and how responses are read (the consumer-protocol
//! bytes inside JoinGroup and SyncGroup are `consumer.rs`'s).
//!
//! Pure functions over messages and bytes: must never do I/O, hold state or
//! decide on retries. Every field the broker sends is read with a fallback,
//! never unwrapped.

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::connection::Api;
use super::error::codes;
use super::types::OffsetAndMetadata;

macro_rules! apis {
    ($($req:ident => $resp:ident, $key:ident;)*) => {$(
        impl Api for $req {
            const KEY: ApiKey = ApiKey::$key;
            const NAME: &'static str = stringify!($key);
            type Response = $resp;
        }
    )*};
}

apis! {
    FindCoordinatorRequest => FindCoordinatorResponse, FindCoordinator;
    JoinGroupRequest => JoinGroupResponse, JoinGroup;
    SyncGroupRequest => SyncGroupResponse, SyncGroup;
    HeartbeatRequest => HeartbeatResponse, Heartbeat;
    LeaveGroupRequest => LeaveGroupResponse, LeaveGroup;
    OffsetCommitRequest => OffsetCommitResponse, OffsetCommit;
    OffsetFetchRequest => OffsetFetchResponse, OffsetFetch;
}

/// Who is calling: the identity every group request carries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemberRef<'a> {
    pub group_id: &'a str,
    pub member_id: &'a str,
    pub group_instance_id: Option<&'a str>,
    pub generation: i32,
}

impl MemberRef<'_> {
    /// The lowest version of a group API that carries `group.instance.id`
    /// (`static_min`), or any version for a dynamic member.
    pub(crate) fn needs(&self, static_min: i16) -> i16 {
        if self.group_instance_id.is_some() {
            static_min
        } else {
            0
        }
    }
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn group(s: &str) -> GroupId {
    GroupId(text(s))
}

// ---- FindCoordinator --------------------------------------------------------

pub(crate) fn find_coordinator(group_id: &str, version: i16) -> FindCoordinatorRequest {
    let request = FindCoordinatorRequest::default().with_key_type(0);
    if version >= 4 {
        request.with_coordinator_keys(vec![text(group_id)])
    } else {
        request.with_key(text(group_id))
    }
}

/// `host:port` of the coordinator, or the error code and message.
pub(crate) fn coordinator_of(
    response: &FindCoordinatorResponse,
    group_id: &str,
    version: i16,
) -> Result<String, (i16, Option<String>)> {
    let (code, message, host, port) = if version >= 4 {
        let Some(c) = response
            .coordinators
            .iter()
            .find(|c| c.key.as_str() == group_id)
            .or(response.coordinators.first())
        else {
            return Err((
                codes::COORDINATOR_NOT_AVAILABLE,
                Some("empty coordinator list".to_string()),
            ));
        };
        (c.error_code, c.error_message.as_ref(), &c.host, c.port)
    } else {
        (
            response.error_code,
            response.error_message.as_ref(),
            &response.host,
            response.port,
        )
    };
    if code != codes::NONE {
        return Err((code, message.map(|m| m.to_string())));
    }
    if host.is_empty() || !(1..=65535).contains(&port) {
        return Err((
            codes::COORDINATOR_NOT_AVAILABLE,
            Some(format!("coordinator address {host}:{port}")),
        ));
    }
    Ok(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

// ---- JoinGroup / SyncGroup / Heartbeat / LeaveGroup -------------------------

pub(crate) struct JoinParams<'a> {
    pub member: MemberRef<'a>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: &'a str,
    pub protocol_name: &'a str,
    pub metadata: Bytes,
    pub reason: &'a str,
}

pub(crate) fn join_group(p: &JoinParams<'_>, version: i16) -> JoinGroupRequest {
    let mut request = JoinGroupRequest::default()
        .with_group_id(group(p.member.group_id))
        .with_session_timeout_ms(p.session_timeout_ms)
        .with_rebalance_timeout_ms(p.rebalance_timeout_ms)
        .with_member_id(text(p.member.member_id))
        .with_protocol_type(text(p.protocol_type))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(text(p.protocol_name))
                .with_metadata(p.metadata.clone()),
        ]);
    if version >= 5 {
        request = request.with_group_instance_id(p.member.group_instance_id.map(text));
    }
    if version >= 8 {
        request = request.with_reason(Some(text(p.reason)));
    }
    request
}

pub(crate) fn sync_group(
    member: MemberRef<'_>,
    protocol_type: &str,
    protocol_name: &str,
    assignments: Vec<(String, Bytes)>,
    version: i16,
) -> SyncGroupRequest {
    let mut request = SyncGroupRequest::default()
        .with_group_id(group(member.group_id))
        .with_generation_id(member.generation)
        .with_member_id(text(member.member_id))
        .with_assignments(
            assignments
                .into_iter()
                .map(|(id, bytes)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(StrBytes::from_string(id))
                        .with_assignment(bytes)
                })
                .collect(),
        );
    if version >= 3 {
        request = request.with_group_instance_id(member.group_instance_id.map(text));
    }
    if version >= 5 {
        request = request
            .with_protocol_type(Some(text(protocol_type)))
            .with_protocol_name(Some(text(protocol_name)));
    }
    request
}

pub(crate) fn heartbeat(member: MemberRef<'_>, version: i16) -> HeartbeatRequest {
    let mut request = HeartbeatRequest::default()
        .with_group_id(group(member.group_id))
        .with_generation_id(member.generation)
        .with_member_id(text(member.member_id));
    if version >= 3 {
        request = request.with_group_instance_id(member.group_instance_id.map(text));
    }
    request
}

pub(crate) fn leave_group(member: MemberRef<'_>, reason: &str, version: i16) -> LeaveGroupRequest {
    let request = LeaveGroupRequest::default().with_group_id(group(member.group_id));
    if version >= 3 {
        let mut identity = MemberIdentity::default()
            .with_member_id(text(member.member_id))
            .with_group_instance_id(member.group_instance_id.map(text));
        if version >= 5 {
            identity = identity.with_reason(Some(text(reason)));
        }
        request.with_members(vec![identity])
    } else {
        request.with_member_id(text(member.member_id))
    }
}

/// The first error of a LeaveGroup response (top level, then per member).
pub(crate) fn leave_group_error(response: &LeaveGroupResponse) -> i16 {
    if response.error_code != codes::NONE {
        return response.error_code;
    }
    response
        .members
        .iter()
        .map(|m| m.error_code)
        .find(|c| *c != codes::NONE)
        .unwrap_or(codes::NONE)
}

// ---- OffsetCommit / OffsetFetch ---------------------------------------------

pub(crate) fn offset_commit(
    member: MemberRef<'_>,
    offsets: &[(String, i32, OffsetAndMetadata)],
    version: i16,
) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, committed) in offsets {
        let entry = OffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(committed.offset)
            .with_committed_leader_epoch(-1)
            .with_committed_metadata(Some(text(&committed.metadata)));
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(entry),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(text(topic)))
                    .with_partitions(vec![entry]),
            ),
        }
    }
    let mut request = OffsetCommitRequest::default()
        .with_group_id(group(member.group_id))
        .with_generation_id_or_member_epoch(member.generation)
        .with_member_id(text(member.member_id))
        .with_topics(topics);
    if version <= 4 {
        request = request.with_retention_time_ms(-1);
    }
    if version >= 7 {
        request = request.with_group_instance_id(member.group_instance_id.map(text));
    }
    request
}

/// The first partition error of an OffsetCommit response, with its topic
/// and partition.
pub(crate) fn offset_commit_error(response: &OffsetCommitResponse) -> Option<(i16, String, i32)> {
    response.topics.iter().find_map(|t| {
        t.partitions
            .iter()
            .find(|p| p.error_code != codes::NONE)
            .map(|p| (p.error_code, t.name.0.to_string(), p.partition_index))
    })
}

pub(crate) fn offset_fetch(
    group_id: &str,
    partitions: &[(String, i32)],
    version: i16,
) -> OffsetFetchRequest {
    let mut by_topic: Vec<(String, Vec<i32>)> = Vec::new();
    for (topic, partition) in partitions {
        match by_topic.iter_mut().find(|(t, _)| t == topic) {
            Some((_, ps)) => ps.push(*partition),
            None => by_topic.push((topic.clone(), vec![*partition])),
        }
    }
    let mut request = OffsetFetchRequest::default();
    if version >= 8 {
        let topics = by_topic
            .into_iter()
            .map(|(t, ps)| {
                OffsetFetchRequestTopics::default()
                    .with_name(TopicName(StrBytes::from_string(t)))
                    .with_partition_indexes(ps)
            })
            .collect();
        let mut g = OffsetFetchRequestGroup::default()
            .with_group_id(group(group_id))
            .with_topics(Some(topics));
        if version >= 9 {
            g = g.with_member_id(None).with_member_epoch(-1);
        }
        request = request.with_groups(vec![g]);
    } else {
        let topics = by_topic
            .into_iter()
            .map(|(t, ps)| {
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(t)))
                    .with_partition_indexes(ps)
            })
            .collect();
        request = request
            .with_group_id(group(group_id))
            .with_topics(Some(topics));
    }
    if version >= 7 {
        request = request.with_require_stable(true);
    }
    request
}

/// One partition of an OffsetFetch answer.
pub(crate) struct FetchedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Empty where nothing was stored.
    pub metadata: String,
    pub error_code: i16,
}

/// The partitions of an OffsetFetch response, or the group-level error.
pub(crate) fn fetched_offsets(
    response: &OffsetFetchResponse,
    version: i16,
) -> Result<Vec<FetchedOffset>, i16> {
    let mut out = Vec::new();
    if version >= 8 {
        let Some(g) = response.groups.first() else {
            return Ok(out);
        };
        if g.error_code != codes::NONE {
            return Err(g.error_code);
        }
        for t in &g.topics {
            for p in &t.partitions {
                out.push(FetchedOffset {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    metadata: p
                        .metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    error_code: p.error_code,
                });
            }
        }
    } else {
        if response.error_code != codes::NONE {
            return Err(response.error_code);
        }
        for t in &response.topics {
            for p in &t.partitions {
                out.push(FetchedOffset {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    metadata: p
                        .metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    error_code: p.error_code,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn requests_encode_at_every_version_the_crate_knows() {
        let member = MemberRef {
            group_id: "g",
            member_id: "m",
            group_instance_id: Some("i"),
            generation: 3,
        };
        let dynamic = MemberRef {
            group_instance_id: None,
            ..member
        };
        let mut buf = BytesMut::new();
        let params = |m| JoinParams {
            member: m,
            session_timeout_ms: 6000,
            rebalance_timeout_ms: 30000,
            protocol_type: "consumer",
            protocol_name: "weir-v1",
            metadata: Bytes::from_static(b"x"),
            reason: "test",
        };
        for v in 0..=9 {
            let m = if v >= 5 { member } else { dynamic };
            join_group(&params(m), v).encode(&mut buf, v).unwrap();
        }
        for v in 0..=5 {
            let m = if v >= 3 { member } else { dynamic };
            sync_group(
                m,
                "consumer",
                "weir-v1",
                vec![("m".into(), Bytes::new())],
                v,
            )
            .encode(&mut buf, v)
            .unwrap();
            leave_group(m, "bye", v).encode(&mut buf, v).unwrap();
        }
        for v in 0..=4 {
            let m = if v >= 3 { member } else { dynamic };
            heartbeat(m, v).encode(&mut buf, v).unwrap();
        }
        for v in 0..=6 {
            find_coordinator("g", v).encode(&mut buf, v).unwrap();
        }
        let at = |offset| OffsetAndMetadata {
            offset,
            metadata: "weir1:st=7".into(),
        };
        for v in 2..=9 {
            let m = if v >= 7 { member } else { dynamic };
            let request = offset_commit(m, &[("t".into(), 0, at(5)), ("t".into(), 1, at(6))], v);
            let stored = &request.topics[0].partitions[1];
            assert_eq!(stored.committed_offset, 6);
            assert_eq!(stored.committed_metadata.as_deref(), Some("weir1:st=7"));
            request.encode(&mut buf, v).unwrap();
        }
        for v in 1..=9 {
            offset_fetch("g", &[("t".into(), 0)], v)
                .encode(&mut buf, v)
                .unwrap();
        }
    }
}
