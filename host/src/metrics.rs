//! Process-wide counters and gauges, rendered in Prometheus text format.
//! Plain atomics: updated on hot paths without locks; read by the admin
//! endpoint and the periodic log line. Must never block or allocate on update.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub records_processed: AtomicU64,
    pub records_forwarded: AtomicU64,
    pub process_calls: AtomicU64,
    pub punctuations: AtomicU64,
    pub commits: AtomicU64,
    pub commit_micros_total: AtomicU64,
    pub commit_micros_max: AtomicU64,
    pub changelog_records: AtomicU64,
    pub restored_records: AtomicU64,
    pub restore_remaining: AtomicI64,
    pub tasks_running: AtomicI64,
    pub tasks_restoring: AtomicI64,
    pub tasks_standby: AtomicI64,
    pub tasks_failed: AtomicI64,
    pub standby_lag: AtomicI64,
    pub standby_records: AtomicU64,
    pub queries: AtomicU64,
    pub records_skipped: AtomicU64,
    pub dropped_records: AtomicU64,
    pub queries_forwarded: AtomicU64,
    pub task_failures: AtomicU64,
    pub wasm_deadline_interruptions: AtomicU64,
    pub wasm_memory_cap_hits: AtomicU64,
    pub swaps: AtomicU64,
    pub swap_pause_micros_total: AtomicU64,
    pub swap_pause_micros_max: AtomicU64,
    pub rebalances: AtomicU64,
    pub rebalance_tasks_kept: AtomicU64,
    pub rebalance_tasks_gained: AtomicU64,
    pub rebalance_tasks_revoked: AtomicU64,
    pub rebalance_micros_total: AtomicU64,
    pub rebalance_micros_max: AtomicU64,
    pub source_consumer_restarts: AtomicU64,
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    pub fn record_commit(&self, micros: u64, changelog_records: u64) {
        add(&self.commits, 1);
        add(&self.commit_micros_total, micros);
        add(&self.changelog_records, changelog_records);
        self.commit_micros_max.fetch_max(micros, Ordering::Relaxed);
    }

    /// One assignment received: tasks kept, newly gained, given up.
    pub fn record_rebalance(&self, kept: u64, gained: u64, revoked: u64) {
        add(&self.rebalances, 1);
        add(&self.rebalance_tasks_kept, kept);
        add(&self.rebalance_tasks_gained, gained);
        add(&self.rebalance_tasks_revoked, revoked);
    }

    /// From joining (or a rebalance starting) to the assignment.
    pub fn record_rebalance_time(&self, micros: u64) {
        add(&self.rebalance_micros_total, micros);
        self.rebalance_micros_max
            .fetch_max(micros, Ordering::Relaxed);
    }

    pub fn record_swap(&self, micros: u64) {
        add(&self.swaps, 1);
        add(&self.swap_pause_micros_total, micros);
        self.swap_pause_micros_max
            .fetch_max(micros, Ordering::Relaxed);
    }

    /// Prometheus exposition text; `extra` are gauges computed by the caller
    /// (state, RocksDB memory) as (name, help, value).
    pub fn render(&self, extra: &[(&str, &str, f64)]) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        let geti = |a: &AtomicI64| a.load(Ordering::Relaxed) as f64;
        let rows: Vec<(&str, &str, &str, f64)> = vec![
            (
                "weir_rebalances_total",
                "counter",
                "group assignments received",
                get(&self.rebalances),
            ),
            (
                "weir_rebalance_seconds_total",
                "counter",
                "time from a rebalance starting to this process's assignment",
                get(&self.rebalance_micros_total) / 1e6,
            ),
            (
                "weir_rebalance_seconds_max",
                "gauge",
                "longest rebalance seen",
                get(&self.rebalance_micros_max) / 1e6,
            ),
            (
                "weir_source_consumer_restarts_total",
                "counter",
                "source consumers replaced because they stopped fetching partitions that had records",
                get(&self.source_consumer_restarts),
            ),
            (
                "weir_rebalance_tasks_kept_total",
                "counter",
                "active tasks kept through an assignment (never paused)",
                get(&self.rebalance_tasks_kept),
            ),
            (
                "weir_rebalance_tasks_gained_total",
                "counter",
                "active tasks newly assigned",
                get(&self.rebalance_tasks_gained),
            ),
            (
                "weir_rebalance_tasks_revoked_total",
                "counter",
                "active tasks given up (committed and closed, or lost)",
                get(&self.rebalance_tasks_revoked),
            ),
            (
                "weir_records_processed_total",
                "counter",
                "records handed to processors",
                get(&self.records_processed),
            ),
            (
                "weir_records_forwarded_total",
                "counter",
                "records processors forwarded to sinks",
                get(&self.records_forwarded),
            ),
            (
                "weir_process_calls_total",
                "counter",
                "batched calls into processors",
                get(&self.process_calls),
            ),
            (
                "weir_punctuations_total",
                "counter",
                "punctuate calls",
                get(&self.punctuations),
            ),
            (
                "weir_commits_total",
                "counter",
                "completed commit cycles",
                get(&self.commits),
            ),
            (
                "weir_commit_seconds_total",
                "counter",
                "time spent in commit cycles",
                get(&self.commit_micros_total) / 1e6,
            ),
            (
                "weir_commit_seconds_max",
                "gauge",
                "longest commit cycle",
                get(&self.commit_micros_max) / 1e6,
            ),
            (
                "weir_changelog_records_total",
                "counter",
                "records written to changelog topics",
                get(&self.changelog_records),
            ),
            (
                "weir_restored_records_total",
                "counter",
                "changelog records restored into stores",
                get(&self.restored_records),
            ),
            (
                "weir_restore_remaining_records",
                "gauge",
                "changelog records left to restore (upper bound)",
                geti(&self.restore_remaining),
            ),
            (
                "weir_tasks_running",
                "gauge",
                "active tasks processing",
                geti(&self.tasks_running),
            ),
            (
                "weir_tasks_restoring",
                "gauge",
                "active tasks restoring state",
                geti(&self.tasks_restoring),
            ),
            (
                "weir_tasks_failed",
                "gauge",
                "tasks failed by their processor (not processing; retried with backoff)",
                geti(&self.tasks_failed),
            ),
            (
                "weir_tasks_standby",
                "gauge",
                "standby and warm-up tasks kept on this process",
                geti(&self.tasks_standby),
            ),
            (
                "weir_standby_lag_records",
                "gauge",
                "changelog records the standby tasks are behind, summed",
                geti(&self.standby_lag),
            ),
            (
                "weir_standby_records_total",
                "counter",
                "changelog records applied by standby tasks",
                get(&self.standby_records),
            ),
            (
                "weir_records_skipped_total",
                "counter",
                "records skipped by processing.exception.handler = continue",
                get(&self.records_skipped),
            ),
            (
                "weir_dropped_records_total",
                "counter",
                "window-store writes dropped as too late (window closed after its grace, or past retention)",
                get(&self.dropped_records),
            ),
            (
                "weir_queries_total",
                "counter",
                "interactive queries answered or routed by this instance",
                get(&self.queries),
            ),
            (
                "weir_queries_forwarded_total",
                "counter",
                "interactive queries forwarded to the owning instance",
                get(&self.queries_forwarded),
            ),
            (
                "weir_task_failures_total",
                "counter",
                "tasks failed by a guest error or trap",
                get(&self.task_failures),
            ),
            (
                "weir_wasm_deadline_interruptions_total",
                "counter",
                "guest calls stopped by the CPU deadline",
                get(&self.wasm_deadline_interruptions),
            ),
            (
                "weir_wasm_memory_cap_hits_total",
                "counter",
                "guest memory growths refused by the cap",
                get(&self.wasm_memory_cap_hits),
            ),
            (
                "weir_swaps_total",
                "counter",
                "processor version swaps",
                get(&self.swaps),
            ),
            (
                "weir_swap_pause_seconds_total",
                "counter",
                "processing pause caused by swaps",
                get(&self.swap_pause_micros_total) / 1e6,
            ),
            (
                "weir_swap_pause_seconds_max",
                "gauge",
                "longest processing pause caused by a swap",
                get(&self.swap_pause_micros_max) / 1e6,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        for (name, help, value) in extra {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.record_commit(1_500, 3);
        m.record_commit(500, 1);
        let text = m.render(&[("weir_state", "lifecycle state", 2.0)]);
        assert!(
            text.contains("# TYPE weir_commits_total counter\nweir_commits_total 2\n"),
            "{text}"
        );
        assert!(text.contains("weir_commit_seconds_max 0.0015\n"), "{text}");
        assert!(text.contains("weir_changelog_records_total 4\n"), "{text}");
        assert!(
            text.contains("# TYPE weir_state gauge\nweir_state 2\n"),
            "{text}"
        );
    }
}
