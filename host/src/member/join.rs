//! One rebalance round of the membership thread: JoinGroup (with the
//! MEMBER_ID_REQUIRED retry), the leader's assignment, SyncGroup, and the
//! `Assigned` event.
//!
//! An `impl` block of the [`Worker`] in `member.rs`, kept apart so each file
//! reads as one concern. Must never heartbeat, sleep or retry: errors go
//! back to the worker loop, which owns backoff and the coordinator
//! connection's lifetime.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, SyncGroupRequest};

use super::consumer;
use super::error::{MembershipError, codes};
use super::member::{Flow, Phase, Worker};
use super::protocol::{self, JoinParams, MemberRef};
use super::types::{Generation, MemberMetadata, MembershipEvent};

impl Worker {
    pub(super) fn join(&mut self) -> Result<Flow, MembershipError> {
        let subscription = {
            let provider = self.subscription.clone();
            catch_unwind(AssertUnwindSafe(|| provider.subscription())).map_err(|panic| {
                MembershipError::Config {
                    group: self.config.group_id.clone(),
                    detail: format!("the subscription provider panicked: {}", panic_text(&panic)),
                }
            })?
        };
        let metadata = consumer::encode_subscription(&subscription.topics, &subscription.user_data)
            .map_err(|detail| MembershipError::Config {
                group: self.config.group_id.clone(),
                detail,
            })?;
        let needed = self.member().needs(5);
        let version = {
            let (group, conn) = (self.config.group_id.clone(), self.connection()?);
            let broker = conn.broker().to_string();
            conn.version::<JoinGroupRequest>(needed)
                .map_err(|e| e.in_group(&group, &broker, "JoinGroup"))?
        };
        let request = protocol::join_group(
            &JoinParams {
                member: self.member(),
                session_timeout_ms: self.config.session_timeout_ms(),
                rebalance_timeout_ms: self.config.rebalance_timeout_ms(),
                protocol_type: &self.config.protocol_type,
                protocol_name: &self.config.protocol_name,
                metadata,
                reason: &self.rejoin_reason,
            },
            version,
        );
        tracing::debug!(group = %self.group(), member = %self.member_id, version, "JoinGroup");
        let response = self.parked_call(&request, version)?;
        match response.error_code {
            codes::NONE => {}
            codes::MEMBER_ID_REQUIRED => {
                // KIP-394: join again at once with the id the coordinator
                // chose for us.
                self.member_id = response.member_id.to_string();
                return Ok(Flow::Continue);
            }
            codes::UNKNOWN_MEMBER_ID => {
                self.lose(
                    "the coordinator does not know this member (UNKNOWN_MEMBER_ID in JoinGroup)",
                );
                self.member_id.clear();
                return Ok(Flow::Continue);
            }
            codes::ILLEGAL_GENERATION => {
                self.lose("ILLEGAL_GENERATION in JoinGroup");
                return Ok(Flow::Continue);
            }
            code => {
                let coordinator = self.coordinator();
                return Err(MembershipError::broker(
                    self.group(),
                    &coordinator,
                    "JoinGroup",
                    code,
                    None,
                ));
            }
        }
        self.member_id = response.member_id.to_string();
        let generation = response.generation_id;
        let leader = !self.member_id.is_empty() && response.leader.as_str() == self.member_id;
        // A static leader rejoining a stable group learns it leads but must
        // not reassign (KIP-814, JoinGroup v9): SyncGroup returns the
        // assignment of the generation in place.
        let assignments = if leader && !response.skip_assignment && !response.members.is_empty() {
            self.assign(generation, &response.members)?
        } else {
            Vec::new()
        };
        self.sync(generation, leader, assignments)
    }

