//! The process-wide allocator of `rcni`: a bump arena in front of the
//! system allocator.
//!
//! A plugin process lives for one CNI call and allocates a few hundred
//! kilobytes. musl's allocator returns freed groups to the kernel and
//! faults fresh pages in again, which showed up as ~5% of an ADD (munmap
//! and page faults). Here allocations are carved from a static arena in
//! .bss (pages are touched only when used) and never reused, except that
//! freeing or resizing the most recent allocation moves the bump pointer
//! back. When the arena is exhausted, the system allocator takes over, so a
//! long `cnitool` or GC run still works, just without the shortcut.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{
    AtomicUsize,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};

const ARENA_SIZE: usize = 8 << 20;

#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; ARENA_SIZE]>);

// SAFETY: the bytes are handed out in disjoint ranges through the atomic
// bump offset below; the arena itself is never read or written here.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_SIZE]));
/// Offset of the first free byte in the arena.
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// Set by long-running roles (the dhcp daemon): from then on everything is
/// allocated by the system allocator, which reuses freed memory.
static ARENA_OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Stops carving new blocks from the arena (blocks already carved stay
/// valid). For a process that will run for long and churn memory.
#[cfg_attr(test, allow(dead_code))]
pub fn stop_using_arena() {
    ARENA_OFF.store(true, Relaxed);
}

/// Highest offset ever handed out: the arena beyond it is still the
/// kernel's zero pages, so zeroed allocations there need no memset (which
/// would also fault in pages a large buffer never uses).
static HIGH: AtomicUsize = AtomicUsize::new(0);

pub struct BumpThenSystem;

fn base() -> usize {
    ARENA.0.get() as usize
}

/// Offset of `ptr` in the arena, if it points there.
fn arena_offset(ptr: *mut u8) -> Option<usize> {
    let p = ptr as usize;
    (p >= base() && p < base() + ARENA_SIZE).then(|| p - base())
}

impl BumpThenSystem {
    /// A fresh block and the number of its leading bytes that may have been
    /// used before (the rest is untouched zeroes).
    fn bump(layout: Layout) -> Option<(*mut u8, usize)> {
        if ARENA_OFF.load(Relaxed) {
            return None;
        }
        // Acquire/Release on the bump offset: a block given back by one
        // thread and carved again by another must see the first thread's
        // writes before zeroing or reusing it.
        let mut cur = NEXT.load(Acquire);
        loop {
            // Alignment is a power of two (Layout guarantees it).
            let start = (base() + cur).checked_add(layout.align() - 1)? & !(layout.align() - 1);
            let end = start - base() + layout.size();
            if end > ARENA_SIZE {
                return None;
            }
            match NEXT.compare_exchange_weak(cur, end, AcqRel, Acquire) {
                Ok(_) => {
                    let off = start - base();
                    let used_before = HIGH.fetch_max(end, Relaxed);
                    let dirty = used_before.saturating_sub(off).min(layout.size());
                    return Some((start as *mut u8, dirty));
                }
                Err(now) => cur = now,
            }
        }
    }
}

// SAFETY: every pointer returned is either a fresh, exclusive, suitably
// aligned range of the arena or comes from `System`; pointers are released
// to whichever of the two they came from.
unsafe impl GlobalAlloc for BumpThenSystem {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match Self::bump(layout) {
            Some((p, _)) => p,
            // SAFETY: forwarded with the caller's guarantees.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match Self::bump(layout) {
            Some((p, dirty)) => {
                // Only bytes a rolled-back block may have written need it.
                // SAFETY: p is valid for layout.size() >= dirty bytes.
                unsafe { p.write_bytes(0, dirty) };
                p
            }
            // SAFETY: forwarded with the caller's guarantees.
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match arena_offset(ptr) {
            // Only the most recent block can be given back.
            Some(off) => {
                let _ = NEXT.compare_exchange(off + layout.size(), off, Release, Relaxed);
            }
            // SAFETY: ptr came from System with this layout.
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(off) = arena_offset(ptr) else {
            // SAFETY: ptr came from System with this layout.
            return unsafe { System.realloc(ptr, layout, new_size) };
        };
        let old_end = off + layout.size();
        let new_end = off + new_size;
        if new_end <= ARENA_SIZE
            && NEXT
                .compare_exchange(old_end, new_end, AcqRel, Relaxed)
                .is_ok()
        {
            // The most recent block grows or shrinks in place; bytes it
            // grows into are no longer pristine.
            HIGH.fetch_max(new_end, Relaxed);
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: align comes from a valid layout; size is non-zero.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: new_layout is valid (see above).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both ranges are valid and distinct blocks.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size()) };
            // SAFETY: ptr is released with the layout it was made with.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bump_realloc_and_fallback() {
        let a = BumpThenSystem;
        let l = Layout::from_size_align(24, 8).unwrap();
        // SAFETY: layouts are valid; every block is released once.
        unsafe {
            let p = a.alloc(l);
            assert!(arena_offset(p).is_some());
            assert_eq!(p as usize % 8, 0);
            p.write_bytes(7, 24);
            // Grows in place while it is the last block (unless another
            // test thread allocated meanwhile); contents survive either way.
            let q = a.realloc(p, l, 4096);
            assert_eq!(*q.add(23), 7);
            let big = Layout::from_size_align(ARENA_SIZE + 1, 16).unwrap();
            let s = a.alloc(big);
            assert!(!s.is_null() && arena_offset(s).is_none());
            a.dealloc(s, big);
            let z = a.alloc_zeroed(Layout::from_size_align(64, 64).unwrap());
            assert_eq!(z as usize % 64, 0);
            assert!((0..64).all(|i| *z.add(i) == 0));
            a.dealloc(z, Layout::from_size_align(64, 64).unwrap());
            a.dealloc(q, Layout::from_size_align(4096, 8).unwrap());

            // A block grown in place, then rolled back: every byte it
            // covered is zeroed when handed out again.
            let l8 = Layout::from_size_align(8, 8).unwrap();
            let g = a.alloc(l8);
            let g = a.realloc(g, l8, 512);
            g.write_bytes(0xee, 512);
            a.dealloc(g, Layout::from_size_align(512, 8).unwrap());
            let z = a.alloc_zeroed(Layout::from_size_align(512, 8).unwrap());
            assert_eq!(z, g);
            assert!((0..512).all(|i| *z.add(i) == 0));
            a.dealloc(z, Layout::from_size_align(512, 8).unwrap());

            // A rolled-back block's bytes are zeroed when handed out again.
            let l = Layout::from_size_align(256, 8).unwrap();
            let d = a.alloc(l);
            d.write_bytes(0xff, 256);
            a.dealloc(d, l);
            let z = a.alloc_zeroed(l);
            assert_eq!(z, d, "the last block is rolled back");
            assert!((0..256).all(|i| *z.add(i) == 0));
            a.dealloc(z, l);
        }
    }
}
