//! A persistence file read in place through a memory mapping, when the reader has no
//! second core for its read-ahead thread (one core, or `check_paths`' workers, which keep
//! every core busy with a file each), and by both parts of a big RDB read in two at once
//! (`rdb_parts`).
//!
//! Why: `read` copies every byte out of the page cache on the parser's own core. On one
//! core that copy, and the kernel's work around it, was a fifth to a quarter of the check
//! of the 1 GB benchmark files (0.22 s of 0.82 s for the 1.49 GB AOF); mapped, the parser
//! loads the page cache's bytes itself, the cache misses overlapping its work. Mapping
//! the file whole and giving back the pages behind the parser (`release_before`) keeps
//! the resident memory at a few MiB whatever the file's size.
//!
//! A mapped file that shrinks while it is read (`redis-check-aof --fix`, a `truncate`)
//! would kill the process with SIGBUS at the first page past its new end, or at a page
//! the disk could not read. A handler catches the faults that fall inside mappings
//! registered here: it maps zeros over the rest of that mapping, marks it [`cut`], and
//! the load is repeated, reading zeros; the reader reports the read as failed (see
//! `Source::io_error`). Any other SIGBUS goes to the handler installed before this one
//! (Rust's own, for stack overflows), or to the default action.
//!
//! [`cut`]: Mapped::cut

use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Mappings that may be read at once (files checked in parallel); past them, files are
/// read through a buffer.
const SLOTS: usize = 128;

/// One registered mapping: `[start, end)`, and whether a fault inside it was caught.
struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
    cut: AtomicBool,
}

static REGISTRY: [Slot; SLOTS] = [const {
    Slot {
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        cut: AtomicBool::new(false),
    }
}; SLOTS];

/// The least a mapping gives back at a time ([`Mapped::release_before`]) when the process
/// may run on more than one core. Dropping pages from the page tables makes the kernel
/// flush them from the TLB of every core running another thread of the process: with a
/// file read in two parts at once (or files checked in parallel), each call interrupted
/// the other core and waited for it. Given back at every 256 KiB window move, those
/// interrupts were 14% of the CPU time of the 1 GB mixed RDB's check on two cores (wall
/// 0.231 s, 447 ms of CPU); 2 MiB at a time, 0.193 s and 374 ms, for some 3 MiB more of
/// peak memory (medians of 8 runs, 2026-12-07). On one core no other core is interrupted:
/// pages are given back as the window moves.
const RELEASE_STEP: usize = 2 << 20;

/// [`RELEASE_STEP`] on more than one core, else 0.
fn release_step() -> usize {
    static STEP: OnceLock<usize> = OnceLock::new();
    *STEP.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cores > 1 {
            RELEASE_STEP
        } else {
            0
        }
    })
}

/// The SIGBUS handler installed before ours, once ours is installed; `None` when
/// installing failed (then nothing is mapped).
static PREVIOUS: OnceLock<Option<libc::sigaction>> = OnceLock::new();

/// The page size, taken when the handler is installed (the handler reads it from here:
/// `sysconf` is not async-signal-safe).
static PAGE: AtomicUsize = AtomicUsize::new(4096);

/// A whole file mapped read-only.
pub(crate) struct Mapped {
    /// The file, to see whether it shrank since.
    file: File,
    ptr: NonNull<u8>,
    len: usize,
    /// The mapping's length, whole pages.
    map_len: usize,
    slot: usize,
    page: usize,
    /// Everything before this offset has been given back.
    released: AtomicUsize,
    /// The least given back at a time ([`release_step`]).
    release_step: usize,
}

