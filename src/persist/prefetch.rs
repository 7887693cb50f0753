//! Read-ahead on a second core: a thread `read()`s the file into a small ring of buffers
//! while the parsing thread parses, so the kernel's copy out of the page cache no longer
//! sits on the parser's path.
//!
//! Buffers go round two bounded channels (filled → parser, spent → reader thread), so at
//! most `RING` of them exist and memory stays bounded whatever the file size. Each buffer
//! keeps `HEAD` bytes of headroom in front of its data: the parser copies the unconsumed
//! tail of the previous buffer there, so a record straddling two chunks is still one
//! contiguous slice.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use crc_fast::{CrcAlgorithm, Digest};

use super::source::BUF_SIZE;

/// Room in front of a chunk for the previous chunk's unconsumed tail: `Source::fill` never
/// asks for more than `BUF_SIZE` bytes, so the tail is always shorter.
pub(crate) const HEAD: usize = BUF_SIZE;
/// Bytes read per chunk. Every chunk handed over may wake the other thread, and on this
/// 2-core VM the wake-ups were a twentieth of a check's CPU with 512 KiB chunks; 1 MiB in
/// a ring of 3 halved them (7-13% less CPU on the 1 GB files) with the same memory.
const CHUNK: usize = 1 << 20;
/// Buffers in the ring: one being parsed, one waiting, one being filled.
const RING: usize = 3;
/// Files smaller than this are read directly: a thread is not worth starting.
const MIN_LEN: u64 = 8 << 20;

/// A filled buffer: data in `buf[HEAD..HEAD + len]`, from file offset `start`.
pub(crate) struct Chunk {
    pub buf: Vec<u8>,
    pub len: usize,
    start: u64,
    /// CRC-64 of the file's bytes before `start`: the reader thread runs the checksum too,
    /// so the parser only finishes it from the nearest chunk start.
    crc_before: Digest,
}

/// What the reader thread sends: a chunk, or the I/O error that ended the data.
type Msg = Result<Chunk, String>;

pub(crate) struct Prefetch {
    filled: Receiver<Msg>,
    spent: SyncSender<Vec<u8>>,
    thread: Option<JoinHandle<()>>,
    /// For the rare CRC asked for inside bytes no longer buffered.
    file: File,
    /// (start, CRC before it) of the current chunk and the one before.
    marks: [Option<(u64, Digest)>; 2],
    /// The reader thread runs the CRC (else the chunks' CRCs are meaningless).
    pub crc: bool,
}

thread_local! {
    /// Set on threads that already share the cores with other files being checked.
    static ONE_CORE: Cell<bool> = const { Cell::new(false) };
}

/// Keeps this thread's reading on its own core: no read-ahead thread, no parts of an RDB
/// read at once, no threads for the repeat search (for `check_paths`' workers, which
/// already keep every core busy with one file each).
pub(crate) fn one_core_on_this_thread() {
    ONE_CORE.with(|c| c.set(true));
}

/// Runs `f` with this thread's reading kept on its own core
/// ([`one_core_on_this_thread`]), the thread's setting back after (also when `f`
/// panics): for a pooled thread that runs other work next.
pub(crate) fn on_one_core<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ONE_CORE.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(ONE_CORE.with(|c| c.replace(true)));
    f()
}

/// Whether this thread may give part of its reading to a second core: the process may
/// run on two or more, and this thread is not one of many already keeping them busy.
pub(crate) fn second_core_free() -> bool {
    cores_free() >= 2
}

