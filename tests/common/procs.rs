//! Kills every process a test started: on drop, SIGKILL each process whose working
//! directory is under the test's root (redis-server chdirs into its shard directory, and
//! shards daemonize, so they are not our children and would otherwise outlive the test).

use std::path::{Path, PathBuf};

pub struct ProcessGuard {
    root: PathBuf,
}

impl ProcessGuard {
    pub fn new(root: &Path) -> ProcessGuard {
        ProcessGuard {
            root: std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf()),
        }
    }

    /// Pids of live processes running under the root.
    pub fn pids(&self) -> Vec<u32> {
        pids_under(&self.root)
    }

    /// SIGKILL to every process under the root, until none is left: a killed server is
    /// gone only once its last thread has exited, and one waiting in an fsync on a busy
    /// disk holds the server's port until then (seconds, on a loaded machine).
    pub fn kill_all(&self) {
        let deadline = std::time::Instant::now() + GONE_WITHIN;
        loop {
            let pids = self.pids();
            if pids.is_empty() || std::time::Instant::now() >= deadline {
                return;
            }
            for pid in pids {
                // SAFETY: kill(2) takes plain integers; these are processes of the test.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// How long a killed process may take to be gone before a test gives up on it.
const GONE_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// SIGKILL to each of `pids`, and back once every one is gone (its last thread exited,
/// so its files and ports are free): see [`ProcessGuard::kill_all`].
pub fn kill_and_wait(pids: &[u32]) {
    for &pid in pids {
        // SAFETY: kill(2) takes plain integers; these are processes of the test.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
    let deadline = std::time::Instant::now() + GONE_WITHIN;
    while pids.iter().any(|&p| live_threads(p).next().is_some()) {
        assert!(
            std::time::Instant::now() < deadline,
            "killed processes still run: {pids:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Live processes with a thread working under `root`. A process whose main thread has
/// exited shows as a zombie while its other threads finish (a server killed while its
/// fsync thread waits on a busy disk) and still holds its files and ports: it counts
/// until its last thread is gone, found by that thread's working directory (the main
/// thread's is gone with it).
pub fn pids_under(root: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            live_threads(*pid)
                .any(|t| std::fs::read_link(t.join("cwd")).is_ok_and(|cwd| cwd.starts_with(root)))
        })
        .collect()
}

/// The `/proc/<pid>/task/<tid>` directories of `pid`'s threads that have not exited.
fn live_threads(pid: u32) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|t| t.path())
        .filter(|t| {
            std::fs::read_to_string(t.join("stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().next())
                    .is_some_and(|st| st != "Z" && st != "X")
            })
        })
}

/// A process in `dir` whose main thread has exited while another thread runs on (until
/// killed): what a server killed while its fsync thread waits on a busy disk is for a
/// moment. Returned once the main thread has exited.
pub fn main_thread_exited(dir: &Path) -> std::process::Child {
    const SCRIPT: &str = "import ctypes, os, sys, threading, time\n\
        def stay():\n    \
            while open('/proc/%d/stat' % os.getpid()).read().rsplit(')', 1)[1].split()[0] != 'Z':\n        \
                time.sleep(0.01)\n    \
            open(sys.argv[1], 'w').close()\n    \
            time.sleep(600)\n\
        threading.Thread(target=stay).start()\n\
        ctypes.CDLL(None).pthread_exit(None)\n";
    let ready = dir.join(".main-thread-exited");
    let child = std::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(&ready)
        .current_dir(dir)
        .spawn()
        .expect("python3 runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ready.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the main thread never exited alone"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child
}