// SAFETY: the mapping is owned outright and only read; its registry slot is atomics.
unsafe impl Send for Mapped {}
// SAFETY: shared access only reads the mapping (and `release_before` only drops pages
// from this process's page tables, which a later read faults back in from the file).
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps the first `len` bytes of `file` (its length when it was opened); `None` when
    /// that cannot be done (then the file is read through a buffer).
    pub fn new(file: &File, len: u64) -> Option<Mapped> {
        let len = usize::try_from(len).ok().filter(|&l| l > 0)?;
        PREVIOUS.get_or_init(install).as_ref()?;
        let file = file.try_clone().ok()?;
        let page = PAGE.load(Ordering::Relaxed);
        let map_len = len.checked_add(page - 1)? & !(page - 1);
        let slot = REGISTRY.iter().position(|s| {
            s.start
                .compare_exchange(0, usize::MAX, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })?;
        // SAFETY: a fresh read-only private mapping of a file this process opened; no
        // existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        let Some(ptr) = NonNull::new(p.cast::<u8>()).filter(|_| p != libc::MAP_FAILED) else {
            REGISTRY[slot].start.store(0, Ordering::Release);
            return None;
        };
        let s = &REGISTRY[slot];
        s.cut.store(false, Ordering::Relaxed);
        s.end.store(p as usize + map_len, Ordering::Release);
        s.start.store(p as usize, Ordering::Release);
        let m = Mapped {
            file,
            ptr,
            len,
            map_len,
            slot,
            page,
            released: AtomicUsize::new(0),
            release_step: release_step(),
        };
        // Read once, front to back. With the default advice each page given back behind
        // the reader was marked recently used on the way out, moving the file's pages up
        // the page cache's lists (ahead of what the live servers use) and costing some 3%
        // of the check of small keys in the kernel; with this one they are left alone.
        m.advise(0, map_len, libc::MADV_SEQUENTIAL);
        // Shorter than `len` already (it shrank since its length was taken): the bytes
        // past its end in its last page would read as zeros unnoticed; read it instead.
        (!m.shrank()).then_some(m)
    }

    fn shrank(&self) -> bool {
        self.file
            .metadata()
            .map_or(true, |m| m.len() < self.len as u64)
    }

    /// The file's bytes (zeros from a page the file no longer had when it was read: see
    /// [`cut`](Self::cut)).
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes are mapped readable for as long as `self` lives; a fault is
        // turned into zeros by the handler.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Whether a read met a page the file no longer has (it shrank while it was read) or
    /// could not give, or the file is now shorter than mapped: bytes from there on may
    /// have read as zeros. Asks the file for its length (a call every megabyte read).
    pub fn cut(&self) -> bool {
        REGISTRY[self.slot].cut.load(Ordering::Acquire) || self.shrank()
    }

    /// Gives back the memory of the pages wholly before `offset` (the reader is past
    /// them), once they are `release_step` or more; reading them again reads the file
    /// again.
    pub fn release_before(&self, offset: usize) {
        let to = offset.min(self.len) & !(self.page - 1);
        let from = self.released.load(Ordering::Relaxed);
        if to < from.saturating_add(self.release_step) {
            return;
        }
        // MADV_DONTNEED on a private read-only file mapping only drops the pages from the
        // page tables.
        if self.advise(from, to, libc::MADV_DONTNEED) {
            self.released.store(to, Ordering::Relaxed);
        }
    }

    /// Maps in the pages of `[from, to)` at once, ahead of reading them: one call where
    /// faulting them in took one fault every 16 pages. MADV_POPULATE_READ only faults
    /// pages in; a page past the file's end fails the call, and is left to the handler.
    pub fn populate(&self, from: usize, to: usize) {
        self.advise(
            from.min(self.len) & !(self.page - 1),
            to.min(self.len),
            libc::MADV_POPULATE_READ,
        );
    }

    /// `madvise` of the mapping's bytes `[from, to)` (`from` a page boundary, both inside
    /// the mapping), with an advice that leaves what the bytes read as they are; whether
    /// there was anything to advise.
    fn advise(&self, from: usize, to: usize, advice: libc::c_int) -> bool {
        if to <= from {
            return false;
        }
        // SAFETY: whole pages inside the mapping, and an advice that changes no byte
        // (the callers': a page dropped or faulted in reads the file either way, and
        // MADV_SEQUENTIAL only says how it will be read).
        unsafe {
            libc::madvise(self.ptr.as_ptr().add(from).cast(), to - from, advice);
        }
        true
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        let s = &REGISTRY[self.slot];
        // Empty the range before freeing the slot, so a new owner's range is never
        // briefly this one's end with its start.
        s.end.store(0, Ordering::Release);
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.map_len);
        }
        s.start.store(0, Ordering::Release);
    }
}

