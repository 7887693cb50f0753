//! A zeroed array of 64-bit words for the reader's big tables (key fingerprints), backed
//! by 2 MiB pages when it is a big table probed at random.
//!
//! Why: the fingerprint table of an AOF's keys is tens of MiB probed at random, one
//! probe a command. In 4 KiB pages nearly every probe also missed the TLB, and its page
//! walk stalled the prefetch meant to hide the miss (a fifth of the whole check of an AOF
//! of small commands). Such a table ([`Words::zeroed_random`]) is its own anonymous
//! mapping, marked `MADV_HUGEPAGE` (the kernel's default, `madvise`, gives 2 MiB pages
//! only to regions that ask): a handful of TLB entries cover it. The kernel may still give
//! small pages (no free 2 MiB block): only slower.
//!
//! Memory written in order ([`Words::zeroed`]: the fingerprint runs of an RDB's keys) is
//! in 4 KiB pages: it misses the TLB once a page, and a 2 MiB page is not always cheap.
//! On this VM, after a pause of a few seconds (the hypervisor takes free blocks back) or
//! another program's run, 64 MiB in 2 MiB pages took 150-200 ms to fault in against
//! 24-32 ms in 4 KiB pages; the 5 M small-key RDB checked right after `redis-check-rdb`
//! took 0.19-0.20 s of CPU with its runs in huge pages against 0.11-0.12 s in small ones.
//!
//! Memory stays what the words need: the mapping is faulted in as it is touched, rounded
//! up to 2 MiB, and given back whole when dropped.

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// From this size up a table gets its own mapping; below, a plain `Vec`.
const MAP_FROM: usize = 2 << 20;
const HUGE: usize = 2 << 20;

/// The words are read and written through `ptr` and `len` whichever memory holds them:
/// `_heap`'s, or the mapping's.
pub(crate) struct Words {
    ptr: NonNull<u64>,
    len: usize,
    /// The mapping (start, length) when mapped; else the words live in `_heap`.
    map: Option<(NonNull<libc::c_void>, usize)>,
    /// Owns the words when they are not mapped (only read through `ptr`).
    _heap: Vec<u64>,
}

// SAFETY: `Words` owns its memory outright (like a `Vec<u64>`); nothing else points into it.
unsafe impl Send for Words {}
// SAFETY: shared access only reads, through `&[u64]`.
unsafe impl Sync for Words {}

impl Words {
    /// `n` words, all 0, in 2 MiB pages when they are many: for a table probed at random.
    pub fn zeroed_random(n: usize) -> Words {
        let bytes = n.saturating_mul(8);
        if bytes >= MAP_FROM {
            if let Some(w) = Self::mapped(n, bytes) {
                return w;
            }
        }
        Self::zeroed(n)
    }

    /// `n` words, all 0, not asked to be in 2 MiB pages: for memory written and read in
    /// order.
    pub fn zeroed(n: usize) -> Words {
        let mut vec = vec![0u64; n];
        Words {
            ptr: NonNull::new(vec.as_mut_ptr()).unwrap_or(NonNull::dangling()),
            len: n,
            map: None,
            _heap: vec,
        }
    }

    fn mapped(n: usize, bytes: usize) -> Option<Words> {
        // Room to start on a 2 MiB boundary, and to end on one.
        let map_len = bytes.checked_add(2 * HUGE)? & !(HUGE - 1);
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        let start = p as usize;
        let aligned = (start + HUGE - 1) & !(HUGE - 1);
        let huge_len = (start + map_len - aligned) & !(HUGE - 1);
        // SAFETY: the range lies inside the mapping just made. A refusal (a kernel without
        // transparent huge pages) only leaves small pages.
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, huge_len, libc::MADV_HUGEPAGE);
        }
        Some(Words {
            // Anonymous memory reads as zeros: the words are initialised.
            ptr: NonNull::new(aligned as *mut u64)?,
            len: n,
            map: Some((NonNull::new(p)?, map_len)),
            _heap: Vec::new(),
        })
    }

    /// The words as bytes (their users write and read them as little-endian bytes
    /// themselves, so the machine's byte order does not matter).
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        let w: &[u64] = self;
        // SAFETY: `len` initialised words; a `u64` has no padding and `u8` any alignment.
        unsafe { std::slice::from_raw_parts(w.as_ptr().cast::<u8>(), w.len() * 8) }
    }

    /// Faults in the pages of bytes `[from, to)` (whole pages inside it) in one call, ahead
    /// of writing them in order: each page took a fault of its own when first written.
    pub fn populate(&mut self, from: usize, to: usize) {
        self.advise(from, to, libc::MADV_POPULATE_WRITE);
    }

    /// Gives `advice` for the whole pages inside bytes `[from, to)`: one that leaves what
    /// they read as zeros or as what was written (`populate`, `release`).
    fn advise(&mut self, from: usize, to: usize, advice: libc::c_int) {
        let page = 4096;
        let bytes = self.bytes_mut();
        let base = bytes.as_mut_ptr() as usize;
        let start = (base + from.min(bytes.len()) + page - 1) & !(page - 1);
        let end = (base + to.min(bytes.len())) & !(page - 1);
        if end > start {
            // SAFETY: whole pages inside memory this value owns (no slice of it is alive:
            // `&mut self`); MADV_POPULATE_WRITE only faults them in, MADV_DONTNEED makes
            // private anonymous pages read as zeros, which the callers' words then hold.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, advice);
            }
        }
    }

    /// Gives back the memory of the pages wholly inside bytes `[from, to)`, which then read
    /// as zeros again (a writer's room it will not use).
    pub fn release(&mut self, from: usize, to: usize) {
        self.advise(from, to, libc::MADV_DONTNEED);
    }

    /// Where the words start, for a writer that keeps its place in them as a pointer (it
    /// writes through it only while it holds `&mut` of this value's owner).
    #[inline]
    pub fn base(&mut self) -> *mut u8 {
        self.ptr.as_ptr().cast()
    }

    /// The words as bytes, writable.
    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let w: &mut [u64] = self;
        // SAFETY: as in `bytes`; every byte pattern is a valid `u64`, and `&mut self`
        // makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(w.as_mut_ptr().cast::<u8>(), w.len() * 8) }
    }
}

impl Drop for Words {
    fn drop(&mut self) {
        if let Some((p, len)) = self.map {
            // SAFETY: the mapping this value made, unmapped once; no slice of it outlives
            // `self`.
            unsafe {
                libc::munmap(p.as_ptr(), len);
            }
        }
    }
}

impl Deref for Words {
    type Target = [u64];

    #[inline]
    fn deref(&self) -> &[u64] {
        // SAFETY: `len` initialised (zero-filled) words at `ptr`, in `_heap` (never touched
        // after it was made, so its buffer stays put) or 2 MiB-aligned inside the
        // mapping; alive as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for Words {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u64] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_and_small_tables_read_zero_and_keep_what_is_written() {
        for n in [0, 1, 1000, MAP_FROM / 8, MAP_FROM / 8 * 3 + 5] {
            let mut w = Words::zeroed_random(n);
            assert_eq!(w.len(), n);
            assert!(w.iter().all(|&x| x == 0));
            for (i, x) in w.iter_mut().enumerate() {
                *x = i as u64 * 3;
            }
            assert!(w.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
            if n > 0 {
                w.bytes_mut()[0] = 7;
                assert_eq!(w.bytes()[0], 7);
                assert_eq!(w[0].to_le_bytes()[0], 7);
            }
        }
        assert!(Words::zeroed_random(MAP_FROM).map.is_some());
        assert!(Words::zeroed(MAP_FROM).map.is_none());
    }
}
