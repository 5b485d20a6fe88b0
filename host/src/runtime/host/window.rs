//! `weir:streams/state`'s `window-store` and `window-iterator` resources
//! over the task's window [`StateStore`](crate::store::StateStore)s; the
//! layout and time rules are in [`crate::store::window`].
//!
//! A write to a closed window (too late for its grace, or past retention)
//! is not an error: `put` answers false and the record is counted as
//! dropped, as Kafka Streams' `dropped-records` does.

use wasmtime::component::Resource;

use super::state::{Refused, page_limit};
use crate::runtime::HostState;
use crate::runtime::bindings::v0_2::weir::streams::state as state_v0_2;
use crate::runtime::bindings::v0_3::weir::streams::state as state_v0_3;
use crate::store::window::{WindowCursor, WindowQuery};

/// Guest handle to one of the task's window stores.
pub struct WindowStoreHandle {
    store: usize,
}

/// Guest cursor over a window fetch: where to resume, no backend iterator.
pub struct WindowIteratorHandle {
    store: usize,
    query: WindowQuery,
    cursor: WindowCursor,
}

impl HostState {
    fn window_index(&self, handle: &Resource<WindowStoreHandle>) -> wasmtime::Result<usize> {
        Ok(self.table.get(handle)?.store)
    }

    fn new_window_iterator(
        &mut self,
        handle: &Resource<WindowStoreHandle>,
        query: WindowQuery,
    ) -> wasmtime::Result<Result<Resource<WindowIteratorHandle>, Refused>> {
        let store = self.window_index(handle)?;
        let what = format!(
            "an iterator over store `{}`",
            self.task.stores[store].name()
        );
        if let Err(message) = self.task.open_handle(&what) {
            return Ok(Err(Refused::Backend(message)));
        }
        let Some(cursor) = self.task.stores[store].window_cursor(&query) else {
            return Ok(Err(Refused::Backend("not a window store".into())));
        };
        Ok(Ok(self.table.push(WindowIteratorHandle {
            store,
            query,
            cursor,
        })?))
    }
}

/// `window-store` and `window-iterator` of one contract version (`$wit`:
/// its generated `state` module); the same in both.
macro_rules! window_store_impls {
    ($wit:ident) => {
        impl $wit::HostWindowStore for HostState {
            fn open(
                &mut self,
                name: String,
            ) -> wasmtime::Result<Result<Resource<WindowStoreHandle>, $wit::StoreError>> {
                let store = match self.open_index(name, true) {
                    Ok(store) => store,
                    Err(e) => return Ok(Err(e.into())),
                };
                Ok(Ok(self.table.push(WindowStoreHandle { store })?))
            }

            fn put(
                &mut self,
                handle: Resource<WindowStoreHandle>,
                key: Vec<u8>,
                window_start: i64,
                value: Vec<u8>,
            ) -> wasmtime::Result<Result<bool, $wit::StoreError>> {
                let i = self.window_index(&handle)?;
                // The stored key carries the segment and window start: 16 bytes.
                if let Err(e) = self.admit_write(i, key.len() + value.len() + 16) {
                    return Ok(Err(e.into()));
                }
                let judged_at = self.task.window_time;
                let written = self.task.stores[i].window_put(&key, window_start, value, judged_at);
                if !written {
                    self.task.dropped_records += 1;
                }
                Ok(Ok(written))
            }

            fn get(
                &mut self,
                handle: Resource<WindowStoreHandle>,
                key: Vec<u8>,
                window_start: i64,
            ) -> wasmtime::Result<Result<Option<Vec<u8>>, $wit::StoreError>> {
                let i = self.window_index(&handle)?;
                Ok(self.task.stores[i]
                    .window_get(&key, window_start)
                    .map_err(|e| self.backend_error(e).into()))
            }

            fn delete(
                &mut self,
                handle: Resource<WindowStoreHandle>,
                key: Vec<u8>,
                window_start: i64,
            ) -> wasmtime::Result<Result<(), $wit::StoreError>> {
                let i = self.window_index(&handle)?;
                if let Err(e) = self.admit_write(i, 0) {
                    return Ok(Err(e.into()));
                }
                self.task.stores[i].window_delete(&key, window_start);
                Ok(Ok(()))
            }

            fn fetch(
                &mut self,
                handle: Resource<WindowStoreHandle>,
                key: Vec<u8>,
                time_from: i64,
                time_to: i64,
            ) -> wasmtime::Result<Result<Resource<WindowIteratorHandle>, $wit::StoreError>> {
                Ok(self
                    .new_window_iterator(&handle, WindowQuery::key(&key, time_from, time_to))?
                    .map_err(Into::into))
            }

            fn fetch_range(
                &mut self,
                handle: Resource<WindowStoreHandle>,
                key_from: $wit::Bound,
                key_to: $wit::Bound,
                time_from: i64,
                time_to: i64,
            ) -> wasmtime::Result<Result<Resource<WindowIteratorHandle>, $wit::StoreError>> {
                let query = WindowQuery::range(key_from.into(), key_to.into(), time_from, time_to);
                Ok(self
                    .new_window_iterator(&handle, query)?
                    .map_err(Into::into))
            }

            fn fetch_all(
                &mut self,
                handle: Resource<WindowStoreHandle>,
                time_from: i64,
                time_to: i64,
            ) -> wasmtime::Result<Result<Resource<WindowIteratorHandle>, $wit::StoreError>> {
                let query = WindowQuery::range(
                    std::ops::Bound::Unbounded,
                    std::ops::Bound::Unbounded,
                    time_from,
                    time_to,
                );
                Ok(self
                    .new_window_iterator(&handle, query)?
                    .map_err(Into::into))
            }

            fn drop(&mut self, handle: Resource<WindowStoreHandle>) -> wasmtime::Result<()> {
                self.table.delete(handle)?;
                self.task.close_handle();
                Ok(())
            }
        }

        impl $wit::HostWindowIterator for HostState {
            fn next(
                &mut self,
                handle: Resource<WindowIteratorHandle>,
                max: u32,
            ) -> wasmtime::Result<Result<Vec<$wit::WindowedEntry>, $wit::StoreError>> {
                let it = self.table.get(&handle)?;
                let (store, query, mut cursor) = (it.store, it.query.clone(), it.cursor.clone());
                let page =
                    self.task.stores[store].window_fetch(&query, &mut cursor, page_limit(max));
                let page = match page {
                    Ok(page) => page,
                    Err(e) => return Ok(Err(self.backend_error(e).into())),
                };
                self.table.get_mut(&handle)?.cursor = cursor;
                Ok(Ok(page
                    .into_iter()
                    .map(|w| $wit::WindowedEntry {
                        key: w.key,
                        window_start: w.start,
                        value: w.value,
                    })
                    .collect()))
            }

            fn drop(&mut self, handle: Resource<WindowIteratorHandle>) -> wasmtime::Result<()> {
                self.table.delete(handle)?;
                self.task.close_handle();
                Ok(())
            }
        }
    };
}

window_store_impls!(state_v0_2);
window_store_impls!(state_v0_3);
