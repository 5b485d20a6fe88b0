//! The Kafka clients a task manager works through ([`Clients`]): the
//! producer behind the commit cycle and the changelog consumers behind
//! restore, on the cluster in production and in memory in tests and the
//! offline driver. Builds clients only; never uses them.

use std::sync::Arc;

use crate::changelog::{ChangelogConsumer, ChangelogConsumers, MemoryChangelog};
use crate::commit::{Collector, CommitError, Faults, MemoryCollector, MemoryLog};
use crate::config::ProcessingGuarantee;

/// Makes a stream thread's producer: at start, and again after a reset
/// under exactly-once.
pub type CollectorFactory = Box<dyn FnMut() -> Result<Box<dyn Collector>, CommitError> + Send>;

/// The Kafka clients a task manager works through: on the cluster in
/// production, in memory in tests (see `commit::MemoryCollector` and
/// `changelog::MemoryChangelog`).
pub struct Clients {
    pub collectors: CollectorFactory,
    pub changelogs: ChangelogConsumers,
}

impl Clients {
    #[cfg(feature = "server")]
    pub fn kafka(config: &Arc<crate::config::Config>, thread: usize) -> Self {
        use crate::commit::RecordCollector;
        let changelogs = crate::changelog::kafka_consumers(config, thread);
        let config = config.clone();
        Clients {
            collectors: Box::new(move || {
                Ok(Box::new(RecordCollector::new(&config, thread)?) as Box<dyn Collector>)
            }),
            changelogs,
        }
    }

    /// Kafka in memory: collectors and changelog consumers over `log`
    /// (`read_committed`). Records sent without a partition are spread by
    /// key over `partitions`; failures are injected through `faults`.
    pub fn memory(
        log: &MemoryLog,
        guarantee: ProcessingGuarantee,
        partitions: i32,
        faults: Faults,
    ) -> Self {
        let (collector_log, changelog_log) = (log.clone(), log.clone());
        Clients {
            collectors: Box::new(move || {
                let collector = MemoryCollector::into_log(guarantee, collector_log.clone())
                    .with_default_partitions(partitions)
                    .with_faults(faults.clone());
                Ok(Box::new(collector) as Box<dyn Collector>)
            }),
            changelogs: Arc::new(move |topic: &str| {
                Ok(Box::new(MemoryChangelog::new(changelog_log.clone(), topic))
                    as Box<dyn ChangelogConsumer>)
            }),
        }
    }
}
