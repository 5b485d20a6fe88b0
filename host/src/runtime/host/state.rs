//! `weir:streams/state`: the `kv-store` and `kv-iterator` resources over the
//! task's [`StateStore`](crate::store::StateStore)s.
//!
//! A backend failure is returned to the guest as `store-error.backend` and
//! also recorded on the task, which then fails even if the guest ignores the
//! error: state it could not read or write must not be committed.
//!
//! Handles are counted against `wasm.max.handles`; during `close` writes
//! are refused (the task's last commit is already done).
//!
//! Both contract versions get the same code: the trait impls are written
//! once in [`kv_store_impls!`] and stamped out per version's generated
//! module; the helpers speak the version-neutral [`Refused`].

use std::ops::Bound;

use wasmtime::component::Resource;

use crate::runtime::HostState;
use crate::runtime::bindings::v0_2::weir::streams::state as state_v0_2;
use crate::runtime::bindings::v0_3::weir::streams::state as state_v0_3;
use crate::runtime::task_context::{CLOSE_CANNOT_WRITE, TaskContext};

/// Largest page one `next` call returns, whatever the guest asks for.
const MAX_PAGE: u32 = 1024;

/// The entries one `next(max)` returns.
pub(super) fn page_limit(max: u32) -> usize {
    max.clamp(1, MAX_PAGE) as usize
}

/// Guest handle to one of the task's stores.
pub struct KvStoreHandle {
    store: usize,
}

/// Guest cursor over a key range. It holds no backend iterator between
/// calls (only where to resume), so it pins no RocksDB resources.
pub struct KvIteratorHandle {
    store: usize,
    from: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    done: bool,
}

/// Why a store call was refused, before it becomes the `store-error` of
/// the guest's contract version.
pub(super) enum Refused {
    UnknownStore(String),
    Backend(String),
}

/// The `store-error` and `bound` conversions of one contract version.
macro_rules! state_types {
    ($wit:ident) => {
        impl From<Refused> for $wit::StoreError {
            fn from(r: Refused) -> Self {
                match r {
                    Refused::UnknownStore(name) => Self::UnknownStore(name),
                    Refused::Backend(reason) => Self::Backend(reason),
                }
            }
        }

        impl From<$wit::Bound> for Bound<Vec<u8>> {
            fn from(b: $wit::Bound) -> Self {
                match b {
                    $wit::Bound::Unbounded => Bound::Unbounded,
                    $wit::Bound::Included(k) => Bound::Included(k),
                    $wit::Bound::Excluded(k) => Bound::Excluded(k),
                }
            }
        }
    };
}
state_types!(state_v0_2);
state_types!(state_v0_3);

/// The smallest key greater than every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Bound<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bound::Excluded(end);
        }
    }
    Bound::Unbounded
}

impl HostState {
    pub(super) fn store_index(&self, handle: &Resource<KvStoreHandle>) -> wasmtime::Result<usize> {
        Ok(self.table.get(handle)?.store)
    }

    /// The index of store `name`, opened as a window store (`window`) or a
    /// key-value store, with the handle counted against its cap.
    pub(super) fn open_index(&mut self, name: String, window: bool) -> Result<usize, Refused> {
        let Some(store) = self.task.stores.iter().position(|s| s.name() == name) else {
            return Err(Refused::UnknownStore(name));
        };
        // Raw writes would break a window store's key layout.
        match (self.task.stores[store].window_layout().is_some(), window) {
            (true, false) => {
                return Err(Refused::Backend(format!(
                    "store `{name}` is a window store; open it as a window-store"
                )));
            }
            (false, true) => {
                return Err(Refused::Backend(format!(
                    "store `{name}` is a key-value store; open it as a kv-store"
                )));
            }
            _ => {}
        }
        self.task
            .open_handle(&format!("store `{name}`"))
            .map_err(Refused::Backend)?;
        Ok(store)
    }

    /// Admits a write of `bytes` to store `index`: refused during `close`
    /// or over a host buffer cap.
    pub(super) fn admit_write(&mut self, index: usize, bytes: usize) -> Result<(), Refused> {
        if self.task.closing {
            return Err(Refused::Backend(CLOSE_CANNOT_WRITE.into()));
        }
        let logged = self.task.stores[index].spec().logged;
        let what = |task: &TaskContext| format!("a write to store `{}`", task.stores[index].name());
        self.task
            .charge(what, bytes, logged)
            .map_err(Refused::Backend)
    }

    pub(super) fn backend_error(&mut self, e: crate::store::StoreError) -> Refused {
        let message = e.to_string();
        self.task.store_failure.get_or_insert(e);
        Refused::Backend(message)
    }

