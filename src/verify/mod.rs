//! Proof of content: the digest of what persistence files hold against the digest of what
//! a running database serves, key by key, with no debug commands.
//!
//! # Layout
//! - [`digest_of_files`]: RDB files (or directories holding them) → one [`ContentDigest`],
//!   files read in parallel. An AOF (an `appendonlydir/` or one file) is replayed into
//!   values ([`crate::persist::digest_of_aof`]); one whose incremental files are empty is
//!   read as its base RDB. A command the replay does not know is refused, naming it.
//! - [`digest_of_server`] (in `server`): SCAN + DUMP + PEXPIRETIME in pipelined batches,
//!   every payload decoded by the same decoder as the files; CLUSTER COUNTKEYSINSLOT for
//!   per-slot counts on a cluster shard.
//! - [`compare`]: two digests settled at one instant (keys that expired in between counted
//!   apart), the slots that differ, and — given detailed digests of those slots — the
//!   first keys that differ ([`differences`]).
//!
//! Digests are sums per hash slot, so the union of a database's shards can be compared
//! whatever the shard count on either side.

mod scan;
mod server;

use crate::server::shard_dir;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

pub use server::{digest_of_server, ServerDigest};

use crate::backup::{PlainRead, ShardEntry, StoredFile};
use crate::persist::{
    digest_of_aof, digest_of_rdb, digest_of_rdb_stream, AofContentError, ContentDigest,
    DigestOptions, KeyState, RdbReadError, SettledDigest,
};

/// Differing keys named in a report.
pub const DIFFERENCES_SHOWN: usize = 100;

#[derive(Debug, Error)]
pub enum VerifyError {
    #[error("`{path}`: {reason}")]
    File { path: PathBuf, reason: String },
    /// An AOF command the replay does not model: the content is not digested.
    #[error("{0}: its content digest is not computed (use `verify counts`)")]
    AofNotReplayed(String),
    #[error("`{0}` holds no RDB file and no appendonlydir")]
    NoFiles(PathBuf),
    /// A shard that did not answer as asked: `addr` is `host:port`, `shard` its id when
    /// the caller named it ([`VerifyError::naming`]).
    #[error("{}: {reason}", who(*.shard, .addr))]
    Server {
        shard: Option<u64>,
        addr: String,
        reason: String,
    },
    #[error("{}: key `{key}`: {reason}", who(*.shard, .addr))]
    Key {
        shard: Option<u64>,
        addr: String,
        key: String,
        reason: String,
    },
}

/// `redis:3 (127.0.0.1:30002)`, or the address alone when the shard is not known.
fn who(shard: Option<u64>, addr: &str) -> String {
    match shard {
        Some(id) => format!("redis:{id} ({addr})"),
        None => format!("`{addr}`"),
    }
}

impl VerifyError {
    /// A shard's failure, said once with its address: the server layer's messages
    /// start with the address already (`` `host:port`: ``), which is taken off.
    pub(crate) fn server(addr: &crate::server::ShardAddr, reason: impl std::fmt::Display) -> Self {
        let addr = addr.to_string();
        let reason = reason.to_string();
        let reason = reason
            .strip_prefix(&format!("`{addr}`: "))
            .map(str::to_string)
            .unwrap_or(reason);
        VerifyError::Server {
            shard: None,
            addr,
            reason,
        }
    }

    /// The error naming its shard (`redis:N`) among `shards`, found by its address.
    /// The server answered `CLUSTERDOWN`: its Redis Cluster is down for now (a failover
    /// under way), not the data wrong.
    pub fn is_cluster_down(&self) -> bool {
        matches!(self, VerifyError::Server { reason, .. } | VerifyError::Key { reason, .. }
            if reason.contains("CLUSTERDOWN"))
    }

    pub fn naming(mut self, shards: &[(u64, crate::server::ShardAddr)]) -> Self {
        if let VerifyError::Server { shard, addr, .. } | VerifyError::Key { shard, addr, .. } =
            &mut self
        {
            if let Some((id, _)) = shards.iter().find(|(_, a)| a.to_string() == *addr) {
                *shard = Some(*id);
            }
        }
        self
    }
}

