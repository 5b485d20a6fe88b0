//! The `continue` processing-exception handler (Kafka Streams'
//! LogAndContinue, with KIP-1034's dead-letter queue): a record whose
//! processing traps or returns an error is skipped, and the rest of its
//! batch still counts exactly once.
//!
//! How: every store records the call's writes; a failed call is undone
//! (store writes and outputs), a trapped instance is replaced by a fresh
//! one on the same stores (its `init` called again), and the batch runs
//! again without the failing record (split at the index the guest
//! reported, or one record at a time when it reported none). The skipped
//! record is logged, counted (`weir_records_skipped_total`) and, with
//! `errors.dead.letter.queue.topic.name`, written there with headers naming
//! the failure. Must never skip on a store failure: that fails the task.

use super::{StreamTask, failure_site};
use crate::commit::{Outgoing, RecordSink};
use crate::metrics::add;
use crate::runtime::GuestError;
use crate::runtime::bindings::IncomingRecord;
use crate::task::TaskError;

impl StreamTask {
    /// Processes `records`, skipping those the processor fails on.
    pub(super) fn process_skipping_failures(
        &mut self,
        topic: &str,
        records: &[IncomingRecord],
        collector: &mut dyn RecordSink,
    ) -> Result<(), TaskError> {
        if records.is_empty() {
            return Ok(());
        }
        for store in &mut self.instance.task_mut().stores {
            store.begin_call();
        }
        let result = self.instance.process(records);
        let error = match result {
            Ok(()) => {
                for store in &mut self.instance.task_mut().stores {
                    store.end_call();
                }
                return self.forward_outputs(collector);
            }
            Err(e) => e,
        };
        let at = failure_site(topic, self.id.partition, records, &error);
        if matches!(error, GuestError::Store { .. }) {
            return Err(self.guest_error(at, error));
        }
        self.undo_call();
        self.renew_instance(collector)?;
        let index = error
            .batch_index()
            .map(|i| i as usize)
            .filter(|i| *i < records.len());
        match index {
            Some(i) => {
                self.process_skipping_failures(topic, &records[..i], collector)?;
                self.skip(topic, &records[i], &at, &error, collector)?;
                self.process_skipping_failures(topic, &records[i + 1..], collector)
            }
            None if records.len() == 1 => self.skip(topic, &records[0], &at, &error, collector),
            None => {
                for record in records {
                    self.process_skipping_failures(topic, std::slice::from_ref(record), collector)?;
                }
                Ok(())
            }
        }
    }

    /// Drops what the failed call did: its store writes, outputs and
    /// dropped-record count (the batch runs again and counts anew; a
    /// successful call's count was taken with its outputs).
    fn undo_call(&mut self) {
        let ctx = self.instance.task_mut();
        for store in &mut ctx.stores {
            store.rollback_call();
        }
        ctx.outputs.clear();
        ctx.dropped_records = 0;
    }

    /// A poisoned instance cannot be called again (it trapped, or it
    /// returned from a call the host refused, so what it keeps of its
    /// stores no longer holds): a fresh one on the same stores, with the
    /// same stream time, `init` called again.
    fn renew_instance(&mut self, collector: &mut dyn RecordSink) -> Result<(), TaskError> {
        if !self.instance.is_poisoned() {
            return Ok(());
        }
        let stores = std::mem::take(&mut self.instance.task_mut().stores);
        let setup = self.setup.clone();
        self.replace_instance(&setup, stores, "after a skipped record")?;
        let info = self.task_info();
        self.instance
            .init(&info)
            .map_err(|e| self.guest_error("in init after a skipped record", e))?;
        self.forward_outputs(collector)
    }

    /// Logs, counts and dead-letters a record the processor failed on.
    fn skip(
        &mut self,
        topic: &str,
        record: &IncomingRecord,
        at: &str,
        error: &GuestError,
        collector: &mut dyn RecordSink,
    ) -> Result<(), TaskError> {
        add(&self.setup.metrics.records_skipped, 1);
        let component = self.setup.component.label();
        tracing::warn!(
            task_id = %self.id, topic, partition = record.partition, offset = record.offset,
            "skipping a record the processor failed on (processing.exception.handler = continue): {at}: {error}"
        );
        let Some(dlq) = self.setup.errors.dead_letter_queue.clone() else {
            return Ok(());
        };
        let (partition, offset, task) = (
            record.partition.to_string(),
            record.offset.to_string(),
            self.id.to_string(),
        );
        let (kind, message) = (error_kind(error), error.to_string());
        let mut headers: Vec<(&str, &[u8])> = record
            .headers
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_slice()))
            .collect();
        headers.extend([
            ("__streams.errors.exception", kind.as_bytes()),
            ("__streams.errors.message", message.as_bytes()),
            ("__streams.errors.topic", record.topic.as_bytes()),
            ("__streams.errors.partition", partition.as_bytes()),
            ("__streams.errors.offset", offset.as_bytes()),
            ("__weir.errors.component", component.as_bytes()),
            ("__weir.errors.task", task.as_bytes()),
        ]);
        collector.send(Outgoing {
            topic: &dlq,
            partition: None,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers,
            timestamp: Some(record.timestamp),
            task: self.id,
        })?;
        Ok(())
    }
}

/// A short name for the kind of failure, for the dead-letter header.
fn error_kind(error: &GuestError) -> &'static str {
    match error {
        GuestError::Trap { .. } => "trap",
        GuestError::Failed { .. } => "processor-error",
        GuestError::Deadline { .. } => "cpu-deadline",
        GuestError::Memory { .. } => "memory-cap",
        GuestError::Limit { .. } => "host-buffer-cap",
        GuestError::Store { .. } => "store",
        GuestError::Instantiate { .. } => "instantiate",
        GuestError::Poisoned { .. } => "poisoned",
    }
}