    pub(super) fn new_iterator(
        &mut self,
        handle: &Resource<KvStoreHandle>,
        from: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
    ) -> wasmtime::Result<Result<Resource<KvIteratorHandle>, Refused>> {
        let store = self.store_index(handle)?;
        let what = format!(
            "an iterator over store `{}`",
            self.task.stores[store].name()
        );
        if let Err(message) = self.task.open_handle(&what) {
            return Ok(Err(Refused::Backend(message)));
        }
        let it = KvIteratorHandle {
            store,
            from,
            end,
            done: false,
        };
        Ok(Ok(self.table.push(it)?))
    }
}

/// `kv-store` and `kv-iterator` of one contract version (`$wit`: its
/// generated `state` module), with `$extra` methods only that version has.
macro_rules! kv_store_impls {
    ($wit:ident, { $($extra:tt)* }) => {
impl $wit::Host for HostState {}

impl $wit::HostKvStore for HostState {
        $($extra)*

    fn open(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<KvStoreHandle>, $wit::StoreError>> {
        let store = match self.open_index(name, false) {
            Ok(store) => store,
            Err(e) => return Ok(Err(e.into())),
        };
        Ok(Ok(self.table.push(KvStoreHandle { store })?))
    }

    fn get(
        &mut self,
        handle: Resource<KvStoreHandle>,
        key: Vec<u8>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, $wit::StoreError>> {
        let i = self.store_index(&handle)?;
        Ok(self.task.stores[i]
            .get(&key)
            .map_err(|e| self.backend_error(e).into()))
    }

    fn put(
        &mut self,
        handle: Resource<KvStoreHandle>,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), $wit::StoreError>> {
        let i = self.store_index(&handle)?;
        if let Err(e) = self.admit_write(i, key.len() + value.len()) {
            return Ok(Err(e.into()));
        }
        self.task.stores[i].put(key, value);
        Ok(Ok(()))
    }

    fn delete(
        &mut self,
        handle: Resource<KvStoreHandle>,
        key: Vec<u8>,
    ) -> wasmtime::Result<Result<(), $wit::StoreError>> {
        let i = self.store_index(&handle)?;
        if let Err(e) = self.admit_write(i, 0) {
            return Ok(Err(e.into()));
        }
        self.task.stores[i].delete(key);
        Ok(Ok(()))
    }

    fn range(
        &mut self,
        handle: Resource<KvStoreHandle>,
        start: $wit::Bound,
        end: $wit::Bound,
    ) -> wasmtime::Result<Result<Resource<KvIteratorHandle>, $wit::StoreError>> {
        Ok(self
            .new_iterator(&handle, start.into(), end.into())?
            .map_err(Into::into))
    }

    fn prefix_scan(
        &mut self,
        handle: Resource<KvStoreHandle>,
        prefix: Vec<u8>,
    ) -> wasmtime::Result<Result<Resource<KvIteratorHandle>, $wit::StoreError>> {
        let end = prefix_end(&prefix);
        Ok(self
            .new_iterator(&handle, Bound::Included(prefix), end)?
            .map_err(Into::into))
    }

    fn drop(&mut self, handle: Resource<KvStoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        self.task.close_handle();
        Ok(())
    }
}

impl $wit::HostKvIterator for HostState {
    fn next(
        &mut self,
        handle: Resource<KvIteratorHandle>,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<$wit::Entry>, $wit::StoreError>> {
        let it = self.table.get(&handle)?;
        if it.done {
            return Ok(Ok(Vec::new()));
        }
        let limit = page_limit(max);
        let store = &self.task.stores[it.store];
        let page = store.scan(
            it.from.as_ref().map(Vec::as_slice),
            it.end.as_ref().map(Vec::as_slice),
            limit,
        );
        let page = match page {
            Ok(page) => page,
            Err(e) => return Ok(Err(self.backend_error(e).into())),
        };
        let it = self.table.get_mut(&handle)?;
        match page.last() {
            Some((k, _)) if page.len() == limit => it.from = Bound::Excluded(k.clone()),
            _ => it.done = true,
        }
        Ok(Ok(page
            .into_iter()
            .map(|(key, value)| $wit::Entry { key, value })
            .collect()))
    }

    fn drop(&mut self, handle: Resource<KvIteratorHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        self.task.close_handle();
        Ok(())
    }
}
    };
}

kv_store_impls!(state_v0_2, {});
kv_store_impls!(state_v0_3, {
    fn write_all(
        &mut self,
        handle: Resource<KvStoreHandle>,
        writes: Vec<state_v0_3::KvWrite>,
    ) -> wasmtime::Result<Result<(), state_v0_3::StoreError>> {
        let i = self.store_index(&handle)?;
        for write in writes {
            let bytes = write.key.len() + write.value.as_ref().map_or(0, Vec::len);
            if let Err(e) = self.admit_write(i, bytes) {
                return Ok(Err(e.into()));
            }
            match write.value {
                Some(value) => self.task.stores[i].put(write.key, value),
                None => self.task.stores[i].delete(write.key),
            }
        }
        Ok(Ok(()))
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_are_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Bound::Excluded(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Bound::Excluded(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), Bound::Unbounded);
        assert_eq!(prefix_end(b""), Bound::Unbounded);
    }
}
