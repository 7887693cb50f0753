//! The host seam: every file, process and system operation Lazarus performs on a node
//! goes through [`Host`], so a node reached over SSH (or any other transport) is one more
//! implementation and no caller changes. [`LocalHost`] is this machine.
//!
//! Paths that belong to a node travel as [`NodePath`]; [`Hosts`] answers which [`Host`]
//! serves a node.

pub mod local;
pub mod ssh;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

pub use local::LocalHost;
pub use ssh::{SshError, SshHost, SshTarget};

/// A node's id, as the CCS numbers nodes.
pub type NodeId = u64;

/// A path on one node: meaningless without the node it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodePath {
    pub node: NodeId,
    pub path: PathBuf,
}

impl NodePath {
    pub fn new(node: NodeId, path: impl Into<PathBuf>) -> Self {
        NodePath {
            node,
            path: path.into(),
        }
    }

    pub fn join(&self, part: impl AsRef<Path>) -> NodePath {
        NodePath::new(self.node, self.path.join(part))
    }
}

impl fmt::Display for NodePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node:{} `{}`", self.node, self.path.display())
    }
}

/// A time in unix nanoseconds (0 before the epoch): file times compared to the second
/// tell apart neither two writes within one second nor a copy from its original.
pub fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A time as `find -printf '%T@'` writes it (`1700000000.1234567890`), to the
/// nanosecond: a float would round it to about a quarter of a microsecond.
pub fn parse_find_time(text: &str) -> Option<SystemTime> {
    let (secs, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    let secs: u64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nanos: u32 = digits.parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::new(secs, nanos))
}

