//! What one processor instance can reach through its imports: the task's
//! stores, the outputs it forwarded during the current call, its schedules,
//! stream time and clock. Owned by the instance's wasmtime store; a swap
//! takes the stores out of it for the next instance, so stores outlive
//! instances (a new version of a processor continues on the same stores).
//!
//! Knows nothing of Kafka: outputs are collected here and sent by the task.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use crate::runtime::bindings::{OutgoingRecord, PunctuationType};
use crate::store::{StateStore, StoreError};
use crate::topology::{TaskId, Topology};

/// Milliseconds since the Unix epoch, from a source a test may control.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A record the guest forwarded to the sink at `sink` (index into the
/// topology's sinks).
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub sink: usize,
    pub record: OutgoingRecord,
}

pub struct TaskContext {
    pub task_id: TaskId,
    pub application_id: String,
    /// The component's label (`name@sha256:…`), for logs and errors.
    pub component: String,
    pub topology: Arc<Topology>,
    /// The task's stores, in the order the topology declares them.
    pub stores: Vec<StateStore>,
    /// Outputs of the current call, drained by the task after it.
    pub outputs: Vec<Forwarded>,
    pub schedules: Schedules,
    /// Highest record timestamp seen (-1 before the first record).
    pub stream_time: i64,
    /// Stream time before the current batch: what window-store writes are
    /// judged late against. Kafka Streams advances stream time per record;
    /// a batch is one call here, so a record is never dropped for being
    /// late only relative to a record of its own batch.
    pub window_time: i64,
    pub clock: Arc<dyn Clock>,
    /// What the guest said just before trapping (message, batch index).
    pub abort_reason: Option<(String, Option<u32>)>,
    /// A store failure during the current call; fails the task.
    pub store_failure: Option<StoreError>,
    /// Caps on what one call may make the host buffer.
    pub limits: BufferLimits,
    /// Bytes buffered by the current call so far.
    pub call_bytes: usize,
    /// The first cap the current call exceeded; fails the task.
    pub limit_failure: Option<String>,
    /// Store and iterator handles the guest holds open.
    pub open_handles: usize,
    /// Window-store writes refused as too late since the task last
    /// counted them (Kafka Streams' `dropped-records`).
    pub dropped_records: u64,
    /// Set for the `close` call: the task is past its last commit, so
    /// writes, outputs and schedules are refused (see the WIT's `close`).
    pub closing: bool,
    /// The guest's record-cache budget: this task's share of
    /// `statestore.cache.max.bytes`, kept current by the task manager
    /// (0 until it says otherwise: nothing held back).
    pub record_cache: Arc<AtomicUsize>,
}

/// Caps on what a guest can make the host hold, so it cannot make the host
/// allocate without bound (see [`super::WasmLimits`]).
#[derive(Debug, Clone, Copy)]
pub struct BufferLimits {
    pub max_call_bytes: usize,
    pub max_record_bytes: usize,
    pub max_handles: usize,
    pub max_schedules: usize,
}

impl Default for BufferLimits {
    fn default() -> Self {
        BufferLimits {
            max_call_bytes: super::DEFAULT_MAX_CALL_BYTES,
            max_record_bytes: super::DEFAULT_MAX_RECORD_BYTES,
            max_handles: super::DEFAULT_MAX_HANDLES,
            max_schedules: super::DEFAULT_MAX_SCHEDULES,
        }
    }
}

/// What `close` is told when it tries to write.
pub(crate) const CLOSE_CANNOT_WRITE: &str = "close() cannot write: the task's last commit is done, \
     so store writes, outputs and schedules made in close would be lost";

impl TaskContext {
    pub fn new(
        task_id: TaskId,
        application_id: &str,
        component: &str,
        topology: Arc<Topology>,
        stores: Vec<StateStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        TaskContext {
            task_id,
            application_id: application_id.to_string(),
            component: component.to_string(),
            topology,
            stores,
            outputs: Vec::new(),
            schedules: Schedules::default(),
            stream_time: -1,
            window_time: -1,
            clock,
            abort_reason: None,
            store_failure: None,
            limits: BufferLimits::default(),
            call_bytes: 0,
            limit_failure: None,
            open_handles: 0,
            dropped_records: 0,
            closing: false,
            record_cache: Arc::default(),
        }
    }

    /// Records a cap the current call exceeded (the first one is reported)
    /// and returns the message for the guest.
    fn exceeded(&mut self, message: String) -> String {
        self.limit_failure.get_or_insert_with(|| message.clone());
        message
    }

    /// Counts a store or iterator handle the guest opens; over
    /// `wasm.max.handles` the open fails and so does the task.
    pub(crate) fn open_handle(&mut self, what: &str) -> Result<(), String> {
        if self.open_handles >= self.limits.max_handles {
            let cap = self.limits.max_handles;
            return Err(self.exceeded(format!(
                "opening {what} would hold more than wasm.max.handles ({cap}) store and \
                 iterator handles open at once; drop iterators when done"
            )));
        }
        self.open_handles += 1;
        Ok(())
    }