/// Installs the SIGBUS handler; the handler it replaces, `None` when that failed.
fn install() -> Option<libc::sigaction> {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if let Some(p) = usize::try_from(page).ok().filter(|p| p.is_power_of_two()) {
        PAGE.store(p, Ordering::Relaxed);
    }
    // SAFETY: sigaction with a zeroed struct filled as its manual asks; the handler only
    // makes async-signal-safe calls (mmap, sigaction) and atomic loads and stores.
    unsafe {
        let mut ours: libc::sigaction = std::mem::zeroed();
        ours.sa_sigaction = on_sigbus as *const () as usize;
        ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut ours.sa_mask);
        let mut before: libc::sigaction = std::mem::zeroed();
        (libc::sigaction(libc::SIGBUS, &ours, &mut before) == 0).then_some(before)
    }
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    for s in &REGISTRY {
        let start = s.start.load(Ordering::Acquire);
        let end = s.end.load(Ordering::Acquire);
        if start == 0 || addr < start || addr >= end {
            continue;
        }
        let page = addr & !(PAGE.load(Ordering::Relaxed) - 1);
        // SAFETY: replaces pages of a mapping this process owns (registered in `new`, not
        // yet unmapped: its owner is the thread that faulted) with zeros.
        let p = unsafe {
            libc::mmap(
                page as *mut libc::c_void,
                end - page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            s.cut.store(true, Ordering::Release);
            return;
        }
    }
    // Not ours: the handler before ours, or the default action (the fault repeats).
    match PREVIOUS.get().copied().flatten() {
        Some(prev) if prev.sa_sigaction != libc::SIG_DFL && prev.sa_sigaction != libc::SIG_IGN => {
            // SAFETY: calling the handler that was installed, the way it was installed.
            unsafe {
                if prev.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        std::mem::transmute(prev.sa_sigaction);
                    f(sig, info, ctx);
                } else {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(prev.sa_sigaction);
                    f(sig);
                }
            }
        }
        _ => {
            // SAFETY: resetting SIGBUS to its default action.
            unsafe {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(data: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(data)
            .unwrap();
        (dir, path)
    }

    #[test]
    fn a_file_cut_while_mapped_reads_zeros_and_says_so() {
        // Long enough that pages are given back (a release step, and five pages more).
        let at = RELEASE_STEP;
        let data: Vec<u8> = (0..at + 5 * 4096 + 100)
            .map(|i| (i % 251 + 1) as u8)
            .collect();
        let (_dir, path) = file_of(&data);
        let file = File::open(&path).unwrap();
        let m = Mapped::new(&file, data.len() as u64).unwrap();
        assert_eq!(m.bytes(), &data[..]);
        assert!(!m.cut());
        m.release_before(at + 3 * 4096);
        assert_eq!(m.released.load(Ordering::Relaxed), at + 3 * 4096);
        assert_eq!(m.bytes(), &data[..], "released pages read the file again");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len((at + 2 * 4096) as u64)
            .unwrap();
        // Past the new end: zeros, not SIGBUS.
        let past = m.bytes()[at + 4 * 4096 + 7];
        assert_eq!(past, 0);
        assert!(m.cut());
        assert_eq!(&m.bytes()[..at + 2 * 4096], &data[..at + 2 * 4096]);
        drop(m);
        // The slot is free again, and a new mapping starts uncut.
        let m = Mapped::new(&File::open(&path).unwrap(), (at + 2 * 4096) as u64).unwrap();
        assert!(!m.cut());
        assert_eq!(m.bytes(), &data[..at + 2 * 4096]);
    }

    #[test]
    fn less_than_a_release_step_behind_the_reader_is_kept() {
        let data = vec![7u8; RELEASE_STEP + 8 * 4096];
        let (_dir, path) = file_of(&data);
        let mut m = Mapped::new(&File::open(&path).unwrap(), data.len() as u64).unwrap();
        // As on more than one core (on one, each call gives back what it can).
        m.release_step = RELEASE_STEP;
        m.release_before(RELEASE_STEP - 4096);
        assert_eq!(m.released.load(Ordering::Relaxed), 0);
        m.release_before(RELEASE_STEP + 4096 + 17);
        assert_eq!(m.released.load(Ordering::Relaxed), RELEASE_STEP + 4096);
        m.release_before(RELEASE_STEP + 6 * 4096);
        assert_eq!(m.released.load(Ordering::Relaxed), RELEASE_STEP + 4096);
    }

    #[test]
    fn an_empty_file_is_not_mapped() {
        let (_dir, path) = file_of(b"");
        assert!(Mapped::new(&File::open(&path).unwrap(), 0).is_none());
    }
}
