//! Storage of the CCS: one JSON document under the home, changed only under an exclusive
//! lock and written atomically, with a copy on every node's persistent path.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::host::local;

use super::model::{Cluster, Node, PortRange, CCS_FORMAT};

/// File name of the CCS, under the home and under every node's `ccs/` backup directory.
pub const CCS_FILE: &str = "ccs.json";
const LOCK_FILE: &str = "ccs.lock";

/// What to do in a home without a cluster.
pub const NO_CLUSTER_HINT: &str = "make one with `cluster create name <name>` (or let `create db` make the default local one), or bring one back with `cluster recover filename <path>`";

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("this home has no cluster yet: {NO_CLUSTER_HINT}")]
    NoCluster,
    #[error("cannot create the home directory `{path}`: {source}")]
    Home { path: PathBuf, source: io::Error },
    #[error("cannot read `{path}`: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("`{path}` is corrupt, left untouched: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("`{path}` has format {found}, this lazarus reads up to {CCS_FORMAT}")]
    Format { path: PathBuf, found: u32 },
    #[error("`{path}` is not a sound cluster configuration, left untouched: {fault}")]
    Invalid {
        path: PathBuf,
        fault: super::validate::Invalid,
    },
    #[error("the cluster configuration was not saved: {0}")]
    Unsound(super::validate::Invalid),
    #[error("cannot write `{path}`: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot lock `{path}`: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error("the cluster configuration is being changed by {holder}; try again when it finishes")]
    Locked { holder: String },
    #[error("the cluster configuration was not saved (every copy is as it was): its backup to `{path}` could not be written: {source}")]
    NotSaved { path: PathBuf, source: io::Error },
    #[error(
        "the configuration was saved to `{saved}`, but its backup to `{path}` failed: {source}"
    )]
    Backup {
        saved: PathBuf,
        path: PathBuf,
        source: io::Error,
    },
}

impl crate::error::DomainError for StoreError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            StoreError::Corrupt { .. } | StoreError::Format { .. } | StoreError::Invalid { .. } => {
                ErrorKind::Damaged
            }
            StoreError::NoCluster => ErrorKind::NotFound,
            StoreError::Unsound(_) => ErrorKind::Conflict,
            StoreError::Locked { .. } => ErrorKind::Unavailable,
            StoreError::Home { .. }
            | StoreError::Read { .. }
            | StoreError::Write { .. }
            | StoreError::Lock { .. }
            | StoreError::NotSaved { .. }
            | StoreError::Backup { .. } => ErrorKind::Io,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            StoreError::Locked { .. } => vec!["try again when it finishes".into()],
            StoreError::NoCluster => vec![NO_CLUSTER_HINT.into()],
            _ => Vec::new(),
        }
    }
}

/// The CCS of one home directory.
#[derive(Clone, Debug)]
pub struct Store {
    home: PathBuf,
    /// The command this store serves, as its canonical text (secrets already `***`): what
    /// the lock stamp names for another process to show.
    command: Option<String>,
}

/// Proof of holding the home's exclusive lock; released on drop.
#[derive(Debug)]
pub struct StoreLock {
    home: PathBuf,
    // Held for its lock; the OS releases it when the file is closed.
    file: File,
    /// What taking the lock made in a fresh home (the lock file, the home and its
    /// parents that were missing, innermost first): removed again on drop when no CCS
    /// was saved, so a command refused there leaves the home as it was.
    made: Vec<PathBuf>,
}

impl Store {
    pub fn new(home: PathBuf) -> Store {
        Store {
            home,
            command: None,
        }
    }

