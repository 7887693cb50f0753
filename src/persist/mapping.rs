//! Read-only memory maps of a window of a file: the reader's buffer when it reads a big
//! file, so the bytes are parsed where the page cache holds them instead of being copied
//! into a buffer first (that copy was a third of the reader's time).
//!
//! Windows are unmapped as the reader moves on, so resident memory stays at one window.
//! The one risk of mapping: a file truncated by someone else while it is read makes the
//! process fault. Persistence files under check are not being rewritten in place (Redis
//! writes new files and renames them), and small files are read, not mapped.

use std::fs::File;
use std::ops::Deref;
use std::os::fd::AsRawFd;

/// A read-only, private mapping of `len` bytes of a file.
pub(crate) struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and owned; nothing aliases it mutably.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

impl Mapping {
    /// Maps `len` bytes from `offset` (a multiple of the page size), prefaulted.
    pub fn new(file: &File, offset: u64, len: usize) -> std::io::Result<Mapping> {
        if len == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "empty mapping",
            ));
        }
        // SAFETY: a fresh read-only private mapping of an open file; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                file.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: advice on our own mapping; failure is harmless.
        unsafe { libc::madvise(ptr, len, libc::MADV_SEQUENTIAL) };
        Ok(Mapping { ptr, len })
    }
}

impl Deref for Mapping {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}
