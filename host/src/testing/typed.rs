//! Typed helpers over the driver's bytes: a processor's tests pipe, read
//! and look up the types its processor uses, encoded by the SDK's own
//! codecs ([`Codec`], [`Json`]), so a test never re-implements an encoding
//! (and cannot get one subtly different, e.g. the sign-flipped integers).
//!
//! Only wraps the byte-level API of [`TestDriver`]; never changes what the
//! driver does.

use std::collections::BTreeMap;

pub use weir_sdk::{Codec, CodecError, Json};

use super::{DriverError, TestDriver, TestOutput, TestRecord, store_error};

fn decode<T: Codec>(bytes: Option<&[u8]>, what: &str) -> Result<Option<T>, DriverError> {
    bytes
        .map(T::decode)
        .transpose()
        .map_err(|source| DriverError::Decode {
            what: what.to_string(),
            source,
        })
}

impl TestRecord {
    /// A record of `key` and `value`, encoded as the SDK encodes them.
    pub fn typed<K: Codec, V: Codec>(key: &K, value: &V) -> Self {
        TestRecord::new(key.encode(), value.encode())
    }

    /// A tombstone (no value) for `key`: a delete for a table.
    pub fn typed_tombstone<K: Codec>(key: &K) -> Self {
        TestRecord::tombstone(key.encode())
    }
}

impl TestOutput {
    /// The key decoded as `K` (`None`: a null key).
    pub fn key_as<K: Codec>(&self) -> Result<Option<K>, DriverError> {
        decode(self.key.as_deref(), "output key")
    }

    /// The value decoded as `V` (`None`: a tombstone).
    pub fn value_as<V: Codec>(&self) -> Result<Option<V>, DriverError> {
        decode(self.value.as_deref(), "output value")
    }
}

impl TestDriver {
    /// Pipes `key` → `value` into `source`, encoded by their codecs.
    pub fn pipe_kv<K: Codec, V: Codec>(
        &mut self,
        source: &str,
        key: &K,
        value: &V,
    ) -> Result<(), DriverError> {
        self.pipe(source, TestRecord::typed(key, value))
    }

    /// Pipes a tombstone for `key` into `source`.
    pub fn pipe_tombstone<K: Codec>(&mut self, source: &str, key: &K) -> Result<(), DriverError> {
        self.pipe(source, TestRecord::typed_tombstone(key))
    }

    /// What `sink` received since the last read, decoded, in order (`None`
    /// for a null key or a tombstone).
    #[allow(clippy::type_complexity)]
    pub fn read_kv<K: Codec, V: Codec>(
        &mut self,
        sink: &str,
    ) -> Result<Vec<(Option<K>, Option<V>)>, DriverError> {
        self.read_output(sink)
            .iter()
            .map(|o| Ok((o.key_as()?, o.value_as()?)))
            .collect()
    }

    /// The latest value per key `sink` received since the last read, a
    /// tombstone removing its key (Kafka Streams' `readKeyValuesToMap`):
    /// what a compacted output topic ends up holding. Records with a null
    /// key are skipped.
    pub fn read_table<K: Codec + Ord, V: Codec>(
        &mut self,
        sink: &str,
    ) -> Result<BTreeMap<K, V>, DriverError> {
        let mut table = BTreeMap::new();
        for (key, value) in self.read_kv::<K, V>(sink)? {
            let Some(key) = key else { continue };
            match value {
                Some(value) => table.insert(key, value),
                None => table.remove(&key),
            };
        }
        Ok(table)
    }

    /// Every entry of key-value store `store` in the task of `partition`,
    /// decoded, in the store's key order.
    pub fn store_kv<K: Codec, V: Codec>(
        &self,
        partition: i32,
        store: &str,
    ) -> Result<Vec<(K, V)>, DriverError> {
        let what = |part: &str| format!("store `{store}` {part}");
        self.store_entries(partition, store)?
            .into_iter()
            .map(|(key, value)| {
                let key = K::decode(&key).map_err(|source| DriverError::Decode {
                    what: what("key"),
                    source,
                })?;
                let value = V::decode(&value).map_err(|source| DriverError::Decode {
                    what: what("value"),
                    source,
                })?;
                Ok((key, value))
            })
            .collect()
    }

    /// The value of `key` in key-value store `store` of the task of
    /// `partition`.
    pub fn store_get<K: Codec, V: Codec>(
        &self,
        partition: i32,
        store: &str,
        key: &K,
    ) -> Result<Option<V>, DriverError> {
        let bytes = self
            .store(partition, store)?
            .get(&key.encode())
            .map_err(|source| store_error(partition, source))?;
        decode(bytes.as_deref(), &format!("store `{store}` value"))
    }
}
