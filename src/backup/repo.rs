//! A repository: where backup runs live, one layout whatever holds it.
//!
//! ```text
//! <repository>/<run id>/shard-<id>.rdb      one per master shard, renamed into place when whole
//! <repository>/<run id>/.shard-<id>.rdb.partial   while it streams
//! <repository>/<run id>/manifest.json       written last: the run is a restore point
//! ```
//!
//! Kinds: a local directory; `ssh://[user@]host[:port]/dir` (see [`super::remote`]), a
//! directory on another machine through the host seam, its files streamed to a
//! temporary name there and renamed when whole; and `s3://bucket/prefix` (see
//! [`super::s3`]): in object storage a file is a multipart upload that exists only once
//! completed, so there is no `.partial` name.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::codec::{Compression, Encoder, Recipients, StoredDigest};
use super::manifest::{Manifest, ManifestError, MANIFEST_FILE};
use super::remote::{RemoteRepo, RunsError};
use super::s3::{S3Repo, S3Writer};
use crate::host::FileSink;

/// A repository of backup runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repository {
    Local { root: PathBuf },
    Ssh(RemoteRepo),
    S3(S3Repo),
}

/// A run's files while it is written. Dropping it without [`RunDir::seal`] removes it.
#[derive(Debug)]
pub struct RunDir {
    repo: Repository,
    run: String,
    sealed: bool,
}

/// Where a run's file goes: a local temporary file, a stream to another host, or an
/// object storage upload.
enum Sink {
    Local(io::BufWriter<File>),
    Host(Box<dyn FileSink>),
    S3(S3Writer),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Local(f) => f.write(buf),
            Sink::Host(f) => f.write(buf),
            Sink::S3(u) => u.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Local(f) => f.flush(),
            Sink::Host(f) => f.flush(),
            Sink::S3(u) => u.flush(),
        }
    }
}

/// One file of a run while it is written (under a temporary name when local).
pub struct PartFile {
    tmp: Option<PathBuf>,
    path: PathBuf,
    file: Encoder<Sink>,
}

/// A run's file where it is stored: a path, or an object.
#[derive(Clone, Debug)]
pub struct StoredFile {
    repo: Repository,
    run: String,
    name: String,
}

impl fmt::Display for StoredFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repo {
            Repository::Local { root } => {
                write!(f, "{}", root.join(&self.run).join(&self.name).display())
            }
            Repository::Ssh(r) => f.write_str(&r.shown(&self.run, &self.name)),
            Repository::S3(s) => f.write_str(&s.shown(&self.run, &self.name)),
        }
    }
}

impl StoredFile {
    /// The file's path when it is on this machine.
    pub fn local_path(&self) -> Option<PathBuf> {
        match &self.repo {
            Repository::Local { root } => Some(root.join(&self.run).join(&self.name)),
            Repository::Ssh(_) | Repository::S3(_) => None,
        }
    }

    /// The stored bytes as a stream. Blocking.
    pub fn open(&self) -> Result<Box<dyn Read + Send>, String> {
        match &self.repo {
            Repository::Local { .. } => {
                let path = self.local_path().expect("a local file has a path");
                let f =
                    crate::persist::open_regular(&path).map_err(|e| format!("`{self}`: {e}"))?;
                Ok(Box::new(io::BufReader::with_capacity(1 << 20, f)))
            }
            Repository::Ssh(r) => Ok(Box::new(io::BufReader::with_capacity(
                1 << 20,
                r.open_file(&self.run, &self.name)?,
            ))),
            Repository::S3(s) => Ok(Box::new(s.open_file(&self.run, &self.name)?)),
        }
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repository::Local { root } => write!(f, "{}", root.display()),
            Repository::Ssh(r) => f.write_str(r.url()),
            Repository::S3(s) => f.write_str(s.url()),
        }
    }
}

/// Whether a `path` value names a repository URL rather than a local directory.
pub fn is_url(location: &Path) -> bool {
    let s = location.to_string_lossy();
    s.starts_with("s3://") || s.starts_with("ssh://")
}