/// What [`Host::metadata`] tells about a path (never following a final symlink).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    pub kind: FileKind,
    pub len: u64,
    pub modified: Option<SystemTime>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One entry of [`Host::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub kind: FileKind,
    /// Bytes, for a file (what `stat` says of anything else).
    pub len: u64,
}

/// A new file written as a stream ([`Host::create_stream`]): blocking writes, for a
/// blocking thread.
pub trait FileSink: std::io::Write + Send {
    /// Flushes and syncs the bytes, then puts the file at its path (renamed over from its
    /// temporary name, the directory synced): only now does the file exist. Blocking.
    fn finish(self: Box<Self>) -> HostResult<()>;
}

/// A program to start detached: it must outlive the shell (servers daemonize).
#[derive(Clone, Debug)]
pub struct Spawn {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
}

/// How a detached start ended: the launcher's exit (a daemonizing server forks and exits).
#[derive(Clone, Debug)]
pub struct SpawnOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Asks for an orderly exit (a server persists first).
    Term,
    /// Ends the process now.
    Kill,
}

/// Memory of a host in bytes: (available, total); zeros when unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    pub available: u64,
    pub total: u64,
}

pub type HostResult<T> = std::io::Result<T>;

/// Whether a file that is small by nature may be read whole: a regular file (a FIFO would
/// never end) of at most `cap` bytes.
pub fn small_file(path: &Path, regular: bool, len: u64, cap: u64) -> HostResult<()> {
    if !regular {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("`{}` is not a regular file", path.display()),
        ));
    }
    if len > cap {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "`{}` holds {len} bytes, more than the {cap} such a file may hold",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// The operations Lazarus performs on a node. Methods are async so that a remote host can
/// answer over the network; a local implementation may block briefly (file metadata).
///
/// Every path is one on this host; [`Hosts`] maps a [`NodePath`] to the right host.
#[async_trait::async_trait]
pub trait Host: Send + Sync + fmt::Debug {
    /// A short name for messages (`local`, `ssh://db1`).
    fn name(&self) -> String;

    /// This machine (a local process can be set up before it runs).
    fn is_local(&self) -> bool {
        false
    }

    // --- files ---
    async fn read(&self, path: &Path) -> HostResult<Vec<u8>>;
    /// The whole of a file that is small by nature (a manifest): refused unread when it
    /// holds more than `cap` bytes, so a huge or endless one is never pulled into memory.
    async fn read_small(&self, path: &Path, cap: u64) -> HostResult<Vec<u8>> {
        let meta = self.metadata(path).await?;
        small_file(path, meta.kind == FileKind::File, meta.len, cap)?;
        self.read(path).await
    }
    /// The last `max` bytes (or fewer) of what the file at `path` holds past its first
    /// `after`: what a log got since it was `after` bytes long, its latest lines when that
    /// is more; all of a file now shorter than `after` (replaced or truncated since), in
    /// the same way. A log's lines are read so, never the whole of it: a long-lived
    /// server's log may be large, and a stop or a start reads it every half second.
    async fn read_end(&self, path: &Path, after: u64, max: u64) -> HostResult<Vec<u8>>;
    /// The first `max` bytes (or fewer) of the file at `path`: an RDB's header and aux
    /// fields, read without the rest of it crossing a link.
    async fn read_start(&self, path: &Path, max: u64) -> HostResult<Vec<u8>>;
    /// Replaces `path` atomically with `bytes`, mode 0600: a unique temporary name in the
    /// same directory, fsync of the file, rename, fsync of the directory. A reader sees
    /// the old content or the new one, never a mix, and a crash keeps one of them.
    async fn write_private(&self, path: &Path, bytes: &[u8]) -> HostResult<()>;
    /// Creates `path` and its parents, the last one owner-only (0700): shard data holds
    /// passwords and keys.
    async fn create_private_dir(&self, path: &Path) -> HostResult<()>;
    async fn rename(&self, from: &Path, to: &Path) -> HostResult<()>;
    async fn symlink(&self, target: &Path, link: &Path) -> HostResult<()>;
    /// Entries of a directory, sorted by name.
    async fn list(&self, dir: &Path) -> HostResult<Vec<DirEntry>>;
    async fn metadata(&self, path: &Path) -> HostResult<Metadata>;
    /// Removes a file, a symlink or a whole directory tree; a missing path is no error.
    async fn remove(&self, path: &Path) -> HostResult<()>;
    /// Copies a file or a directory tree; returns the bytes copied.
    async fn copy(&self, from: &Path, to: &Path) -> HostResult<u64>;
    /// A file's bytes as a blocking stream (read it on a blocking thread): a file of any
    /// size, never held whole in memory. A missing file may show only at the first read.
    async fn open_stream(&self, path: &Path) -> HostResult<Box<dyn std::io::Read + Send>>;
    /// A new file at `path`, mode 0600, written as a blocking stream under a temporary
    /// name beside it: only [`FileSink::finish`] puts it at `path`, and one dropped
    /// unfinished leaves nothing there.
    async fn create_stream(&self, path: &Path) -> HostResult<Box<dyn FileSink>>;

    // --- processes ---
    /// Runs a program to its end (no shell) and returns what it printed.
    async fn run(&self, program: &Path, args: &[String]) -> HostResult<SpawnOutput>;
    /// Runs a program that detaches itself (a daemonizing server) and waits for the
    /// launcher to exit.
    async fn spawn_detached(&self, spawn: &Spawn) -> HostResult<SpawnOutput>;
    /// Sends a signal; a process that is gone is no error.
    async fn signal(&self, pid: u32, signal: Signal) -> HostResult<()>;
    /// Alive: a thread of it has not exited (an exited main thread shows as a zombie
    /// while the others finish, still holding the process's files and ports).
    async fn is_alive(&self, pid: u32) -> bool;
    /// Whether `pid` is alive with `dir` as its working directory: a pid proven to be
    /// the process of that directory, not a reused one.
    async fn is_alive_in_dir(&self, pid: u32, dir: &Path) -> bool;
    /// Live processes working in `dir`, whatever their name.
    async fn pids_in_dir(&self, dir: &Path) -> Vec<u32>;
    /// The name of a process's program (`redis-server`), when known.
    async fn process_name(&self, pid: u32) -> Option<String>;

    // --- system ---
    async fn cores(&self) -> usize;
    async fn memory(&self) -> Memory;
    /// Whether `port` can be bound on `addr` right now (a listener on the wildcard
    /// address counts as taken).
    async fn port_free(&self, addr: &str, port: u16) -> bool;
}

/// Which [`Host`] serves each node: this machine, or the node's machine over SSH (one
/// [`SshHost`], so one connection, per distinct target).
#[derive(Clone, Debug)]
pub struct Hosts {
    local: Arc<dyn Host>,
    remote: std::collections::BTreeMap<NodeId, Arc<dyn Host>>,
}

impl Default for Hosts {
    fn default() -> Self {
        Hosts::local()
    }
}

impl Hosts {
    pub fn local() -> Self {
        Hosts {
            local: Arc::new(LocalHost),
            remote: Default::default(),
        }
    }