/// The cores this thread may share its work with (itself included): those the process
/// may run on, or 1 on a thread that is one of many already keeping them busy.
pub(crate) fn cores_free() -> usize {
    if ONE_CORE.with(|c| c.get()) {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Prefetch {
    /// Starts reading `file` (positioned at offset 0) up to `limit` bytes on its own thread,
    /// running the CRC-64 of the data too when `crc`; `None` when that is not worth it or
    /// not possible (then read directly).
    pub fn start(file: &File, limit: u64, crc: bool) -> Option<Prefetch> {
        if limit < MIN_LEN || !second_core_free() {
            return None;
        }
        let reader = file.try_clone().ok()?;
        let file = file.try_clone().ok()?;
        let (filled_tx, filled) = mpsc::sync_channel::<Msg>(RING);
        let (spent, spent_rx) = mpsc::sync_channel::<Vec<u8>>(RING);
        for _ in 0..RING {
            spent.send(vec![0; HEAD + CHUNK]).ok()?;
        }
        let thread = std::thread::Builder::new()
            .name("persist-read".into())
            .spawn(move || read_ahead(reader, limit, crc, &filled_tx, &spent_rx))
            .ok()?;
        Some(Prefetch {
            filled,
            spent,
            thread: Some(thread),
            file,
            marks: [None, None],
            crc,
        })
    }

    /// The next chunk; `None` at the end of the data (or the reader thread's end).
    pub fn next(&mut self) -> Option<Msg> {
        let msg = self.filled.recv().ok()?;
        if let Ok(c) = &msg {
            self.marks = [Some((c.start, c.crc_before)), self.marks[0]];
        }
        Some(msg)
    }

    /// CRC-64 of the file's bytes before offset `at`; `buffered` holds the bytes from
    /// offset `from` on. `None` when no chunk has been received yet.
    pub fn crc_at(&self, at: u64, buffered: &[u8], from: u64) -> Option<u64> {
        if at == 0 {
            return Some(Digest::new(CrcAlgorithm::Crc64Redis).finalize());
        }
        let (start, mut digest) = self.marks.iter().flatten().find(|(s, _)| *s <= at)?;
        if *start >= from && at - from <= buffered.len() as u64 {
            digest.update(&buffered[(start - from) as usize..(at - from) as usize]);
        } else {
            // Only when the parser asks while still inside the previous chunk's tail: read
            // those bytes (less than a chunk) again.
            let mut bytes = vec![0; usize::try_from(at - start).ok()?];
            self.file.read_exact_at(&mut bytes, *start).ok()?;
            digest.update(&bytes);
        }
        Some(digest.finalize())
    }

    /// Hands a buffer back for refilling.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if buf.len() == HEAD + CHUNK {
            let _ = self.spent.try_send(buf);
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // Closing both channels makes the reader thread stop at its next send or receive.
        let (dead_tx, _) = mpsc::sync_channel(0);
        self.spent = dead_tx;
        let (_, dead_rx) = mpsc::sync_channel(0);
        self.filled = dead_rx;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_ahead(
    mut file: File,
    limit: u64,
    run_crc: bool,
    filled: &SyncSender<Msg>,
    spent: &Receiver<Vec<u8>>,
) {
    let mut offset = 0u64;
    let mut crc = Digest::new(CrcAlgorithm::Crc64Redis);
    while offset < limit {
        let Ok(mut buf) = spent.recv() else { return };
        // Never read past the limit: the file may be growing under us.
        let want = (CHUNK as u64).min(limit - offset) as usize;
        let mut len = 0;
        let mut error = None;
        while len < want {
            match file.read(&mut buf[HEAD + len..HEAD + want]) {
                Ok(0) => break,
                Ok(k) => len += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
        let chunk = Chunk {
            start: offset,
            crc_before: crc,
            buf,
            len,
        };
        if run_crc {
            crc.update(&chunk.buf[HEAD..HEAD + len]);
        }
        offset += len as u64;
        if len > 0 && filled.send(Ok(chunk)).is_err() {
            return;
        }
        if let Some(e) = error {
            let _ = filled.send(Err(e));
            return;
        }
        if len < want {
            return; // the file is shorter than when it was opened
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::source::{crc64, Source};
    use super::*;

    fn file_of(data: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, data).unwrap();
        std::io::Seek::rewind(&mut f).unwrap();
        f
    }

    /// A pooled thread lent to one-core work gets its own setting back, also after a panic.
    #[test]
    fn one_core_for_a_while_is_given_back() {
        std::thread::spawn(|| {
            let all = cores_free();
            assert_eq!(on_one_core(cores_free), 1);
            assert_eq!(cores_free(), all);
            let _ = std::panic::catch_unwind(|| on_one_core(|| panic!("in the middle")));
            assert_eq!(cores_free(), all);
            one_core_on_this_thread();
            assert_eq!(on_one_core(cores_free), 1);
            assert_eq!(cores_free(), 1, "a thread kept on one core stays so");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn records_straddling_chunks_read_the_same_with_read_ahead() {
        let n = MIN_LEN as usize + 3 * CHUNK + 12_345;
        let data: Vec<u8> = (0..n).map(|i| (i * 31 + i / 7) as u8).collect();
        let mut src = Source::open_file(file_of(&data), n as u64);
        src.start_crc();
        // Steps of odd sizes, some as big as a whole `fill` may ask, cross every boundary.
        let mut at = 0;
        for step in [1, BUF_SIZE - 1, 3, BUF_SIZE, 17, BUF_SIZE - 9]
            .iter()
            .cycle()
        {
            let k = (*step).min(n - at);
            assert_eq!(src.offset(), at as u64);
            assert_eq!(src.bytes(k).unwrap(), &data[at..at + k]);
            at += k;
            if at == n {
                break;
            }
        }
        assert!(src.at_end());
        assert_eq!(src.crc(), crc64(&data));
        assert!(src.u8().is_err());
    }

    #[test]
    fn the_crc_from_the_reader_thread_is_exact_anywhere() {
        let n = MIN_LEN as usize + 100;
        let data: Vec<u8> = (0..n).map(|i| (i * 13 + i / 251) as u8).collect();
        let mut src = Source::open_file(file_of(&data), n as u64);
        src.start_crc();
        assert_eq!(src.crc(), crc64(b""));
        src.skip(CHUNK as u64 - 10).unwrap();
        // Refilled but still inside the first chunk's tail: bytes read again from the file.
        src.peek(100).unwrap();
        assert_eq!(src.crc(), crc64(&data[..CHUNK - 10]));
        src.skip(50).unwrap();
        assert_eq!(src.crc(), crc64(&data[..CHUNK + 40]));
        src.skip(3 * CHUNK as u64 + 7).unwrap();
        assert_eq!(src.crc(), crc64(&data[..4 * CHUNK + 47]));
        src.stop_crc();
        src.start_crc();
        src.skip(5).unwrap();
        // Not from the file's start: the parser runs it itself.
        assert_eq!(src.crc(), crc64(&data[4 * CHUNK + 47..4 * CHUNK + 52]));
    }

    #[test]
    fn without_the_reader_threads_crc_the_parser_runs_it() {
        let n = MIN_LEN as usize + 3 * CHUNK + 5;
        let data: Vec<u8> = (0..n).map(|i| (i * 7 + i / 13) as u8).collect();
        let mut src = Source::open_file_crc(file_of(&data), n as u64, false);
        src.start_crc();
        src.skip(CHUNK as u64 + 3).unwrap();
        assert_eq!(src.crc(), crc64(&data[..CHUNK + 3]));
        src.skip((n - CHUNK - 3) as u64).unwrap();
        assert_eq!(src.crc(), crc64(&data));
    }

    #[test]
    fn a_file_truncated_while_read_ends_at_its_real_length() {
        let data = vec![5u8; MIN_LEN as usize + CHUNK + 100];
        let claimed = data.len() as u64 + 3 * CHUNK as u64;
        let mut src = Source::open_file(file_of(&data), claimed);
        src.skip(data.len() as u64 - 10).unwrap();
        let err = src.bytes(20).unwrap_err();
        assert!(
            format!("{err:?}").contains(&data.len().to_string()),
            "{err:?}"
        );
        assert_eq!(src.offset(), data.len() as u64 - 10);
        src.skip(10).unwrap();
        assert!(src.at_end());
    }

    #[test]
    fn dropping_a_source_midway_stops_the_reader_thread() {
        let data = vec![1u8; MIN_LEN as usize + 5 * CHUNK];
        for _ in 0..20 {
            let mut src = Source::open_file(file_of(&data), data.len() as u64);
            src.bytes(10).unwrap();
        }
    }

    #[test]
    fn no_read_ahead_on_threads_that_opt_out() {
        let f = file_of(&vec![0u8; MIN_LEN as usize]);
        std::thread::spawn(move || {
            one_core_on_this_thread();
            assert!(Prefetch::start(&f, MIN_LEN, true).is_none());
        })
        .join()
        .unwrap();
    }
}