    pub(crate) fn close_handle(&mut self) {
        self.open_handles = self.open_handles.saturating_sub(1);
    }

    /// Adds a punctuation schedule; over `wasm.max.schedules` it is refused
    /// and the task fails (the contract's `schedule` returns no error, so
    /// the id returned then is `u32::MAX`, which never fires).
    pub(crate) fn schedule(&mut self, interval_ms: u64, kind: PunctuationType) -> u32 {
        if self.closing {
            self.exceeded(CLOSE_CANNOT_WRITE.to_string());
            return u32::MAX;
        }
        if self.schedules.len() >= self.limits.max_schedules {
            let cap = self.limits.max_schedules;
            self.exceeded(format!(
                "a schedule would make more than wasm.max.schedules ({cap}) live schedules; \
                 cancel the ones no longer needed"
            ));
            return u32::MAX;
        }
        let now = self.clock.now_ms();
        self.schedules.add(interval_ms, kind, now)
    }

    /// Counts `bytes` the guest asks the host to buffer (`what`: "a write to
    /// store `x`", "an output to `y`", only made when refused: this is on
    /// every write's path); `record` when they become one Kafka record.
    /// Over a cap, the call fails with an error naming it, and the task
    /// fails even if the guest ignores the error.
    pub(crate) fn charge(
        &mut self,
        what: impl FnOnce(&Self) -> String,
        bytes: usize,
        record: bool,
    ) -> Result<(), String> {
        let limits = self.limits;
        let refused = if record && bytes > limits.max_record_bytes {
            let what = what(self);
            Some(format!(
                "{what} of {bytes} bytes is larger than the largest record Kafka accepts \
                 ({} bytes, kafka.message.max.bytes)",
                limits.max_record_bytes
            ))
        } else if self.call_bytes.saturating_add(bytes) > limits.max_call_bytes {
            let what = what(self);
            Some(format!(
                "{what} would make one call buffer more than wasm.max.call.bytes ({} bytes) \
                 of store writes and outputs",
                limits.max_call_bytes
            ))
        } else {
            None
        };
        match refused {
            Some(message) => Err(self.exceeded(message)),
            None => {
                self.call_bytes += bytes;
                Ok(())
            }
        }
    }

    /// Buffers `record` for the output called `sink` (0.2.0's `forward`).
    pub fn forward(&mut self, sink: &str, record: OutgoingRecord) -> Result<(), String> {
        let Some(index) = self.topology.output_names().position(|name| name == sink) else {
            let declared: Vec<&str> = self.topology.output_names().collect();
            return Err(format!(
                "unknown sink `{sink}` (declared: {})",
                declared.join(", ")
            ));
        };
        self.forward_to(index, record)
    }

    /// Buffers `record` for the output at `index`: the topology's sinks,
    /// then its repartitions (0.3.0 names outputs so).
    pub fn forward_to(&mut self, index: usize, mut record: OutgoingRecord) -> Result<(), String> {
        if self.closing {
            return Err(CLOSE_CANNOT_WRITE.to_string());
        }
        let outputs = self.topology.sinks.len() + self.topology.repartitions.len();
        if index >= outputs {
            let declared: Vec<&str> = self.topology.output_names().collect();
            return Err(format!(
                "no output at index {index} (declared, from 0: {})",
                declared.join(", ")
            ));
        }
        let bytes = record.key.as_ref().map_or(0, Vec::len)
            + record.value.as_ref().map_or(0, Vec::len)
            + record
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.len())
                .sum::<usize>();
        let what = |task: &Self| {
            let sink = task.topology.output_names().nth(index).unwrap_or_default();
            format!("an output to `{sink}`")
        };
        self.charge(what, bytes, true)?;
        if record.timestamp.is_none() {
            record.timestamp = Some(self.stream_time.max(0));
        }
        self.outputs.push(Forwarded {
            sink: index,
            record,
        });
        Ok(())
    }

    pub fn store(&self, name: &str) -> Option<&StateStore> {
        self.stores.iter().find(|s| s.name() == name)
    }
}

#[derive(Debug, Clone)]
struct Schedule {
    id: u32,
    interval: i64,
    kind: PunctuationType,
    /// When it next fires; `None` for a stream-time schedule that has not
    /// seen a record yet (it fires on the first).
    next: Option<i64>,
}

/// The punctuation schedules of one task.
#[derive(Debug, Default)]
pub struct Schedules {
    next_id: u32,
    entries: Vec<Schedule>,
}

impl Schedules {
    pub fn add(&mut self, interval_ms: u64, kind: PunctuationType, now: i64) -> u32 {
        let interval = interval_ms.clamp(1, i64::MAX as u64 / 4) as i64;
        let id = self.next_id;
        self.next_id += 1;
        let next = match kind {
            PunctuationType::WallClock => Some(now.saturating_add(interval)),
            PunctuationType::StreamTime => None,
        };
        self.entries.push(Schedule {
            id,
            interval,
            kind,
            next,
        });
        id
    }

