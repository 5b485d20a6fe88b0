//! The Kafka clients a task manager works through ([`Clients`]): the
//! producer behind the commit cycle and the changelog consumers behind
//! restore, on the cluster in production and in memory in tests and the
//! offline driver. Builds clients only; never uses them.

use std::sync::Arc;

use crate::changelog::{ChangelogConsumers, kafka_consumers};
use crate::commit::{Collector, CommitError, RecordCollector};
use crate::config::Config;

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
    pub fn kafka(config: &Arc<Config>, thread: usize) -> Self {
        let changelogs = kafka_consumers(config, thread);
        let config = config.clone();
        Clients {
            collectors: Box::new(move || {
                Ok(Box::new(RecordCollector::new(&config, thread)?) as Box<dyn Collector>)
            }),
            changelogs,
        }
    }
}
