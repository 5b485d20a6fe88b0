//! The guest's allocator (feature `small-alloc`, on by default): blocks of
//! up to 1 KiB come from free lists per power-of-two size, carved from
//! 64 KiB slabs; anything larger, or aligned above 16, goes to the
//! standard allocator (dlmalloc). A record's key, value and outputs are a
//! handful of small allocations each, and in Wasm dlmalloc's bookkeeping
//! costs more than the processor's own work: a free-list pop or push is a
//! few instructions.
//!
//! It relies on what a `wasm32-wasip2` component is: one thread, and
//! linear memory that never shrinks (so slabs are never given back, as
//! dlmalloc's memory is not either). Free blocks stay in their size's list
//! (they are not merged), so a guest's memory is its peak of small blocks
//! per size plus dlmalloc's own. It must never be compiled for a target
//! with threads: it is only used on `wasm32` without `atomics`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr::null_mut;

/// Size classes 16, 32, …, 1024 bytes.
const CLASSES: usize = 7;
const MIN_BLOCK: usize = 16;
const MAX_BLOCK: usize = MIN_BLOCK << (CLASSES - 1);
const SLAB: usize = 64 * 1024;

/// Small blocks from free lists, everything else from [`System`].
pub struct SmallAlloc(UnsafeCell<Lists>);

struct Lists {
    /// Head of each class's free list; a free block holds the next one.
    free: [*mut u8; CLASSES],
    /// The unused rest of the current slab.
    next: *mut u8,
    end: *mut u8,
}

// SAFETY: only compiled for single-threaded wasm32 (see the module docs),
// where no two calls into the allocator can overlap.
unsafe impl Sync for SmallAlloc {}

impl SmallAlloc {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        SmallAlloc(UnsafeCell::new(Lists {
            free: [null_mut(); CLASSES],
            next: null_mut(),
            end: null_mut(),
        }))
    }
}

/// The size class of `layout`, if it is a small block.
fn class(layout: Layout) -> Option<usize> {
    if layout.size() > MAX_BLOCK || layout.align() > MIN_BLOCK {
        return None;
    }
    let size = layout.size().max(MIN_BLOCK).next_power_of_two();
    Some((size.trailing_zeros() - MIN_BLOCK.trailing_zeros()) as usize)
}

unsafe impl GlobalAlloc for SmallAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class(layout) else {
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: one thread; no reference into the lists outlives this call.
        let lists = unsafe { &mut *self.0.get() };
        let head = lists.free[c];
        if !head.is_null() {
            // SAFETY: a free block's first word is the next free block.
            lists.free[c] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = MIN_BLOCK << c;
        if (lists.end as usize) - (lists.next as usize) < size {
            // The slab's rest is too small for this block: it is left unused.
            let slab = unsafe { System.alloc(Layout::from_size_align_unchecked(SLAB, MIN_BLOCK)) };
            if slab.is_null() {
                return slab;
            }
            lists.next = slab;
            lists.end = unsafe { slab.add(SLAB) };
        }
        let block = lists.next;
        lists.next = unsafe { block.add(size) };
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if class(layout).is_none() {
            // dlmalloc knows which of its memory is fresh, so already zero.
            return unsafe { System.alloc_zeroed(layout) };
        }
        let block = unsafe { self.alloc(layout) };
        if !block.is_null() {
            unsafe { block.write_bytes(0, layout.size()) };
        }
        block
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(c) = class(layout) else {
            return unsafe { System.dealloc(ptr, layout) };
        };
        let lists = unsafe { &mut *self.0.get() };
        // SAFETY: the block is at least 16 bytes and 16-aligned.
        unsafe { ptr.cast::<*mut u8>().write(lists.free[c]) };
        lists.free[c] = ptr;
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new)) {
            // The block already has room.
            (Some(a), Some(b)) if a == b => ptr,
            (None, None) => unsafe { System.realloc(ptr, layout, new_size) },
            _ => {
                let grown = unsafe { self.alloc(new) };
                if !grown.is_null() {
                    let n = layout.size().min(new_size);
                    unsafe { std::ptr::copy_nonoverlapping(ptr, grown, n) };
                    unsafe { self.dealloc(ptr, layout) };
                }
                grown
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_map_to_the_smallest_class_that_holds_them() {
        let l = |size, align| Layout::from_size_align(size, align).unwrap();
        assert_eq!(class(l(0, 1)), Some(0));
        assert_eq!(class(l(16, 8)), Some(0));
        assert_eq!(class(l(17, 1)), Some(1));
        assert_eq!(class(l(1024, 16)), Some(6));
        assert_eq!(class(l(1025, 1)), None);
        assert_eq!(class(l(8, 32)), None);
    }

    #[test]
    fn freed_blocks_are_reused_and_contents_survive_reallocation() {
        // One thread here too: the test holds the allocator alone.
        let a = SmallAlloc::new();
        let l = Layout::from_size_align(24, 8).unwrap();
        unsafe {
            let p = a.alloc(l);
            let q = a.alloc(l);
            assert_ne!(p, q);
            assert_eq!(p as usize % 16, 0);
            a.dealloc(p, l);
            assert_eq!(a.alloc(l), p, "the freed block comes back first");
            p.write_bytes(7, 24);
            let big = a.realloc(p, l, 4000);
            assert_eq!(std::slice::from_raw_parts(big, 24), &[7; 24]);
            let big_l = Layout::from_size_align(4000, 8).unwrap();
            let small = a.realloc(big, big_l, 20);
            assert_eq!(std::slice::from_raw_parts(small, 20), &[7; 20]);
            a.dealloc(small, Layout::from_size_align(20, 8).unwrap());
            a.dealloc(q, l);
            let z = a.alloc_zeroed(l);
            assert_eq!(
                std::slice::from_raw_parts(z, 24),
                &[0; 24],
                "a reused block is zeroed"
            );
            a.dealloc(z, l);
        }
    }
}
