//! A repository: where backup runs live, one layout whatever holds it.
//!
//! ```text
//! <repository>/<run id>/shard-<id>.rdb      one per master shard, renamed into place when whole
//! <repository>/<run id>/.shard-<id>.rdb.partial   while it streams
//! <repository>/<run id>/manifest.json       written last: the run is a restore point
//! ```
//!
//! Only local directories today; `ssh://` and `s3://` repositories keep the same layout
//! (the operations below are the whole surface a kind must offer).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::codec::{Compression, Encoder, Recipients, StoredDigest};
use super::manifest::{Manifest, ManifestError, MANIFEST_FILE};

/// A repository of backup runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repository {
    root: PathBuf,
}

/// A run's files while it is written. Dropping it without [`RunDir::seal`] removes it.
#[derive(Debug)]
pub struct RunDir {
    dir: PathBuf,
    sealed: bool,
}

/// One file of a run under its temporary name.
pub struct PartFile {
    tmp: PathBuf,
    path: PathBuf,
    file: Encoder<io::BufWriter<File>>,
}

impl Repository {
    pub fn local(root: impl Into<PathBuf>) -> Repository {
        Repository { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn run_path(&self, run: &str) -> PathBuf {
        self.root.join(run)
    }

    /// Makes the directory if needed and proves it writable (a file created, synced and
    /// removed).
    pub fn prepare(&self) -> Result<(), String> {
        let root = &self.root;
        fs::create_dir_all(root).map_err(|e| format!("cannot create `{}`: {e}", root.display()))?;
        let probe = root.join(format!(".lazarus-probe.{}", std::process::id()));
        let res = File::create(&probe).and_then(|mut f| {
            f.write_all(b"probe")?;
            f.sync_all()
        });
        let _ = fs::remove_file(&probe);
        res.map_err(|e| format!("`{}` is not writable: {e}", root.display()))
    }

    /// Starts a run's directory; it must not exist yet.
    pub fn begin(&self, run: &str) -> Result<RunDir, String> {
        let dir = self.run_path(run);
        // The run holds the database's data: owner only.
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        Ok(RunDir { dir, sealed: false })
    }

    /// The run's manifest, checked (complete, self-checksum matches).
    pub fn manifest(&self, run: &str) -> Result<Manifest, ManifestError> {
        Manifest::read(&self.run_path(run).join(MANIFEST_FILE))
    }

    /// Removes a run's directory and everything in it.
    pub fn remove(&self, run: &str) -> io::Result<()> {
        match fs::remove_dir_all(self.run_path(run)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    /// The run directories found, sorted (by time, as run ids are).
    pub fn runs(&self) -> Vec<String> {
        let mut out: Vec<String> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect();
        out.sort();
        out
    }
}

impl RunDir {
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A file of the run, written under a temporary name until [`PartFile::commit`],
    /// compressed and encrypted as asked on the way.
    pub fn create(
        &self,
        name: &str,
        compress: Compression,
        recipients: Option<&Recipients>,
    ) -> Result<PartFile, String> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.partial"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("cannot create `{}`: {e}", tmp.display()))?;
        let file = Encoder::new(
            io::BufWriter::with_capacity(1 << 20, file),
            compress,
            recipients,
        )
        .map_err(|e| format!("cannot start `{}`: {e}", path.display()))?;
        Ok(PartFile { tmp, path, file })
    }

    /// Writes the manifest, last: from now on the run is a restore point.
    pub fn seal(mut self, manifest: &Manifest) -> Result<(), String> {
        let path = self.dir.join(MANIFEST_FILE);
        manifest
            .write(&path)
            .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
        self.sealed = true;
        Ok(())
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.sealed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl PartFile {
    /// The name the file will have.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ends the compression and encryption, flushes, fsyncs, renames into place and
    /// fsyncs the directory. Returns the stored bytes' size and sha256.
    pub fn commit(self) -> Result<StoredDigest, String> {
        let fail = |e: io::Error| format!("cannot write `{}`: {e}", self.path.display());
        let (file, digest) = self.file.finish().map_err(fail)?;
        let file = file.into_inner().map_err(|e| fail(e.into_error()))?;
        file.sync_all().map_err(fail)?;
        drop(file);
        fs::rename(&self.tmp, &self.path).map_err(fail)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(fail)?;
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