impl Repository {
    pub fn local(root: impl Into<PathBuf>) -> Repository {
        Repository::Local { root: root.into() }
    }

    /// The repository a task's or run's `path` names: `ssh://[user@]host[:port]/dir`,
    /// `s3://bucket/prefix` or a local directory. Nothing is reached yet.
    pub fn open(location: &Path) -> Result<Repository, String> {
        let s = location.to_string_lossy();
        if s.starts_with("s3://") {
            return Ok(Repository::S3(S3Repo::open(&s)?));
        }
        if s.starts_with("ssh://") {
            return Ok(Repository::Ssh(RemoteRepo::open(&s)?));
        }
        Ok(Repository::local(location))
    }

    /// Why the repository is not there, naming it, whichever kind it is: a local or
    /// `ssh://` directory that does not exist (there), an `s3://` prefix holding nothing
    /// at all. `None`: it is there (or it could not be asked: the caller's own error
    /// says so). Blocking; a round trip for a remote repository.
    pub fn missing(&self) -> Option<String> {
        match self {
            Repository::Local { root } => matches!(root.try_exists(), Ok(false)).then(|| {
                format!(
                    "the repository `{}` does not exist (moved or unmounted?)",
                    root.display()
                )
            }),
            Repository::Ssh(r) => matches!(r.is_missing(), Ok(true)).then(|| {
                format!(
                    "the repository `{}` does not exist: no such directory on its host (moved or unmounted?)",
                    r.url()
                )
            }),
            Repository::S3(s) => matches!(s.is_empty(), Ok(true)).then(|| {
                format!(
                    "the repository `{}` holds no objects (a wrong bucket or prefix, or emptied?)",
                    s.url()
                )
            }),
        }
    }

    /// The repository a run directory's name would be, were it one (a repository nested
    /// in this one).
    pub fn child(&self, name: &str) -> Result<Repository, String> {
        Ok(match self {
            Repository::Local { root } => Repository::local(root.join(name)),
            Repository::Ssh(r) => Repository::Ssh(r.child(name)),
            Repository::S3(s) => Repository::S3(S3Repo::open(&format!("{}/{name}", s.url()))?),
        })
    }

