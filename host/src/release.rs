//! The release a topology runs: a version of a component with its topic
//! plan ([`Release`]), and the hand-over of a new one to the stream threads
//! ([`Target`]): the app sets it, each thread picks it up at its next
//! commit boundary and reports which generation it applied.
//!
//! Owns no threads and never touches tasks: the app decides when to swap,
//! the threads how. Both depend on this module, not on each other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::runtime::LoadedComponent;
use crate::topics::{TopicError, TopicPlan};

/// One version of a topology, ready to run: the compiled component and the
/// topics it runs on.
pub struct Release {
    pub version: u32,
    pub component: Arc<LoadedComponent>,
    pub plan: Arc<TopicPlan>,
}

impl Release {
    /// Prepares topics (creating sinks and changelogs) for `component`.
    pub fn prepare(
        config: &Config,
        version: u32,
        component: Arc<LoadedComponent>,
    ) -> Result<Arc<Self>, TopicError> {
        let plan = Arc::new(crate::topics::prepare(config, component.topology())?);
        Ok(Arc::new(Release {
            version,
            component,
            plan,
        }))
    }
}

/// The release the stream threads should run, and which they have applied.
pub(crate) struct Target {
    state: Mutex<TargetState>,
    changed: Condvar,
    stop: AtomicBool,
}

struct TargetState {
    generation: u64,
    release: Arc<Release>,
    /// Per thread, the generation it runs (`None`: it stopped).
    applied: Vec<Option<u64>>,
}

impl Target {
    /// `release` as generation 0, which every one of `threads` starts on.
    pub(crate) fn new(release: Arc<Release>, threads: usize) -> Self {
        Target {
            state: Mutex::new(TargetState {
                generation: 0,
                release,
                applied: vec![Some(0); threads],
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TargetState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `release` the one to run; returns its generation.
    pub(crate) fn set(&self, release: Arc<Release>) -> u64 {
        let mut state = self.lock();
        state.generation += 1;
        state.release = release;
        state.generation
    }

    /// Waits until every running thread applied `generation` (true), or
    /// until `deadline` or `give_up()` (false).
    pub(crate) fn wait_applied(
        &self,
        generation: u64,
        deadline: Instant,
        give_up: impl Fn() -> bool,
    ) -> bool {
        let mut state = self.lock();
        loop {
            let done = state
                .applied
                .iter()
                .all(|a| a.is_none_or(|g| g >= generation));
            if done {
                return true;
            }
            if give_up() || Instant::now() >= deadline {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// A release newer than generation `seen`, if one was set.
    pub(crate) fn newer_than(&self, seen: u64) -> Option<(u64, Arc<Release>)> {
        let state = self.lock();
        (state.generation > seen).then(|| (state.generation, state.release.clone()))
    }

    /// Thread `thread` now runs `generation` (`None`: it stopped).
    pub(crate) fn applied(&self, thread: usize, generation: Option<u64>) {
        self.lock().applied[thread] = generation;
        self.changed.notify_all();
    }

    /// Asks every thread to stop after its current pass.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}