    /// The same store, stamping its lock with `command` (canonical text, secrets hidden).
    pub fn for_command(&self, command: &str) -> Store {
        Store {
            home: self.home.clone(),
            command: Some(command.to_string()),
        }
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn ccs_path(&self) -> PathBuf {
        self.home.join(CCS_FILE)
    }

    /// The stored cluster, `None` when this home has none yet. Reading needs no lock: the
    /// file is only ever replaced whole.
    pub fn load(&self) -> Result<Option<Cluster>, StoreError> {
        load_file(&self.ccs_path())
    }

    /// The stored cluster, which must exist (for reading).
    pub fn cluster(&self) -> Result<Cluster, StoreError> {
        self.load()?.ok_or(StoreError::NoCluster)
    }

    /// Takes the exclusive lock without waiting; when another process holds it, the error
    /// names that process.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        let mut made: Vec<PathBuf> = self
            .home
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
            .map(Path::to_path_buf)
            .collect();
        local::create_private_dir(&self.home).map_err(|source| StoreError::Home {
            path: self.home.clone(),
            source,
        })?;
        let path = self.home.join(LOCK_FILE);
        let lock_err = |source| StoreError::Lock {
            path: path.clone(),
            source,
        };
        // The holder writes its stamp just after taking the lock and empties it just before
        // letting go: a stamp not (or no longer) there is one of those moments, so look
        // again, and try the lock again, for a while before naming no one. On a loaded
        // machine the holder may wait long for the CPU between the two steps.
        let deadline = std::time::Instant::now() + STAMP_WAIT;
        let mut file;
        loop {
            let fresh = !path.exists();
            file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(lock_err)?;
            match file.try_lock() {
                // A holder leaving a fresh home removes the lock file it made: the lock
                // taken on a file no longer at `path` is no lock, so take it again there.
                Ok(()) if !same_file(&file, &path) && std::time::Instant::now() < deadline => {
                    continue
                }
                Ok(()) => {
                    if fresh {
                        made.insert(0, path.clone());
                    }
                    break;
                }
                Err(TryLockError::WouldBlock) => {
                    if let Some(stamp) = read_stamp(&mut file) {
                        return Err(StoreError::Locked {
                            holder: describe_holder(&stamp),
                        });
                    }
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::Locked {
                            holder: describe_holder(""),
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(TryLockError::Error(source)) => return Err(lock_err(source)),
            }
        }
        // Say who holds it, for the error another process will show: never the process's
        // arguments, which may hold a password; the canonical command hides it.
        let stamp = Stamp::now(self.command.as_deref()).to_text();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(stamp.as_bytes()))
            .map_err(lock_err)?;
        Ok(StoreLock {
            home: self.home.clone(),
            file,
            made,
        })
    }
}

/// Whether `file` is the file at `path` now.
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        // A stale stamp would name a process that no longer holds the lock.
        let _ = self.file.set_len(0);
        // A fresh home where nothing was saved is left as it was: the lock file goes
        // while it is still held (a process waiting on it then finds it gone and takes
        // a new one), then the directories made for it, each only when empty.
        if !self.made.is_empty() && !self.home.join(CCS_FILE).exists() {
            for made in &self.made {
                let _ = match made.file_name().is_some_and(|n| n == LOCK_FILE) {
                    true => fs::remove_file(made),
                    false => fs::remove_dir(made),
                };
            }
        }
    }
}

impl StoreLock {
    pub fn load(&self) -> Result<Option<Cluster>, StoreError> {
        load_file(&self.home.join(CCS_FILE))
    }

    /// The stored cluster, which must exist.
    pub fn cluster(&self) -> Result<Cluster, StoreError> {
        self.load()?.ok_or(StoreError::NoCluster)
    }

    /// The stored cluster, or the default local one (not yet saved) when the home has
    /// none, with the line telling the operator it was made.
    pub fn cluster_or_default(&self) -> Result<(Cluster, Option<String>), StoreError> {
        Ok(match self.load()? {
            Some(cluster) => (cluster, None),
            None => {
                let cluster = default_local_cluster(&self.home);
                let mut note = default_cluster_note(&cluster);
                // Its range was chosen by default: ports the kernel may hand to
                // outgoing connections are said, not refused.
                let node = &cluster.nodes[&cluster.local_node];
                if let Some(w) = super::rules::local_ephemeral_ports().and_then(|e| {
                    super::rules::ephemeral_overlap(node.id, node.port_range, e, "this machine")
                }) {
                    note.push_str(&format!("\nwarning: {w}"));
                }
                (cluster, Some(note))
            }
        })
    }