    /// Hosts for `nodes`: those with an SSH target are reached over SSH, the others are
    /// this machine. Nothing connects until an operation needs it.
    pub fn for_nodes<'a>(
        nodes: impl IntoIterator<Item = (NodeId, Option<&'a SshTarget>)>,
    ) -> std::io::Result<Self> {
        let mut hosts = Hosts::local();
        for (node, target) in nodes {
            let Some(target) = target else { continue };
            hosts.remote.insert(node, shared_ssh(target)?);
        }
        Ok(hosts)
    }

    /// The host that serves `node`.
    pub fn of(&self, node: NodeId) -> Arc<dyn Host> {
        self.remote
            .get(&node)
            .cloned()
            .unwrap_or_else(|| self.local.clone())
    }

    /// Whether `node` is on another machine.
    pub fn is_remote(&self, node: NodeId) -> bool {
        self.remote.contains_key(&node)
    }
}

/// The [`SshHost`] of `target` alive in this process, or a new one: every [`Hosts`] made
/// while another is in use shares its connection (the CCS's save and a command's
/// servers, say). The connection closes when the last user drops it.
fn shared_ssh(target: &SshTarget) -> std::io::Result<Arc<dyn Host>> {
    use std::sync::{Mutex, OnceLock, Weak};
    type Live = Mutex<std::collections::BTreeMap<SshTarget, Weak<SshHost>>>;
    static LIVE: OnceLock<Live> = OnceLock::new();
    let mut live = LIVE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    live.retain(|_, host| host.strong_count() > 0);
    if let Some(host) = live.get(target).and_then(Weak::upgrade) {
        return Ok(host);
    }
    let host = Arc::new(SshHost::new(target.clone())?);
    live.insert(target.clone(), Arc::downgrade(&host));
    Ok(host)
}

/// Whether `e` says the host could not be reached (or not safely: an unknown or changed
/// host key), as opposed to a host that answered and refused: by the error's type (an
/// [`SshError`] inside it, or a network kind), never by its words.
pub fn unreachable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    if e.get_ref().is_some_and(|inner| inner.is::<SshError>()) {
        return true;
    }
    matches!(
        e.kind(),
        K::TimedOut
            | K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::HostUnreachable
            | K::NetworkUnreachable
    )
}

/// Operations in flight at once on each host over SSH (`--max-concurrency`); 0 until set.
static MAX_CONCURRENCY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Bounds the operations in flight on each host reached from now on.
pub fn set_max_concurrency(n: usize) {
    MAX_CONCURRENCY.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
}

/// Operations in flight at once on each other host: `--max-concurrency`, else twice this
/// machine's cores. Each is one `ssh` process here and one session there (sshd allows 10
/// per connection by default, `MaxSessions`), so a wide fan-out waits its turn instead of
/// being refused.
pub fn max_concurrency() -> usize {
    match MAX_CONCURRENCY.load(std::sync::atomic::Ordering::Relaxed) {
        0 => 2 * local::cores().max(1),
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_host_is_told_by_type_not_words() {
        use std::io::{Error, ErrorKind};
        let dropped: Error = SshError::Dropped {
            target: "db1".into(),
            reason: "refused".into(),
        }
        .into();
        assert!(unreachable(&dropped));
        let timed_out: Error = SshError::Unreachable {
            target: "db1".into(),
            reason: "no answer within 30 s".into(),
        }
        .into();
        assert!(unreachable(&timed_out));
        assert!(unreachable(&Error::from(ErrorKind::TimedOut)));
        assert!(unreachable(&Error::from(ErrorKind::HostUnreachable)));
        // Words alone say nothing: a host that answered and refused is no lost host.
        assert!(!unreachable(&Error::other(
            "ssh to `db1` failed: connection refused"
        )));
        assert!(!unreachable(&Error::from(ErrorKind::PermissionDenied)));
    }

    #[test]
    fn find_times_are_read_to_the_nanosecond() {
        let at = |s, n| Some(SystemTime::UNIX_EPOCH + std::time::Duration::new(s, n));
        assert_eq!(
            parse_find_time("1700000000.1234567890"),
            at(1700000000, 123456789)
        );
        assert_eq!(parse_find_time("1700000000.5"), at(1700000000, 500000000));
        assert_eq!(parse_find_time("1700000000"), at(1700000000, 0));
        assert_eq!(parse_find_time("-1.5"), None);
        assert_eq!(parse_find_time("1.5e3"), None);
    }
}