/// The RDB files a path stands for: a file itself; in a directory, for each directory
/// holding data (itself and below, three levels down), the base RDB of its
/// `appendonlydir/` when that AOF has no commands after it, else its `dump.rdb`, else
/// every `*.rdb` in it (a backup run's `shard-<id>.rdb` files).
pub fn data_files(path: &Path) -> Result<Vec<PathBuf>, VerifyError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(VerifyError::File {
            path: path.to_path_buf(),
            reason: "no such file or directory".into(),
        });
    }
    let mut out = Vec::new();
    collect(path, 0, &mut out)?;
    if out.is_empty() {
        return Err(VerifyError::NoFiles(path.to_path_buf()));
    }
    out.sort();
    Ok(out)
}

/// The file a recovery source stands for: an RDB or an AOF file itself; the base RDB of
/// an `appendonlydir/` whose incremental files are empty, else the directory (its
/// commands are replayed).
pub fn source_file(path: &Path) -> Result<PathBuf, VerifyError> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let io = |e: std::io::Error| VerifyError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut base = None;
    let mut commands = false;
    for e in std::fs::read_dir(path).map_err(io)? {
        let p = e.map_err(io)?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".base.rdb") {
            base = Some(p.clone());
        } else if name.ends_with(".aof") && p.metadata().map(|m| m.len()).unwrap_or(0) > 0 {
            commands = true;
        }
    }
    match (base, commands) {
        (Some(b), false) => Ok(b),
        _ => Ok(path.to_path_buf()),
    }
}

fn collect(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) -> Result<(), VerifyError> {
    let io = |e: std::io::Error| VerifyError::File {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    };
    let aof = dir.join(shard_dir::AOF_DIR);
    if aof.is_dir() {
        out.push(source_file(&aof)?);
        return Ok(());
    }
    if dir.join(shard_dir::RDB_FILE).is_file() {
        out.push(dir.join(shard_dir::RDB_FILE));
        return Ok(());
    }
    // A backup run (`shard-<id>.rdb` beside its manifest), or any directory of RDBs.
    let mut rdbs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "rdb"))
        .collect();
    if !rdbs.is_empty() {
        rdbs.sort();
        out.extend(rdbs);
        return Ok(());
    }
    if depth >= 3 {
        return Ok(());
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    for d in subdirs {
        collect(&d, depth + 1, out)?;
    }
    Ok(())
}

/// Whether `path` is an RDB file (by its first bytes); an AOF file or directory is not,
/// nor a legacy `*.aof` whose RDB preamble commands follow.
fn is_rdb(path: &Path) -> bool {
    let mut head = [0u8; 6];
    path.is_file()
        && path.extension().is_none_or(|e| e != "aof")
        && std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .is_ok()
        && (head.starts_with(b"REDIS") || head.starts_with(b"VALKEY"))
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What a digest is taken of: a file (or an AOF directory) on this machine, an RDB file on
/// another host (streamed through its [`crate::host::Host`] to this reader), or a backup
/// run's stored file, read back through its compression and encryption from wherever
/// its repository is and checked against the run's manifest as it is read.
#[derive(Clone, Debug)]
pub enum DataSource {
    Path(PathBuf),
    /// An RDB file on a node of another host; `runtime` opens its stream (the digest runs
    /// on threads of its own).
    Remote {
        host: std::sync::Arc<dyn crate::host::Host>,
        path: PathBuf,
        runtime: tokio::runtime::Handle,
    },
    Stored {
        file: StoredFile,
        entry: Box<ShardEntry>,
        /// The age identity file an encrypted run needs.
        identity: Option<PathBuf>,
    },
}

impl std::fmt::Display for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSource::Path(p) => write!(f, "{}", p.display()),
            DataSource::Remote { host, path, .. } => {
                write!(f, "{} on {}", path.display(), host.name())
            }
            DataSource::Stored { file, .. } => write!(f, "{file}"),
        }
    }
}

