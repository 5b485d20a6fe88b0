//! What the task manager does when the group moves partitions: create (and
//! restore) the tasks of assigned partitions, commit and close (or keep as
//! standbys) revoked ones, close lost ones without committing. Decides
//! nothing about where tasks run; the assignor does.

use super::TaskManager;
use crate::group::{RebalanceListener, SourceConsumer, TopicPartition};
use crate::lifecycle::ThreadStatus;
use crate::task::{StandbyTask, TaskRecovery};
use crate::topology::TaskId;

fn tasks_of(partitions: &[TopicPartition]) -> Vec<TaskId> {
    let mut ids: Vec<TaskId> = partitions
        .iter()
        .map(|(_, p)| TaskId::for_partition(*p))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

impl RebalanceListener for TaskManager {
    fn on_assigned(&mut self, partitions: &[TopicPartition], consumer: &dyn SourceConsumer) {
        if self.failure.is_some() {
            return;
        }
        let stream_times = Self::committed_stream_times(partitions, consumer);
        for id in tasks_of(partitions) {
            if self.tasks.contains_key(&id) || self.is_failed(id) {
                continue;
            }
            if let Err(e) = self.create_task(id, stream_times.get(&id).copied(), consumer) {
                let restart = matches!(e.recovery(), TaskRecovery::RestartFromLastCommit);
                self.handle(e);
                if self.failure.is_some() {
                    return;
                }
                // Not yet among the tasks the restart closed: it starts
                // again with them, or it would be nowhere until the next
                // rebalance while its partitions are fetched.
                if restart {
                    self.reset.push(id);
                }
            }
        }
        self.report_status();
    }

    fn on_revoked(&mut self, partitions: &[TopicPartition], consumer: &dyn SourceConsumer) {
        self.drop_failed(&tasks_of(partitions).into_iter().collect());
        let revoked: Vec<TaskId> = tasks_of(partitions)
            .into_iter()
            .filter(|id| self.tasks.contains_key(id))
            .collect();
        if revoked.is_empty() {
            return;
        }
        self.lifecycle
            .thread_status(self.thread, ThreadStatus::Rebalancing);
        let clean = self.failure.is_none() && {
            match self.commit_all(consumer) {
                Ok(()) => true,
                Err(e) => {
                    // Closes every task dirty, the revoked ones included.
                    self.handle(e);
                    false
                }
            }
        };
        for id in revoked {
            self.reader.unregister(id);
            self.forget(id);
            let Some(task) = self.tasks.remove(&id) else {
                continue;
            };
            if !clean {
                task.close_dirty();
            } else if self.standby_target.contains(&id) {
                let (stores, guards) = task.into_stores();
                let standby = StandbyTask::on_stores(id, &self.setup, stores, guards);
                if let Err(e) = self.add_standby(standby) {
                    tracing::warn!(task_id = %id, error = %e, "cannot keep the revoked task as a standby");
                }
            } else {
                task.close_clean();
            }
        }
        self.report_status();
    }

    fn on_lost(&mut self, partitions: &[TopicPartition]) {
        let lost = tasks_of(partitions);
        self.drop_failed(&lost.iter().copied().collect());
        // Under exactly-once the open transaction spans every task of the
        // thread: it is aborted, so none of them may keep uncommitted work.
        // Each is closed dirty and, if still assigned, re-created from the
        // last commit by the next assignment.
        let close: Vec<TaskId> = if self.protocol.binds_thread() {
            self.collector.abort_transaction();
            self.tasks.keys().copied().collect()
        } else {
            lost
        };
        for id in close {
            self.reader.unregister(id);
            self.forget(id);
            if let Some(task) = self.tasks.remove(&id) {
                task.close_dirty();
            }
        }
        self.report_status();
    }
}
