//! `ssh://[user@]host[:port]/dir` repositories: a directory on another machine, reached
//! through the host seam ([`crate::host::Host`], an [`SshHost`] over the operator's own
//! OpenSSH: their `~/.ssh/config`, agent and `known_hosts`, strict host keys). Files are
//! streamed both ways (`cat` there, fed or read as the bytes go), never staged whole in
//! memory or on this machine's disk; a file takes its name only once whole and synced,
//! and the manifest, written last and atomically, makes a run a restore point.
//!
//! Every repository of one target shares one [`SshHost`] (one master connection) while
//! any of them is in use.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use super::block;
use crate::host::{FileKind, FileSink, Host, SshHost, SshTarget};

/// One `ssh://[user@]host[:port]/dir`.
#[derive(Clone)]
pub struct RemoteRepo {
    url: String,
    root: PathBuf,
    host: Arc<dyn Host>,
}

impl std::fmt::Debug for RemoteRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl PartialEq for RemoteRepo {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
    }
}

impl Eq for RemoteRepo {}

/// `ssh://[user@]host[:port]/dir` split: the target and the absolute directory (without
/// a trailing slash).
pub fn parse_url(url: &str) -> Result<(SshTarget, PathBuf), String> {
    let rest = url
        .strip_prefix("ssh://")
        .ok_or_else(|| format!("`{url}` is not an `ssh://[user@]host[:port]/dir` URL"))?;
    let Some(at) = rest.find('/') else {
        return Err(format!(
            "`{url}` names no directory: `ssh://[user@]host[:port]/dir`"
        ));
    };
    let (authority, dir) = rest.split_at(at);
    let target: SshTarget = authority.parse().map_err(|e| format!("`{url}`: {e}"))?;
    let dir = dir.trim_end_matches('/');
    if dir.is_empty() {
        return Err(format!(
            "`{url}` names the root directory: give the repository a directory of its own"
        ));
    }
    if dir.split('/').any(|p| p == "." || p == "..") || dir.contains("//") {
        return Err(format!(
            "`{url}` has an empty, `.` or `..` part in its path"
        ));
    }
    Ok((target, PathBuf::from(dir)))
}

/// The host of `target`: the one already open for another repository, or a new one.
fn host_of(target: &SshTarget) -> io::Result<Arc<dyn Host>> {
    static OPEN: Mutex<Option<HashMap<SshTarget, Weak<SshHost>>>> = Mutex::new(None);
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    let open = open.get_or_insert_with(HashMap::new);
    open.retain(|_, h| h.strong_count() > 0);
    if let Some(h) = open.get(target).and_then(Weak::upgrade) {
        return Ok(h);
    }
    let h = Arc::new(SshHost::new(target.clone())?);
    open.insert(target.clone(), Arc::downgrade(&h));
    Ok(h)
}

impl RemoteRepo {
    /// Nothing is connected yet: the first request connects (and says why it cannot).
    pub fn open(url: &str) -> Result<RemoteRepo, String> {
        let (target, root) = parse_url(url)?;
        let host = host_of(&target).map_err(|e| format!("cannot open `{url}`: {e}"))?;
        Ok(RemoteRepo::on(host, &target.to_string(), root))
    }

    /// A repository at `root` of `host` (`shown` names the host in its URL).
    pub fn on(host: Arc<dyn Host>, shown: &str, root: PathBuf) -> RemoteRepo {
        RemoteRepo {
            url: format!("ssh://{shown}{}", root.display()),
            root,
            host,
        }
    }

    /// The repository at `<root>/<name>` of the same host.
    pub fn child(&self, name: &str) -> RemoteRepo {
        RemoteRepo {
            url: format!("{}/{name}", self.url),
            root: self.root.join(name),
            host: self.host.clone(),
        }
    }