impl DataSource {
    fn digest(&self, now: i64, opts: &DigestOptions) -> Result<ContentDigest, VerifyError> {
        let (file, entry, identity) = match self {
            DataSource::Path(p) => return digest_of_path(p, now, opts),
            DataSource::Remote {
                host,
                path,
                runtime,
            } => return digest_of_remote(&**host, path, runtime, now, opts),
            DataSource::Stored {
                file,
                entry,
                identity,
            } => (file, entry, identity),
        };
        let fail = |reason: String| VerifyError::File {
            path: PathBuf::from(file.to_string()),
            reason,
        };
        let mut plain = PlainRead::open(file, entry, identity.as_deref()).map_err(fail)?;
        let len = plain.plain_len();
        let digest = digest_of_rdb_stream(&mut plain, Some(len), now, opts);
        // A file that differs from its manifest is named as such, before what the reader
        // made of it.
        plain.finish().map_err(fail)?;
        digest.map_err(|e| {
            fail(match e {
                RdbReadError::Io(s) => s,
                RdbReadError::Format(d) => d.to_string(),
            })
        })
    }
}

/// The digest of a file on another host: an RDB's bytes streamed through the host (`cat`
/// there) into the same reader, never stored here; an AOF directory (a manifest and its
/// parts, read as a whole) streamed into a private directory here, digested, removed.
/// Blocking.
fn digest_of_remote(
    host: &dyn crate::host::Host,
    path: &Path,
    runtime: &tokio::runtime::Handle,
    now: i64,
    opts: &DigestOptions,
) -> Result<ContentDigest, VerifyError> {
    let fail = |reason: String| VerifyError::File {
        path: path.to_path_buf(),
        reason: format!("{reason} (on {})", host.name()),
    };
    let meta = runtime
        .block_on(host.metadata(path))
        .map_err(|e| fail(e.to_string()))?;
    let is_dir = meta.kind == crate::host::FileKind::Dir;
    if is_dir || path.extension().is_some_and(|e| e == "aof") {
        return digest_fetched(host, path, is_dir, runtime, now, opts).map_err(fail);
    }
    let len = meta.len;
    let stream = runtime
        .block_on(host.open_stream(path))
        .map_err(|e| fail(e.to_string()))?;
    let reader = std::io::BufReader::with_capacity(1 << 20, stream);
    digest_of_rdb_stream(reader, Some(len), now, opts).map_err(|e| {
        fail(match e {
            RdbReadError::Io(s) => s,
            RdbReadError::Format(d) => d.to_string(),
        })
    })
}

/// [`digest_of_remote`] of an AOF (a directory, or one file): fetched into a private
/// directory of this machine (0700, removed after), then read as a local one.
fn digest_fetched(
    host: &dyn crate::host::Host,
    dir: &Path,
    is_dir: bool,
    runtime: &tokio::runtime::Handle,
    now: i64,
    opts: &DigestOptions,
) -> Result<ContentDigest, String> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let scratch = std::env::temp_dir().join(format!("lazarus-digest-{}-{n}", std::process::id()));
    let name = dir.file_name().unwrap_or_default();
    let local = scratch.join(name);
    let fetch = || -> Result<(), String> {
        let (into, from, names) = if is_dir {
            crate::host::local::create_private_dir(&local).map_err(|e| e.to_string())?;
            let entries = runtime
                .block_on(host.list(dir))
                .map_err(|e| e.to_string())?;
            let files = entries
                .into_iter()
                .filter(|e| e.kind == crate::host::FileKind::File)
                .map(|e| e.name)
                .collect::<Vec<_>>();
            (local.clone(), dir.to_path_buf(), files)
        } else {
            crate::host::local::create_private_dir(&scratch).map_err(|e| e.to_string())?;
            let parent = dir.parent().unwrap_or(Path::new("/")).to_path_buf();
            (
                scratch.clone(),
                parent,
                vec![name.to_string_lossy().into_owned()],
            )
        };
        for e in &names {
            let mut stream = runtime
                .block_on(host.open_stream(&from.join(e)))
                .map_err(|err| format!("`{e}`: {err}"))?;
            let to = into.join(e);
            let mut out =
                std::fs::File::create(&to).map_err(|err| format!("`{}`: {err}", to.display()))?;
            std::io::copy(&mut stream, &mut out).map_err(|err| format!("`{e}`: {err}"))?;
        }
        Ok(())
    };
    let res = fetch().and_then(|()| {
        digest_of_path(&local, now, opts).map_err(|e| match e {
            VerifyError::File { reason, .. } => reason,
            e => e.to_string(),
        })
    });
    let _ = std::fs::remove_dir_all(&scratch);
    res
}

