//! The vocabulary between the membership client and its caller: the
//! generation newtype, what a member subscribes with, what the leader's
//! assignor sees and returns, and the events the membership thread emits.
//!
//! Plain data and two narrow traits; must never do I/O or hold state.

use std::collections::BTreeMap;
use std::fmt;

use super::error::MembershipError;

/// A committed position: the next offset to read and the metadata stored
/// beside it (Kafka's `OffsetAndMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    pub offset: i64,
    pub metadata: String,
}

/// A group generation: bumped by the coordinator at every completed
/// rebalance. Offsets are committed with the generation they belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(pub i32);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What this member joins with: asked afresh at every JoinGroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// Source topics (informational for Kafka tools; Weir's assignor reads
    /// the user data).
    pub topics: Vec<String>,
    /// Opaque to the membership client: Weir's versioned subscription info.
    pub user_data: Vec<u8>,
}

/// Supplies the subscription at every join, so changed local state (owned
/// tasks, offset sums) reaches the leader.
///
/// Called on the membership thread; must return quickly (no I/O, no
/// locks held for long): heartbeats wait while it runs.
pub trait SubscriptionProvider: Send + Sync {
    fn subscription(&self) -> Subscription;
}

/// One member as the leader sees it at assignment time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadata {
    pub member_id: String,
    /// Set for static members (`group.instance.id`).
    pub group_instance_id: Option<String>,
    pub topics: Vec<String>,
    /// The member's [`Subscription::user_data`]. Empty when its subscription
    /// could not be decoded (logged).
    pub user_data: Vec<u8>,
}

/// The leader's assignment: pure, no I/O.
///
/// Called on the membership thread of whichever process the coordinator
/// elects leader, with every member of the new generation (the leader
/// included). Returns each member's assignment user data by member id; a
/// member left out gets an empty assignment. Must return well within the
/// session timeout: the other members wait in SyncGroup meanwhile. A panic
/// is turned into [`MembershipEvent::Fatal`].
pub trait LeaderAssignor: Send + Sync {
    fn assign(
        &self,
        generation: Generation,
        members: &[MemberMetadata],
    ) -> BTreeMap<String, Vec<u8>>;
}

/// What the membership thread reports, in order, on the receiver returned
/// by [`Membership::start`](super::Membership::start).
///
/// The sequence for one member is: `Assigned`, then any number of rounds of
/// (`Rebalancing`)? `Assigned` or `Lost` `Assigned`, ending with at most one
/// `Fatal`. `Rebalancing` and `Lost` are only sent while this member holds
/// an assignment.
#[derive(Debug)]
pub enum MembershipEvent {
    /// A generation completed: this member's assignment from the leader.
    Assigned {
        generation: Generation,
        member_id: String,
        /// This member computed the assignment (or, for a static leader
        /// rejoining a stable group, would have).
        leader: bool,
        /// The assignment user data the leader returned for this member.
        user_data: Vec<u8>,
    },
    /// A rebalance started (the coordinator said so, or
    /// [`Membership::request_rejoin`](super::Membership::request_rejoin)).
    /// The current assignment is still this member's: keep processing it
    /// until the next `Assigned` (cooperative).
    Rebalancing {
        generation: Generation,
        reason: String,
    },
    /// The assignment of `generation` is no longer this member's (the
    /// coordinator forgot the member, or a generation completed without
    /// it): stop its tasks without committing; an `Assigned` follows after
    /// the rejoin.
    Lost {
        generation: Generation,
        reason: String,
    },
    /// Membership ended and will not recover (fenced by another instance
    /// with the same `group.instance.id`, authorization, configuration).
    /// The thread has stopped.
    Fatal { error: MembershipError },
}