    /// Commits `cluster`: bumps its generation, replaces the home's document atomically,
    /// then writes the same document to every node's `ccs/` directory.
    pub fn save(&self, cluster: &mut Cluster) -> Result<(), StoreError> {
        let before = cluster.generation;
        cluster.generation = before.saturating_add(1);
        if let Err(fault) = super::validate::validate(cluster) {
            cluster.generation = before;
            return Err(StoreError::Unsound(fault));
        }
        let mut text = serde_json::to_vec_pretty(cluster).expect("the model always serializes");
        text.push(b'\n');
        let saved = self.home.join(CCS_FILE);
        // All or nothing: every copy (the home's and each node's backup) is written and
        // synced beside its place first; only when all are down does any replace the old
        // one. A full disk on one node leaves every copy as it was, so the caller's roll
        // back (a create db's shards) matches what is stored.
        let mut prepared: Vec<(PathBuf, PathBuf)> = Vec::new();
        let discard = |prepared: &[(PathBuf, PathBuf)]| {
            for (tmp, _) in prepared {
                let _ = fs::remove_file(tmp);
            }
        };
        match local::prepare_private(&saved, &text) {
            Ok(tmp) => prepared.push((tmp, saved.clone())),
            Err(source) => {
                cluster.generation = before;
                return Err(StoreError::Write {
                    path: saved.clone(),
                    source,
                });
            }
        }
        // Nodes on other hosts: written there through each node's host, beside their
        // place too, before anything is committed.
        let remote = match prepare_remote(cluster, &text) {
            Ok(remote) => remote,
            Err(e) => {
                discard(&prepared);
                cluster.generation = before;
                return Err(e);
            }
        };
        let discard = |prepared: &[(PathBuf, PathBuf)]| {
            discard(prepared);
            discard_remote(&remote);
        };
        for node in cluster.nodes.values().filter(|n| n.ssh.is_none()) {
            let dir = node.ccs_backup_dir();
            let path = dir.join(CCS_FILE);
            match local::create_private_dir(&dir)
                .and_then(|()| local::prepare_private(&path, &text))
            {
                Ok(tmp) => prepared.push((tmp, path)),
                Err(source) => {
                    discard(&prepared);
                    cluster.generation = before;
                    return Err(StoreError::NotSaved { path, source });
                }
            }
        }
        let mut pending = prepared.into_iter();
        if let Some((tmp, path)) = pending.next() {
            if let Err(source) = local::commit_private(&tmp, &path) {
                let rest: Vec<_> = pending.collect();
                discard(&rest);
                let _ = fs::remove_file(&tmp);
                cluster.generation = before;
                return Err(StoreError::Write { path, source });
            }
        }
        // The home's copy is the configuration now; a rename failing past here (no space
        // is needed for it) leaves a backup one generation behind, and says so.
        let mut failed = None;
        for (tmp, path) in pending {
            if let Err(source) = local::commit_private(&tmp, &path) {
                let _ = fs::remove_file(&tmp);
                failed.get_or_insert(StoreError::Backup {
                    saved: saved.clone(),
                    path,
                    source,
                });
            }
        }
        if let Err((path, source)) = commit_remote(&remote) {
            failed.get_or_insert(StoreError::Backup {
                saved: saved.clone(),
                path,
                source,
            });
        }
        failed.map_or(Ok(()), Err)
    }
}

/// A CCS backup written beside its place on another host: (host, temporary, final path).
type RemoteCopy = (std::sync::Arc<dyn crate::host::Host>, PathBuf, PathBuf);

/// Runs `work` to its end on a runtime of its own, on a thread of its own: the store is
/// called from plain code and from async tasks alike.
fn on_hosts<T: Send>(work: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the nodes' hosts")
                    .block_on(work)
            })
            .join()
            .expect("the hosts' thread")
    })
}

