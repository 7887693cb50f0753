//! Benchmark (not a test): the content digest. From a file, against the reader's
//! validation of the same file; from a live server (SCAN + DUMP + PEXPIRETIME), in keys/s
//! for one shard.
//!
//! Run: `cargo bench --bench verify`. Uses the reader bench's `target/bench-data/dump.rdb`
//! when it is there (`cargo bench --bench reader` builds it, >= 1 GB); otherwise builds
//! `target/bench-data/verify/dump.rdb` of ~`BENCH_VERIFY_GB` GB (0.25 by default) once.
//! Every figure is the median of `BENCH_VERIFY_RUNS` runs (3 by default); the validation
//! runs in a child process each time (the reader remembers a file's report per process).
//! `BENCH_VERIFY_ONLY=snapshot` times only the file digest and the server snapshot's.

#[path = "../tests/persist_support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lazarus::persist::{check_path, digest_of_rdb, CheckOptions, DigestOptions, Verdict};
use lazarus::server::ShardAddr;
use lazarus::verify;
use support::{args, Server};

fn data_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("bench-data")
}

/// Mixed types, as the reader bench: strings (3 in 4 random), small and big hashes, sets,
/// intsets, sorted sets, lists, a few streams, some keys with TTLs.
fn build(dir: &Path, gb: f64) -> PathBuf {
    let rdb = dir.join("dump.rdb");
    if rdb.is_file() {
        return rdb;
    }
    std::fs::create_dir_all(dir).unwrap();
    eprintln!(
        "building ~{gb} GB of test data in {} (once)...",
        dir.display()
    );
    let tmp = tempfile::tempdir_in(dir).unwrap();
    let mut s = Server::start_in(tmp, &[]);
    let strings = (5_700_000.0 * gb) as usize;
    let mut x = 0x9e3779b97f4a7c15u64;
    let mut batch: Vec<Vec<Vec<u8>>> = Vec::new();
    for i in 0..strings {
        let v: Vec<u8> = if i % 4 == 0 {
            format!("user {i} logged in from the usual place; ")
                .repeat(4)
                .into_bytes()
        } else {
            (0..150)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b'!' + (x % 90) as u8
                })
                .collect()
        };
        let mut c = vec![b"SET".to_vec(), format!("str:{i}").into_bytes(), v];
        if i % 10 == 0 {
            c.extend([b"EX".to_vec(), b"100000".to_vec()]);
        }
        batch.push(c);
        if batch.len() >= 1000 {
            s.batch(&batch);
            batch.clear();
        }
    }
    let small = (150_000.0 * gb) as usize;
    for i in 0..small {
        let fields: Vec<String> = (0..10).map(|f| format!("f{f}")).collect();
        let mut h = args(&["HSET", &format!("hash:{i}")]);
        let mut st = args(&["SADD", &format!("set:{i}")]);
        let mut is = args(&["SADD", &format!("intset:{i}")]);
        let mut z = args(&["ZADD", &format!("zset:{i}")]);
        let mut l = args(&["RPUSH", &format!("list:{i}")]);
        for (f, name) in fields.iter().enumerate() {
            h.extend(args(&[name, &format!("value-{f}-{i}")]));
            st.push(format!("member-{f}-{i}").into_bytes());
            is.push((f * 7919 + i).to_string().into_bytes());
            z.extend(args(&[&format!("{}.5", f * 3), &format!("m{f}")]));
            l.push(format!("item-{f}-{i}").into_bytes());
        }
        batch.extend([h, st, is, z, l]);
        if i % 10 == 0 {
            batch.push(args(&[
                "XADD",
                &format!("stream:{}", i / 50),
                "*",
                "f",
                "1",
                "g",
                "v",
            ]));
        }
        if batch.len() >= 1000 {
            s.batch(&batch);
            batch.clear();
        }
    }
    for i in 0..((1_500.0 * gb) as usize) {
        let mut h = args(&["HSET", &format!("bighash:{i}")]);
        let mut z = args(&["ZADD", &format!("bigzset:{i}")]);
        for f in 0..1000 {
            h.extend(args(&[&format!("field-{f}"), &format!("value-{f}")]));
            z.extend(args(&[&f.to_string(), &format!("m-{f}")]));
        }
        batch.extend([h, z]);
        if batch.len() >= 100 {
            s.batch(&batch);
            batch.clear();
        }
    }
    s.batch(&batch);
    assert_eq!(s.cmd(&["SAVE"]).text(), "OK");
    std::fs::rename(s.file("dump.rdb"), &rdb).unwrap();
    rdb
}

