//! Weir's task assignor: the pure functions the group leader runs to decide
//! which process runs which task, as Kafka Streams'
//! `HighAvailabilityTaskAssignor` (KIP-441) does, and the user data that
//! carries their inputs and outputs through the classic group protocol.
//!
//! Owns: placement of active, standby and warm-up tasks over processes
//! ([`assign`]), over one process's threads ([`distribute_to_threads`]),
//! the cooperative hand-over of moved tasks ([`cooperative`]), and the
//! versioned subscription/assignment encodings ([`SubscriptionInfo`],
//! [`AssignmentInfo`]). Must never: do I/O, read a clock, use randomness
//! or iterate a `HashMap`: the same input always gives the same output, so
//! every leader computes the same assignment and the tests can pin it.
//!
//! ```text
//! subscriptions ──decode──▶ ClientState per process ─┐
//! tasks (TaskSpec: stateful?, changelog end sums) ───┼─▶ assign ─▶ Assignment (target)
//! AssignorConfig ────────────────────────────────────┘                │
//! owned actives (from subscriptions) ──────────────────▶ cooperative ─┘─▶ this round
//!                                                           └─▶ AssignmentInfo per member ──encode──▶
//! ```
//!
//! Rules, in short: every task is active on exactly one process; actives
//! are balanced by thread count (per thread within one task); placements
//! are sticky; a stateful task never moves to a process that is not caught
//! up (lag > `acceptable.recovery.lag`) while a caught-up copy exists: it
//! stays and a warm-up replica catches up on the target (at most
//! `max.warmup.replicas`), and `probing_rebalance_needed` asks for a
//! probing rebalance; standbys sit on processes other than the active and
//! each other, on distinct client-tag values where possible.

mod balance;
mod codec;
mod cooperative;
mod info;
mod model;
mod standby;
mod task_assignor;
mod threads;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod scenarios;

pub use cooperative::cooperative;
pub use info::{AssignmentInfo, HostTasks, LATEST_VERSION, SubscriptionInfo, error_code, host_map};
pub use model::{AssignorConfig, ClientAssignment, ClientState, ProcessId, TaskSpec};
pub use task_assignor::assign;
pub use threads::{ThreadAssignment, distribute_to_threads};
