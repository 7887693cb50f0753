//! [`Disk`]: the files recovery planning reads, on whichever node they lie. Planning runs
//! on a blocking thread and asks synchronously: a local node answers through `std::fs`
//! (every file opened, so a permission fault is named as such), a node on another host
//! through its [`Host`], one round trip per question, and its candidates are validated
//! there by the same Lazarus binary (see [`super::remote_check`]), so no file crosses the
//! network to be read.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::reason::{io_reason, Reason};
use super::remote_check::RemoteReaders;
use super::source::{readable_mtime, Checker, SourceCheck};
use crate::ccs::{Cluster, SlotRange};
use crate::host::{FileKind, Host, Hosts, NodeId};

/// Where planning reads each node's files.
pub struct Disk {
    hosts: Hosts,
    /// The runtime remote calls are made on (planning's thread blocks on them).
    handle: Option<tokio::runtime::Handle>,
    readers: RemoteReaders,
    /// What one `find` on a remote node saw, so that the questions planning asks about
    /// one shard directory cost one round trip, not one each.
    scans: Mutex<Scans>,
    /// Canonical forms asked of remote nodes.
    canonical: Mutex<BTreeMap<(NodeId, PathBuf), PathBuf>>,
}

/// Remote directories scanned, and what was under them.
#[derive(Default)]
struct Scans {
    /// (node, directory, depth scanned below it).
    roots: Vec<(NodeId, PathBuf, usize)>,
    entries: BTreeMap<(NodeId, PathBuf), Seen>,
}

/// One path as `find` saw it.
#[derive(Clone, Copy)]
struct Seen {
    kind: FileKind,
    mtime: i64,
    readable: bool,
}

/// How deep below a directory a scan looks: a shard directory, its `appendonlydir/`,
/// and that directory's files.
const SCAN_DEPTH: usize = 2;

/// Whether a scan of `root` to `depth` saw `path` (at `extra` more levels below it).
fn covers(root: &Path, depth: usize, path: &Path, extra: usize) -> bool {
    path.strip_prefix(root)
        .is_ok_and(|rel| rel.components().count() + extra <= depth)
}

impl Default for Disk {
    fn default() -> Self {
        Disk::local()
    }
}

impl Disk {
    /// Every node on this machine (tests, and clusters without SSH nodes).
    pub fn local() -> Disk {
        Disk {
            hosts: Hosts::local(),
            handle: None,
            readers: RemoteReaders::new(BTreeMap::new()),
            scans: Default::default(),
            canonical: Default::default(),
        }
    }

    /// The nodes of `cluster` as `hosts` reaches them. Call from within the runtime.
    pub fn new(hosts: Hosts, cluster: &Cluster) -> Disk {
        let homes = cluster
            .nodes
            .values()
            .filter(|n| hosts.is_remote(n.id))
            .map(|n| (n.id, n.persistent_path.clone()))
            .collect::<BTreeMap<_, _>>();
        Disk {
            readers: RemoteReaders::new(homes),
            hosts,
            handle: tokio::runtime::Handle::try_current().ok(),
            scans: Default::default(),
            canonical: Default::default(),
        }
    }

    /// What a scan of a remote node says of `path` (`extra` levels below it included):
    /// scanning the path now when no earlier scan covers it. `None` when the scan
    /// itself failed (the caller asks the host directly, for its error).
    fn seen(&self, node: NodeId, path: &Path, extra: usize) -> Option<Option<Seen>> {
        let covered = |s: &Scans| {
            s.roots
                .iter()
                .any(|(n, root, depth)| *n == node && covers(root, *depth, path, extra))
        };
        {
            let scans = self.scans.lock().unwrap_or_else(|e| e.into_inner());
            if covered(&scans) {
                return Some(scans.entries.get(&(node, path.to_path_buf())).copied());
            }
        }
        let (host, rt) = self.remote(node)?;
        let found = rt.block_on(scan(&*host, path, SCAN_DEPTH + extra)).ok()?;
        let mut scans = self.scans.lock().unwrap_or_else(|e| e.into_inner());
        scans
            .roots
            .push((node, path.to_path_buf(), SCAN_DEPTH + extra));
        for (p, seen) in found {
            scans.entries.insert((node, p), seen);
        }
        Some(scans.entries.get(&(node, path.to_path_buf())).copied())
    }

    /// The scanned entries directly in `dir`.
    fn seen_children(&self, node: NodeId, dir: &Path) -> Vec<(String, Seen)> {
        let scans = self.scans.lock().unwrap_or_else(|e| e.into_inner());
        scans
            .entries
            .iter()
            .filter(|((n, p), _)| *n == node && p.parent() == Some(dir))
            .filter_map(|((_, p), s)| Some((p.file_name()?.to_string_lossy().into_owned(), *s)))
            .collect()
    }

