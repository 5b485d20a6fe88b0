//! Errors of the membership client, named for the recovery they need.
//!
//! Owns [`MembershipError`] (public, carries the group, the broker or
//! coordinator and the API involved), its classification into a
//! [`Recovery`], and the context-free [`CallError`] the connection layer
//! returns before a caller adds that context.
//!
//! Must never hold connections or state, and never decide what to do about
//! an error: that is the state machine's (`member.rs`) and the caller's job.

use std::fmt;

use kafka_protocol::error::ResponseError;

/// What a caller should do about a [`MembershipError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The group moved on (rebalance in progress, illegal generation,
    /// unknown member, not yet a member): wait for the next
    /// [`MembershipEvent::Assigned`](super::MembershipEvent::Assigned) and
    /// try again with the new generation. The membership thread rejoins on
    /// its own.
    Rejoin,
    /// Transient (coordinator moved or loading, connection lost, timeout):
    /// the same call may succeed later.
    Retry,
    /// Retrying cannot help (fenced by another instance with the same
    /// `group.instance.id`, authorization, bad configuration, closed).
    Fatal,
}

/// A failure of the membership client.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The broker answered with an error code.
    #[error("group {group}: {api} at coordinator {coordinator} failed: {name} (code {code}){}",
        message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Broker {
        group: String,
        coordinator: String,
        api: &'static str,
        code: i16,
        name: String,
        message: Option<String>,
    },
    /// Connecting, writing or reading failed (includes timeouts).
    #[error("group {group}: {api} to {broker}: {source}")]
    Io {
        group: String,
        broker: String,
        api: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The broker sent something that could not be decoded.
    #[error("group {group}: {api} to {broker}: malformed response: {detail}")]
    Protocol {
        group: String,
        broker: String,
        api: &'static str,
        detail: String,
    },
    /// No version of an API both sides implement (or not the one a feature
    /// needs, such as JoinGroup v5 for static membership).
    #[error(
        "group {group}: broker {broker} offers {api} v{broker_min}..={broker_max}, \
             this client needs v{needed_min}..={needed_max}"
    )]
    UnsupportedVersion {
        group: String,
        broker: String,
        api: &'static str,
        broker_min: i16,
        broker_max: i16,
        needed_min: i16,
        needed_max: i16,
    },
    /// No bootstrap server could name the group's coordinator.
    #[error("group {group}: no coordinator found via {bootstrap}: {detail}")]
    NoCoordinator {
        group: String,
        bootstrap: String,
        detail: String,
    },
    /// An offset commit was asked for while this process has no generation
    /// (before the first assignment, or after one was lost).
    #[error("group {group}: not a member of a generation yet")]
    NotMember { group: String },
    /// The configuration cannot work.
    #[error("group {group}: invalid membership configuration: {detail}")]
    Config { group: String, detail: String },
    /// The leader's assignor panicked.
    #[error("group {group}: the leader assignor panicked in generation {generation}: {detail}")]
    AssignorPanicked {
        group: String,
        generation: i32,
        detail: String,
    },
    /// The membership was closed (or its thread stopped after a fatal
    /// error).
    #[error("group {group}: membership closed")]
    Closed { group: String },
}

impl MembershipError {
    /// The recovery this error needs.
    pub fn recovery(&self) -> Recovery {
        match self {
            MembershipError::Broker { code, .. } => recovery_of_code(*code),
            MembershipError::Io { .. } => Recovery::Retry,
            MembershipError::Protocol { .. } => Recovery::Retry,
            MembershipError::NoCoordinator { .. } => Recovery::Retry,
            MembershipError::NotMember { .. } => Recovery::Rejoin,
            MembershipError::UnsupportedVersion { .. }
            | MembershipError::Config { .. }
            | MembershipError::AssignorPanicked { .. }
            | MembershipError::Closed { .. } => Recovery::Fatal,
        }
    }

