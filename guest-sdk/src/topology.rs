//! The topology a processor declares in `describe()`: its sources, sinks and
//! stores. The host derives tasks, topics and store directories from this and
//! nothing else, so it must not depend on state or configuration.

use crate::bindings::weir::streams::types as wit;
use crate::codec::{Codec, Format};
use crate::window::TimeWindows;

// 0.3.0 declares stores apart from `types` (their declaration grew a
// source changelog); 0.2.0 keeps them there.
#[cfg(not(feature = "contract-0-2"))]
use crate::bindings::weir::streams::declarations as declared;
#[cfg(feature = "contract-0-2")]
use crate::bindings::weir::streams::types as declared;

/// What `describe` hands the host.
#[doc(hidden)]
pub type WitTopology = declared::Topology;

/// What a processor reads, writes and keeps.
///
/// ```
/// use weir_sdk::{StoreSpec, Topology};
/// let topology = Topology::new("word-count")
///     .source("text-lines")
///     .sink("counts", "word-counts")
///     .store(StoreSpec::kv("counts"));
/// # let _ = topology;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    name: String,
    sources: Vec<String>,
    sinks: Vec<(String, String)>,
    stores: Vec<StoreSpec>,
    repartitions: Vec<String>,
}

impl Topology {
    /// A topology called `name` (used in logs, metrics and the admin API).
    pub fn new(name: &str) -> Self {
        Topology {
            name: name.to_string(),
            sources: Vec::new(),
            sinks: Vec::new(),
            stores: Vec::new(),
            repartitions: Vec::new(),
        }
    }

    /// Reads `topic`. Several sources must have the same partition count.
    pub fn source(mut self, topic: &str) -> Self {
        self.sources.push(topic.to_string());
        self
    }

    /// A sink called `name` that writes to `topic` unless the host's
    /// configuration maps the topic elsewhere.
    pub fn sink(mut self, name: &str, topic: &str) -> Self {
        self.sinks.push((name.to_string(), topic.to_string()));
        self
    }

    /// A repartition topic called `name`: forward to it (as to a sink called
    /// `name`) with a new key, and its records come back to the task that
    /// owns that key, with [`Record::source`](crate::Record::source) equal
    /// to `name`. The host creates `<application.id>-<name>-repartition`.
    pub fn repartition(mut self, name: &str) -> Self {
        self.repartitions.push(name.to_string());
        self
    }

    /// Keeps the store described by `spec`.
    pub fn store(mut self, spec: StoreSpec) -> Self {
        self.stores.push(spec);
        self
    }

    /// A table read from `topic` into store `spec` (see
    /// [`Table`](crate::Table)): the source and the store in one line.
    /// The store has a changelog topic of its own unless `spec` says
    /// [`StoreSpec::source_as_changelog`].
    pub fn table(self, topic: &str, mut spec: StoreSpec) -> Self {
        if spec.source_as_changelog {
            spec.source_changelog = Some(topic.to_string());
        }
        self.source(topic).store(spec)
    }

    /// A [`Table`](crate::Table) of `K` to `V` read from `topic` into
    /// key-value store `store`, restored from `topic` itself
    /// ([`StoreSpec::source_as_changelog`]): Kafka Streams'
    /// `builder.table(topic, Materialized.as(store))` with
    /// `reuse.ktable.source.topics`. Open it with
    /// `Table::open(topic, store)`.
    ///
    /// ```
    /// use weir_sdk::{Json, Topology};
    /// let topology = Topology::new("enrich")
    ///     .source("orders")
    ///     .source_table::<String, Json<Vec<String>>>("customers", "customer-table");
    /// # let _ = topology;
    /// ```
    pub fn source_table<K: Codec, V: Codec>(self, topic: &str, store: &str) -> Self {
        let spec = StoreSpec::kv(store).formats::<K, V>().source_as_changelog();
        self.table(topic, spec)
    }

    /// What an [`Aggregation`](crate::Aggregation) of `K` to aggregates `A`
    /// needs: repartition `repartition` and a logged key-value store
    /// `store`. Open it with `Aggregation::open(repartition, store)`.
    ///
    /// ```
    /// use weir_sdk::Topology;
    /// let topology = Topology::new("totals")
    ///     .source("orders")
    ///     .aggregation::<String, u64>("by-tier", "tier-totals");
    /// # let _ = topology;
    /// ```
    pub fn aggregation<K: Codec, A: Codec>(self, repartition: &str, store: &str) -> Self {
        let spec = StoreSpec::kv(store).formats::<K, A>();
        self.repartition(repartition).store(spec)
    }