    /// The host of a node on another machine; `None` for this one.
    fn remote(&self, node: NodeId) -> Option<(Arc<dyn Host>, &tokio::runtime::Handle)> {
        match (&self.handle, self.hosts.is_remote(node)) {
            (Some(handle), true) => Some((self.hosts.of(node), handle)),
            _ => None,
        }
    }

    /// A directory (or a file) is there and may be looked into.
    pub fn stat(&self, node: NodeId, path: &Path) -> io::Result<()> {
        match self.remote(node) {
            None => std::fs::metadata(path).map(|_| ()),
            Some((host, rt)) => match self.seen(node, path, 0) {
                Some(Some(_)) => Ok(()),
                _ => rt.block_on(host.metadata(path)).map(|_| ()),
            },
        }
    }

    /// The names in a directory.
    pub fn list(&self, node: NodeId, dir: &Path) -> io::Result<Vec<String>> {
        match self.remote(node) {
            None => std::fs::read_dir(dir)?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect(),
            Some((host, rt)) => match self.seen(node, dir, 1) {
                Some(Some(s)) if s.kind == FileKind::Dir && s.readable => Ok(self
                    .seen_children(node, dir)
                    .into_iter()
                    .map(|(name, _)| name)
                    .collect()),
                _ => Ok(rt
                    .block_on(host.list(dir))?
                    .into_iter()
                    .map(|e| e.name)
                    .collect()),
            },
        }
    }

    pub fn is_dir(&self, node: NodeId, path: &Path) -> bool {
        match self.remote(node) {
            None => path.is_dir(),
            Some((host, rt)) => {
                if let Some(Some(s)) = self.seen(node, path, 0) {
                    return s.kind == FileKind::Dir;
                }
                rt.block_on(host.metadata(path))
                    .is_ok_and(|m| m.kind == FileKind::Dir)
                    // A symlink to a directory: its `.` is the directory.
                    || rt
                        .block_on(host.metadata(&path.join(".")))
                        .is_ok_and(|m| m.kind == FileKind::Dir)
            }
        }
    }

    /// Whether anything (a symlink included) is at `path`.
    pub fn exists(&self, node: NodeId, path: &Path) -> bool {
        match self.remote(node) {
            None => std::fs::symlink_metadata(path).is_ok(),
            Some((host, rt)) => match self.seen(node, path, 0) {
                Some(seen) => seen.is_some(),
                None => rt.block_on(host.metadata(path)).is_ok(),
            },
        }
    }

    pub fn read(&self, node: NodeId, path: &Path) -> io::Result<Vec<u8>> {
        match self.remote(node) {
            None => std::fs::read(path),
            Some((host, rt)) => rt.block_on(host.read(path)),
        }
    }