    /// The broker error code, if the broker refused the call.
    pub fn code(&self) -> Option<i16> {
        match self {
            MembershipError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when the coordinator must be found again before the next call
    /// (it moved, is not available, or the connection to it broke).
    pub(crate) fn coordinator_lost(&self) -> bool {
        match self {
            MembershipError::Broker { code, .. } => {
                *code == codes::NOT_COORDINATOR || *code == codes::COORDINATOR_NOT_AVAILABLE
            }
            MembershipError::Io { .. } | MembershipError::Protocol { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn broker(
        group: &str,
        coordinator: &str,
        api: &'static str,
        code: i16,
        message: Option<String>,
    ) -> Self {
        MembershipError::Broker {
            group: group.to_string(),
            coordinator: coordinator.to_string(),
            api,
            code,
            name: code_name(code),
            message: message.filter(|m| !m.is_empty()),
        }
    }
}

/// The classification of a broker error code.
pub(crate) fn recovery_of_code(code: i16) -> Recovery {
    use codes::*;
    match code {
        REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID => Recovery::Rejoin,
        FENCED_INSTANCE_ID
        | GROUP_AUTHORIZATION_FAILED
        | TOPIC_AUTHORIZATION_FAILED
        | INVALID_GROUP_ID
        | INVALID_SESSION_TIMEOUT
        | INCONSISTENT_GROUP_PROTOCOL
        | GROUP_MAX_SIZE_REACHED
        | UNSUPPORTED_VERSION
        | UNRELEASED_INSTANCE_ID
        | OFFSET_METADATA_TOO_LARGE
        | INVALID_COMMIT_OFFSET_SIZE => Recovery::Fatal,
        // Kafka's consumer retries it in an offset commit: a restarted broker
        // answers it until its metadata has loaded.
        UNKNOWN_TOPIC_OR_PARTITION => Recovery::Retry,
        _ => Recovery::Retry,
    }
}

/// The protocol name of an error code (`RebalanceInProgress`), or
/// `Unknown error code: N`.
pub(crate) fn code_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => e.to_string(),
        None => "None".to_string(),
    }
}

/// Error codes the state machine reacts to by name.
pub(crate) mod codes {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const INVALID_COMMIT_OFFSET_SIZE: i16 = 28;
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const UNRELEASED_INSTANCE_ID: i16 = 111;
}

/// A failure below the group layer: one call on one connection, before the
/// caller adds the group and API it was for.
#[derive(Debug)]
pub(crate) enum CallError {
    Io(std::io::Error),
    Protocol(String),
    Unsupported {
        api: &'static str,
        broker_min: i16,
        broker_max: i16,
        needed_min: i16,
        needed_max: i16,
    },
}

impl CallError {
    /// Adds the group, broker and API this call was for.
    pub(crate) fn in_group(self, group: &str, broker: &str, api: &'static str) -> MembershipError {
        let (group, broker) = (group.to_string(), broker.to_string());
        match self {
            CallError::Io(source) => MembershipError::Io {
                group,
                broker,
                api,
                source,
            },
            CallError::Protocol(detail) => MembershipError::Protocol {
                group,
                broker,
                api,
                detail,
            },
            CallError::Unsupported {
                api,
                broker_min,
                broker_max,
                needed_min,
                needed_max,
            } => MembershipError::UnsupportedVersion {
                group,
                broker,
                api,
                broker_min,
                broker_max,
                needed_min,
                needed_max,
            },
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Io(e) => write!(f, "{e}"),
            CallError::Protocol(d) => write!(f, "malformed response: {d}"),
            CallError::Unsupported {
                api,
                broker_min,
                broker_max,
                ..
            } => write!(f, "{api}: broker offers only v{broker_min}..={broker_max}"),
        }
    }
}

impl From<std::io::Error> for CallError {
    fn from(e: std::io::Error) -> Self {
        CallError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified_by_recovery() {
        assert_eq!(
            recovery_of_code(codes::REBALANCE_IN_PROGRESS),
            Recovery::Rejoin
        );
        assert_eq!(
            recovery_of_code(codes::ILLEGAL_GENERATION),
            Recovery::Rejoin
        );
        assert_eq!(recovery_of_code(codes::UNKNOWN_MEMBER_ID), Recovery::Rejoin);
        assert_eq!(recovery_of_code(codes::NOT_COORDINATOR), Recovery::Retry);
        // A restarted broker's answer until its metadata has loaded.
        assert_eq!(
            recovery_of_code(codes::UNKNOWN_TOPIC_OR_PARTITION),
            Recovery::Retry
        );
        // COORDINATOR_LOAD_IN_PROGRESS, UNSTABLE_OFFSET_COMMIT
        assert_eq!(recovery_of_code(14), Recovery::Retry);
        assert_eq!(recovery_of_code(88), Recovery::Retry);
        assert_eq!(recovery_of_code(codes::FENCED_INSTANCE_ID), Recovery::Fatal);
        assert_eq!(
            recovery_of_code(codes::GROUP_AUTHORIZATION_FAILED),
            Recovery::Fatal
        );
    }

    #[test]
    fn broker_errors_name_group_coordinator_and_api() {
        let e = MembershipError::broker("g1", "127.0.0.1:9092", "OffsetCommit", 22, None);
        let text = e.to_string();
        assert!(
            text.contains("g1") && text.contains("127.0.0.1:9092"),
            "{text}"
        );
        assert!(
            text.contains("OffsetCommit") && text.contains("IllegalGeneration"),
            "{text}"
        );
        assert_eq!(e.recovery(), Recovery::Rejoin);
    }
}
