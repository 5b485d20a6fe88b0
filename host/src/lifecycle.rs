//! The application state machine and what reads it: readiness, liveness and
//! the shutdown request.
//!
//! ```text
//!  CREATED ──► REBALANCING ◄──► RUNNING
//!     │            │               │
//!     │            ▼               ▼
//!     ├──────► PENDING_SHUTDOWN ──► NOT_RUNNING
//!     │            ▲
//!     └──► PENDING_ERROR ──► ERROR
//! ```
//! (Any of CREATED, REBALANCING and RUNNING may go to PENDING_SHUTDOWN or
//! PENDING_ERROR.) The application is RUNNING when every stream thread is
//! running with all its tasks restored, REBALANCING otherwise; readiness
//! follows RUNNING, liveness fails only in ERROR or when a commit cycle has
//! hung. Every transition is logged and reported to listeners. Must never
//! act on the transitions itself: the threads and the binary do.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Kafka Streams' `KafkaStreams.State`, same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Created,
    Rebalancing,
    Running,
    PendingShutdown,
    NotRunning,
    PendingError,
    Error,
}

impl State {
    pub fn can_transition_to(self, next: State) -> bool {
        use State::*;
        matches!(
            (self, next),
            (Created, Rebalancing | PendingShutdown | PendingError)
                | (Rebalancing, Running | PendingShutdown | PendingError)
                | (Running, Rebalancing | PendingShutdown | PendingError)
                | (PendingShutdown, NotRunning)
                | (PendingError, Error)
        )
    }

    /// A number for the `weir_state` gauge.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            State::Created => "CREATED",
            State::Rebalancing => "REBALANCING",
            State::Running => "RUNNING",
            State::PendingShutdown => "PENDING_SHUTDOWN",
            State::NotRunning => "NOT_RUNNING",
            State::PendingError => "PENDING_ERROR",
            State::Error => "ERROR",
        };
        f.write_str(name)
    }
}

/// What a stream thread reports about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadStatus {
    /// Joining the group, or restoring tasks.
    Rebalancing,
    /// Every assigned task is running.
    Running,
    /// Stopped.
    Dead,
}

type Listener = Box<dyn Fn(State, State) + Send + Sync>;

struct Inner {
    state: State,
    threads: Vec<ThreadStatus>,
    commit_started: Vec<Option<Instant>>,
    /// Per thread: tasks failed by their processor (the process stays up).
    failed_tasks: Vec<usize>,
    error: Option<String>,
    listeners: Vec<Listener>,
}

pub struct Lifecycle {
    inner: Mutex<Inner>,
    changed: Condvar,
    shutdown: AtomicBool,
    hung_commit: Duration,
}

impl Lifecycle {
    /// `hung_commit`: how long a commit cycle may run before liveness fails.
    pub fn new(threads: usize, hung_commit: Duration) -> Self {
        Lifecycle {
            inner: Mutex::new(Inner {
                state: State::Created,
                threads: vec![ThreadStatus::Rebalancing; threads],
                commit_started: vec![None; threads],
                failed_tasks: vec![0; threads],
                error: None,
                listeners: Vec::new(),
            }),
            changed: Condvar::new(),
            shutdown: AtomicBool::new(false),
            hung_commit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called on every transition with (old, new).
    pub fn add_listener(&self, listener: impl Fn(State, State) + Send + Sync + 'static) {
        self.lock().listeners.push(Box::new(listener));
    }

    pub fn state(&self) -> State {
        self.lock().state
    }

    /// The error that moved the application to ERROR.
    pub fn error(&self) -> Option<String> {
        self.lock().error.clone()
    }

    fn transition(&self, inner: &mut Inner, next: State) -> bool {
        let old = inner.state;
        if old == next || !old.can_transition_to(next) {
            return false;
        }
        inner.state = next;
        tracing::info!("State transition from {old} to {next}");
        for listener in &inner.listeners {
            listener(old, next);
        }
        self.changed.notify_all();
        true
    }

    /// A stream thread's status changed; recomputes RUNNING / REBALANCING.
    pub fn thread_status(&self, thread: usize, status: ThreadStatus) {
        let mut inner = self.lock();
        inner.threads[thread] = status;
        if matches!(
            inner.state,
            State::Created | State::Rebalancing | State::Running
        ) {
            let live: Vec<ThreadStatus> = inner
                .threads
                .iter()
                .copied()
                .filter(|s| *s != ThreadStatus::Dead)
                .collect();
            let next = if !live.is_empty() && live.iter().all(|s| *s == ThreadStatus::Running) {
                State::Running
            } else {
                State::Rebalancing
            };
            if inner.state == State::Created && next == State::Running {
                self.transition(&mut inner, State::Rebalancing);
            }
            self.transition(&mut inner, next);
        }
    }

    /// Starts the ordered shutdown (SIGTERM, SIGINT, or a caller).
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let mut inner = self.lock();
        self.transition(&mut inner, State::PendingShutdown);
    }

    /// A fatal error: threads stop, the application ends in ERROR.
    pub fn fail(&self, error: String) {
        self.shutdown.store(true, Ordering::SeqCst);
        let mut inner = self.lock();
        if inner.error.is_none() {
            tracing::error!("{error}");
            inner.error = Some(error);
        }
        if !self.transition(&mut inner, State::PendingError) {
            // Already shutting down: the error still decides the end state.
            self.changed.notify_all();
        }
    }

    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// All threads have stopped: NOT_RUNNING, or ERROR after a failure.
    pub fn finish(&self) -> State {
        let mut inner = self.lock();
        match inner.state {
            State::PendingError => {
                self.transition(&mut inner, State::Error);
            }
            State::PendingShutdown if inner.error.is_some() => {
                // A failure during shutdown: NOT_RUNNING would hide it.
                tracing::error!("shutdown finished after an error");
                inner.state = State::Error;
                self.changed.notify_all();
            }
            _ => {
                self.transition(&mut inner, State::PendingShutdown);
                self.transition(&mut inner, State::NotRunning);
            }
        }
        inner.state
    }

    /// Blocks until shutdown is requested: by `signal()` turning true (SIGTERM,
    /// SIGINT) or by a failure.
    pub fn wait_for_shutdown(&self, signal: impl Fn() -> bool) {
        while !self.shutdown_requested() {
            if signal() {
                tracing::info!("shutdown signal received");
                self.request_shutdown();
                break;
            }
            self.wait(Duration::from_millis(100));
        }
    }

    /// Waits until the state changes or `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        let inner = self.lock();
        let _ = self.changed.wait_timeout(inner, timeout);
    }

