//! Interactive queries: reading any store of the application from any
//! instance, as Kafka Streams' `KafkaStreams#store`, `queryMetadataForKey`
//! and `streamsMetadataForStore` do, through the admin HTTP API.
//!
//! Owns: which stores this process can read ([`QueryableStores`]: a
//! committed-state reader per (store, partition), with its role) and where
//! the others are (the group's host map: `application.server` → active and
//! standby tasks). The HTTP side ([`http`]; ranges in `range`, a window
//! store's windows in `windows`) answers locally, forwards one hop to the
//! owner, or redirects.
//!
//! Must never: read a task's uncommitted writes, block a stream thread
//! (readers share RocksDB handles, whose reads are thread-safe), or answer
//! from a task that is restoring or moving (that is a 503).

// The HTTP side is the server's.
#[cfg(feature = "server")]
mod format;
#[cfg(feature = "server")]
pub(crate) mod http;
#[cfg(feature = "server")]
mod range;
#[cfg(feature = "server")]
mod windows;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[cfg(feature = "server")]
pub use format::KeyFormat;

use crate::assign::HostTasks;
use crate::store::StoreReader;
use crate::topology::{StoreSpec, TaskId};

/// What a local copy of a store may answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The active task is running: its committed state is current.
    Active,
    /// The active task is restoring: not yet an answer.
    Restoring,
    /// A standby (or warm-up): answers only when stale reads are allowed.
    Standby { lag: i64 },
}

#[derive(Clone)]
struct Local {
    reader: Arc<dyn StoreReader>,
    role: Role,
}

/// Where each partition's copies are, from the last assignment.
#[derive(Debug, Clone, Default)]
struct Routing {
    partitions: i32,
    stores: Vec<StoreSpec>,
    hosts: BTreeMap<String, HostTasks>,
}

/// The stores this process can read, and the map to the others.
#[derive(Default)]
pub struct QueryableStores {
    local: RwLock<BTreeMap<(String, i32), Local>>,
    routing: RwLock<Routing>,
    /// This process's `application.server`.
    me: Option<String>,
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// Where a key's partition can be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Here, in this role.
    Local(Role),
    /// On the instance at this endpoint.
    Remote(String),
    /// Nobody serves it now (rebalancing, or no endpoint known).
    Unavailable,
}

impl QueryableStores {
    pub fn new(application_server: Option<String>) -> Self {
        QueryableStores {
            me: application_server,
            ..QueryableStores::default()
        }
    }

    /// This process's endpoint, if it has one.
    pub fn me(&self) -> Option<&str> {
        self.me.as_deref()
    }

    /// The running version's partition count and stores.
    pub fn set_plan(&self, partitions: usize, stores: Vec<StoreSpec>) {
        let mut r = write(&self.routing);
        r.partitions = partitions as i32;
        r.stores = stores;
    }

    /// The host map of the latest assignment.
    pub fn set_hosts(&self, hosts: BTreeMap<String, HostTasks>) {
        write(&self.routing).hosts = hosts;
    }

    /// Task `task`'s stores are readable here in `role`.
    pub fn set_task(&self, task: TaskId, role: Role, stores: Vec<(String, Arc<dyn StoreReader>)>) {
        let mut local = write(&self.local);
        local.retain(|(_, p), _| *p != task.partition);
        for (name, reader) in stores {
            local.insert((name, task.partition), Local { reader, role });
        }
    }

    /// Task `task` is gone from this process.
    pub fn remove_task(&self, task: TaskId) {
        write(&self.local).retain(|(_, p), _| *p != task.partition);
    }

    pub fn partitions(&self) -> i32 {
        read(&self.routing).partitions
    }

    pub fn stores(&self) -> Vec<StoreSpec> {
        read(&self.routing).stores.clone()
    }

    /// The running version's declaration of `store`.
    pub fn store(&self, store: &str) -> Option<StoreSpec> {
        read(&self.routing)
            .stores
            .iter()
            .find(|s| s.name == store)
            .cloned()
    }

    /// The partition `key` belongs to: Kafka's default partitioner, as the
    /// processor's forwards through a repartition topic use.
    pub fn partition_of(&self, key: &[u8]) -> i32 {
        crate::partitioner::partition_for_key(key, self.partitions())
    }

