//! What the end-to-end benchmarks share: knobs from the environment, medians, the binary
//! timed as an operator runs it, and the anchor every load is compared with (a bare
//! `redis-server` loading a `dump.rdb`).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lazarus::ccs::{Cluster, Store};

pub fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `lazarus --home <home> <args>`: how long it took and what it printed; a failure ends
/// the benchmark with its output.
pub fn lazarus(home: &Path, args: &[&str]) -> (Duration, String) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_lazarus"))
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("lazarus runs");
    let took = started.elapsed();
    if !out.status.success() {
        panic!(
            "lazarus {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (took, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Stores `cluster` as the CCS of `home`.
pub fn install(home: &Path, cluster: &Cluster) {
    let mut c = cluster.clone();
    Store::new(home.to_path_buf())
        .lock()
        .unwrap()
        .save(&mut c)
        .unwrap();
}

/// A bare `server` on `dir/dump.rdb`: from spawn until it has loaded.
pub fn bare_server(server: &Path, dir: &Path, port: u16) -> Duration {
    recache(dir);
    // A multi-part AOF when the directory holds one, else `dump.rdb`.
    let aof = if dir.join("appendonlydir").is_dir() {
        "yes"
    } else {
        "no"
    };
    let started = Instant::now();
    let mut child = Command::new(server)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            aof,
        ])
        .arg("--dir")
        .arg(dir)
        .args(["--dbfilename", "dump.rdb", "--logfile", "bare.log"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let took = loop {
        if let Ok(mut con) = client.get_connection() {
            let info: Result<String, _> = redis::cmd("INFO").arg("persistence").query(&mut con);
            // Exactly `loading:0`: `async_loading:0` is there from the start.
            if info.is_ok_and(|i| i.lines().any(|l| l.trim_end() == "loading:0")) {
                break started.elapsed();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    took
}

/// As [`lazarus`], with the process's peak resident memory (KiB, from `wait4`).
pub fn lazarus_rss(home: &Path, args: &[&str]) -> (Duration, String, u64) {
    let (took, out, kb, _) = lazarus_usage(home, args);
    (took, out, kb)
}

/// CPU seconds (user + system) a process has used so far, from `/proc/<pid>/stat`.
pub fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// As [`lazarus_rss`], with the CPU seconds (user + system) the binary used.
// The child is reaped by `wait4` (which also gives its rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
pub fn lazarus_usage(home: &Path, args: &[&str]) -> (Duration, String, u64, f64) {
    use std::io::Read;
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lazarus"))
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lazarus runs");
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let took = started.elapsed();
    assert_eq!(r, pid, "wait4");
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        panic!("lazarus {args:?} failed:\n{out}{err}");
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = secs(usage.ru_utime) + secs(usage.ru_stime);
    (took, out, usage.ru_maxrss as u64, cpu)
}

/// Drops `path` (a file, or every file under a directory) from the page cache and reads
/// it back once, so that it sits there as a read from disk leaves it (the kernel's
/// read-ahead, in 2 MiB pages on this VM's ext4), whoever wrote it. A file just written
/// sits in the cache as its writes left it (small pages), and what reads it then pays
/// for that: redis-server loads through 4 KiB reads, each slower on the first (the bare
/// loads of the 1.17 GB RDB took 4.2-4.5 s by the server's own log where the server
/// Lazarus started loaded the same bytes in 2.7-3.0 s, 2026-12-07), and a mapped read
/// maps every small page on its own (the floor of the 1 GB mixed RDB, every byte read
/// through a mapping, 0.165 s as redis-server's `BGSAVE` left it, 0.078 s read back).
pub fn recache(path: &Path) {
    use std::os::fd::AsRawFd;
    if path.is_dir() {
        for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
            recache(&e.path());
        }
    } else if let Ok(mut f) = std::fs::File::open(path) {
        // Written back first: the kernel drops no dirty page, and a copy just made is
        // dirty (without this, two bare loads in three still read the copy as its
        // writes left it: 5.1-5.2 s against 2.3 s, 2026-12-07 14:41).
        let _ = f.sync_all();
        // SAFETY: advice on a file this function holds open; it changes no byte.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        let _ = std::io::copy(&mut f, &mut std::io::sink());
    }
}
