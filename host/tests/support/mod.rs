//! Shared support for Weir's integration tests: the real broker, real guest
//! components built from this workspace, and a `weir` process to drive.
#![allow(dead_code)]

pub mod admin;
pub mod guests;
pub mod kafka;
pub mod weir;
pub mod wordcount;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A name no other test (or earlier run) uses: topics, application ids.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(
        "{prefix}-{}-{millis}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Per task, the records restored by "restore complete" lines of `log`
/// after its first `after` bytes (only store `store`'s, if given).
pub fn restored_per_task(
    log: &str,
    after: usize,
    store: Option<&str>,
) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    let store = store.map(|s| format!("store={s}"));
    for line in log[after.min(log.len())..].lines() {
        if !line.contains("restore complete") || store.as_ref().is_some_and(|s| !line.contains(s)) {
            continue;
        }
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_string)
        };
        if let (Some(task), Some(n)) = (field("task_id="), field("restored=")) {
            *out.entry(task).or_default() += n.parse::<u64>().unwrap();
        }
    }
    out
}