    /// Sink and repartition names: what a processor may forward to.
    pub(crate) fn output_names(&self) -> Vec<String> {
        self.sinks
            .iter()
            .map(|(name, _)| name.clone())
            .chain(self.repartitions.iter().cloned())
            .collect()
    }

    pub(crate) fn into_wit(self) -> WitTopology {
        WitTopology {
            name: self.name,
            sources: self.sources,
            sinks: self
                .sinks
                .into_iter()
                .map(|(name, topic)| wit::SinkSpec { name, topic })
                .collect(),
            stores: self
                .stores
                .into_iter()
                .map(|s| declared::StoreSpec {
                    name: s.name,
                    kind: match s.window {
                        Some(_) => wit::StoreKind::Window,
                        None => wit::StoreKind::KeyValue,
                    },
                    window: s.window,
                    logged: s.logged,
                    persistent: s.persistent,
                    key_format: s.key_format,
                    value_format: s.value_format,
                    #[cfg(not(feature = "contract-0-2"))]
                    source_changelog: s.source_changelog,
                })
                .collect(),
            repartitions: self.repartitions,
        }
    }
}

/// A state store declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    name: String,
    window: Option<wit::WindowSpec>,
    logged: bool,
    persistent: bool,
    key_format: Format,
    value_format: Format,
    source_as_changelog: bool,
    /// The source it is restored from, once [`Topology::table`] knows it.
    source_changelog: Option<String>,
}

impl StoreSpec {
    /// A key-value store on disk (RocksDB) with a changelog topic: the
    /// default that survives both restarts and the loss of local disk.
    pub fn kv(name: &str) -> Self {
        StoreSpec {
            name: name.to_string(),
            window: None,
            logged: true,
            persistent: true,
            key_format: Format::Bytes,
            value_format: Format::Bytes,
            source_as_changelog: false,
            source_changelog: None,
        }
    }

    /// A window store on disk with a changelog, for `windows`: it keeps
    /// windows for their size plus grace (Kafka Streams' default; longer
    /// with [`StoreSpec::retention_ms`]), and refuses writes to windows
    /// that have closed. Open it with
    /// [`WindowStore::open`](crate::WindowStore::open).
    pub fn window(name: &str, windows: &TimeWindows) -> Self {
        StoreSpec {
            window: Some(wit::WindowSpec {
                size_ms: windows.size_ms,
                grace_ms: windows.grace_ms,
                retention_ms: windows.size_ms + windows.grace_ms,
            }),
            ..StoreSpec::kv(name)
        }
    }

    /// How long a window store keeps windows, back from the newest window
    /// start it has seen (at least size + grace). No effect on a key-value
    /// store.
    pub fn retention_ms(mut self, retention_ms: u64) -> Self {
        if let Some(w) = &mut self.window {
            w.retention_ms = retention_ms;
        }
        self
    }

    /// Declares the key and value types the store is opened with, so
    /// interactive queries show keys and values decoded (a
    /// `KvStore<String, u64>` answers `"kafka"` → `3`, not raw bytes).
    ///
    /// ```
    /// use weir_sdk::StoreSpec;
    /// let counts = StoreSpec::kv("counts").formats::<String, u64>();
    /// # let _ = counts;
    /// ```
    pub fn formats<K: Codec, V: Codec>(mut self) -> Self {
        self.key_format = K::FORMAT;
        self.value_format = V::FORMAT;
        self
    }

    /// Keep the store in memory; with a changelog it is rebuilt on start.
    pub fn in_memory(mut self) -> Self {
        self.persistent = false;
        self
    }

    /// For a [`Table`](crate::Table)'s store declared with
    /// [`Topology::table`]: no changelog topic of its own; the host
    /// restores it from the table's source topic, up to the input offset
    /// the application committed (Kafka Streams'
    /// `topology.optimization=reuse.ktable.source.topics`). It saves a
    /// copy of the topic and the writes to it; the store must then hold
    /// the source's records exactly as they arrive, which
    /// [`Table::update`](crate::Table::update) does.
    ///
    /// ```
    /// use weir_sdk::{StoreSpec, Topology};
    /// let topology = Topology::new("enrich")
    ///     .source("orders")
    ///     .table("customers", StoreSpec::kv("customers").source_as_changelog());
    /// # let _ = topology;
    /// ```
    ///
    /// Built for contract 0.2.0 (feature `contract-0-2`), which cannot say
    /// it, the store keeps a changelog topic of its own.
    pub fn source_as_changelog(mut self) -> Self {
        self.source_as_changelog = true;
        self
    }

    /// No changelog topic: state is lost with the local disk (or, in memory,
    /// on every restart).
    pub fn without_changelog(mut self) -> Self {
        self.logged = false;
        self
    }
}