    /// When `entry` (a directory of this repository with no manifest of its own) is a
    /// repository itself: how many entries it holds, one of them a run (a manifest,
    /// valid or not).
    pub fn nested(&self, entry: &str) -> Option<usize> {
        let child = self.child(entry).ok()?;
        let runs = child.runs().ok()?;
        runs.iter()
            .any(|r| !matches!(child.manifest(r), Err(ManifestError::Missing(_))))
            .then_some(runs.len())
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Repository::Local { .. })
    }

    /// A run's location as shown.
    pub fn run_shown(&self, run: &str) -> String {
        match self {
            Repository::Local { root } => root.join(run).display().to_string(),
            Repository::Ssh(r) => format!("{}/{run}", r.url()),
            Repository::S3(s) => format!("{}/{run}", s.url()),
        }
    }

    /// A file of a run.
    pub fn file(&self, run: &str, name: &str) -> StoredFile {
        StoredFile {
            repo: self.clone(),
            run: run.to_string(),
            name: name.to_string(),
        }
    }

    /// Makes the directory if needed and proves it writable (a file created, synced and
    /// removed). Returns the repository's clock minus this machine's in milliseconds
    /// (0 for a local directory).
    pub fn prepare(&self) -> Result<i64, String> {
        let root = match self {
            Repository::Local { root } => root,
            Repository::Ssh(r) => return r.prepare(),
            Repository::S3(s) => return s.prepare(),
        };
        fs::create_dir_all(root).map_err(|e| format!("cannot create `{}`: {e}", root.display()))?;
        let probe = root.join(format!(".lazarus-probe.{}", std::process::id()));
        let res = File::create(&probe).and_then(|mut f| {
            f.write_all(b"probe")?;
            f.sync_all()
        });
        let _ = fs::remove_file(&probe);
        res.map_err(|e| format!("`{}` is not writable: {e}", root.display()))?;
        Ok(0)
    }

    /// The repository's clock minus this machine's in milliseconds (0 for a local
    /// directory), read without writing anything: restoring needs only read access.
    pub fn clock_skew(&self) -> Result<i64, String> {
        match self {
            Repository::Local { .. } => Ok(0),
            Repository::Ssh(r) => r.clock_skew(),
            Repository::S3(s) => s.clock_skew(),
        }
    }

    /// Starts a run's directory for the cluster `cluster_id`; it must not exist yet (in
    /// object storage, where two clusters may share a prefix and nothing is created
    /// atomically by listing, the run id is claimed: [`S3Repo::claim`]).
    pub fn begin(&self, run: &str, cluster_id: u64) -> Result<RunDir, String> {
        match self {
            Repository::Local { root } => {
                let dir = root.join(run);
                // The run holds the database's data: owner only.
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
            }
            Repository::Ssh(r) => r.begin(run)?,
            Repository::S3(s) => s.claim(run, cluster_id)?,
        }
        Ok(RunDir {
            repo: self.clone(),
            run: run.to_string(),
            sealed: false,
        })
    }

    /// The run's manifest, checked (complete, self-checksum matches).
    pub fn manifest(&self, run: &str) -> Result<Manifest, ManifestError> {
        match self {
            Repository::Local { root } => Manifest::read(&root.join(run).join(MANIFEST_FILE)),
            Repository::Ssh(_) | Repository::S3(_) => {
                let shown = self.file(run, MANIFEST_FILE).to_string();
                let got = match self {
                    Repository::Ssh(r) => r.get_small(run, MANIFEST_FILE),
                    Repository::S3(s) => s.get_small(run, MANIFEST_FILE),
                    Repository::Local { .. } => unreachable!("handled above"),
                };
                match got {
                    Ok(Some(bytes)) => Manifest::parse(&bytes, shown),
                    Ok(None) => Err(ManifestError::Missing(shown)),
                    Err(reason) => Err(ManifestError::Unreadable {
                        path: shown,
                        reason,
                    }),
                }
            }
        }
    }

    /// The files of a run and their sizes.
    pub fn objects(&self, run: &str) -> Result<BTreeMap<String, u64>, String> {
        match self {
            Repository::Local { root } => {
                let dir = root.join(run);
                let entries =
                    fs::read_dir(&dir).map_err(|e| format!("`{}`: {e}", dir.display()))?;
                Ok(entries
                    .flatten()
                    .filter_map(|e| {
                        let md = e.metadata().ok().filter(|m| m.is_file())?;
                        Some((e.file_name().to_str()?.to_string(), md.len()))
                    })
                    .collect())
            }
            Repository::Ssh(r) => r.objects(run),
            Repository::S3(s) => s.objects(run),
        }
    }

    /// Removes run `run` of the cluster `cluster_id` (a run this cluster recorded: a
    /// failed, interrupted or pruned one), unless the repository's run of that id is
    /// another cluster's — its claim ([`S3Repo::claim`]) or its manifest names another
    /// cluster: two clusters sharing a repository may form the same run id, and one's
    /// clean-up must not remove the other's run. Such a run is left whole.
    pub fn remove_own(&self, run: &str, cluster_id: u64) -> io::Result<()> {
        let claimed = match self {
            Repository::S3(s) => s.claimed_by(run),
            _ => None,
        };
        let owner = claimed.or_else(|| self.manifest(run).ok().map(|m| m.cluster_id));
        if owner.is_some_and(|c| c != cluster_id) {
            return Ok(());
        }
        self.remove(run)
    }

    /// Removes a run's directory and everything in it.
    pub fn remove(&self, run: &str) -> io::Result<()> {
        match self {
            Repository::Local { root } => match fs::remove_dir_all(root.join(run)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r,
            },
            Repository::Ssh(r) => r.remove(run),
            Repository::S3(s) => s.remove(run),
        }
    }

    /// The run directories found, sorted (by time, as run ids are).
    pub fn runs(&self) -> Result<Vec<String>, RunsError> {
        let mut out: Vec<String> = match self {
            Repository::Local { root } => fs::read_dir(root)
                .map_err(|e| {
                    RunsError::Missing(format!(
                        "there is no repository at `{}`: {e}",
                        root.display()
                    ))
                })?
                .flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| !n.starts_with('.'))
                .collect(),
            Repository::Ssh(r) => r.runs()?,
            Repository::S3(s) => s.runs().map_err(RunsError::Unreachable)?,
        };
        out.sort();
        Ok(out)
    }
}

