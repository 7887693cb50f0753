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

use super::lives::{self, family_base};
use super::reason::{io_reason, Reason};
use super::remote_check::RemoteReaders;
use super::source::{readable_mtime, Checker, SourceCheck, SourceKind};
use crate::ccs::{Cluster, SlotRange};
use crate::host::{unix_nanos, FileKind, Host, Hosts, NodeId};

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
    /// Files of remote nodes read ahead ([`Disk::prefetch`]): the identity files.
    files: Mutex<BTreeMap<(NodeId, PathBuf), Vec<u8>>>,
    /// Checks made ahead on remote nodes, by file and slot range.
    checks: Mutex<BTreeMap<CheckKey, SourceCheck>>,
}

/// A remote check's file and slot range.
type CheckKey = (NodeId, PathBuf, Option<(u16, u16)>);

fn check_key(node: NodeId, path: &Path, slots: Option<SlotRange>) -> CheckKey {
    (node, path.to_path_buf(), slots.map(|s| (s.start, s.end)))
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
    /// Unix nanoseconds.
    mtime: i64,
    readable: bool,
}

/// How deep below a directory a scan looks: a shard directory, its `appendonlydir/`,
/// and that directory's files.
const SCAN_DEPTH: usize = 2;
/// The most an identity file read whole may hold (an AOF manifest has its own cap,
/// `persist::MANIFEST_CAP`).
const SMALL_FILE_CAP: u64 = 16 << 20;

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
            files: Default::default(),
            checks: Default::default(),
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
            files: Default::default(),
            checks: Default::default(),
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

    /// Scans `path` on a remote node down to `depth` levels now, so questions about what
    /// lies below it are answered from one `find` (nothing for this machine's nodes).
    pub fn scan_below(&self, node: NodeId, path: &Path, depth: usize) {
        let _ = self.seen(node, path, depth.saturating_sub(SCAN_DEPTH));
    }

    /// The nodes `hosts` reaches, for reading disks only (no file is validated there).
    /// Call from within the runtime.
    pub fn of_hosts(hosts: Hosts) -> Disk {
        Disk {
            hosts,
            handle: tokio::runtime::Handle::try_current().ok(),
            ..Disk::local()
        }
    }

    /// Whether `node` is on another host.
    pub fn is_remote(&self, node: NodeId) -> bool {
        self.remote(node).is_some()
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

    /// When the RDB at `path` on this machine says it was written (its `ctime`, read from
    /// its first bytes); `None` on another host (its time there is the file's) or when
    /// the file does not say.
    pub fn rdb_created(&self, node: NodeId, path: &Path) -> Option<i64> {
        use std::io::Read;
        if self.remote(node).is_some() {
            return None;
        }
        let mut head = Vec::with_capacity(crate::persist::RDB_HEAD_BYTES);
        crate::persist::open_regular(path)
            .ok()?
            .take(crate::persist::RDB_HEAD_BYTES as u64)
            .read_to_end(&mut head)
            .ok()?;
        crate::persist::rdb_created_in_head(&head)
    }

    /// A directory (or a file) is there and may be looked into.
    pub fn stat(&self, node: NodeId, path: &Path) -> io::Result<()> {
        match self.remote(node) {
            None => std::fs::metadata(path).map(|_| ()),
            Some((host, rt)) => match self.seen(node, path, 0) {
                Some(Some(_)) => Ok(()),
                _ if self.absent(node, path) => Err(io::ErrorKind::NotFound.into()),
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
                _ if self.absent(node, dir) => Err(io::ErrorKind::NotFound.into()),
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

    /// A small file (an identity file): refused unread past [`SMALL_FILE_CAP`] or when
    /// it is not a regular file (a FIFO would never end).
    pub fn read(&self, node: NodeId, path: &Path) -> io::Result<Vec<u8>> {
        let Some((host, rt)) = self.remote(node) else {
            let meta = std::fs::metadata(path)?;
            crate::host::small_file(path, meta.is_file(), meta.len(), SMALL_FILE_CAP)?;
            return std::fs::read(path);
        };
        let key = (node, path.to_path_buf());
        if let Some(bytes) = lock(&self.files).get(&key) {
            return Ok(bytes.clone());
        }
        // A file a scan did not see is not there: no round trip to be told so.
        if self.absent(node, path) {
            return Err(io::ErrorKind::NotFound.into());
        }
        rt.block_on(host.read_small(path, SMALL_FILE_CAP))
    }

    /// Whether a scan covered `path` and did not see it while it could look into the
    /// directory above it: it is not there. (Under a directory it could not read, the
    /// host is asked, for the right error.)
    fn absent(&self, node: NodeId, path: &Path) -> bool {
        // Up to the nearest directory a scan saw: every level below it unseen.
        for at in path.ancestors() {
            match self.seen_if_scanned(node, at) {
                None => return false,
                Some(None) => continue,
                Some(Some(s)) => return at != path && s.kind == FileKind::Dir && s.readable,
            }
        }
        false
    }

    /// What a scan already made says of `path`; `None` when no scan covered it.
    fn seen_if_scanned(&self, node: NodeId, path: &Path) -> Option<Option<Seen>> {
        let scans = lock(&self.scans);
        scans
            .roots
            .iter()
            .any(|(n, root, depth)| *n == node && covers(root, *depth, path, 0))
            .then(|| scans.entries.get(&(node, path.to_path_buf())).copied())
    }

    /// Reads ahead what planning databases `ids` will ask of every remote node: one
    /// round trip per node for its recovery path, persistent path and that path's
    /// `-recovered` siblings (every entry to a shard directory's files, the canonical
    /// forms, the identity files' text), then the reader over every candidate file
    /// there in one batch per node (`RemoteReaders::check_many`). Planning then asks
    /// nothing more of the hosts, except where something changed or failed here (it
    /// asks the host directly, as without this). Call from within the runtime.
    pub async fn prefetch(&self, cluster: &Cluster, ids: &[crate::ccs::Id]) {
        let nodes: Vec<&crate::ccs::Node> = cluster
            .nodes
            .values()
            .filter(|n| self.hosts.is_remote(n.id))
            .collect();
        futures::future::join_all(nodes.iter().map(|n| self.read_ahead(n))).await;
        futures::future::join_all(nodes.iter().map(|n| self.check_ahead(cluster, n, ids))).await;
    }

    /// [`Disk::prefetch`]'s one round trip to `node`.
    async fn read_ahead(&self, node: &crate::ccs::Node) {
        let host = self.hosts.of(node.id);
        let pp = &node.persistent_path;
        let (Some(parent), Some(name)) = (pp.parent(), pp.file_name()) else {
            return;
        };
        let base = family_base(&name.to_string_lossy()).to_string();
        let rp = node.recovery_path.clone().unwrap_or_default();
        let args = [
            "-c".to_string(),
            READ_AHEAD.to_string(),
            "sh".into(),
            DEEP.to_string(),
            path_arg(&rp),
            path_arg(pp),
            path_arg(parent),
            base.clone(),
        ];
        let Ok(out) = host.run(Path::new("sh"), &args).await else {
            return;
        };
        if !out.success {
            return;
        }
        let ahead = parse_read_ahead(&out.stdout);
        let mut scans = lock(&self.scans);
        for (p, seen) in ahead.entries {
            scans.entries.insert((node.id, p), seen);
        }
        let mut roots = vec![(pp.clone(), DEEP), (parent.to_path_buf(), 1)];
        if node.recovery_path.is_some() {
            roots.push((rp.clone(), DEEP));
        }
        // The siblings the script scanned: `<base>-recovered*` directories.
        let siblings: Vec<PathBuf> = scans
            .entries
            .iter()
            .filter(|((n, p), s)| {
                *n == node.id
                    && s.kind == FileKind::Dir
                    && p.parent() == Some(parent)
                    && p.file_name().is_some_and(|f| {
                        f.to_string_lossy()
                            .starts_with(&format!("{base}-recovered"))
                    })
            })
            .map(|((_, p), _)| p.clone())
            .collect();
        roots.extend(siblings.into_iter().map(|p| (p, DEEP)));
        for (root, depth) in roots {
            scans.roots.push((node.id, root, depth));
        }
        drop(scans);
        let mut canonical = lock(&self.canonical);
        for (p, c) in ahead.canonical {
            canonical.insert((node.id, p), c);
        }
        drop(canonical);
        let mut files = lock(&self.files);
        for (p, bytes) in ahead.identities {
            files.insert((node.id, p), bytes);
        }
    }

    /// [`Disk::prefetch`]'s checks on `node`: every candidate file of the databases `ids`
    /// under its recovery path, as planning will name them.
    async fn check_ahead(
        &self,
        cluster: &Cluster,
        node: &crate::ccs::Node,
        ids: &[crate::ccs::Id],
    ) {
        let Some(root) = node.recovery_path.as_deref() else {
            return;
        };
        let mut wanted = Vec::new();
        for db in ids.iter().filter_map(|id| cluster.databases.get(id)) {
            for shard in db.shards.iter().filter(|s| s.node == node.id) {
                let master = match shard.master {
                    Some(m) => db.shards.iter().find(|s| s.id == m).unwrap_or(shard),
                    None => shard,
                };
                let dir = crate::ccs::shard_dir_under(root, db.id, shard.id);
                if self.seen_if_scanned(node.id, &dir).is_none() {
                    continue;
                }
                let present = self.seen_children(node.id, &dir);
                let has = |f: &str| present.iter().any(|(n, s)| n == f && s.readable);
                for kind in [SourceKind::AofDir, SourceKind::AofFile, SourceKind::Rdb] {
                    if kind == SourceKind::AofFile && has(SourceKind::AofDir.file_name()) {
                        continue;
                    }
                    if has(kind.file_name()) {
                        wanted.push((dir.join(kind.file_name()), master.slots));
                    }
                }
            }
        }
        let host = self.hosts.of(node.id);
        let checks = self.readers.check_many(node.id, &*host, &wanted).await;
        let mut made = lock(&self.checks);
        for ((path, slots), check) in wanted.into_iter().zip(checks) {
            made.insert(check_key(node.id, &path, slots), check);
        }
    }

    /// The newest modification time (unix nanoseconds) of a file, or of the files of a
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
        let nanos = |m: &crate::host::Metadata| m.modified.map_or(0, unix_nanos);
        let meta = rt
            .block_on(host.metadata(path))
            .map_err(|e| io_reason(path, e, false))?;
        if meta.kind != FileKind::Dir {
            return Ok(nanos(&meta));
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
            newest = newest.max(nanos(&m));
        }
        Ok(if newest == 0 { nanos(&meta) } else { newest })
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
        let names = self.list(node, parent).unwrap_or_default();
        lives::family_among(parent, names, &base)
            .into_iter()
            .filter(|p| self.is_dir(node, p))
            .collect()
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
            Some((host, rt)) => {
                if let Some(made) = lock(&self.checks).remove(&check_key(node, path, slots)) {
                    return made;
                }
                rt.block_on(self.readers.check(node, &*host, path, slots))
            }
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
    Ok(out.stdout.split('\0').filter_map(parse_seen).collect())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How deep [`Disk::prefetch`] scans a persistent or recovery path: `redis/db-N/shard-N/`,
/// its `appendonlydir/`, and that directory's files.
const DEEP: usize = SCAN_DEPTH + 3;

/// [`Disk::prefetch`]'s script: `$1` depth, `$2` recovery path (may be empty), `$3`
/// persistent path, `$4` its parent, `$5` the family's base name. Scans as [`scan`] does
/// (the parent one level only), then `#canon <path>` NUL `<canonical>` records, then
/// after `#identities` the identity files under the recovery path: path NUL text NUL.
const READ_AHEAD: &str = r#"d=$1; rp=$2; pp=$3; par=$4; base=$5
scan() { [ -e "$1" ] || return 0; find -H "$1" -maxdepth "$2" \( -readable -printf 'r' -o -printf '-' \) -printf '%y %T@ %p\0'; }
canon() { printf '#canon %s\0%s\0' "$1" "$(readlink -f -- "$1")"; }
if [ -n "$rp" ]; then scan "$rp" "$d"; canon "$rp"; fi
scan "$pp" "$d"; canon "$pp"
scan "$par" 1
for s in "$par/$base"-recovered*; do [ -d "$s" ] && { scan "$s" "$d"; canon "$s"; }; done
printf '#identities\0'
if [ -n "$rp" ] && [ -d "$rp" ]; then
  find -H "$rp" -maxdepth 4 -name lazarus-shard.json -type f -readable -print0 |
    xargs -0 -r sh -c 'for f; do printf "%s\0" "$f"; cat -- "$f"; printf "\0"; done' sh
fi
exit 0"#;

/// What [`READ_AHEAD`] printed.
#[derive(Default)]
struct ReadAhead {
    entries: Vec<(PathBuf, Seen)>,
    canonical: Vec<(PathBuf, PathBuf)>,
    identities: Vec<(PathBuf, Vec<u8>)>,
}

fn parse_read_ahead(out: &str) -> ReadAhead {
    let mut ahead = ReadAhead::default();
    let mut records = out.split('\0');
    while let Some(rec) = records.next() {
        if rec == "#identities" {
            while let (Some(path), Some(text)) = (records.next(), records.next()) {
                if path.is_empty() {
                    break;
                }
                ahead
                    .identities
                    .push((PathBuf::from(path), text.as_bytes().to_vec()));
            }
            break;
        }
        if let Some(path) = rec.strip_prefix("#canon ") {
            if let Some(c) = records.next().filter(|c| !c.is_empty()) {
                ahead
                    .canonical
                    .push((PathBuf::from(path), PathBuf::from(c)));
            }
            continue;
        }
        if let Some(entry) = parse_seen(rec) {
            ahead.entries.push(entry);
        }
    }
    ahead
}

/// One record of a scan: `<r|-><kind> <mtime> <path>`.
fn parse_seen(rec: &str) -> Option<(PathBuf, Seen)> {
    let (head, rest) = rec.split_once(' ')?;
    let (mtime, path) = rest.split_once(' ')?;
    let mut chars = head.chars();
    let readable = chars.next()? == 'r';
    let kind = match chars.next()? {
        'f' => FileKind::File,
        'd' => FileKind::Dir,
        'l' => FileKind::Symlink,
        _ => FileKind::Other,
    };
    let mtime = crate::host::parse_find_time(mtime).map_or(0, unix_nanos);
    Some((
        PathBuf::from(path),
        Seen {
            kind,
            mtime,
            readable,
        },
    ))
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_ahead_reads_back_entries_canonical_forms_and_identities() {
        let out = "rd 1700000000.5 /r\0rf 1700000001.0 /r/redis/db-1/shard-2/dump.rdb\0-f 3 /r/x\0\
                   #canon /r\0/real/r\0#identities\0/r/redis/db-1/shard-2/lazarus-shard.json\0{\"a\":1}\0";
        let a = parse_read_ahead(out);
        assert_eq!(a.entries.len(), 3);
        assert_eq!(a.entries[0].1.mtime, 1_700_000_000_500_000_000);
        assert_eq!(a.entries[1].1.mtime, 1_700_000_001_000_000_000);
        assert!(a.entries[1].1.readable && !a.entries[2].1.readable);
        assert_eq!(a.entries[0].1.kind, FileKind::Dir);
        assert_eq!(
            a.canonical,
            [(PathBuf::from("/r"), PathBuf::from("/real/r"))]
        );
        assert_eq!(a.identities.len(), 1);
        assert_eq!(a.identities[0].1, b"{\"a\":1}");
    }
}