    /// Runs the caller's assignor and encodes its result for SyncGroup.
    fn assign(
        &self,
        generation: i32,
        members: &[JoinGroupResponseMember],
    ) -> Result<Vec<(String, Bytes)>, MembershipError> {
        let metadata: Vec<MemberMetadata> = members
            .iter()
            .map(|m| {
                let (topics, user_data) = consumer::decode_subscription(&m.metadata)
                    .unwrap_or_else(|detail| {
                        tracing::warn!(group = %self.group(), member = %m.member_id, %detail,
                            "cannot read a member's subscription; passing empty user data");
                        (Vec::new(), Vec::new())
                    });
                MemberMetadata {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                    topics,
                    user_data,
                }
            })
            .collect();
        let assignor = self.assignor.clone();
        let mut result = catch_unwind(AssertUnwindSafe(|| {
            assignor.assign(Generation(generation), &metadata)
        }))
        .map_err(|panic| MembershipError::AssignorPanicked {
            group: self.config.group_id.clone(),
            generation,
            detail: panic_text(&panic),
        })?;
        let mut out = Vec::with_capacity(metadata.len());
        for m in &metadata {
            let user_data = result.remove(&m.member_id).unwrap_or_default();
            let bytes = consumer::encode_assignment(&user_data).map_err(|detail| {
                MembershipError::Config {
                    group: self.config.group_id.clone(),
                    detail,
                }
            })?;
            out.push((m.member_id.clone(), bytes));
        }
        if !result.is_empty() {
            tracing::warn!(group = %self.group(), generation,
                unknown = ?result.keys().collect::<Vec<_>>(),
                "the assignor returned assignments for members not in the generation; dropped");
        }
        tracing::info!(group = %self.group(), generation, members = metadata.len(),
            "computed the group assignment as leader");
        Ok(out)
    }

    fn sync(
        &mut self,
        generation: i32,
        leader: bool,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<Flow, MembershipError> {
        let needed = self.member().needs(3);
        let version = {
            let (group, conn) = (self.config.group_id.clone(), self.connection()?);
            let broker = conn.broker().to_string();
            conn.version::<SyncGroupRequest>(needed)
                .map_err(|e| e.in_group(&group, &broker, "SyncGroup"))?
        };
        let member = MemberRef {
            generation,
            ..self.member()
        };
        let request = protocol::sync_group(
            member,
            &self.config.protocol_type,
            &self.config.protocol_name,
            assignments,
            version,
        );
        let response = self.parked_call(&request, version)?;
        match response.error_code {
            codes::NONE => {}
            codes::REBALANCE_IN_PROGRESS => {
                self.announce("the group rebalanced again during SyncGroup");
                return Ok(Flow::Continue);
            }
            codes::UNKNOWN_MEMBER_ID => {
                self.lose("UNKNOWN_MEMBER_ID in SyncGroup");
                self.member_id.clear();
                return Ok(Flow::Continue);
            }
            codes::ILLEGAL_GENERATION => {
                self.lose("ILLEGAL_GENERATION in SyncGroup");
                return Ok(Flow::Continue);
            }
            code => {
                let coordinator = self.coordinator();
                return Err(MembershipError::broker(
                    self.group(),
                    &coordinator,
                    "SyncGroup",
                    code,
                    None,
                ));
            }
        }
        let user_data = consumer::decode_assignment(&response.assignment).map_err(|detail| {
            MembershipError::Protocol {
                group: self.config.group_id.clone(),
                broker: self.coordinator(),
                api: "SyncGroup",
                detail: format!("this member's assignment: {detail}"),
            }
        })?;
        self.generation = generation;
        self.phase = Phase::Stable;
        self.holds_assignment = true;
        self.announced = false;
        self.backoff.reset();
        self.next_heartbeat = Instant::now() + self.config.heartbeat_interval;
        self.shared
            .set_current(Some((Generation(generation), self.member_id.clone())));
        tracing::info!(group = %self.group(), member = %self.member_id, generation, leader,
            coordinator = %self.coordinator(), "assigned");
        self.emit(MembershipEvent::Assigned {
            generation: Generation(generation),
            member_id: self.member_id.clone(),
            leader,
            user_data,
        });
        Ok(Flow::Continue)
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-text panic payload)".to_string()
    }
}