/// How long a save waits for one other host's copy: past it the host counts as one that
/// does not answer (it keeps its older copy), so a hung host never holds a save.
const REMOTE_SAVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Writes `text` beside `ccs/ccs.json` on every node on another host, all hosts at once.
/// A host that does not answer keeps its older backup (a machine that cannot be reached
/// cannot serve a recovery either, and the next save there refreshes it); one that
/// answers and cannot take the file leaves every copy as it was.
fn prepare_remote(cluster: &Cluster, text: &[u8]) -> Result<Vec<RemoteCopy>, StoreError> {
    let nodes: Vec<&Node> = cluster.nodes.values().filter(|n| n.ssh.is_some()).collect();
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let hosts = crate::host::Hosts::for_nodes(nodes.iter().map(|n| (n.id, n.ssh.as_ref())))
        .map_err(|source| StoreError::NotSaved {
            path: nodes[0].ccs_backup_dir(),
            source,
        })?;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let writes = nodes.iter().map(|node| {
        let host = hosts.of(node.id);
        let dir = node.ccs_backup_dir();
        let path = dir.join(CCS_FILE);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{CCS_FILE}.tmp.{}.{n}", std::process::id()));
        async move {
            let write = async {
                host.create_private_dir(&dir).await?;
                host.write_private(&tmp, text).await
            };
            let written = match tokio::time::timeout(REMOTE_SAVE_TIMEOUT, write).await {
                Ok(written) => written,
                Err(_) => Err(crate::host::SshError::Unreachable {
                    target: host.name(),
                    reason: format!("no answer within {} s", REMOTE_SAVE_TIMEOUT.as_secs()),
                }
                .into()),
            };
            (host, tmp, path, written)
        }
    });
    let results = on_hosts(futures::future::join_all(writes));
    let mut prepared = Vec::new();
    let mut failed = None;
    for (host, tmp, path, written) in results {
        match written {
            Ok(()) => prepared.push((host, tmp, path)),
            Err(e) if crate::host::unreachable(&e) => {}
            Err(source) => {
                failed.get_or_insert(StoreError::NotSaved {
                    path: PathBuf::from(format!("{}:{}", host.name(), path.display())),
                    source,
                });
            }
        }
    }
    match failed {
        None => Ok(prepared),
        Some(e) => {
            discard_remote(&prepared);
            Err(e)
        }
    }
}

fn discard_remote(prepared: &[RemoteCopy]) {
    if prepared.is_empty() {
        return;
    }
    on_hosts(futures::future::join_all(
        prepared.iter().map(|(host, tmp, _)| host.remove(tmp)),
    ));
}

/// The prepared remote copies take their places; the first failure, if any.
fn commit_remote(prepared: &[RemoteCopy]) -> Result<(), (PathBuf, io::Error)> {
    if prepared.is_empty() {
        return Ok(());
    }
    let results = on_hosts(futures::future::join_all(prepared.iter().map(
        |(host, tmp, path)| async move {
            let done = match tokio::time::timeout(REMOTE_SAVE_TIMEOUT, host.rename(tmp, path)).await
            {
                Ok(done) => done,
                Err(_) => Err(io::ErrorKind::TimedOut.into()),
            };
            if done.is_err() {
                let _ = tokio::time::timeout(REMOTE_SAVE_TIMEOUT, host.remove(tmp)).await;
            }
            (host.name(), path, done)
        },
    )));
    for (name, path, done) in results {
        match done {
            // Lost since its copy was written: it keeps its older one.
            Err(e) if crate::host::unreachable(&e) => {}
            Err(e) => return Err((PathBuf::from(format!("{name}:{}", path.display())), e)),
            Ok(()) => {}
        }
    }
    Ok(())
}

/// The cluster a home gets when a command needs one and none was created: `local`, with
/// node:1 on this machine under `<home>/nodes/1`.
/// The line telling the operator the default local cluster was made (for a command
/// that made it, in a home that had none).
fn default_cluster_note(cluster: &Cluster) -> String {
    let node = &cluster.nodes[&cluster.local_node];
    format!(
        "Created the default local cluster `{}` (cluster_id {}): node:{} on {}, persistent path `{}`.",
        cluster.name,
        cluster.cluster_id,
        node.id,
        node.addr,
        node.persistent_path.display()
    )
}

