//! [`LocalHost`]: this machine, through `std::fs`, `/proc`, local processes and local
//! sockets.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;

use super::{
    DirEntry, FileKind, FileSink, Host, HostResult, Memory, Metadata, Signal, Spawn, SpawnOutput,
};

/// This machine.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalHost;

#[async_trait::async_trait]
impl Host for LocalHost {
    fn name(&self) -> String {
        "local".into()
    }

    fn is_local(&self) -> bool {
        true
    }

    async fn read(&self, path: &Path) -> HostResult<Vec<u8>> {
        fs::read(path)
    }

    async fn read_end(&self, path: &Path, after: u64, max: u64) -> HostResult<Vec<u8>> {
        read_end(path, after, max)
    }

    async fn read_start(&self, path: &Path, max: u64) -> HostResult<Vec<u8>> {
        let mut out = Vec::new();
        File::open(path)?.take(max).read_to_end(&mut out)?;
        Ok(out)
    }

    async fn write_private(&self, path: &Path, bytes: &[u8]) -> HostResult<()> {
        write_private(path, bytes)
    }

    async fn create_private_dir(&self, path: &Path) -> HostResult<()> {
        create_private_dir(path)
    }

    async fn rename(&self, from: &Path, to: &Path) -> HostResult<()> {
        fs::rename(from, to)
    }

    async fn symlink(&self, target: &Path, link: &Path) -> HostResult<()> {
        std::os::unix::fs::symlink(target, link)
    }

