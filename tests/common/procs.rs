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

    pub fn kill_all(&self) {
        // A dying server may not yet have released its cwd; loop until none is left.
        for _ in 0..50 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Live (not zombie) processes whose cwd is under `root`.
pub fn pids_under(root: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(root))
                && !is_zombie(*pid)
        })
        .collect()
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next().map(|st| st == "Z"))
        })
        .unwrap_or(true)
}
