//! Re-key and aggregate through a declared repartition (Kafka Streams'
//! `groupBy(...).aggregate/count/reduce`): [`Aggregation::group_by`]
//! forwards a record under its new key to the repartition, and the task
//! that owns that key folds it into the key's aggregate, kept in a
//! key-value store (with its changelog). The aggregate is returned for the
//! processor to forward, or, with [`Aggregation::emit_to`], forwarded by
//! the aggregation through a record cache: latest per key per commit.

use std::rc::Rc;

use crate::cache::RecordCache;
use crate::codec::Codec;
use crate::context::{Context, Record};
use crate::error::Error;
use crate::sink::Sink;
use crate::store::{KvStore, StoreError};

/// ```no_run
/// # use weir_sdk::{Aggregation, Context, Error, Record, Sink};
/// # fn demo(record: Record, ctx: &mut Context) -> Result<(), Error> {
/// // In init: repartition `by-tier`, store `totals`, declared in describe().
/// let totals: Aggregation<String, u64, u64> = Aggregation::open("by-tier", "totals")?;
/// let out: Sink<String, u64> = Sink::open("tier-totals")?;
/// // In process:
/// if let Some((tier, total)) = totals.aggregate(&record, || 0, |sum, amount| sum + amount)? {
///     out.send(ctx, &tier, &total)?;
/// } else {
///     totals.group_by(ctx, &"gold".to_string(), &42)?;
/// }
/// # Ok(()) }
/// ```
pub struct Aggregation<K, V, A> {
    repartition: Sink<K, V>,
    store: Rc<KvStore<K, A>>,
    /// Set by [`Aggregation::emit_to`].
    cache: Option<Rc<RecordCache<K, A>>>,
}

impl<K: Codec + 'static, V: Codec, A: Codec + 'static> Aggregation<K, V, A> {
    /// Aggregates re-keyed through `repartition` into store `store`.
    pub fn open(repartition: &str, store: &str) -> Result<Self, Error> {
        Ok(Aggregation {
            repartition: Sink::open(repartition)?,
            store: Rc::new(KvStore::open(store)?),
            cache: None,
        })
    }

    /// Forwards every key's aggregate to `sink` (its value as `emit` makes
    /// it) through a record cache, as Kafka Streams does for aggregations:
    /// updates of a key are kept in the guest and only the latest is
    /// written to the store (and its changelog) and forwarded, when the
    /// task commits or when the cache is past its share of the host's
    /// `statestore.cache.max.bytes` (least recently updated keys first).
    /// Each output carries the timestamp and headers of the record that
    /// made it and is sent after the call's other outputs. With a budget
    /// of 0 (or contract 0.2.0) every update is forwarded.
    ///
    /// The fold methods still return the new aggregate; do not forward it
    /// yourself. Interactive queries read the store, so they see an update
    /// once it is written out.
    ///
    /// ```no_run
    /// # use weir_sdk::{Aggregation, Error, Record, Sink};
    /// # fn demo(record: Record) -> Result<(), Error> {
    /// let words: Aggregation<String, String, u64> = Aggregation::open("words", "counts")?
    ///     .emit_to(Sink::<String, String>::open("counts")?, u64::to_string); // in init
    /// words.count(&record)?; // in process: counted, forwarded at the commit
    /// # Ok(()) }
    /// ```
    pub fn emit_to<O: Codec>(self, sink: Sink<K, O>, emit: impl Fn(&A) -> O + 'static) -> Self {
        let emit = Box::new(move |a: &A| emit(a).encode());
        let cache = RecordCache::new(self.store.clone(), sink.index(), emit);
        Aggregation {
            cache: Some(cache),
            ..self
        }
    }

    /// Sends `value` under its new `key` to the task that owns the key.
    pub fn group_by(&self, ctx: &mut Context, key: &K, value: &V) -> Result<(), Error> {
        self.repartition.send(ctx, key, value)
    }

    /// Sends just a key to the task that owns it (for [`Aggregation::count`],
    /// which needs no value).
    pub fn group_key(&self, ctx: &mut Context, key: &K) -> Result<(), Error> {
        self.repartition.delete(ctx, key)
    }

    /// For a record of the repartition: folds its value into its key's
    /// aggregate (`initial()` for a new key), stores and returns
    /// `(key, aggregate)`. `None` for records of other sources, and for
    /// repartitioned records without a key or value (nothing to fold).
    pub fn aggregate(
        &self,
        record: &Record,
        initial: impl FnOnce() -> A,
        add: impl FnOnce(A, V) -> A,
    ) -> Result<Option<(K, A)>, Error> {
        if record.source != self.repartition.name() {
            return Ok(None);
        }
        let (Some(key), Some(value)) = (record.key_as::<K>()?, record.value_as::<V>()?) else {
            return Ok(None);
        };
        let current = self.current(&key)?.unwrap_or_else(initial);
        let updated = add(current, value);
        self.update(&key, &updated, record)?;
        Ok(Some((key, updated)))
    }

    /// The current aggregate of `key` (one the record cache holds
    /// included).
    pub fn get(&self, key: &K) -> Result<Option<A>, Error> {
        Ok(self.current(key)?)
    }

    fn current(&self, key: &K) -> Result<Option<A>, StoreError> {
        match &self.cache {
            Some(cache) => cache.get(key),
            None => self.store.get(key),
        }
    }

    /// Keeps `key`'s new aggregate, made by `record`.
    fn update(&self, key: &K, value: &A, record: &Record) -> Result<(), StoreError> {
        match &self.cache {
            Some(cache) => cache.put(key, value, record),
            None => self.store.put(key, value),
        }
    }
}

impl<K: Codec + 'static, V: Codec> Aggregation<K, V, u64> {
    /// Counts the records of each key (with or without a value).
    pub fn count(&self, record: &Record) -> Result<Option<(K, u64)>, Error> {
        if record.source != self.repartition.name() {
            return Ok(None);
        }
        let Some(key) = record.key_as::<K>()? else {
            return Ok(None);
        };
        let count = self.current(&key)?.unwrap_or(0) + 1;
        self.update(&key, &count, record)?;
        Ok(Some((key, count)))
    }
}

impl<K: Codec + 'static, V: Codec + 'static> Aggregation<K, V, V> {
    /// Combines the values of each key with `reducer` (the first value as
    /// it is).
    pub fn reduce(
        &self,
        record: &Record,
        reducer: impl FnOnce(V, V) -> V,
    ) -> Result<Option<(K, V)>, Error> {
        if record.source != self.repartition.name() {
            return Ok(None);
        }
        let (Some(key), Some(value)) = (record.key_as::<K>()?, record.value_as::<V>()?) else {
            return Ok(None);
        };
        let updated = match self.current(&key)? {
            Some(current) => reducer(current, value),
            None => value,
        };
        self.update(&key, &updated, record)?;
        Ok(Some((key, updated)))
    }
}