    pub fn commit_started(&self, thread: usize) {
        self.lock().commit_started[thread] = Some(Instant::now());
    }

    pub fn commit_finished(&self, thread: usize) {
        self.lock().commit_started[thread] = None;
    }

    /// Thread `thread` holds `count` tasks failed by their processor.
    pub fn failed_tasks(&self, thread: usize, count: usize) {
        if let Some(slot) = self.lock().failed_tasks.get_mut(thread) {
            *slot = count;
        }
    }

    /// Readiness: serving only when RUNNING (not while rebalancing or
    /// restoring) and no task has failed (a failed task's partitions are
    /// not processed: the pod is alive but not doing all its work).
    pub fn is_ready(&self) -> bool {
        let inner = self.lock();
        inner.state == State::Running && inner.failed_tasks.iter().all(|n| *n == 0)
    }

    /// Tasks failed by their processor, over every thread.
    pub fn failed_task_count(&self) -> usize {
        self.lock().failed_tasks.iter().sum()
    }

    /// Liveness: `Err(reason)` only in ERROR or with a commit hung past the
    /// bound; a pod mid-restore is alive.
    pub fn liveness(&self) -> Result<(), String> {
        let inner = self.lock();
        if inner.state == State::Error || inner.state == State::PendingError {
            return Err(format!(
                "state {}: {}",
                inner.state,
                inner.error.clone().unwrap_or_default()
            ));
        }
        for (thread, started) in inner.commit_started.iter().enumerate() {
            if let Some(t) = started
                && t.elapsed() > self.hung_commit
            {
                return Err(format!(
                    "stream thread {} has been committing for {:?} (bound {:?})",
                    thread + 1,
                    t.elapsed(),
                    self.hung_commit
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn running_needs_every_thread_running() {
        let l = Lifecycle::new(2, Duration::from_secs(60));
        assert_eq!(l.state(), State::Created);
        l.thread_status(0, ThreadStatus::Running);
        assert_eq!(l.state(), State::Rebalancing);
        assert!(!l.is_ready());
        l.thread_status(1, ThreadStatus::Running);
        assert_eq!(l.state(), State::Running);
        assert!(l.is_ready());
        l.thread_status(1, ThreadStatus::Rebalancing);
        assert_eq!(l.state(), State::Rebalancing);
        assert!(l.liveness().is_ok(), "rebalancing is alive");
    }

    #[test]
    fn shutdown_ends_not_running_and_error_ends_error() {
        let l = Lifecycle::new(1, Duration::from_secs(60));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        l.add_listener(move |old, new| s.lock().unwrap().push((old, new)));
        l.thread_status(0, ThreadStatus::Running);
        l.request_shutdown();
        assert!(l.shutdown_requested());
        l.thread_status(0, ThreadStatus::Running); // ignored while shutting down
        assert_eq!(l.finish(), State::NotRunning);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                (State::Created, State::Rebalancing),
                (State::Rebalancing, State::Running),
                (State::Running, State::PendingShutdown),
                (State::PendingShutdown, State::NotRunning),
            ]
        );

        let l = Lifecycle::new(1, Duration::from_secs(60));
        l.fail("task 0_1 failed".into());
        assert!(l.liveness().is_err());
        assert_eq!(l.finish(), State::Error);
        assert_eq!(l.error().as_deref(), Some("task 0_1 failed"));
    }

    #[test]
    fn a_hung_commit_fails_liveness() {
        let l = Lifecycle::new(1, Duration::from_millis(1));
        l.commit_started(0);
        std::thread::sleep(Duration::from_millis(5));
        assert!(l.liveness().unwrap_err().contains("committing"));
        l.commit_finished(0);
        assert!(l.liveness().is_ok());
    }

    #[test]
    fn transitions_follow_the_table() {
        assert!(State::Running.can_transition_to(State::Rebalancing));
        assert!(!State::NotRunning.can_transition_to(State::Running));
        assert!(!State::Error.can_transition_to(State::Running));
        assert!(!State::Created.can_transition_to(State::NotRunning));
    }
}