fn digest_of_path(p: &Path, now: i64, opts: &DigestOptions) -> Result<ContentDigest, VerifyError> {
    if !is_rdb(p) {
        return digest_of_aof(p, now, opts).map_err(|e| match e {
            AofContentError::NotReplayed { .. } => VerifyError::AofNotReplayed(e.to_string()),
            e => VerifyError::File {
                path: p.to_path_buf(),
                reason: e.to_string(),
            },
        });
    }
    digest_of_rdb(p, now, opts).map_err(|e| VerifyError::File {
        path: p.to_path_buf(),
        reason: match e {
            RdbReadError::Io(s) => s,
            RdbReadError::Format(d) => d.to_string(),
        },
    })
}

/// Hashes what it hands on.
struct Sha256Read<R> {
    inner: R,
    sha: sha2::Sha256,
}

impl<R: std::io::Read> std::io::Read for Sha256Read<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.sha, &buf[..n]);
        Ok(n)
    }
}

/// An RDB file's sha256 (hex), and its digest when `digest` asks for one, in one pass
/// over its bytes: a restore checks a file it staged by hard link, unread, while the
/// server loads it. The sha256 covers every byte, whatever the reader made of them: a
/// damaged file is told by its sha256 before any reader error.
pub fn sha256_and_digest(
    path: &Path,
    digest: Option<&DigestOptions>,
) -> Result<(String, Option<Result<ContentDigest, VerifyError>>), VerifyError> {
    let io = |e: std::io::Error| VerifyError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let f = crate::persist::open_regular(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut r = Sha256Read {
        inner: std::io::BufReader::with_capacity(1 << 20, f),
        sha: <sha2::Sha256 as sha2::Digest>::new(),
    };
    let d = digest.map(|opts| {
        digest_of_rdb_stream(&mut r, Some(len), now_ms(), opts).map_err(|e| VerifyError::File {
            path: path.to_path_buf(),
            reason: match e {
                RdbReadError::Io(s) => s,
                RdbReadError::Format(d) => d.to_string(),
            },
        })
    });
    // The reader stops at the RDB's end (or at damage): the rest is hashed too.
    std::io::copy(&mut r, &mut std::io::sink()).map_err(io)?;
    Ok((crate::backup::hex(&sha2::Digest::finalize(r.sha)), d))
}

/// The digest of several RDB files together (a database's shards), read in parallel.
pub fn digest_of_files(
    files: &[PathBuf],
    opts: &DigestOptions,
) -> Result<ContentDigest, VerifyError> {
    let sources: Vec<DataSource> = files.iter().cloned().map(DataSource::Path).collect();
    digest_of_sources(&sources, opts)
}

/// The digest of several sources together (a database's shards), read in parallel.
pub fn digest_of_sources(
    files: &[DataSource],
    opts: &DigestOptions,
) -> Result<ContentDigest, VerifyError> {
    let now = now_ms();
    let one = |p: &DataSource| p.digest(now, opts);
    // The cores this thread may use: one when it already shares them (a digest taken
    // while the servers load).
    let workers = crate::persist::cores_free().min(files.len());
    let results: Vec<Result<ContentDigest, VerifyError>> = if workers <= 1 {
        files.iter().map(one).collect()
    } else {
        let chunks: Vec<&[DataSource]> = files.chunks(files.len().div_ceil(workers)).collect();
        // Whoever stops this thread's reading stops its workers' too.
        let stop = crate::persist::reading_stop();
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|c| {
                    let stop = stop.clone();
                    s.spawn(|| {
                        // Every core already reads a file: no file in parts (nor a
                        // read-ahead thread) on top.
                        crate::persist::one_core_on_this_thread();
                        crate::persist::reading_stops_when(stop, || {
                            c.iter().map(one).collect::<Vec<_>>()
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    };
    let mut total = ContentDigest::new(now);
    for r in results {
        total.merge(r?);
    }
    Ok(total)
}

/// How a key differs between the files and the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Difference {
    /// In the files, not on the server.
    Missing,
    /// On the server, not in the files.
    Extra,
    DifferentValue,
    DifferentTtl,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Difference::Missing => "missing",
            Difference::Extra => "extra",
            Difference::DifferentValue => "different value",
            Difference::DifferentTtl => "different TTL",
        })
    }
}

/// One differing key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyDifference {
    pub db: u32,
    /// The key, bytes outside printable ASCII as `\xNN`.
    pub key: String,
    pub difference: Difference,
    /// What the files and the server hold: type and expiry, when it tells them apart.
    pub detail: String,
}

/// A per-slot key count that disagrees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SlotCountMismatch {
    pub slot: u16,
    pub files: u64,
    pub server: u64,
}