    /// The newest modification time (unix seconds) of a file, or of the files of a
    /// directory; every file must be readable.
    pub fn readable_mtime(&self, node: NodeId, path: &Path) -> Result<i64, Reason> {
        let Some((host, rt)) = self.remote(node) else {
            return readable_mtime(path);
        };
        if let Some(seen) = self.seen(node, path, 1) {
            let denied = |p: &Path| Reason::PermissionDenied {
                path: p.to_path_buf(),
                detail: "Permission denied (os error 13)".into(),
            };
            let Some(top) = seen else {
                return Err(io_reason(path, io::ErrorKind::NotFound.into(), false));
            };
            if !top.readable {
                return Err(denied(path));
            }
            if top.kind != FileKind::Dir {
                return Ok(top.mtime);
            }
            let mut newest = 0;
            for (name, s) in self.seen_children(node, path) {
                if !s.readable {
                    return Err(denied(&path.join(name)));
                }
                newest = newest.max(s.mtime);
            }
            return Ok(if newest == 0 { top.mtime } else { newest });
        }
        let secs = |m: &crate::host::Metadata| {
            m.modified
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64)
        };
        let meta = rt
            .block_on(host.metadata(path))
            .map_err(|e| io_reason(path, e, false))?;
        if meta.kind != FileKind::Dir {
            return Ok(secs(&meta));
        }
        // The files' times, not the directory's: listing changes are not data.
        let mut newest = 0;
        for entry in rt
            .block_on(host.list(path))
            .map_err(|e| io_reason(path, e, false))?
        {
            let file = path.join(&entry.name);
            let m = rt
                .block_on(host.metadata(&file))
                .map_err(|e| io_reason(&file, e, false))?;
            newest = newest.max(secs(&m));
        }
        Ok(if newest == 0 { secs(&meta) } else { newest })
    }

    /// The canonical form of a path on its node (symlinks resolved), or the path itself.
    pub fn canonical(&self, node: NodeId, path: &Path) -> PathBuf {
        match self.remote(node) {
            None => std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
            Some((host, rt)) => {
                let key = (node, path.to_path_buf());
                let cache = |m: &Mutex<BTreeMap<_, PathBuf>>| {
                    m.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&key)
                        .cloned()
                };
                if let Some(known) = cache(&self.canonical) {
                    return known;
                }
                let found = rt
                    .block_on(host.run(Path::new("readlink"), &["-f".into(), path_arg(path)]))
                    .ok()
                    .filter(|o| o.success && !o.stdout.trim().is_empty())
                    .map(|o| PathBuf::from(o.stdout.trim_end_matches('\n')))
                    .unwrap_or_else(|| path.to_path_buf());
                self.canonical
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, found.clone());
                found
            }
        }
    }

    /// A node's persistent path and its earlier lives (the `-recovered` siblings
    /// recovery made), as [`super::rebuild::recovered_family`] finds them.
    pub fn recovered_family(&self, node: NodeId, path: &Path) -> Vec<PathBuf> {
        if self.remote(node).is_none() {
            return super::rebuild::recovered_family(path);
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Vec::new();
        };
        let base = family_base(&name.to_string_lossy()).to_string();
        let mut out: Vec<PathBuf> = self
            .list(node, parent)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n == &base || is_recovered_of(n, &base))
            .map(|n| parent.join(n))
            .filter(|p| self.is_dir(node, p))
            .collect();
        out.truncate(64);
        out
    }

    /// Validates a candidate where it lies: this machine's with `local`, another host's
    /// with the Lazarus binary shipped there.
    pub fn check(
        &self,
        node: NodeId,
        path: &Path,
        slots: Option<SlotRange>,
        local: &Checker,
    ) -> SourceCheck {
        match self.remote(node) {
            None => local(path, slots),
            Some((host, rt)) => rt.block_on(self.readers.check(node, &*host, path, slots)),
        }
    }
}

/// Every path at most `depth` levels below `root` on `host` (the root itself included,
/// followed if it is a symlink): kind, modification time, readable by us. One `find`.
async fn scan(host: &dyn Host, root: &Path, depth: usize) -> io::Result<Vec<(PathBuf, Seen)>> {
    let script = format!(
        "[ -e \"$1\" ] || exit 0\nexec find -H \"$1\" -maxdepth {depth} \\( -readable -printf 'r' -o -printf '-' \\) -printf '%y %T@ %p\\0'"
    );
    let out = host
        .run(
            Path::new("sh"),
            &["-c".into(), script, "sh".into(), path_arg(root)],
        )
        .await?;
    if !out.success {
        return Err(io::Error::other(out.stderr));
    }
    Ok(out
        .stdout
        .split('\0')
        .filter_map(|rec| {
            let (head, path) = rec.split_once(' ').map(|(a, b)| (a.to_string(), b))?;
            let (mtime, path) = path.split_once(' ')?;
            let mut chars = head.chars();
            let readable = chars.next()? == 'r';
            let kind = match chars.next()? {
                'f' => FileKind::File,
                'd' => FileKind::Dir,
                'l' => FileKind::Symlink,
                _ => FileKind::Other,
            };
            let mtime = mtime.parse::<f64>().map_or(0, |s| s as i64);
            Some((
                PathBuf::from(path),
                Seen {
                    kind,
                    mtime,
                    readable,
                },
            ))
        })
        .collect())
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// `data` for `data-recovered-2-recovered`.
fn family_base(name: &str) -> &str {
    let mut base = name;
    loop {
        let stripped = base.strip_suffix("-recovered").or_else(|| {
            let (head, n) = base.rsplit_once("-recovered-")?;
            n.parse::<u32>().ok().map(|_| head)
        });
        match stripped {
            Some(head) if !head.is_empty() => base = head,
            _ => return base,
        }
    }
}

/// Whether `name` is `base` followed by one or more `-recovered` / `-recovered-N`.
fn is_recovered_of(name: &str, base: &str) -> bool {
    name.len() > base.len() && name.starts_with(base) && family_base(name) == base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovered_siblings_are_named_by_their_base() {
        assert_eq!(family_base("data-recovered-2-recovered"), "data");
        assert_eq!(family_base("data"), "data");
        assert!(is_recovered_of("data-recovered", "data"));
        assert!(is_recovered_of("data-recovered-3", "data"));
        assert!(!is_recovered_of("data2-recovered", "data"));
        assert!(!is_recovered_of("data", "data"));
    }
}