    async fn list(&self, dir: &Path) -> HostResult<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let md = entry.metadata().ok();
            out.push(DirEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                kind: md
                    .as_ref()
                    .map(|m| kind_of(m.file_type()))
                    .unwrap_or(FileKind::Other),
                len: md.map_or(0, |m| m.len()),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn metadata(&self, path: &Path) -> HostResult<Metadata> {
        let m = fs::symlink_metadata(path)?;
        Ok(Metadata {
            kind: kind_of(m.file_type()),
            len: m.len(),
            modified: m.modified().ok(),
        })
    }

    async fn remove(&self, path: &Path) -> HostResult<()> {
        remove(path)
    }

    async fn copy(&self, from: &Path, to: &Path) -> HostResult<u64> {
        copy_tree(from, to)
    }

    async fn open_stream(&self, path: &Path) -> HostResult<Box<dyn std::io::Read + Send>> {
        Ok(Box::new(File::open(path)?))
    }

    async fn create_stream(&self, path: &Path) -> HostResult<Box<dyn FileSink>> {
        create_private_stream(path)
    }

    async fn run(&self, program: &Path, args: &[String]) -> HostResult<SpawnOutput> {
        let out = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await?;
        Ok(SpawnOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    async fn spawn_detached(&self, spawn: &Spawn) -> HostResult<SpawnOutput> {
        let out = tokio::process::Command::new(&spawn.program)
            .args(&spawn.args)
            .current_dir(&spawn.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await?;
        Ok(SpawnOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    async fn signal(&self, pid: u32, signal: Signal) -> HostResult<()> {
        send_signal(pid, signal)
    }

    async fn is_alive(&self, pid: u32) -> bool {
        is_alive(pid)
    }

    async fn is_alive_in_dir(&self, pid: u32, dir: &Path) -> bool {
        is_alive_in_dir(pid, dir)
    }

    async fn pids_in_dir(&self, dir: &Path) -> Vec<u32> {
        pids_in_dir(dir)
    }

    async fn process_name(&self, pid: u32) -> Option<String> {
        process_name(pid)
    }

    async fn cores(&self) -> usize {
        cores()
    }

    async fn memory(&self) -> Memory {
        memory()
    }

    async fn port_free(&self, addr: &str, port: u16) -> bool {
        port_free(addr, port)
    }
}

/// [`Host::create_stream`] here: a temporary file, renamed into place by `finish`.
struct LocalSink {
    file: Option<std::io::BufWriter<File>>,
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
    done: bool,
}

impl LocalSink {
    fn file(&mut self) -> &mut std::io::BufWriter<File> {
        self.file
            .as_mut()
            .expect("a sink is written before it finishes")
    }
}

impl Write for LocalSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file().flush()
    }
}

impl FileSink for LocalSink {
    fn finish(mut self: Box<Self>) -> HostResult<()> {
        let file = self.file.take().expect("a sink finishes once");
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        commit_private(&self.tmp, &self.path)?;
        self.done = true;
        Ok(())
    }
}

impl Drop for LocalSink {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

// The synchronous forms below serve callers that are not async yet (status rows, the
// pid of a shard read while building a reply); they are this machine's only code for
// each operation, which the trait methods above wrap.

fn kind_of(t: fs::FileType) -> FileKind {
    if t.is_symlink() {
        FileKind::Symlink
    } else if t.is_dir() {
        FileKind::Dir
    } else if t.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    }
}

/// See [`Host::create_stream`]: a 0600 temporary file beside `path`, renamed into place
/// by `finish`, removed if the sink is dropped unfinished.
pub fn create_private_stream(path: &Path) -> HostResult<Box<dyn FileSink>> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent_dir(path).join(format!(".{name}.partial.{}.{n}", std::process::id()));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    Ok(Box::new(LocalSink {
        file: Some(std::io::BufWriter::with_capacity(1 << 20, file)),
        tmp,
        path: path.to_path_buf(),
        done: false,
    }))
}

/// See [`Host::write_private`]: [`prepare_private`] then [`commit_private`].
pub fn write_private(path: &Path, bytes: &[u8]) -> HostResult<()> {
    let tmp = prepare_private(path, bytes)?;
    commit_private(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// The first half of an atomic private write: `bytes` in a 0600 temporary file beside
/// `path`, synced; `path` itself untouched. The temporary name is unique per process and
/// call (`.<name>.tmp.<pid>.<n>`), so two writers never share one; it is removed when
/// anything fails, and one left by a writer that was killed is removed by the next.
/// Split from [`commit_private`] so a caller can prepare several files before replacing
/// any (the CCS and its node backups: all or nothing).
pub fn prepare_private(path: &Path, bytes: &[u8]) -> HostResult<std::path::PathBuf> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_stale_temps(dir, &name);
    let tmp = dir.join(format!(".{name}.tmp.{}.{n}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    Ok(tmp)
}

/// The second half: the prepared file takes `path`'s place, and the directory is synced.
pub fn commit_private(tmp: &Path, path: &Path) -> HostResult<()> {
    fs::rename(tmp, path)?;
    File::open(parent_dir(path))?.sync_all()
}

/// [`Host::read_end`] on this machine.
pub fn read_end(path: &Path, after: u64, max: u64) -> HostResult<Vec<u8>> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let from = if len < after { 0 } else { after };
    let n = (len - from).min(max);
    f.seek(SeekFrom::Start(len - n))?;
    let mut out = Vec::with_capacity(n as usize);
    f.take(n).read_to_end(&mut out)?;
    Ok(out)
}

pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Removes `.<name>.tmp.<pid>[.<n>]` files left by a writer killed mid-write (they may hold
/// a password); a temporary file whose pid still runs is another writer's, and stays.
fn remove_stale_temps(dir: &Path, name: &str) {
    let prefix = format!(".{name}.tmp.");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let Ok(pid) = rest.split('.').next().unwrap_or("").parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !is_alive(pid) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// See [`Host::create_private_dir`].
pub fn create_private_dir(path: &Path) -> HostResult<()> {
    fs::create_dir_all(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}

/// See [`Host::remove`].
pub fn remove(path: &Path) -> HostResult<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn copy_tree(from: &Path, to: &Path) -> HostResult<u64> {
    let m = fs::symlink_metadata(from)?;
    if !m.is_dir() {
        return fs::copy(from, to);
    }
    fs::create_dir_all(to)?;
    let mut total = 0;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        total += copy_tree(&entry.path(), &to.join(entry.file_name()))?;
    }
    Ok(total)
}

/// See [`Host::signal`].
pub fn send_signal(pid: u32, signal: Signal) -> HostResult<()> {
    let sig = match signal {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    let err = std::io::Error::last_os_error();
    if rc == 0 || err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(err)
    }
}

/// Alive: one of its threads has not exited. A process whose main thread has exited
/// shows as a zombie (`Z`) while its other threads still finish (a redis-server killed
/// while its fsync thread waits on a busy disk), and until they have, it still holds its
/// files and its listening port: judged by its main thread alone it was gone, and a
/// server started on its port at once found the port taken. A process all of whose
/// threads are zombies is gone (a container's init may not reap promptly).
pub fn is_alive(pid: u32) -> bool {
    live_threads(pid).next().is_some()
}

/// The `/proc/<pid>/task/<tid>` directories of `pid`'s threads that have not exited.
fn live_threads(pid: u32) -> impl Iterator<Item = std::path::PathBuf> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|t| t.path())
        .filter(|t| {
            fs::read_to_string(t.join("stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .is_some_and(|state| state != "Z" && state != "X")
            })
        })
}

/// See [`Host::is_alive_in_dir`].
pub fn is_alive_in_dir(pid: u32, dir: &Path) -> bool {
    let Ok(dir) = fs::canonicalize(dir) else {
        return false;
    };
    works_in(pid, &dir)
}

/// A live thread of `pid` works in the directory (an exited main thread has no working
/// directory left to read; the threads still finishing keep theirs).
fn works_in(pid: u32, canonical_dir: &Path) -> bool {
    live_threads(pid).any(|t| fs::read_link(t.join("cwd")).is_ok_and(|cwd| cwd == canonical_dir))
}

/// See [`Host::pids_in_dir`].
pub fn pids_in_dir(dir: &Path) -> Vec<u32> {
    let (Ok(dir), Ok(procs)) = (fs::canonicalize(dir), fs::read_dir("/proc")) else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| works_in(pid, &dir))
        .collect()
}

/// See [`Host::process_name`].
pub fn process_name(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_string())
}

/// See [`Host::cores`].
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// See [`Host::memory`]: from /proc/meminfo; zeros when unreadable.
pub fn memory() -> Memory {
    parse_meminfo(&fs::read_to_string("/proc/meminfo").unwrap_or_default())
}

/// Available and total memory from `/proc/meminfo` text (any host's).
pub(crate) fn parse_meminfo(text: &str) -> Memory {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    Memory {
        available: field("MemAvailable:"),
        total: field("MemTotal:"),
    }
}

/// See [`Host::port_free`]. Probing by binding sees listeners on the wildcard address too.
pub fn port_free(addr: &str, port: u16) -> bool {
    port != 0 && TcpListener::bind((addr, port)).is_ok()
}

/// `a FIFO`, `a directory`, ...: what a path is when it is not a regular file.
pub fn describe_type(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_small_file_is_read_whole_and_a_big_one_or_a_fifo_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("appendonly.aof.manifest");
        fs::write(&small, b"file appendonly.aof.1.base.rdb seq 1 type b\n").unwrap();
        let host = LocalHost;
        assert!(host.read_small(&small, 64).await.is_ok());
        let e = host.read_small(&small, 8).await.unwrap_err().to_string();
        assert!(e.contains("more than the 8"), "{e}");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path made just above.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = host.read_small(&fifo, 64).await.unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[tokio::test]
    async fn atomic_private_write_leaves_no_temp_and_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lazarus-shard.json");
        let host = LocalHost;
        host.write_private(&path, b"one").await.unwrap();
        host.write_private(&path, b"two").await.unwrap();
        assert_eq!(host.read(&path).await.unwrap(), b"two");
        let names: Vec<String> = host
            .list(dir.path())
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["lazarus-shard.json"]);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[tokio::test]
    async fn this_process_runs_in_its_own_cwd() {
        let host = LocalHost;
        let me = std::process::id();
        let cwd = std::env::current_dir().unwrap();
        assert!(host.is_alive(me).await);
        assert!(host.is_alive_in_dir(me, &cwd).await);
        assert!(host.pids_in_dir(&cwd).await.contains(&me));
        let other = tempfile::tempdir().unwrap();
        assert!(!host.is_alive_in_dir(me, other.path()).await);
        host.signal(u32::MAX >> 2, Signal::Term).await.unwrap();
    }

    #[tokio::test]
    async fn remove_and_copy_trees() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        fs::create_dir_all(a.join("sub")).unwrap();
        fs::write(a.join("sub/f"), b"12345").unwrap();
        let host = LocalHost;
        assert_eq!(host.copy(&a, &dir.path().join("b")).await.unwrap(), 5);
        host.remove(&a).await.unwrap();
        host.remove(&a).await.unwrap();
        assert!(host.metadata(&a).await.is_err());
        let m = host.metadata(&dir.path().join("b/sub/f")).await.unwrap();
        assert_eq!((m.kind, m.len), (FileKind::File, 5));
    }
}