fn runs() -> usize {
    std::env::var("BENCH_VERIFY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3usize)
        .max(1)
}

/// The median wall time of `f` over `runs()` runs, and its last result.
fn median<T>(mut f: impl FnMut() -> T) -> (f64, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs() {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], last.unwrap())
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.iter().any(|a| a == "--list") {
        return;
    }
    // Child mode: one validation, in a fresh process (the reader remembers reports per
    // process, so a second check_path here would not read the file).
    if let Some(i) = argv.iter().position(|a| a == "--check") {
        let r = check_path(Path::new(&argv[i + 1]), &CheckOptions::default());
        std::process::exit(if r.verdict == Verdict::Ok { 0 } else { 1 });
    }
    let shared = data_dir().join("dump.rdb");
    let rdb = if let Some(f) = std::env::var_os("BENCH_VERIFY_FILE") {
        PathBuf::from(f)
    } else if shared.is_file() {
        shared
    } else {
        let gb: f64 = std::env::var("BENCH_VERIFY_GB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.25);
        build(&data_dir().join("verify"), gb)
    };
    let bytes = std::fs::metadata(&rdb).unwrap().len();
    let report = check_path(&rdb, &CheckOptions::default());
    assert_eq!(report.verdict, Verdict::Ok, "{:?}", report.fault);
    let keys = report.keys;
    println!(
        "{}: {:.2} GB, {keys} keys; median of {} runs",
        rdb.display(),
        bytes as f64 / 1e9,
        runs()
    );
    let mb = bytes as f64 / 1e6;
    let me = std::env::current_exe().unwrap();
    let (check_s, _) = median(|| {
        let ok = std::process::Command::new(&me)
            .arg("--check")
            .arg(&rdb)
            .status()
            .unwrap()
            .success();
        assert!(ok, "the reader refused the bench file");
    });
    println!(
        "  reader validation (check_path)   {check_s:>6.2} s {:>7.0} MB/s {:>10.0} keys/s",
        mb / check_s,
        keys as f64 / check_s
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (digest_s, d) = median(|| digest_of_rdb(&rdb, now, &DigestOptions::default()).unwrap());
    let settled = d.settle(now);
    println!(
        "  file digest (digest_of_rdb)      {digest_s:>6.2} s {:>7.0} MB/s {:>10.0} keys/s  = {:.0}% of validation speed",
        mb / digest_s,
        settled.keys as f64 / digest_s,
        100.0 * check_s / digest_s
    );
    // The live digest: a server loads a copy, then SCAN + DUMP + PEXPIRETIME.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&rdb, dir.path().join("dump.rdb")).unwrap();
    let t = Instant::now();
    // As Lazarus configures its shards: a diskless snapshot starts at once.
    let s = Server::start_in(dir, &[("repl-diskless-sync-delay", "0")]);
    let mut s = s;
    while s.cmd(&["PING"]).text() != "PONG" {
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("  (redis-server load: {:.2} s)", t.elapsed().as_secs_f64());
    let addr = ShardAddr::plain("127.0.0.1", s.port, None);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cpu = |s: &mut Server| -> f64 {
        let info = s.cmd(&["INFO", "cpu"]).text();
        info.lines()
            .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
            .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
            .sum()
    };
    // `BENCH_VERIFY_ONLY=snapshot` leaves out the SCAN + DUMP figures (tens of seconds on
    // a big file).
    let dumps = std::env::var("BENCH_VERIFY_ONLY").map_or(true, |o| o != "snapshot");
    if dumps {
        let cpu_before = cpu(&mut s);
        let (live_s, sd) = median(|| {
            rt.block_on(verify::digest_of_server(
                &addr,
                &DigestOptions::default(),
                Duration::from_secs(60),
            ))
            .unwrap()
        });
        let server_cpu = (cpu(&mut s) - cpu_before) / runs() as f64;
        let c = verify::compare(&d, &sd.digest, None);
        println!(
        "  live digest (digest_of_server)   {live_s:>6.2} s {:>10.0} keys/s, one shard (redis-server busy {:.0}% of it); equal to the file's: {}",
        sd.scanned as f64 / live_s,
        100.0 * server_cpu / live_s,
        c.equal
    );
        // A shard no client uses yet may skip LZF on its DUMP payloads.
        let quiet = DigestOptions {
            uncompressed_dumps: true,
            ..Default::default()
        };
        let cpu_before = cpu(&mut s);
        let (quiet_s, sd) = median(|| {
            rt.block_on(verify::digest_of_server(
                &addr,
                &quiet,
                Duration::from_secs(60),
            ))
            .unwrap()
        });
        let server_cpu = (cpu(&mut s) - cpu_before) / runs() as f64;
        let c = verify::compare(&d, &sd.digest, None);
        println!(
        "  live digest, DUMPs without LZF   {quiet_s:>6.2} s {:>10.0} keys/s, one shard (redis-server busy {:.0}% of it); equal to the file's: {}",
        sd.scanned as f64 / quiet_s,
        100.0 * server_cpu / quiet_s,
        c.equal
    );
    }
    // The quiescent shard's proof (recover, restore): the server's own snapshot. CPU
    // seconds per run besides the wall time: the server's main thread, its fork (children,
    // counted once reaped) and this process, which tell where the time goes on a machine
    // whose load moves the wall time.
    let snapshot = DigestOptions {
        uncompressed_dumps: true,
        server_snapshot: true,
        ..Default::default()
    };
    let children = |s: &mut Server| -> f64 {
        let info = s.cmd(&["INFO", "cpu"]).text();
        info.lines()
            .filter(|l| {
                l.starts_with("used_cpu_user_children:") || l.starts_with("used_cpu_sys_children:")
            })
            .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
            .sum()
    };
    let (cpu_before, fork_before, own_before) = (cpu(&mut s), children(&mut s), own_cpu());
    let (snap_s, sd) = median(|| {
        rt.block_on(verify::digest_of_server(
            &addr,
            &snapshot,
            Duration::from_secs(60),
        ))
        .unwrap()
    });
    let per_run = runs() as f64;
    let server_cpu = (cpu(&mut s) - cpu_before) / per_run;
    let fork_cpu = (children(&mut s) - fork_before) / per_run;
    let own = (own_cpu() - own_before) / per_run;
    let c = verify::compare(&d, &sd.digest, None);
    println!(
        "  snapshot digest (SYNC)           {snap_s:>6.2} s {:>10.0} keys/s, one shard; CPU per run: redis-server {server_cpu:.2} s, its fork {fork_cpu:.2} s, this process {own:.2} s; equal to the file's: {}",
        sd.scanned as f64 / snap_s,
        c.equal
    );
}

/// This process's CPU time (user + system), in seconds.
fn own_cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}