    /// Whether the repository's directory is not there (`Ok(false)`: it is).
    pub fn is_missing(&self) -> Result<bool, String> {
        let (host, root) = (self.host.clone(), self.root.clone());
        match block(async move { host.metadata(&root).await }) {
            Ok(_) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(self.fail("cannot look at", e)),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// `ssh://host/dir/<run>/<name>`, as shown.
    pub fn shown(&self, run: &str, name: &str) -> String {
        format!("{}/{run}/{name}", self.url)
    }

    fn path(&self, run: &str, name: &str) -> PathBuf {
        self.root.join(run).join(name)
    }

    /// What `e` says, prefixed with the repository (a connection's error already names
    /// the host).
    fn fail(&self, what: &str, e: io::Error) -> String {
        format!("{what} `{}`: {e}", self.url)
    }

    /// Makes the directory if needed and proves it writable (a probe file written,
    /// synced and removed there). Returns the host's clock minus this machine's in
    /// milliseconds, from `date` there.
    pub fn prepare(&self) -> Result<i64, String> {
        let host = self.host.clone();
        let root = self.root.clone();
        let probe = root.join(format!(".lazarus-probe.{}", std::process::id()));
        block(async move {
            let mkdir = host
                .run(
                    Path::new("mkdir"),
                    &["-p".into(), "--".into(), root.to_string_lossy().into()],
                )
                .await?;
            if !mkdir.success {
                return Err(io::Error::other(mkdir.stderr.trim().to_string()));
            }
            host.write_private(&probe, b"probe").await?;
            host.remove(&probe).await?;
            host_clock(&host).await
        })
        .map_err(|e| self.fail("cannot write to", e))
    }

    /// The host's clock minus this machine's in milliseconds, from `date` there; nothing
    /// is written.
    pub fn clock_skew(&self) -> Result<i64, String> {
        let host = self.host.clone();
        block(async move { host_clock(&host).await }).map_err(|e| self.fail("cannot reach", e))
    }

    /// Makes the run's directory, owner only; it must not exist yet.
    pub fn begin(&self, run: &str) -> Result<(), String> {
        let (host, dir) = (self.host.clone(), self.root.join(run));
        let out = block(async move {
            host.run(
                Path::new("mkdir"),
                &[
                    "-m".into(),
                    "700".into(),
                    "--".into(),
                    dir.to_string_lossy().into(),
                ],
            )
            .await
        })
        .map_err(|e| self.fail("cannot reach", e))?;
        if !out.success {
            return Err(format!(
                "cannot create `{}/{run}`: {}",
                self.url,
                out.stderr.trim()
            ));
        }
        Ok(())
    }

    /// A small file's bytes (manifests); `Ok(None)` when it is not there.
    pub fn get_small(&self, run: &str, name: &str) -> Result<Option<Vec<u8>>, String> {
        let (host, path) = (self.host.clone(), self.path(run, name));
        match block(async move { host.read(&path).await }) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read `{}`: {e}", self.shown(run, name))),
        }
    }

    /// Writes a small file atomically (a temporary name, synced, renamed).
    pub fn put_small(&self, run: &str, name: &str, bytes: Vec<u8>) -> Result<(), String> {
        let (host, path) = (self.host.clone(), self.path(run, name));
        block(async move { host.write_private(&path, &bytes).await })
            .map_err(|e| format!("cannot write `{}`: {e}", self.shown(run, name)))
    }

    /// The run's files and their sizes.
    pub fn objects(&self, run: &str) -> Result<BTreeMap<String, u64>, String> {
        let (host, dir) = (self.host.clone(), self.root.join(run));
        let entries = block(async move { host.list(&dir).await })
            .map_err(|e| format!("cannot list `{}/{run}`: {e}", self.url))?;
        Ok(entries
            .into_iter()
            .filter(|e| e.kind == FileKind::File)
            .map(|e| (e.name, e.len))
            .collect())
    }

    /// The run directories.
    pub fn runs(&self) -> Result<Vec<String>, RunsError> {
        let (host, root) = (self.host.clone(), self.root.clone());
        let entries = block(async move { host.list(&root).await }).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                RunsError::Missing(format!(
                    "there is no repository at `{}`: no such directory there",
                    self.url
                ))
            } else {
                RunsError::Unreachable(self.fail("cannot list", e))
            }
        })?;
        Ok(entries
            .into_iter()
            .filter(|e| e.kind == FileKind::Dir && !e.name.starts_with('.'))
            .map(|e| e.name)
            .collect())
    }

    /// Removes a run's directory and everything in it.
    pub fn remove(&self, run: &str) -> io::Result<()> {
        let (host, dir) = (self.host.clone(), self.root.join(run));
        block(async move { host.remove(&dir).await })
    }

    /// A file of a run as a stream; a missing file is named now.
    pub fn open_file(&self, run: &str, name: &str) -> Result<Box<dyn Read + Send>, String> {
        let (host, path) = (self.host.clone(), self.path(run, name));
        let opened = block(async move {
            host.metadata(&path).await?;
            host.open_stream(&path).await
        });
        match opened {
            Ok(r) => Ok(r),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(format!("`{}` is missing", self.shown(run, name)))
            }
            Err(e) => Err(format!("cannot read `{}`: {e}", self.shown(run, name))),
        }
    }

    /// A file of a run, streamed there; it takes its name at [`FileSink::finish`].
    pub fn create_file(&self, run: &str, name: &str) -> Result<Box<dyn FileSink>, String> {
        let (host, path) = (self.host.clone(), self.path(run, name));
        block(async move { host.create_stream(&path).await })
            .map_err(|e| format!("cannot start `{}`: {e}", self.shown(run, name)))
    }
}