    pub fn cancel(&mut self, id: u32) {
        self.entries.retain(|s| s.id != id);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Schedules of `kind` due at `time`, each fired once even if several
    /// intervals passed (as Kafka Streams does); advances them.
    pub fn due(&mut self, kind: PunctuationType, time: i64) -> Vec<u32> {
        let mut fired = Vec::new();
        if time < 0 {
            return fired;
        }
        for s in self.entries.iter_mut().filter(|s| s.kind == kind) {
            match s.next {
                None => {
                    fired.push(s.id);
                    s.next = Some(time.saturating_add(s.interval));
                }
                Some(next) if time >= next => {
                    fired.push(s.id);
                    let skipped = (time - next) / s.interval;
                    s.next = Some(next.saturating_add((skipped + 1).saturating_mul(s.interval)));
                }
                Some(_) => {}
            }
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(limits: BufferLimits) -> TaskContext {
        let topology = Topology {
            name: "t".into(),
            sources: vec!["in".into()],
            sinks: vec![crate::topology::SinkSpec {
                name: "out".into(),
                topic: "out".into(),
            }],
            stores: Vec::new(),
            repartitions: Vec::new(),
        };
        let mut task = TaskContext::new(
            TaskId::for_partition(0),
            "app",
            "c@sha256:0",
            Arc::new(topology),
            Vec::new(),
            Arc::new(SystemClock),
        );
        task.limits = limits;
        task
    }

    fn record() -> OutgoingRecord {
        OutgoingRecord {
            key: None,
            value: Some(b"v".to_vec()),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    #[test]
    fn handles_and_schedules_are_capped_and_name_the_cap() {
        let limits = BufferLimits {
            max_handles: 2,
            max_schedules: 1,
            ..BufferLimits::default()
        };
        let mut task = context(limits);
        task.open_handle("a").unwrap();
        task.open_handle("b").unwrap();
        let refused = task.open_handle("store `s`").unwrap_err();
        assert!(refused.contains("wasm.max.handles (2)"), "{refused}");
        assert!(task.limit_failure.take().is_some());
        task.close_handle();
        task.open_handle("c").unwrap();

        let id = task.schedule(10, PunctuationType::WallClock);
        assert_ne!(id, u32::MAX);
        assert_eq!(task.schedule(10, PunctuationType::WallClock), u32::MAX);
        let failure = task.limit_failure.take().unwrap();
        assert!(failure.contains("wasm.max.schedules (1)"), "{failure}");
        task.schedules.cancel(id);
        assert_ne!(task.schedule(10, PunctuationType::WallClock), u32::MAX);
    }

    #[test]
    fn close_cannot_forward_or_schedule() {
        let mut task = context(BufferLimits::default());
        task.forward("out", record()).unwrap();
        task.closing = true;
        let refused = task.forward("out", record()).unwrap_err();
        assert!(refused.contains("close() cannot write"), "{refused}");
        assert_eq!(task.outputs.len(), 1);
        assert_eq!(task.schedule(10, PunctuationType::StreamTime), u32::MAX);
        assert!(task.schedules.is_empty());
    }

    #[test]
    fn stream_time_schedules_fire_on_first_record_then_each_interval() {
        let mut s = Schedules::default();
        let id = s.add(10, PunctuationType::StreamTime, 0);
        assert_eq!(s.due(PunctuationType::StreamTime, -1), Vec::<u32>::new());
        assert_eq!(s.due(PunctuationType::StreamTime, 100), vec![id]);
        assert!(s.due(PunctuationType::StreamTime, 109).is_empty());
        assert_eq!(s.due(PunctuationType::StreamTime, 110), vec![id]);
        // Several intervals at once fire once, and the phase is kept.
        assert_eq!(s.due(PunctuationType::StreamTime, 155), vec![id]);
        assert!(s.due(PunctuationType::StreamTime, 159).is_empty());
        assert_eq!(s.due(PunctuationType::StreamTime, 160), vec![id]);
        assert!(s.due(PunctuationType::WallClock, 1_000_000).is_empty());
    }

    #[test]
    fn wall_clock_schedules_start_from_now_and_cancel() {
        let mut s = Schedules::default();
        let a = s.add(100, PunctuationType::WallClock, 1_000);
        let b = s.add(50, PunctuationType::WallClock, 1_000);
        assert!(s.due(PunctuationType::WallClock, 1_049).is_empty());
        assert_eq!(s.due(PunctuationType::WallClock, 1_050), vec![b]);
        assert_eq!(s.due(PunctuationType::WallClock, 1_100), vec![a, b]);
        s.cancel(b);
        assert_eq!(s.due(PunctuationType::WallClock, 1_200), vec![a]);
    }
}
