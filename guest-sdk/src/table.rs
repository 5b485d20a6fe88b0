//! A table fed from a source topic (Kafka Streams' `KTable` from
//! `builder.table(topic)`): the latest value per key in a key-value store,
//! a tombstone deleting the key, and stream-table joins against it.
//! Co-partition the stream with the table's topic, as Kafka Streams
//! requires: a task sees only its own partition of both. Declared with
//! [`StoreSpec::source_as_changelog`](crate::StoreSpec::source_as_changelog),
//! the table's store has no changelog topic: the host restores it from the
//! table's topic.

use crate::codec::Codec;
use crate::context::Record;
use crate::error::Error;
use crate::store::KvStore;

/// ```no_run
/// # use weir_sdk::{Error, Record, Table};
/// # fn demo(record: Record) -> Result<(), Error> {
/// let customers: Table<String, String> = Table::open("customers", "customers")?; // in init
/// if customers.update(&record)? {
///     return Ok(()); // a customer update, now in the table
/// }
/// let key: String = record.key_as()?.unwrap_or_default();
/// let enriched = customers.join(&key, record.value_str()?.unwrap_or(""), |order, name| {
///     format!("{order} for {name}")
/// })?;
/// # let _ = enriched; Ok(()) }
/// ```
pub struct Table<K, V> {
    source: String,
    store: KvStore<K, V>,
}

impl<K: Codec, V: Codec> Table<K, V> {
    /// The table of source `source`, kept in key-value store `store`;
    /// `describe()` declares both (see
    /// [`Topology::table`](crate::Topology::table)).
    pub fn open(source: &str, store: &str) -> Result<Self, Error> {
        Ok(Table {
            source: source.to_string(),
            store: KvStore::open(store)?,
        })
    }

    /// If `record` comes from the table's source, applies it (a null value
    /// deletes its key; a null key is ignored, as Kafka Streams does) and
    /// returns true; otherwise leaves the table alone and returns false.
    ///
    /// The store keeps the record's own bytes once they decode as `K` and
    /// `V` (a record that does not fails the call), so a table restored
    /// from its source ([`StoreSpec::source_as_changelog`]) holds what a
    /// running one does.
    ///
    /// [`StoreSpec::source_as_changelog`]: crate::StoreSpec::source_as_changelog
    pub fn update(&self, record: &Record) -> Result<bool, Error> {
        if record.source != self.source {
            return Ok(false);
        }
        let Some(key) = &record.key else {
            return Ok(true);
        };
        record.key_as::<K>()?;
        record.value_as::<V>()?;
        self.store
            .write_encoded(key.clone(), record.value.clone())?;
        Ok(true)
    }

    /// The table's value for `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>, Error> {
        Ok(self.store.get(key)?)
    }

    /// Inner join of a stream value with the table's value for `key`:
    /// `None` when the table has none.
    pub fn join<T, R>(
        &self,
        key: &K,
        value: T,
        joiner: impl FnOnce(T, V) -> R,
    ) -> Result<Option<R>, Error> {
        Ok(self.get(key)?.map(|v| joiner(value, v)))
    }

    /// Left join: the joiner sees `None` when the table has no value.
    pub fn left_join<T, R>(
        &self,
        key: &K,
        value: T,
        joiner: impl FnOnce(T, Option<V>) -> R,
    ) -> Result<R, Error> {
        Ok(joiner(value, self.get(key)?))
    }
}