pub fn default_local_cluster(home: &Path) -> Cluster {
    let mut cluster = Cluster {
        format: CCS_FORMAT,
        name: "local".to_string(),
        cluster_id: random_cluster_id(),
        alloc_id: 1,
        generation: 0,
        local_node: 1,
        redis_server: None,
        nodes: Default::default(),
        databases: Default::default(),
        backups: Default::default(),
        tls: None,
    };
    let id = cluster.allocate_id();
    cluster.local_node = id;
    cluster.nodes.insert(
        id,
        Node {
            id,
            addr: "127.0.0.1".to_string(),
            persistent_path: home.join("nodes").join(id.to_string()),
            recovery_path: None,
            port_range: PortRange::DEFAULT,
            rack_id: None,
            ssh: None,
            redis_server: None,
        },
    );
    cluster
}

/// A random, non-zero cluster id.
pub fn random_cluster_id() -> u64 {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

fn load_file(path: &Path) -> Result<Option<Cluster>, StoreError> {
    let text = match super::validate::read_document(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    // Check the format first, so a newer document is reported as such rather than as corrupt.
    #[derive(serde::Deserialize)]
    struct Header {
        format: u32,
    }
    if let Ok(header) = serde_json::from_slice::<Header>(&text) {
        if header.format > CCS_FORMAT {
            return Err(StoreError::Format {
                path: path.to_owned(),
                found: header.format,
            });
        }
    }
    let cluster: Cluster = serde_json::from_slice(&text).map_err(|source| StoreError::Corrupt {
        path: path.to_owned(),
        source,
    })?;
    super::validate::validate(&cluster).map_err(|fault| StoreError::Invalid {
        path: path.to_owned(),
        fault,
    })?;
    Ok(Some(cluster))
}

/// Temp file, fsync, rename over the target, fsync the directory: a crash leaves either
/// the old document or the new one, never half of one ([`local::write_private`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    local::write_private(path, bytes)
}

/// How long a contender waits for the holder's stamp (or for the lock to come free).
const STAMP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The holder's stamp when it is whole (every line of [`Stamp::to_text`] written); `None`
/// while it is being written or after it was emptied.
fn read_stamp(file: &mut File) -> Option<String> {
    let mut stamp = String::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_string(&mut stamp))
        .ok()?;
    (stamp.matches('\n').count() >= Stamp::LINES).then_some(stamp)
}

/// Who holds the lock: written into `ccs.lock` while it is held, one field a line.
struct Stamp {
    pid: u32,
    host: String,
    /// Unix seconds.
    since: u64,
    command: Option<String>,
}

impl Stamp {
    fn now(command: Option<&str>) -> Stamp {
        Stamp {
            pid: std::process::id(),
            host: host_name(),
            since: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            command: command.map(|c| c.replace(['\n', '\r'], " ")),
        }
    }

    /// Lines in [`Stamp::to_text`].
    const LINES: usize = 4;

    fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n",
            self.pid,
            self.host,
            self.since,
            self.command.as_deref().unwrap_or("")
        )
    }
}

fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

