//! Weir's own consumer-group membership over Kafka's classic group
//! protocol (JoinGroup / SyncGroup / Heartbeat / LeaveGroup) and the
//! group's offsets (OffsetCommit / OffsetFetch), on the `kafka-protocol`
//! crate with blocking sockets and OS threads.
//!
//! Why: librdkafka has no custom-assignor API, and Weir's assignor (tasks,
//! co-partitioning, stickiness, local state) must run in the group leader,
//! as Kafka Streams' does. rdkafka stays for fetching (`assign()` mode) and
//! producing; this module only does membership and offsets. See
//! `../shared/design/GROUP.md`.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use std::sync::Arc;
//! use weir::member::*;
//!
//! struct Sub;
//! impl SubscriptionProvider for Sub {
//!     fn subscription(&self) -> Subscription {
//!         Subscription { topics: vec!["words".into()], user_data: b"my tasks".to_vec() }
//!     }
//! }
//! struct Assignor;
//! impl LeaderAssignor for Assignor {
//!     fn assign(&self, _g: Generation, members: &[MemberMetadata]) -> BTreeMap<String, Vec<u8>> {
//!         members.iter().map(|m| (m.member_id.clone(), b"your tasks".to_vec())).collect()
//!     }
//! }
//!
//! let mut config = MembershipConfig::new("127.0.0.1:9092", "wordcount");
//! config.group_instance_id = Some("wordcount-0".into()); // static membership
//! let (membership, events) = Membership::start(config, Arc::new(Sub), Arc::new(Assignor))?;
//! for event in events {
//!     match event {
//!         MembershipEvent::Assigned { generation, user_data, .. } => {
//!             // start/keep the tasks in user_data; commit with this generation
//!             membership.commit_offsets(&[("words".into(), 0, 42)])?;
//!             # let _ = (generation, user_data);
//!         }
//!         MembershipEvent::Rebalancing { .. } => {} // keep processing (cooperative)
//!         MembershipEvent::Lost { .. } => {}        // drop tasks without committing
//!         MembershipEvent::Fatal { error } => return Err(error.into()),
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Rooms: [`Membership`] (`handle.rs`) is the facade; `member.rs` runs the
//! state machine and heartbeats on its own thread and connection;
//! `offsets.rs` commits and fetches on a second connection; `coordinator.rs`
//! finds the coordinator; `connection.rs` frames requests and negotiates
//! versions; `protocol.rs` builds and reads messages; `error.rs` classifies
//! failures by [`Recovery`].
//!
//! This module must never fetch or produce records, know about tasks or
//! the assignment's contents (user data is opaque here), or use an async
//! runtime.

mod config;
mod connection;
mod consumer;
mod coordinator;
mod error;
mod handle;
mod join;
#[allow(clippy::module_inception)]
mod member;
mod offsets;
mod protocol;
mod types;

pub use config::MembershipConfig;
pub use error::{MembershipError, Recovery};
pub use handle::Membership;
pub use types::{
    Generation, LeaderAssignor, MemberMetadata, MembershipEvent, OffsetAndMetadata, Subscription,
    SubscriptionProvider,
};