    /// The local reader of `store`'s `partition`, with its role.
    pub fn local(&self, store: &str, partition: i32) -> Option<(Arc<dyn StoreReader>, Role)> {
        read(&self.local)
            .get(&(store.to_string(), partition))
            .map(|l| (l.reader.clone(), l.role))
    }

    /// The endpoint running `partition` as active, by the host map.
    pub fn active_host(&self, partition: i32) -> Option<String> {
        let task = TaskId::for_partition(partition);
        read(&self.routing)
            .hosts
            .iter()
            .find(|(_, t)| t.active.contains(&task))
            .map(|(h, _)| h.clone())
    }

    /// The endpoints keeping a standby of `partition`.
    pub fn standby_hosts(&self, partition: i32) -> Vec<String> {
        let task = TaskId::for_partition(partition);
        read(&self.routing)
            .hosts
            .iter()
            .filter(|(_, t)| t.standby.contains(&task))
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// Who answers for `store`'s `partition`: a running local active
    /// first, then (with `stale`) a local standby, then the active's
    /// endpoint when it is another instance.
    pub fn owner(&self, store: &str, partition: i32, stale: bool) -> Owner {
        match self.local(store, partition).map(|(_, role)| role) {
            Some(Role::Active) => return Owner::Local(Role::Active),
            Some(role @ Role::Standby { .. }) if stale => return Owner::Local(role),
            Some(Role::Restoring) => return Owner::Local(Role::Restoring),
            _ => {}
        }
        match self.active_host(partition) {
            Some(host) if Some(host.as_str()) != self.me() => Owner::Remote(host),
            _ => Owner::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use super::*;
    use crate::store::{BackendError, Entry};

    struct Fixed;
    impl StoreReader for Fixed {
        fn get(&self, _: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
            Ok(Some(b"v".to_vec()))
        }
        fn scan(
            &self,
            _: Bound<&[u8]>,
            _: Bound<&[u8]>,
            _: usize,
        ) -> Result<Vec<Entry>, BackendError> {
            Ok(Vec::new())
        }
    }

    fn t(p: i32) -> TaskId {
        TaskId::for_partition(p)
    }

    fn stores() -> QueryableStores {
        let q = QueryableStores::new(Some("a:1".into()));
        q.set_plan(
            4,
            vec![StoreSpec {
                name: "counts".into(),
                kind: crate::topology::StoreKind::KeyValue,
                logged: true,
                persistent: true,
                key_format: crate::topology::DataFormat::Utf8,
                value_format: crate::topology::DataFormat::U64,
                window: None,
                source_changelog: None,
            }],
        );
        q.set_hosts(
            [
                (
                    "a:1".to_string(),
                    HostTasks {
                        active: [t(0), t(1)].into(),
                        standby: [t(2)].into(),
                    },
                ),
                (
                    "b:1".to_string(),
                    HostTasks {
                        active: [t(2), t(3)].into(),
                        standby: [t(0)].into(),
                    },
                ),
            ]
            .into(),
        );
        q
    }

    #[test]
    fn the_owner_is_local_when_running_here_and_remote_by_the_host_map() {
        let q = stores();
        q.set_task(t(0), Role::Active, vec![("counts".into(), Arc::new(Fixed))]);
        q.set_task(
            t(2),
            Role::Standby { lag: 3 },
            vec![("counts".into(), Arc::new(Fixed))],
        );
        assert_eq!(q.owner("counts", 0, false), Owner::Local(Role::Active));
        assert_eq!(q.owner("counts", 2, false), Owner::Remote("b:1".into()));
        assert_eq!(
            q.owner("counts", 2, true),
            Owner::Local(Role::Standby { lag: 3 })
        );
        assert_eq!(q.owner("counts", 3, false), Owner::Remote("b:1".into()));
        // The map says partition 1 is ours, but it is not open here (yet).
        assert_eq!(q.owner("counts", 1, false), Owner::Unavailable);
        assert_eq!(q.standby_hosts(0), vec!["b:1".to_string()]);
        q.remove_task(t(0));
        assert_eq!(q.owner("counts", 0, false), Owner::Unavailable);
    }

    #[test]
    fn a_restoring_task_answers_for_itself_so_the_query_waits() {
        let q = stores();
        q.set_task(
            t(1),
            Role::Restoring,
            vec![("counts".into(), Arc::new(Fixed))],
        );
        assert_eq!(q.owner("counts", 1, true), Owner::Local(Role::Restoring));
    }
}
