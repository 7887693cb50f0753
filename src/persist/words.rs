//! A zeroed array of 64-bit words for the reader's big tables (key fingerprints), readable
//! and writable as little-endian bytes too.
//!
//! Plain zeroed memory in 4 KiB pages, faulted in as it is touched. The tables were once
//! their own mappings marked `MADV_HUGEPAGE`, for fewer TLB misses and page faults; on
//! this VM a 2 MiB page costs what 2 MiB of 4 KiB pages do only while the kernel holds
//! free 2 MiB blocks it has just been given back. After a pause of a few seconds (the
//! hypervisor takes free blocks back) or another program's run, 64 MiB in 2 MiB pages took
//! 150-200 ms to fault in against 24-32 ms in 4 KiB pages, and a check of the 5 M small-key
//! RDB run right after `redis-check-rdb` took 0.19 s of CPU in huge pages against 0.12 s
//! in small ones (0.11 and 0.12 s back to back). No shape of the reader's benchmark was
//! faster in huge pages, back to back or in turns.

use std::ops::{Deref, DerefMut};

pub(crate) struct Words(Vec<u64>);

impl Words {
    /// `n` words, all 0 (a big table is fresh zero pages from the kernel, not written).
    pub fn zeroed(n: usize) -> Words {
        Words(vec![0u64; n])
    }

    /// The words as bytes (their users write and read them as little-endian bytes
    /// themselves, so the machine's byte order does not matter).
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len` initialised words; a `u64` has no padding and `u8` any alignment.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), self.0.len() * 8) }
    }

    /// The words as bytes, writable.
    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; every byte pattern is a valid `u64`, and `&mut self`
        // makes this the only access.
        unsafe {
            std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), self.0.len() * 8)
        }
    }
}

impl Deref for Words {
    type Target = [u64];

    #[inline]
    fn deref(&self) -> &[u64] {
        &self.0
    }
}

impl DerefMut for Words {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u64] {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_read_zero_and_keep_what_is_written() {
        for n in [0, 1, 1000, 1 << 20] {
            let mut w = Words::zeroed(n);
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
    }
}