/// Why a repository's runs could not be listed.
#[derive(Debug)]
pub enum RunsError {
    /// There is no repository there.
    Missing(String),
    /// It could not be asked (unreachable, refused).
    Unreachable(String),
}

impl std::fmt::Display for RunsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunsError::Missing(s) | RunsError::Unreachable(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for RunsError {}

impl crate::error::DomainError for RunsError {
    fn kind(&self) -> crate::error::ErrorKind {
        match self {
            RunsError::Missing(_) => crate::error::ErrorKind::NotFound,
            RunsError::Unreachable(_) => crate::error::ErrorKind::Unavailable,
        }
    }
}

impl From<RunsError> for String {
    fn from(e: RunsError) -> String {
        e.to_string()
    }
}

/// `host`'s clock minus this machine's in milliseconds, from `date +%s%3N` there.
async fn host_clock(host: &Arc<dyn Host>) -> io::Result<i64> {
    let before = super::now_ms();
    let date = host.run(Path::new("date"), &["+%s%3N".into()]).await?;
    let after = super::now_ms();
    let theirs: i64 =
        date.stdout.trim().parse().map_err(|_| {
            io::Error::other(format!("`date +%s%3N` said `{}`", date.stdout.trim()))
        })?;
    Ok(super::skew(theirs, 0, before, after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::LocalHost;
    use std::io::Write;

    #[test]
    fn urls() {
        let (t, d) = parse_url("ssh://ops@db1:2222/srv/backups/").unwrap();
        assert_eq!(t.to_string(), "ops@db1:2222");
        assert_eq!(d, PathBuf::from("/srv/backups"));
        let (t, d) = parse_url("ssh://[::1]/b").unwrap();
        assert_eq!((t.host.as_str(), d), ("::1", PathBuf::from("/b")));
        assert!(parse_url("ssh://db1")
            .unwrap_err()
            .contains("names no directory"));
        assert!(parse_url("ssh://db1/")
            .unwrap_err()
            .contains("root directory"));
        assert!(parse_url("ssh://db1/a/../b").is_err());
        assert!(parse_url("ssh://-oProxyCommand=x/b").is_err());
        assert!(parse_url("s3://b/x").is_err());
    }

    /// The layout's operations over the seam, on this machine's host: what the ssh
    /// end-to-end tests run over a real sshd.
    #[test]
    fn a_repository_through_the_host_seam() {
        let dir = tempfile::tempdir().unwrap();
        let repo = RemoteRepo::on(Arc::new(LocalHost), "here", dir.path().join("repo"));
        assert!(matches!(repo.runs(), Err(RunsError::Missing(_))));
        assert!(repo.prepare().unwrap().abs() < 5_000);
        repo.begin("r1").unwrap();
        assert!(repo.begin("r1").unwrap_err().contains("r1"));
        let mut f = repo.create_file("r1", "a.rdb").unwrap();
        f.write_all(&vec![7u8; 3 << 20]).unwrap();
        assert!(
            !repo.objects("r1").unwrap().contains_key("a.rdb"),
            "a file takes its name only when finished"
        );
        f.finish().unwrap();
        drop(repo.create_file("r1", "cut.rdb").unwrap());
        assert_eq!(
            repo.objects("r1").unwrap(),
            BTreeMap::from([("a.rdb".to_string(), 3 << 20)]),
            "a stream dropped unfinished leaves nothing"
        );
        let mut back = Vec::new();
        repo.open_file("r1", "a.rdb")
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back.len(), 3 << 20);
        assert!(repo
            .open_file("r1", "gone.rdb")
            .err()
            .unwrap()
            .contains("is missing"));
        assert_eq!(repo.get_small("r1", "manifest.json").unwrap(), None);
        repo.put_small("r1", "manifest.json", b"{}".to_vec())
            .unwrap();
        assert_eq!(repo.runs().unwrap(), ["r1"]);
        repo.remove("r1").unwrap();
        assert!(repo.runs().unwrap().is_empty());
    }
}