impl RunDir {
    /// The run's location, as shown.
    pub fn shown(&self) -> String {
        self.repo.run_shown(&self.run)
    }

    /// A file of the run, written under a temporary name until [`PartFile::commit`],
    /// compressed and encrypted as asked on the way.
    pub fn create(
        &self,
        name: &str,
        compress: Compression,
        recipients: Option<&Recipients>,
    ) -> Result<PartFile, String> {
        let (tmp, path, sink) = match &self.repo {
            Repository::Local { root } => {
                let dir = root.join(&self.run);
                let path = dir.join(name);
                let tmp = dir.join(format!(".{name}.partial"));
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(|e| format!("cannot create `{}`: {e}", tmp.display()))?;
                let sink = Sink::Local(io::BufWriter::with_capacity(1 << 20, file));
                (Some(tmp), path, sink)
            }
            Repository::Ssh(r) => (
                None,
                PathBuf::from(r.shown(&self.run, name)),
                Sink::Host(r.create_file(&self.run, name)?),
            ),
            Repository::S3(s) => (
                None,
                PathBuf::from(s.shown(&self.run, name)),
                Sink::S3(s.create_file(&self.run, name)?),
            ),
        };
        let file = Encoder::new(sink, compress, recipients)
            .map_err(|e| format!("cannot start `{}`: {e}", path.display()))?;
        Ok(PartFile { tmp, path, file })
    }

    /// Writes the manifest, last: from now on the run is a restore point.
    pub fn seal(mut self, manifest: &Manifest) -> Result<(), String> {
        match &self.repo {
            Repository::Local { root } => {
                let path = root.join(&self.run).join(MANIFEST_FILE);
                manifest
                    .write(&path)
                    .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
            }
            Repository::Ssh(r) => r.put_small(&self.run, MANIFEST_FILE, manifest.sealed_bytes())?,
            Repository::S3(s) => s.put_small(&self.run, MANIFEST_FILE, manifest.sealed_bytes())?,
        }
        self.sealed = true;
        Ok(())
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.sealed {
            let _ = self.repo.remove(&self.run);
        }
    }
}

impl PartFile {
    /// The name the file will have.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ends the compression and encryption, flushes, fsyncs, renames into place and
    /// fsyncs the directory (completes the upload in object storage). Returns the stored
    /// bytes' size and sha256.
    pub fn commit(self) -> Result<StoredDigest, String> {
        let fail = |e: io::Error| format!("cannot write `{}`: {e}", self.path.display());
        let (sink, digest) = self.file.finish().map_err(fail)?;
        match sink {
            Sink::S3(up) => up.finish().map_err(fail)?,
            Sink::Host(up) => up.finish().map_err(fail)?,
            Sink::Local(file) => {
                let file = file.into_inner().map_err(|e| fail(e.into_error()))?;
                file.sync_all().map_err(fail)?;
                drop(file);
                if let Some(tmp) = &self.tmp {
                    fs::rename(tmp, &self.path).map_err(fail)?;
                }
                if let Some(dir) = self.path.parent() {
                    File::open(dir).and_then(|d| d.sync_all()).map_err(fail)?;
                }
            }
        }
        Ok(digest)
    }
}

impl Write for PartFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
