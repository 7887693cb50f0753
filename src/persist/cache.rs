//! Validations remembered for the run of one shell or one script (the process), so that
//! `recover list` then `recover all` read unchanged files once (issue 16).
//!
//! A report is reused only when every file it read has the same identity: device, inode,
//! size, and modification and change times to the nanosecond. Writing a file changes its
//! change time (which no one can set back), so a file written since is checked again;
//! files changed in the last 2 s are not remembered at all, as their times tick coarsely.
//! At most [`CACHE_CAP`] reports are kept.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::report::{CheckOptions, FileReport};
use super::slot::SlotRange;

const CACHE_CAP: usize = 1024;
/// Files modified this recently are not remembered.
const RACY_NS: i128 = 2_000_000_000;

/// (device, inode, size, mtime ns, ctime ns) of one file.
pub(crate) type FileId = (u64, u64, u64, i128, i128);

fn raw_id(m: &fs::Metadata) -> FileId {
    (
        m.dev(),
        m.ino(),
        m.size(),
        i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
    )
}

/// Per (device, inode): the change time our own link or rename gave a file, and the one
/// it had before (see [`note_own_link`]).
static OWN_LINKS: Mutex<Option<HashMap<Inode, (i128, i128)>>> = Mutex::new(None);

/// (device, inode).
type Inode = (u64, u64);

/// A file's identity, with a change time that only our own link moved taken back to
/// what it was: linking changes nothing of the bytes.
fn file_id(m: &fs::Metadata) -> FileId {
    let mut id = raw_id(m);
    if let Ok(links) = OWN_LINKS.lock() {
        if let Some(&(after, before)) = links.as_ref().and_then(|l| l.get(&(id.0, id.1))) {
            if id.4 == after {
                id.4 = before;
            }
        }
    }
    id
}

/// Tells the cache that recovery hard-linked a file, or renamed such a link (`before`
/// and `after` are its metadata either side): both move the file's change time, which
/// would otherwise make `recover all` read again every file `recover list` just read,
/// and make a validation running beside the link forget what it read. Only a change of
/// the change time alone is taken back; any later change to the file shows again.
pub(crate) fn note_own_link(before: &fs::Metadata, after: &fs::Metadata) {
    let (b, a) = (raw_id(before), raw_id(after));
    if (b.0, b.1, b.2, b.3) != (a.0, a.1, a.2, a.3) || b.4 == a.4 {
        return;
    }
    // The identity from before, itself maybe taken back from an earlier link.
    let was = file_id(before).4;
    if let Ok(mut links) = OWN_LINKS.lock() {
        let map = links.get_or_insert_with(HashMap::new);
        if map.len() >= CACHE_CAP * 16 {
            map.clear();
        }
        map.insert((a.0, a.1), (a.4, was));
    }
}

/// The identity of a path: a file's, or a directory's own and every entry's (an AOF
/// directory: its manifest and parts). `None` when any of it cannot be read.
fn identity(path: &Path) -> Option<Vec<(PathBuf, FileId)>> {
    let meta = fs::metadata(path).ok()?;
    let mut ids = vec![(path.to_path_buf(), file_id(&meta))];
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .ok()?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .ok()?;
        entries.sort();
        for e in entries {
            ids.push((e.clone(), file_id(&fs::metadata(&e).ok()?)));
        }
    }
    Some(ids)
}

type Key = (PathBuf, Option<(u16, u16)>);

fn key(path: &Path, slots: Option<SlotRange>) -> Key {
    (path.to_path_buf(), slots.map(|s| (s.start, s.end)))
}

struct Entry {
    ids: Vec<(PathBuf, FileId)>,
    report: FileReport,
}

static CACHE: Mutex<Option<HashMap<Key, Entry>>> = Mutex::new(None);

/// The report of `path` from earlier in this run, when nothing it read has changed.
pub(crate) fn lookup(path: &Path, opts: &CheckOptions) -> Option<FileReport> {
    let ids = identity(path)?;
    let cache = CACHE.lock().ok()?;
    let e = cache.as_ref()?.get(&key(path, opts.slots))?;
    (e.ids == ids).then(|| {
        let mut r = e.report.clone();
        r.from_cache = true;
        r
    })
}

/// Remembers a report made from files with identity `ids` (taken before reading them).
pub(crate) fn store(
    path: &Path,
    opts: &CheckOptions,
    ids: Option<Vec<(PathBuf, FileId)>>,
    report: &FileReport,
) {
    let Some(ids) = ids else { return };
    // File times tick coarsely (a few ms): a file changed within the last seconds could
    // change again with the same size and times. Those are not remembered (as git does).
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    if ids.iter().any(|(_, id)| now_ns - id.3.max(id.4) < RACY_NS) {
        return;
    }
    // Unchanged while it was read: otherwise the report may mix old and new bytes.
    if identity(path).as_ref() != Some(&ids) {
        return;
    }
    let Ok(mut cache) = CACHE.lock() else { return };
    let map = cache.get_or_insert_with(HashMap::new);
    if map.len() >= CACHE_CAP {
        map.clear();
    }
    map.insert(
        key(path, opts.slots),
        Entry {
            ids,
            report: report.clone(),
        },
    );
}

/// The identity to pass to [`store`], taken before the files are read.
pub(crate) fn before(path: &Path) -> Option<Vec<(PathBuf, FileId)>> {
    identity(path)
}
