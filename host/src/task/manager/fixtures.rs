//! Fixtures for broker-free tests of the task manager and the stream
//! thread: a native counting processor, its topology and topic plan, a
//! config, and a task manager over a [`MemoryLog`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Clients, TaskManager, TaskManagerSetup};
use crate::commit::{Faults, MemoryLog};
use crate::config::Config;
use crate::group::MemoryGroup;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::runtime::bindings::{IncomingRecord, OutgoingRecord};
use crate::runtime::{LoadedComponent, NativeProcessor, SystemClock, TaskContext};
use crate::task::{ProcessingErrors, TaskRegistry, TaskSetup};
use crate::topics::TopicPlan;
use crate::topology::{SinkSpec, StoreSpec, Topology};

pub(crate) const CHANGELOG: &str = "app-counts-changelog";

/// Counts records per key in store `counts` and forwards the count, after
/// `prefix`, to `out`; if `strict`, a record whose value is `boom` fails
/// the task.
pub(crate) struct Counter {
    prefix: &'static str,
    strict: bool,
}

impl NativeProcessor for Counter {
    fn process(&mut self, ctx: &mut TaskContext, batch: &[IncomingRecord]) -> Result<(), String> {
        for r in batch {
            if self.strict && r.value.as_deref() == Some(b"boom") {
                return Err(format!("boom at offset {}", r.offset));
            }
            let key = r.key.clone().unwrap_or_default();
            let store = &mut ctx.stores[0];
            let count = store
                .get(&key)
                .map_err(|e| e.to_string())?
                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .map_or(0, u64::from_be_bytes)
                + 1;
            store.put(key.clone(), count.to_be_bytes().to_vec());
            let out = OutgoingRecord {
                key: Some(key),
                value: Some(format!("{}{count}", self.prefix).into_bytes()),
                headers: Vec::new(),
                timestamp: Some(r.timestamp),
            };
            ctx.forward("out", out)?;
        }
        Ok(())
    }
}

/// The config of application `app` under `guarantee`, plus `extra`.
pub(crate) fn config(guarantee: &str, extra: &[(&str, &str)]) -> Arc<Config> {
    let raw: BTreeMap<String, String> = [
        ("application.id", "app"),
        ("bootstrap.servers", "unused:9092"),
        ("processing.guarantee", guarantee),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Arc::new(Config::from_map(raw, None).unwrap())
}

/// A [`Counter`] whose `boom` fails the task.
pub(crate) fn counter(prefix: &'static str) -> Arc<LoadedComponent> {
    counting(prefix, true)
}

/// A [`Counter`] that counts `boom` like any other value.
pub(crate) fn lenient_counter(prefix: &'static str) -> Arc<LoadedComponent> {
    counting(prefix, false)
}

fn counting(prefix: &'static str, strict: bool) -> Arc<LoadedComponent> {
    let topology = Topology {
        name: "count".into(),
        sources: vec!["in".into()],
        sinks: vec![SinkSpec {
            name: "out".into(),
            topic: "out".into(),
        }],
        stores: vec![StoreSpec::key_value("counts", false)],
        repartitions: Vec::new(),
    };
    LoadedComponent::native(
        topology,
        Arc::new(move || Box::new(Counter { prefix, strict })),
    )
}

/// Source `in` and sink `out`, 2 partitions, store `counts` logged.
pub(crate) fn plan() -> Arc<TopicPlan> {
    Arc::new(TopicPlan {
        partitions: 2,
        sources: vec!["in".into()],
        source_names: vec!["in".into()],
        sinks: vec!["out".into()],
        changelogs: vec![("counts".into(), CHANGELOG.into())],
        source_changelogs: vec![],
    })
}

pub(crate) fn setup(config: &Arc<Config>) -> TaskManagerSetup {
    TaskManagerSetup {
        config: config.clone(),
        thread: 0,
        tasks: TaskSetup {
            application_id: "app".into(),
            version: 1,
            component: counter(""),
            plan: plan(),
            disk: None,
            clock: Arc::new(SystemClock),
            metrics: Arc::new(Metrics::default()),
            registry: Arc::new(TaskRegistry::default()),
            queries: Arc::default(),
            errors: ProcessingErrors::default(),
            max_task_idle: Some(Duration::ZERO),
            fetch_reports_ends: false,
            record_cache: Default::default(),
        },
        lifecycle: Arc::new(Lifecycle::new(1, Duration::from_secs(60))),
    }
}

/// A task manager of `config` over `log`, failures injected by `faults`.
pub(crate) fn manager(log: &MemoryLog, config: &Arc<Config>, faults: &Faults) -> TaskManager {
    let clients = Clients::memory(log, config.processing_guarantee, 1, faults.clone());
    TaskManager::with_clients(setup(config), clients).unwrap()
}

/// The latest count per key in `out`, as a `read_committed` reader sees it.
pub(crate) fn outputs(log: &MemoryLog) -> BTreeMap<String, String> {
    log.records("out")
        .into_iter()
        .map(|r| {
            let text = |b: Option<Vec<u8>>| String::from_utf8(b.unwrap()).unwrap();
            (text(r.key), text(r.value))
        })
        .collect()
}

/// The offset the group has committed for partition `partition` of `in`.
pub(crate) fn committed(group: &MemoryGroup, partition: i32) -> Option<i64> {
    group
        .committed_offsets()
        .get(&("in".to_string(), partition))
        .map(|o| o.offset)
}