/// The verdict of one comparison.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Comparison {
    pub equal: bool,
    pub files: SettledDigest,
    pub server: SettledDigest,
    /// Keys the files hold that expired before the check: not a mismatch.
    pub expired: u64,
    pub differing_slots: Vec<u16>,
    pub slot_count_mismatches: Vec<SlotCountMismatch>,
    pub differences: Vec<KeyDifference>,
}

/// Compares the files' digest with the server's, settled at the later of the two
/// instants; `slot_counts` (CLUSTER COUNTKEYSINSLOT) are checked against the files'.
pub fn compare(
    files: &ContentDigest,
    server: &ContentDigest,
    slot_counts: Option<&[u64]>,
) -> Comparison {
    let at = files.taken_at_ms.max(server.taken_at_ms);
    let f = files.settle(at);
    let s = server.settle(at);
    let differing_slots: Vec<u16> = (0..f.slots.len())
        .filter(|&i| f.slots[i] != s.slots[i])
        .map(|i| i as u16)
        .collect();
    let mut slot_count_mismatches = Vec::new();
    if let Some(counts) = slot_counts {
        // A server may still hold keys that expired but were not yet reclaimed.
        let mut expired_in = vec![0u64; f.slots.len()];
        for e in files.expiring.iter().filter(|e| e.expire_ms <= at) {
            expired_in[usize::from(e.slot)] += 1;
        }
        for (i, &n) in counts.iter().enumerate().take(f.slots.len()) {
            let live = f.slots[i].keys;
            if n < live || n > live + expired_in[i] {
                slot_count_mismatches.push(SlotCountMismatch {
                    slot: i as u16,
                    files: live,
                    server: n,
                });
            }
        }
    }
    Comparison {
        equal: f.digest == s.digest
            && differing_slots.is_empty()
            && slot_count_mismatches.is_empty(),
        expired: f.expired,
        files: f,
        server: s,
        differing_slots,
        slot_count_mismatches,
        differences: Vec::new(),
    }
}

impl Comparison {
    /// One line: `content verified: N keys, digest <hex>`, or what differs and the first
    /// keys that do.
    pub fn verdict(&self) -> String {
        let expired = match self.expired {
            0 => String::new(),
            n => format!(" ({n} expired since the files were written, counted apart)"),
        };
        if self.equal {
            return format!(
                "content verified: {} keys, digest {}{expired}",
                self.server.keys,
                self.server.hex()
            );
        }
        let first: Vec<String> = self
            .differences
            .iter()
            .take(5)
            .map(|d| format!("`{}` ({})", d.key, d.difference))
            .collect();
        format!(
            "content differs: files {} keys digest {}, server {} keys digest {}{}{expired}",
            self.files.keys,
            self.files.hex(),
            self.server.keys,
            self.server.hex(),
            if first.is_empty() {
                String::new()
            } else {
                format!("; first differing keys: {}", first.join(", "))
            }
        )
    }
}

/// The slots a detailed second pass must look at: those whose sums differ.
pub fn slots_to_detail(c: &Comparison) -> BTreeSet<u16> {
    c.differing_slots
        .iter()
        .copied()
        .chain(c.slot_count_mismatches.iter().map(|m| m.slot))
        .collect()
}

