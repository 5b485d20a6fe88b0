//! Resource limits the host checks or reports at startup: the open-files
//! limit RocksDB needs, and the memory formula for the configured budgets.
//! Must only observe and report (or raise a soft limit to its hard limit),
//! never fail the process over a limit.

use crate::config::Config;
use crate::topology::Topology;

/// The open-files limit below which the host warns (as the operations guide
/// asks of every stateful pod).
pub const RECOMMENDED_NOFILE: u64 = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    pub soft: u64,
    pub hard: u64,
}

/// Reads `RLIMIT_NOFILE`, raises the soft limit towards the recommendation
/// when the hard limit allows, and warns if it stays below. Checks once per
/// process; later calls return the first answer.
pub fn check_open_files() -> Option<OpenFiles> {
    static CHECKED: std::sync::OnceLock<Option<OpenFiles>> = std::sync::OnceLock::new();
    *CHECKED.get_or_init(read_and_raise_open_files)
}

fn read_and_raise_open_files() -> Option<OpenFiles> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!("cannot read the open-files limit (RLIMIT_NOFILE)");
        return None;
    }
    if limit.rlim_cur < RECOMMENDED_NOFILE && limit.rlim_max > limit.rlim_cur {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max.min(RECOMMENDED_NOFILE),
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::info!(
                from = limit.rlim_cur,
                to = raised.rlim_cur,
                "raised the open-files soft limit"
            );
            limit.rlim_cur = raised.rlim_cur;
        }
    }
    let files = OpenFiles {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    };
    if files.soft < RECOMMENDED_NOFILE {
        tracing::warn!(
            soft = files.soft,
            hard = files.hard,
            "open-files limit is below {RECOMMENDED_NOFILE}: RocksDB keeps many files per store and task; \
             set nofile to at least {RECOMMENDED_NOFILE} (check `ulimit -n` inside the container)"
        );
    }
    Some(files)
}

/// The memory bound of this configuration, as text: what each budget
/// contributes and the total a container limit must cover.
pub fn memory_formula(config: &Config, topology: &Topology, tasks: usize) -> String {
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    let rocks = config.rocksdb_block_cache_bytes + config.rocksdb_write_buffer_bytes;
    let wasm = config.wasm_max_memory_bytes * tasks;
    // A call may add wasm.max.call.bytes on top of what forces a commit.
    let buffers = (config.statestore_cache_max_bytes + config.wasm_max_call_bytes)
        * config.num_stream_threads;
    let held = crate::store::RESTORE_HOLD_BYTES * config.num_stream_threads;
    let total = rocks + wasm + buffers + held;
    format!(
        "memory bound for {tasks} task(s) of `{}` ({} store(s) each):\n\
         \x20 RocksDB, shared by every store: rocksdb.block.cache.bytes {:.0} MiB + rocksdb.write.buffer.bytes {:.0} MiB = {:.0} MiB\n\
         \x20 Wasm: wasm.max.memory.bytes {:.0} MiB x {tasks} instance(s) = {:.0} MiB (a cap; instances use what they touch)\n\
         \x20 standby and warm-up tasks (num.standby.replicas {}, max.warmup.replicas {}): stores only, inside the RocksDB budget above; no Wasm instance\n\
         \x20 uncommitted writes and outputs: (statestore.cache.max.bytes {:.0} MiB + wasm.max.call.bytes {:.0} MiB) x {} thread(s) = {:.0} MiB\n\
         \x20 changelog records a restore holds: {:.0} MiB x {} thread(s) = {:.0} MiB (while restoring)\n\
         \x20 total {:.0} MiB + host and Kafka client overhead (~100 MiB) + headroom for compaction spikes",
        topology.name,
        topology.stores.len(),
        mib(config.rocksdb_block_cache_bytes),
        mib(config.rocksdb_write_buffer_bytes),
        mib(rocks),
        mib(config.wasm_max_memory_bytes),
        mib(wasm),
        config.num_standby_replicas,
        config.max_warmup_replicas,
        mib(config.statestore_cache_max_bytes),
        mib(config.wasm_max_call_bytes),
        config.num_stream_threads,
        mib(buffers),
        mib(crate::store::RESTORE_HOLD_BYTES),
        config.num_stream_threads,
        mib(held),
        mib(total),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_files_are_read() {
        let files = check_open_files().expect("getrlimit works on Linux");
        assert!(files.soft <= files.hard);
        assert!(files.soft > 0);
    }

    #[test]
    fn the_formula_adds_up_the_budgets() {
        let raw = crate::config::parse_toml(
            "application.id = \"a\"\nbootstrap.servers = \"b:1\"\nrocksdb.block.cache.bytes = 104857600\n\
             rocksdb.write.buffer.bytes = 52428800\nwasm.max.memory.bytes = 10485760\n",
        )
        .unwrap();
        let config = Config::from_map(raw, Some("h")).unwrap();
        let topology = Topology {
            name: "wc".into(),
            sources: vec!["in".into()],
            sinks: vec![],
            stores: vec![],
            repartitions: vec![],
        };
        let text = memory_formula(&config, &topology, 4);
        assert!(text.contains("= 150 MiB"), "{text}");
        assert!(text.contains("x 4 instance(s) = 40 MiB"), "{text}");
        // 10 MiB statestore.cache.max.bytes + 64 MiB wasm.max.call.bytes.
        assert!(text.contains("x 1 thread(s) = 74 MiB"), "{text}");
        assert!(text.contains("32 MiB x 1 thread(s) = 32 MiB"), "{text}");
        assert!(text.contains("total 296 MiB"), "{text}");
        assert!(text.contains("num.standby.replicas 0"), "{text}");
    }
}
