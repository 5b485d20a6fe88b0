//! Re-key and aggregate through a declared repartition (Kafka Streams'
//! `groupBy(...).aggregate/count/reduce`): [`Aggregation::group_by`]
//! forwards a record under its new key to the repartition, and the task
//! that owns that key folds it into the key's aggregate, kept in a
//! key-value store (with its changelog) and returned for forwarding.

use crate::codec::Codec;
use crate::context::{Context, Record};
use crate::error::Error;
use crate::sink::Sink;
use crate::store::KvStore;

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
    store: KvStore<K, A>,
}

impl<K: Codec, V: Codec, A: Codec> Aggregation<K, V, A> {
    /// Aggregates re-keyed through `repartition` into store `store`.
    pub fn open(repartition: &str, store: &str) -> Result<Self, Error> {
        Ok(Aggregation {
            repartition: Sink::open(repartition)?,
            store: KvStore::open(store)?,
        })
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
        let current = self.store.get(&key)?.unwrap_or_else(initial);
        let updated = add(current, value);
        self.store.put(&key, &updated)?;
        Ok(Some((key, updated)))
    }

    /// The current aggregate of `key`.
    pub fn get(&self, key: &K) -> Result<Option<A>, Error> {
        Ok(self.store.get(key)?)
    }
}

impl<K: Codec, V: Codec> Aggregation<K, V, u64> {
    /// Counts the records of each key (with or without a value).
    pub fn count(&self, record: &Record) -> Result<Option<(K, u64)>, Error> {
        if record.source != self.repartition.name() {
            return Ok(None);
        }
        let Some(key) = record.key_as::<K>()? else {
            return Ok(None);
        };
        let count = self.store.get(&key)?.unwrap_or(0) + 1;
        self.store.put(&key, &count)?;
        Ok(Some((key, count)))
    }
}

impl<K: Codec, V: Codec> Aggregation<K, V, V> {
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
        let updated = match self.store.get(&key)? {
            Some(current) => reducer(current, value),
            None => value,
        };
        self.store.put(&key, &updated)?;
        Ok(Some((key, updated)))
    }
}