fn printable(key: &[u8]) -> String {
    let mut s = String::with_capacity(key.len());
    for &b in key {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

fn describe(k: &KeyState) -> String {
    match k.expire_ms {
        Some(e) => format!("{} expiring at {e} ms", k.kind),
        None => format!("{} without TTL", k.kind),
    }
}

/// The first `limit` keys that differ between two detailed digests, in key order; keys
/// that expired by `at_ms` on either side are not differences.
pub fn differences(
    files: &ContentDigest,
    server: &ContentDigest,
    limit: usize,
) -> Vec<KeyDifference> {
    let at = files.taken_at_ms.max(server.taken_at_ms);
    let live = |k: &KeyState| k.expire_ms.is_none_or(|e| e > at);
    let mut out = Vec::new();
    let mut a = files.detail.iter().filter(|(_, k)| live(k)).peekable();
    let mut b = server.detail.iter().filter(|(_, k)| live(k)).peekable();
    while out.len() < limit {
        let order = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
        };
        let found = match order {
            Ordering::Less => a.next().map(|(k, x)| (k, Difference::Missing, describe(x))),
            Ordering::Greater => b.next().map(|(k, y)| (k, Difference::Extra, describe(y))),
            Ordering::Equal => match (a.next(), b.next()) {
                (Some((k, x)), Some((_, y))) if x.kind != y.kind => Some((
                    k,
                    Difference::DifferentValue,
                    format!("files: {}, server: {}", x.kind, y.kind),
                )),
                (Some((k, x)), Some((_, y))) if x.value != y.value => Some((
                    k,
                    Difference::DifferentValue,
                    format!("a {} whose content differs", x.kind),
                )),
                (Some((k, x)), Some((_, y))) if x.expire_ms != y.expire_ms => Some((
                    k,
                    Difference::DifferentTtl,
                    format!("files: {}, server: {}", describe(x), describe(y)),
                )),
                _ => None,
            },
        };
        if let Some((key, difference, detail)) = found {
            out.push(KeyDifference {
                db: key.0,
                key: printable(&key.1),
                difference,
                detail,
            });
        }
    }
    out
}

/// Proves a running database holds what `files` hold: the digest of the files against
/// the digest of every master in `masters` (any shard counts on either side), then, when
/// they differ, a second pass over the differing slots naming the first keys that differ.
pub async fn verify_content(
    files: &[PathBuf],
    masters: &[crate::server::ShardAddr],
    base: &DigestOptions,
    timeout: std::time::Duration,
) -> Result<Comparison, VerifyError> {
    let sources: Vec<DataSource> = files.iter().cloned().map(DataSource::Path).collect();
    verify_sources(&sources, masters, base, timeout).await
}

/// As [`verify_content`], of any [`DataSource`]s (a backup run's stored files).
pub async fn verify_sources(
    sources: &[DataSource],
    masters: &[crate::server::ShardAddr],
    base: &DigestOptions,
    timeout: std::time::Duration,
) -> Result<Comparison, VerifyError> {
    let (file_digest, server) = both_digests(sources, masters, base, timeout).await?;
    finish_proof(sources, masters, base, timeout, file_digest, server).await
}

/// As [`verify_sources`], with the sources' digest already taken (a restore digests its
/// staged files while the servers load them).
pub async fn verify_sources_against(
    sources: &[DataSource],
    file_digest: ContentDigest,
    masters: &[crate::server::ShardAddr],
    base: &DigestOptions,
    timeout: std::time::Duration,
) -> Result<Comparison, VerifyError> {
    let server = digest_of_masters(masters, base, timeout).await?;
    finish_proof(sources, masters, base, timeout, file_digest, server).await
}

async fn finish_proof(
    files: &[DataSource],
    masters: &[crate::server::ShardAddr],
    base: &DigestOptions,
    timeout: std::time::Duration,
    file_digest: ContentDigest,
    server: ServerDigest,
) -> Result<Comparison, VerifyError> {
    let mut c = compare(&file_digest, &server.digest, server.slot_counts.as_deref());
    if c.equal {
        return Ok(c);
    }
    let opts = DigestOptions {
        detail_slots: slots_to_detail(&c),
        ..base.clone()
    };
    let (mut file_detail, server_detail) = both_digests(files, masters, &opts, timeout).await?;
    // Judge expiries at the first pass's instant, as the sums were.
    file_detail.taken_at_ms = file_digest.taken_at_ms.max(server.digest.taken_at_ms);
    c.differences = differences(&file_detail, &server_detail.digest, DIFFERENCES_SHOWN);
    Ok(c)
}

/// The files' digest and the servers', the files read on a blocking thread while the
/// servers are scanned.
async fn both_digests(
    files: &[DataSource],
    masters: &[crate::server::ShardAddr],
    opts: &DigestOptions,
    timeout: std::time::Duration,
) -> Result<(ContentDigest, ServerDigest), VerifyError> {
    let owned = files.to_vec();
    let o = opts.clone();
    let from_files = tokio::task::spawn_blocking(move || digest_of_sources(&owned, &o));
    let (f, s) = tokio::join!(from_files, digest_of_masters(masters, opts, timeout));
    let f = f.map_err(|e| VerifyError::Server {
        shard: None,
        addr: "digest".into(),
        reason: e.to_string(),
    })??;
    Ok((f, s?))
}

/// The digest of several masters together (a database's shards).
pub async fn digest_of_masters(
    masters: &[crate::server::ShardAddr],
    opts: &DigestOptions,
    timeout: std::time::Duration,
) -> Result<ServerDigest, VerifyError> {
    let runs = masters.iter().map(|m| digest_of_server(m, opts, timeout));
    let mut total: Option<ServerDigest> = None;
    for d in futures_join_all(runs).await {
        let d = d?;
        match total.as_mut() {
            Some(t) => t.merge(d),
            None => total = Some(d),
        }
    }
    Ok(total.unwrap_or_else(|| ServerDigest {
        digest: ContentDigest::new(now_ms()),
        slot_counts: None,
        scanned: 0,
    }))
}

/// Runs futures at once on this task (no extra crate for `join_all`).
async fn futures_join_all<F: Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_digest_ends_with_its_reading_on_every_worker() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for i in 0..3 {
            let p = dir.path().join(format!("dump-{i}.rdb"));
            let mut bytes = b"REDIS0011".to_vec();
            bytes.resize(3 << 20, 0);
            std::fs::write(&p, bytes).unwrap();
            files.push(DataSource::Path(p));
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let opts = crate::persist::DigestOptions::unserved();
        let got =
            crate::persist::reading_stops_when(Some(stop), || digest_of_sources(&files, &opts));
        let e = got.expect_err("stopped before the first byte");
        assert!(e.to_string().contains("stopped"), "{e}");
    }

    #[test]
    fn data_files_finds_shard_dirs_backup_runs_and_aof_bases() {
        let t = tempfile::tempdir().unwrap();
        let rdb = b"REDIS0010\xff";
        // A database's shard directories: one RDB, one AOF with an empty incr file.
        let s1 = t.path().join("db-1/shard-2");
        std::fs::create_dir_all(&s1).unwrap();
        std::fs::write(s1.join("dump.rdb"), rdb).unwrap();
        let aof = t.path().join("db-1/shard-3/appendonlydir");
        std::fs::create_dir_all(&aof).unwrap();
        std::fs::write(aof.join("appendonly.aof.1.base.rdb"), rdb).unwrap();
        std::fs::write(aof.join("appendonly.aof.1.incr.aof"), b"").unwrap();
        let found = data_files(&t.path().join("db-1")).unwrap();
        assert_eq!(
            found,
            vec![s1.join("dump.rdb"), aof.join("appendonly.aof.1.base.rdb")]
        );
        // With commands after the base, the directory is replayed.
        std::fs::write(
            aof.join("appendonly.aof.1.incr.aof"),
            b"*1\r\n$4\r\nPING\r\n",
        )
        .unwrap();
        assert_eq!(
            data_files(&t.path().join("db-1")).unwrap(),
            vec![s1.join("dump.rdb"), aof.clone()]
        );
        // A backup run.
        let run = t.path().join("run-1");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("manifest.json"), b"{}").unwrap();
        for s in ["shard-4.rdb", "shard-3.rdb"] {
            std::fs::write(run.join(s), rdb).unwrap();
        }
        assert_eq!(
            data_files(&run).unwrap(),
            vec![run.join("shard-3.rdb"), run.join("shard-4.rdb")]
        );
        assert!(matches!(
            data_files(&t.path().join("nothing")),
            Err(VerifyError::File { .. })
        ));
        let incr = aof.join("appendonly.aof.1.incr.aof");
        assert_eq!(source_file(&incr).unwrap(), incr);
    }
}
