//! [`Membership`], the handle the host holds: starts the membership
//! thread, reads its current generation, asks it to rejoin or close, and
//! commits and fetches offsets.
//!
//! Owns the thread's lifetime and the command channel. Every method is
//! callable from any thread (`Membership` is `Send + Sync`; share it in an
//! `Arc`). Must never block on the membership thread except in `close`, and
//! never run group protocol itself (that is `member.rs` and `offsets.rs`).

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::config::MembershipConfig;
use super::error::MembershipError;
use super::member::{Command, Shared, Worker};
use super::offsets::Offsets;
use super::types::{
    Generation, LeaderAssignor, MembershipEvent, OffsetAndMetadata, SubscriptionProvider,
};

/// One process's membership in one consumer group (classic protocol).
pub struct Membership {
    config: Arc<MembershipConfig>,
    commands: Sender<Command>,
    shared: Arc<Shared>,
    offsets: Offsets,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Membership {
    /// Validates `config` and starts the membership thread, which finds the
    /// coordinator and joins at once. Events arrive on the returned
    /// receiver; the first is `Assigned` (or `Fatal`).
    pub fn start(
        config: MembershipConfig,
        subscription: Arc<dyn SubscriptionProvider>,
        assignor: Arc<dyn LeaderAssignor>,
    ) -> Result<(Membership, Receiver<MembershipEvent>), MembershipError> {
        config.validate()?;
        let config = Arc::new(config);
        let (events_tx, events_rx) = mpsc::channel();
        let (commands_tx, commands_rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let worker = Worker::new(
            config.clone(),
            subscription,
            assignor,
            events_tx,
            commands_rx,
            shared.clone(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("weir-member-{}", config.group_id))
            .spawn(move || worker.run())
            .map_err(|e| MembershipError::Config {
                group: config.group_id.clone(),
                detail: format!("cannot start the membership thread: {e}"),
            })?;
        let membership = Membership {
            offsets: Offsets::new(config.clone()),
            config,
            commands: commands_tx,
            shared,
            thread: Mutex::new(Some(thread)),
        };
        Ok((membership, events_rx))
    }

    /// The group id.
    pub fn group_id(&self) -> &str {
        &self.config.group_id
    }

    /// The generation and member id of the last `Assigned`; `None` before
    /// the first, after `Lost` (until the next `Assigned`), and once closed.
    pub fn current(&self) -> Option<(Generation, String)> {
        self.shared.current()
    }

    /// Joins again while keeping the current assignment (the cooperative
    /// follow-up rebalance, a probing rebalance): `Rebalancing`, then
    /// `Assigned`. A leader's rejoin always starts a new generation; a
    /// follower's starts one only if its subscription changed, otherwise
    /// the coordinator hands back the current generation and assignment.
    /// Idempotent while a join is in progress.
    pub fn request_rejoin(&self, reason: &str) {
        let _ = self.commands.send(Command::Rejoin {
            reason: reason.to_string(),
        });
    }

    /// Commits `(topic, partition, next offset)` with the current
    /// generation and member id. A refusal because the group moved on
    /// (rebalance in progress, illegal generation, unknown member) is a
    /// [`Recovery::Rejoin`](super::Recovery::Rejoin) error; transient
    /// failures are retried within the request timeout first.
    pub fn commit_offsets(&self, offsets: &[(String, i32, i64)]) -> Result<(), MembershipError> {
        let (generation, _) = self.member()?;
        self.commit_offsets_at(generation, offsets)
    }

    /// [`Membership::commit_offsets`] with metadata stored beside each
    /// offset (a task's stream time).
    pub fn commit_with_metadata(
        &self,
        offsets: &[(String, i32, OffsetAndMetadata)],
    ) -> Result<(), MembershipError> {
        let (generation, member_id) = self.member()?;
        self.offsets.commit(generation, &member_id, offsets)
    }

    /// Commits for a given generation (the one the offsets were processed
    /// under): refused with a `Rejoin` error if the group is past it.
    pub fn commit_offsets_at(
        &self,
        generation: Generation,
        offsets: &[(String, i32, i64)],
    ) -> Result<(), MembershipError> {
        let (_, member_id) = self.member()?;
        let offsets: Vec<(String, i32, OffsetAndMetadata)> = offsets
            .iter()
            .map(|(topic, partition, offset)| {
                let committed = OffsetAndMetadata {
                    offset: *offset,
                    metadata: String::new(),
                };
                (topic.clone(), *partition, committed)
            })
            .collect();
        self.offsets.commit(generation, &member_id, &offsets)
    }

    /// The committed next offset of each partition (`None`: nothing
    /// committed). Needs no membership; waits for pending transactional
    /// commits to settle (require_stable) within the request timeout.
    pub fn fetch_offsets(
        &self,
        partitions: &[(String, i32)],
    ) -> Result<BTreeMap<(String, i32), Option<i64>>, MembershipError> {
        if self.shared.stopped() {
            return Err(self.closed());
        }
        self.offsets.fetch(partitions)
    }

    /// [`Membership::fetch_offsets`] with the metadata committed beside
    /// each offset.
    pub fn fetch_committed(
        &self,
        partitions: &[(String, i32)],
    ) -> Result<BTreeMap<(String, i32), Option<OffsetAndMetadata>>, MembershipError> {
        if self.shared.stopped() {
            return Err(self.closed());
        }
        self.offsets.fetch_committed(partitions)
    }

    /// Stops the membership thread, interrupting a parked JoinGroup or
    /// SyncGroup. With `leave`, sends LeaveGroup first so the group
    /// rebalances at once. Kafka's default, and what dropping the handle
    /// does, is `leave` for dynamic members only: a static member (with a
    /// `group.instance.id`) that stays keeps its assignment for a restart
    /// within the session timeout. Idempotent; waits at most twice the
    /// request timeout for the thread.
    pub fn close(&self, leave: bool) {
        let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let _ = self.commands.send(Command::Close { leave });
        self.shared.interrupt();
        let deadline = Instant::now() + self.config.request_timeout * 2;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            tracing::warn!(group = %self.config.group_id,
                "the membership thread did not stop in time; leaving it to finish on its own");
        }
    }

    fn member(&self) -> Result<(Generation, String), MembershipError> {
        if self.shared.stopped() {
            return Err(self.closed());
        }
        self.shared
            .current()
            .ok_or_else(|| MembershipError::NotMember {
                group: self.config.group_id.clone(),
            })
    }

    fn closed(&self) -> MembershipError {
        MembershipError::Closed {
            group: self.config.group_id.clone(),
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.close(self.config.group_instance_id.is_none());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handle_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Membership>();
        shared::<MembershipError>();
    }

    #[test]
    fn an_invalid_config_is_refused_before_any_thread_starts() {
        struct Nothing;
        impl SubscriptionProvider for Nothing {
            fn subscription(&self) -> super::super::Subscription {
                Default::default()
            }
        }
        impl LeaderAssignor for Nothing {
            fn assign(
                &self,
                _: Generation,
                _: &[super::super::MemberMetadata],
            ) -> BTreeMap<String, Vec<u8>> {
                BTreeMap::new()
            }
        }
        let mut config = MembershipConfig::new("127.0.0.1:1", "g");
        config.group_instance_id = Some(String::new());
        let nothing = Arc::new(Nothing);
        let error = Membership::start(config, nothing.clone(), nothing)
            .err()
            .expect("refused");
        assert_eq!(error.recovery(), super::super::Recovery::Fatal);
        assert!(error.to_string().contains("group.instance.id"), "{error}");
    }
}