fn describe_holder(stamp: &str) -> String {
    let mut lines = stamp.lines();
    let (Some(pid), host, since, cmd) = (lines.next(), lines.next(), lines.next(), lines.next())
    else {
        return "another process".to_string();
    };
    if pid.is_empty() {
        return "another process".to_string();
    }
    let mut who = format!("pid {pid}");
    if let Some(host) = host.filter(|h| !h.is_empty()) {
        who.push_str(&format!(" on {host}"));
    }
    if let Some(since) = since.and_then(|s| s.parse::<u64>().ok()) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(since, |d| d.as_secs());
        who.push_str(&format!(" for {}s", now.saturating_sub(since)));
    }
    if let Some(cmd) = cmd.filter(|c| !c.is_empty()) {
        who.push_str(&format!(" (`{cmd}`)"));
    }
    who
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_contender_names_the_holder_or_takes_the_lock_it_let_go() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::new(home.path().to_owned()).for_command("status");
        let held = store.lock().unwrap();
        match store.lock() {
            Err(StoreError::Locked { holder }) => assert!(
                holder.starts_with(&format!("pid {}", std::process::id()))
                    && holder.ends_with("(`status`)"),
                "{holder}"
            ),
            other => panic!("{other:?}"),
        }
        // The moment between emptying the stamp and letting go: the contender waits for
        // the lock instead of naming "another process".
        held.file.set_len(0).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(held);
        });
        let taken = store.lock();
        release.join().unwrap();
        assert!(taken.is_ok(), "{taken:?}");
    }

    #[test]
    fn save_then_load_round_trips_and_writes_backups() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::new(home.path().to_owned());
        assert_eq!(store.load().unwrap(), None);
        let lock = store.lock().unwrap();
        let mut cluster = default_local_cluster(home.path());
        lock.save(&mut cluster).unwrap();
        assert_eq!(cluster.generation, 1);
        assert_eq!(store.load().unwrap(), Some(cluster.clone()));
        let backup = home.path().join("nodes/1/ccs/ccs.json");
        assert_eq!(load_file(&backup).unwrap(), Some(cluster));
        let mode = fs::metadata(store.ccs_path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_lock_on_a_fresh_home_left_without_saving_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let home = root.path().join("a/home");
        let store = Store::new(home.clone());
        drop(store.lock().unwrap());
        assert!(
            !root.path().join("a").exists(),
            "the home made for the lock stays"
        );
        // Saved: the home and its lock stay.
        let lock = store.lock().unwrap();
        let mut cluster = default_local_cluster(&home);
        lock.save(&mut cluster).unwrap();
        drop(lock);
        assert!(home.join(LOCK_FILE).is_file() && home.join(CCS_FILE).is_file());
        // A lock file that was there before is never removed.
        let other = root.path().join("other");
        fs::create_dir_all(&other).unwrap();
        fs::write(other.join(LOCK_FILE), "").unwrap();
        drop(Store::new(other.clone()).lock().unwrap());
        assert!(other.join(LOCK_FILE).is_file());
    }

    #[test]
    fn second_lock_names_the_holder() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::new(home.path().to_owned());
        let _held = store.lock().unwrap();
        let err = store.lock().unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
    }

    #[test]
    fn the_lock_stamp_names_the_command_without_its_secrets() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::new(home.path().to_owned()).for_command("create db s password ***");
        let _held = store.lock().unwrap();
        let stamp = fs::read_to_string(home.path().join(LOCK_FILE)).unwrap();
        assert!(stamp.ends_with("create db s password ***\n"), "{stamp}");
        let err = Store::new(home.path().to_owned()).lock().unwrap_err();
        let err = err.to_string();
        assert!(err.contains("(`create db s password ***`)"), "{err}");
    }

    #[test]
    fn a_killed_writers_temp_files_are_removed_and_dirs_narrowed() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::new(home.path().to_owned());
        let mut cluster = default_local_cluster(home.path());
        let backup_dir = home.path().join("nodes/1/ccs");
        fs::create_dir_all(&backup_dir).unwrap();
        fs::set_permissions(&backup_dir, fs::Permissions::from_mode(0o755)).unwrap();
        // pid 2^22 + 1 is above Linux's pid_max: never a live process.
        let stale = home.path().join(".ccs.json.tmp.4194305");
        fs::write(&stale, "password").unwrap();
        store.lock().unwrap().save(&mut cluster).unwrap();
        assert!(!stale.exists());
        let mode = fs::metadata(&backup_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn an_unsound_configuration_is_never_saved() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::new(home.path().to_owned());
        let mut cluster = default_local_cluster(home.path());
        cluster.alloc_id = crate::ccs::MAX_ID + 1;
        let node = cluster.allocate_id();
        let mut second = cluster.nodes[&1].clone();
        second.id = node;
        cluster.nodes.insert(node, second);
        let err = store.lock().unwrap().save(&mut cluster).unwrap_err();
        assert!(
            err.to_string().contains("outside 1..=9007199254740992"),
            "{err}"
        );
        assert_eq!(cluster.generation, 0);
        assert_eq!(store.load().unwrap(), None);
    }

    #[test]
    fn corrupt_document_is_reported_and_kept() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::new(home.path().to_owned());
        fs::write(store.ccs_path(), b"{ not json").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("ccs.json") && err.contains("corrupt"), "{err}");
        assert_eq!(fs::read(store.ccs_path()).unwrap(), b"{ not json");
    }
}
