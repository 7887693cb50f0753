//! Benchmark (not a test): the persistence reader against `cat` and redis-check-rdb /
//! redis-check-aof on a >= 1 GB RDB of mixed types and its AOF twin (RESP, no preamble),
//! and on the shapes of issue 16 (5 M small keys, 5 M small commands, the twin's base
//! alone, the RDB as an AOF's base or preamble with writes after it).
//!
//! Run: `cargo bench --bench reader` (builds the data once into `target/bench-data/`;
//! `BENCH_READER_GB=2` for a bigger file, `BENCH_READER_REBUILD=1` to rebuild;
//! `BENCH_READER_SHAPES=small` for the small-key RDB and small-command AOF only,
//! `BENCH_READER_ONLY=<words>` for the shapes whose label holds them; every figure is
//! the median of `BENCH_READER_RUNS` runs, 3 by default, taken in turns with the other
//! contenders; peak memory is the highest of them).
//! Each contender runs as a child process of a fresh copy of this binary: wall time, and
//! CPU time and peak RSS from `wait4` (the kernel's own peak). The reader runs twice a
//! round: as one check on an idle machine runs (an RDB of 64 MB or more, an AOF's RDB
//! base or preamble too, read in parts at once, a RESP AOF read ahead, on the second
//! core), and pinned to one core with `taskset -c 0` (no second core: it reads on its own
//! thread), whose CPU time is the one-core figure. Each shape's files are dropped from
//! the page cache and read back first, so every contender finds them as a read from disk
//! leaves them, not as their writer did (see `support::recache`). A fifth contender, also on one core,
//! is the floor: the files mapped as the reader maps them and every byte read once,
//! through the CRC-64 an RDB is checked by, nothing parsed (`--floor`); the tool's CPU
//! time over it is the most any reader that looks at every byte could reach here.

#[path = "support/mod.rs"]
mod bench_support;
#[path = "../tests/persist_support/mod.rs"]
mod support;

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use lazarus::persist::{check_path, CheckOptions};
use support::Server;

fn data_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("bench-data")
}

/// Fast deterministic bytes that LZF cannot compress.
struct XorShift(u64);

impl XorShift {
    fn fill(&mut self, out: &mut Vec<u8>, n: usize) {
        for _ in 0..n {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            out.push(b'!' + (self.0 % 90) as u8);
        }
    }
}

fn cmd(parts: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    parts
}

fn b(s: impl Into<String>) -> Vec<u8> {
    s.into().into_bytes()
}

/// Fills a server with ~`gb` GB of RDB: strings (random and compressible), small and big
/// hashes, sets, intsets, sorted sets, lists, and streams with a consumer group.
fn populate(s: &mut Server, gb: f64) {
    let scale = gb.max(0.05);
    // Calibrated so that `gb` = 1 gives a little over 1 GB of RDB.
    let strings = (5_700_000.0 * scale) as usize;
    let mut rng = XorShift(0x9e3779b97f4a7c15);
    let mut batch = Vec::new();
    let flush = |s: &mut Server, batch: &mut Vec<Vec<Vec<u8>>>| {
        s.batch(batch);
        batch.clear();
    };
    // Strings via MSET, 100 a command: 3 in 4 random 150 bytes, 1 in 4 compressible.
    for chunk in (0..strings).collect::<Vec<_>>().chunks(100) {
        let mut c = vec![b("MSET")];
        for &i in chunk {
            c.push(b(format!("str:{i}")));
            let mut v = Vec::with_capacity(160);
            if i % 4 == 0 {
                v.extend_from_slice(
                    format!("user {i} logged in from the usual place; ")
                        .repeat(4)
                        .as_bytes(),
                );
            } else {
                rng.fill(&mut v, 150);
            }
            c.push(v);
        }
        batch.push(cmd(c));
        if batch.len() >= 200 {
            flush(s, &mut batch);
        }
    }
    flush(s, &mut batch);
    let small = (150_000.0 * scale) as usize;
    let big = (1_500.0 * scale) as usize;
    for i in 0..small {
        let mut h = vec![b("HSET"), b(format!("hash:{i}"))];
        let mut st = vec![b("SADD"), b(format!("set:{i}"))];
        let mut is = vec![b("SADD"), b(format!("intset:{i}"))];
        let mut z = vec![b("ZADD"), b(format!("zset:{i}"))];
        let mut l = vec![b("RPUSH"), b(format!("list:{i}"))];
        for f in 0..10 {
            h.push(b(format!("field{f}")));
            let mut v = Vec::new();
            rng.fill(&mut v, 20);
            h.push(v);
            st.push(b(format!("member-{f}-{i}")));
            is.push(b((f * 7919 + i).to_string()));
            z.push(b(format!("{}.5", f * 3)));
            z.push(b(format!("m{f}")));
            l.push(b(format!("item-{f}-{i}")));
        }
        batch.extend([cmd(h), cmd(st), cmd(is), cmd(z), cmd(l)]);
        if i % 10 == 0 {
            batch.push(vec![
                b("XADD"),
                b(format!("stream:{}", i / 50)),
                b("*"),
                b("f"),
                b(i.to_string()),
                b("g"),
                b("v"),
            ]);
        }
        if batch.len() >= 500 {
            flush(s, &mut batch);
        }
    }
    for i in 0..big {
        for part in 0..10 {
            let mut h = vec![b("HSET"), b(format!("bighash:{i}"))];
            let mut st = vec![b("SADD"), b(format!("bigset:{i}"))];
            let mut z = vec![b("ZADD"), b(format!("bigzset:{i}"))];
            let mut l = vec![b("RPUSH"), b(format!("biglist:{i}"))];
            for f in part * 100..(part + 1) * 100 {
                h.push(b(format!("field-{f}")));
                h.push(b(format!("value-{f}")));
                st.push(b(format!("member-{f}")));
                z.push(b(f.to_string()));
                z.push(b(format!("m-{f}")));
                l.push(b(format!("element-{f}")));
            }
            batch.extend([cmd(h), cmd(st), cmd(z), cmd(l)]);
        }
        if batch.len() >= 200 {
            flush(s, &mut batch);
        }
    }
    flush(s, &mut batch);
    for i in 0..(small / 50) {
        s.cmd(&["XGROUP", "CREATE", &format!("stream:{i}"), "g", "0"]);
    }
}

/// Builds (or reuses) `dump.rdb` and `appendonlydir/` under the data dir.
fn build_data(dir: &Path, gb: f64) -> (PathBuf, PathBuf) {
    let rdb = dir.join("dump.rdb");
    let aof = dir.join("appendonlydir");
    let rebuild = std::env::var_os("BENCH_READER_REBUILD").is_some();
    if rdb.is_file() && aof.is_dir() && !rebuild {
        return (rdb, aof);
    }
    // Only this shape's files: the small shapes (`small/`, built first) stay.
    let _ = fs::remove_file(&rdb);
    let _ = fs::remove_dir_all(&aof);
    let _ = fs::remove_dir_all(dir.join("preambledir"));
    let _ = fs::remove_file(dir.join("preamble.aof"));
    fs::create_dir_all(dir).unwrap();
    let tmp = tempfile::tempdir_in(dir).unwrap();
    eprintln!(
        "building ~{gb} GB of test data in {} (once)...",
        dir.display()
    );
    let t = Instant::now();
    let mut s = Server::start_in(
        tmp,
        &[
            ("appendonly", "no"),
            ("aof-use-rdb-preamble", "no"),
            ("enable-debug-command", "local"),
        ],
    );
    populate(&mut s, gb);
    s.cmd(&[
        "DEBUG",
        "POPULATE",
        &((500_000.0 * gb) as u64).to_string(),
        "populated",
        "64",
    ]);
    s.cmd(&["SAVE"]);
    s.cmd(&["CONFIG", "SET", "appendonly", "yes"]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    s.wait_persistence_for(std::time::Duration::from_secs(1800));
    fs::rename(s.file("dump.rdb"), &rdb).unwrap();
    fs::rename(s.file("appendonlydir"), &aof).unwrap();
    eprintln!("built in {:.0} s", t.elapsed().as_secs_f64());
    (rdb, aof)
}

struct Run {
    secs: f64,
    /// User plus system CPU time: steadier than wall time on a shared machine.
    cpu: f64,
    max_rss_kb: i64,
    ok: bool,
}

/// Runs a program to completion through a fresh copy of this binary (`--measure`, which
/// spawns it and reports what `wait4` says of it), measuring wall time, CPU time and peak
/// RSS. The peak is the kernel's own (`ru_maxrss`), every page counted however briefly it
/// was held. Spawned from here it would also count this process's memory: a spawned
/// child's count starts from its parent's peak, and this process's is big, where the fresh
/// copy's is a few MiB (the floor of the figure: `cat` shows it). Sampling the child's
/// `VmHWM` from `/proc` instead, as before, missed up to 4.6 MiB of the reader's peaks.
fn measure<I, S>(program: &OsStr, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let me = std::env::current_exe().unwrap();
    let out = Command::new(&me)
        .arg("--measure")
        .arg(program)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{me:?} --measure {program:?}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<f64> = text
        .split_whitespace()
        .map(|w| {
            w.parse()
                .unwrap_or_else(|_| panic!("--measure said {text:?}"))
        })
        .collect();
    let [secs, cpu, max_rss_kb, ok] = f[..] else {
        panic!("--measure said {text:?}");
    };
    Run {
        secs,
        cpu,
        max_rss_kb: max_rss_kb as i64,
        ok: ok == 1.0,
    }
}

/// `--measure PROGRAM ARGS...`: runs the program (its output dropped) and prints its wall
/// time, CPU time (user and system, seconds), peak RSS (KiB) and whether it exited 0.
fn measure_child(args: &[String]) -> ! {
    let (program, rest) = args.split_first().expect("--measure PROGRAM ARGS...");
    let t = Instant::now();
    let child = Command::new(program)
        .args(rest)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{program:?}: {e}"));
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value to be filled in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: reaps our own child, with valid pointers to locals.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(r, child.id() as i32, "wait4 failed");
    let wall = t.elapsed().as_secs_f64();
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    println!(
        "{wall} {} {} {}",
        secs(usage.ru_utime) + secs(usage.ru_stime),
        usage.ru_maxrss,
        u8::from(ok)
    );
    std::process::exit(0)
}

/// `--floor FILE...`: the least a check of these files costs on this core whatever it
/// parses: each file mapped read-only as `persist::mapped` maps it (advised sequential,
/// 2 MiB made present at a time with `MADV_POPULATE_READ`, given back behind), and every
/// byte read once, by the CRC-64 the server checks an RDB by (one pass: the bytes are
/// read anyway). Exits 0 when every file could be mapped.
fn floor_child(paths: &[String]) -> ! {
    use crc_fast::{CrcAlgorithm, Digest};
    use std::os::fd::AsRawFd;
    const STEP: usize = 2 << 20;
    let mut all = 0u64;
    for p in paths {
        let f = fs::File::open(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        let len = f.metadata().unwrap().len() as usize;
        if len == 0 {
            continue;
        }
        // SAFETY: a fresh read-only private mapping of a file opened here; it is only
        // read, and unmapped below. The benchmark's files do not shrink while it runs.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "{p}: mmap failed");
        let base = base.cast::<u8>();
        // SAFETY (each madvise): whole pages inside the mapping, advice that changes no
        // byte it reads.
        unsafe { libc::madvise(base.cast(), len, libc::MADV_SEQUENTIAL) };
        let mut crc = Digest::new(CrcAlgorithm::Crc64Redis);
        for from in (0..len).step_by(STEP) {
            let to = (from + STEP).min(len);
            // SAFETY: `[from, to)` lies inside the mapping (see above).
            let bytes = unsafe {
                let at = base.add(from);
                libc::madvise(at.cast(), to - from, libc::MADV_POPULATE_READ);
                std::slice::from_raw_parts(at, to - from)
            };
            crc.update(bytes);
            // SAFETY: as above; the pages read are dropped from the page tables only.
            unsafe { libc::madvise(base.add(from).cast(), to - from, libc::MADV_DONTNEED) };
        }
        all ^= crc.finalize();
        // SAFETY: the mapping made above, no longer used.
        unsafe { libc::munmap(base.cast(), len) };
    }
    println!("{all:016x}");
    std::process::exit(0)
}

/// Each contender run `BENCH_READER_RUNS` times (3 by default) in turns (the first, the
/// second, ..., the first again), so that a slow spell of the shared machine falls on all
/// of them alike; wall and CPU are each the median of their own runs, peak memory the
/// highest. Also returns every round's runs, for ratios taken round by round.
fn measure_rounds(contenders: &[(&OsStr, Vec<std::ffi::OsString>)]) -> (Vec<Run>, Vec<Vec<Run>>) {
    let n = std::env::var("BENCH_READER_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3usize)
        .max(1);
    let mut runs: Vec<Vec<Run>> = contenders.iter().map(|_| Vec::new()).collect();
    for _ in 0..n {
        for (c, (program, args)) in contenders.iter().enumerate() {
            runs[c].push(measure(program, args));
        }
    }
    let medians = runs
        .iter()
        .map(|rs| Run {
            secs: median(rs.iter().map(|r| r.secs)),
            cpu: median(rs.iter().map(|r| r.cpu)),
            max_rss_kb: rs.iter().map(|r| r.max_rss_kb).max().unwrap_or(0),
            ok: rs.iter().all(|r| r.ok),
        })
        .collect();
    (medians, runs)
}

fn median(v: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn size_of(p: &Path) -> u64 {
    if p.is_dir() {
        fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    } else {
        fs::metadata(p).unwrap().len()
    }
}

fn files_of(p: &Path) -> Vec<PathBuf> {
    if p.is_dir() {
        let mut v: Vec<_> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    } else {
        vec![p.to_path_buf()]
    }
}

fn row(name: &str, r: &Run, bytes: u64, keys: u64) {
    let mb = bytes as f64 / 1e6;
    println!(
        "  {name:<30} {:>6.2} s {:>6.2} s {:>7.0} {:>7.0} {:>11.0} {:>7.1} MB{}",
        r.secs,
        r.cpu,
        mb / r.secs,
        mb / r.cpu,
        keys as f64 / r.secs,
        r.max_rss_kb as f64 / 1024.0,
        if r.ok { "" } else { "  (failed)" }
    );
}

/// The shapes operators really have (issue 16), built once: an RDB of 5 M small keys
/// (`DEBUG POPULATE`), and an AOF of 5 M small commands (values of at most 32 bytes; SET,
/// HSET, RPUSH, SADD, ZADD, INCR, PEXPIREAT, DEL and MULTI/EXEC blocks), as a single file.
/// A multi-part AOF as a server with `aof-use-rdb-preamble yes` (the default) leaves it
/// after a rewrite and some writes: the mixed RDB as its base (a hard link, or a copy),
/// then an incremental file of 60,000 writes, deletes and expiries of its keys.
fn build_preamble_aof(dir: &Path, rdb: &Path) -> PathBuf {
    let aof = dir.join("preambledir");
    if aof.join("appendonly.aof.manifest").exists() {
        return aof;
    }
    fs::create_dir_all(&aof).unwrap();
    let base = aof.join("appendonly.aof.1.base.rdb");
    let _ = fs::remove_file(&base);
    if fs::hard_link(rdb, &base).is_err() {
        fs::copy(rdb, &base).unwrap();
    }
    let mut out = Vec::new();
    let mut put = |args: &[&str]| out.extend(support::resp(args));
    put(&["SELECT", "0"]);
    for i in 0..20_000 {
        put(&["SET", &format!("str:{}", i * 7), "x"]);
        put(&["DEL", &format!("str:{}", i * 7 + 1)]);
        put(&["EXPIRE", &format!("hash:{i}"), "100000"]);
    }
    fs::write(aof.join("appendonly.aof.1.incr.aof"), out).unwrap();
    fs::write(
        aof.join("appendonly.aof.manifest"),
        "file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n",
    )
    .unwrap();
    aof
}

/// The default-layout AOF's two files in one (`preamble.aof`): what Redis 4-6 leave with
/// `aof-use-rdb-preamble yes` after a rewrite and the same writes.
fn glued_preamble_aof(dir: &Path, preamble: &Path) -> PathBuf {
    let file = dir.join("preamble.aof");
    if file.is_file() {
        return file;
    }
    let tmp = dir.join("preamble.aof.tmp");
    fs::copy(preamble.join("appendonly.aof.1.base.rdb"), &tmp).unwrap();
    let incr = fs::read(preamble.join("appendonly.aof.1.incr.aof")).unwrap();
    let mut out = fs::OpenOptions::new().append(true).open(&tmp).unwrap();
    std::io::Write::write_all(&mut out, &incr).unwrap();
    fs::rename(&tmp, &file).unwrap();
    file
}

fn build_small(dir: &Path) -> (PathBuf, PathBuf) {
    let dir = dir.join("small");
    fs::create_dir_all(&dir).unwrap();
    let rdb = dir.join("dump.rdb");
    let aof = dir.join("appendonly.aof");
    if !rdb.exists() {
        let tmp = tempfile::tempdir_in(&dir).unwrap();
        let mut s = Server::start_in(tmp, &[("enable-debug-command", "yes")]);
        s.cmd(&["DEBUG", "POPULATE", "5000000", "key", "10"]);
        s.cmd(&["SAVE"]);
        fs::rename(s.file("dump.rdb"), &rdb).unwrap();
    }
    if !aof.exists() {
        let mut rng = XorShift(0x16);
        let mut next = |n: u64| {
            rng.0 ^= rng.0 << 13;
            rng.0 ^= rng.0 >> 7;
            rng.0 ^= rng.0 << 17;
            rng.0 % n
        };
        let mut out = Vec::with_capacity(210 << 20);
        let mut put = |args: &[&str]| out.extend(support::resp(args));
        put(&["SELECT", "0"]);
        let mut n = 0;
        while n < 5_000_000 {
            let k = next(600_000);
            let v = "x".repeat(1 + next(31) as usize);
            match next(100) {
                0..=34 => put(&["SET", &format!("s:{k}"), &v]),
                35..=49 => put(&[
                    "HSET",
                    &format!("h:{}", k % 50_000),
                    &format!("f{}", next(20)),
                    &v,
                ]),
                50..=59 => put(&["RPUSH", &format!("l:{}", k % 30_000), &v]),
                60..=69 => put(&[
                    "SADD",
                    &format!("z:{}", k % 30_000),
                    &format!("m{}", next(100)),
                ]),
                70..=77 => put(&[
                    "ZADD",
                    &format!("q:{}", k % 30_000),
                    &next(1000).to_string(),
                    &format!("m{}", next(100)),
                ]),
                78..=85 => put(&["INCR", &format!("c:{}", k % 100_000)]),
                86..=91 => put(&[
                    "PEXPIREAT",
                    &format!("s:{k}"),
                    &(1_800_000_000_000 + k).to_string(),
                ]),
                92..=95 => put(&["DEL", &format!("s:{k}")]),
                _ => {
                    put(&["MULTI"]);
                    put(&["SET", &format!("s:{k}"), &v]);
                    put(&["INCR", &format!("c:{}", k % 100_000)]);
                    put(&["EXEC"]);
                    n += 3;
                }
            }
            n += 1;
        }
        fs::write(&aof, out).unwrap();
    }
    (rdb, aof)
}

fn header() {
    println!(
        "  {:<30} {:>8} {:>8} {:>7} {:>7} {:>11} {:>10}",
        "", "wall", "cpu", "MB/s", "MB/cpu-s", "keys/s", "peak RSS"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "--measure") {
        measure_child(&args[2..]);
    }
    if args.get(1).is_some_and(|a| a == "--floor") {
        floor_child(&args[2..]);
    }
    // Child mode: check the path(s) and exit non-zero unless every file is ok. The sh
    // wrapper of `cat` is measured the same way.
    if let Some(i) = args.iter().position(|a| a == "--check") {
        let reports = lazarus::persist::check_paths(
            &args[i + 1..].iter().map(PathBuf::from).collect::<Vec<_>>(),
            &CheckOptions::default(),
        );
        let ok = reports
            .iter()
            .all(|r| r.verdict == lazarus::persist::Verdict::Ok);
        for r in &reports {
            eprintln!("{}", serde_json::to_string(r).unwrap());
        }
        std::process::exit(if ok { 0 } else { 1 });
    }
    let gb: f64 = std::env::var("BENCH_READER_GB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    // BENCH_READER_SHAPES=small: only the small-key RDB and small-command AOF.
    let only_small = std::env::var("BENCH_READER_SHAPES").is_ok_and(|v| v == "small");
    let (small_rdb, small_aof) = build_small(&data_dir());
    let mut shapes = vec![
        ("RDB of 5 M small keys", small_rdb, "redis-check-rdb"),
        ("AOF of 5 M small commands", small_aof, "redis-check-aof"),
    ];
    let (rdb, aof) = if only_small {
        (PathBuf::new(), PathBuf::new())
    } else {
        build_data(&data_dir(), gb)
    };
    if !only_small {
        shapes.insert(
            0,
            ("AOF (RESP, multi-part)", aof.clone(), "redis-check-aof"),
        );
        shapes.insert(0, ("RDB", rdb.clone(), "redis-check-rdb"));
        // The same base as one file: a legacy `appendonly.aof` (or a base checked alone).
        shapes.push((
            "AOF base file alone (a legacy single file)",
            aof.join("appendonly.aof.1.base.aof"),
            "redis-check-aof",
        ));
        let preamble = build_preamble_aof(&data_dir(), &rdb);
        shapes.push((
            "AOF of the RDB as its base, then writes (Redis 7's default layout)",
            preamble.clone(),
            "redis-check-aof",
        ));
        shapes.push((
            "AOF of the RDB as its preamble, then writes, in one file (Redis 4-6's)",
            glued_preamble_aof(&data_dir(), &preamble),
            "redis-check-aof",
        ));
    }
    if let Ok(only) = std::env::var("BENCH_READER_ONLY") {
        shapes.retain(|s| s.0.contains(only.as_str()));
    }
    let me = std::env::current_exe().unwrap();
    for (label, path, tool) in &shapes {
        let path = &path;
        let bytes = size_of(path);
        // In the page cache as a read from disk leaves it, whoever wrote it and however
        // (`bench_support::recache`), for every contender alike; then warmed by a check,
        // which also learns the key count.
        bench_support::recache(path);
        let report = check_path(path, &CheckOptions::default());
        assert_eq!(
            report.verdict,
            lazarus::persist::Verdict::Ok,
            "{:?}",
            report.fault
        );
        let keys = report.keys;
        println!(
            "{label}: {} ({:.2} GB, {keys} keys)",
            path.display(),
            bytes as f64 / 1e9
        );
        header();
        let files = files_of(path);
        let target = if path.is_dir() {
            path.join("appendonly.aof.manifest")
        } else {
            path.to_path_buf()
        };
        // Output goes to /dev/null (the child's stdout).
        // The reader twice: free to use the second core (what one check on an idle
        // machine does: a big RDB read in two parts, an AOF read ahead), and pinned to one
        // core, where it finds no second core and reads on its own thread (what each file
        // of a `recover list` of many gets).
        let (runs, rounds) = measure_rounds(&[
            (OsStr::new("cat"), files.iter().map(|f| f.into()).collect()),
            (OsStr::new(tool), vec![target.into()]),
            (me.as_os_str(), vec!["--check".into(), path.into()]),
            (
                OsStr::new("taskset"),
                vec![
                    "-c".into(),
                    "0".into(),
                    me.clone().into(),
                    "--check".into(),
                    path.into(),
                ],
            ),
            (
                OsStr::new("taskset"),
                ["-c", "0"]
                    .iter()
                    .map(Into::into)
                    .chain([me.clone().into(), "--floor".into()])
                    .chain(files.iter().map(Into::into))
                    .collect(),
            ),
        ]);
        let [cat, theirs, ours, one_core, floor] = &runs[..] else {
            unreachable!("five contenders");
        };
        row("cat > /dev/null", cat, bytes, keys);
        row(tool, theirs, bytes, keys);
        row("lazarus persist::check_path", ours, bytes, keys);
        row("  the same on one core", one_core, bytes, keys);
        row("  floor on one core", floor, bytes, keys);
        println!(
            "  reader vs {tool}: {:.1}x faster (wall), {:.1}x (cpu), on one core {:.1}x (cpu); vs cat: {:.0}% of its throughput (wall), {:.0}% (cpu); {:.0} ns cpu a key",
            theirs.secs / ours.secs,
            theirs.cpu / ours.cpu,
            theirs.cpu / one_core.cpu,
            100.0 * cat.secs / ours.secs,
            100.0 * cat.cpu / ours.cpu,
            ours.cpu * 1e9 / keys.max(1) as f64,
        );
        // The tool and the reader on one core run one after the other in each round, so a
        // spell of the machine (which lasts minutes here) falls on both of a pair: the
        // ratio of each pair is steadier than the ratio of two medians.
        let paired: Vec<f64> = rounds[1]
            .iter()
            .zip(&rounds[3])
            .map(|(t, o)| t.cpu / o.cpu)
            .collect();
        println!(
            "  round by round, {tool} cpu / one-core cpu: median {:.1}x (each round: {})",
            median(paired.iter().copied()),
            paired
                .iter()
                .map(|r| format!("{r:.1}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        // What the target asks of the reader's one-core CPU time, and how much of that
        // the floor (mapping and reading every byte, nothing parsed) already takes.
        let goal = if *tool == "redis-check-rdb" {
            15.0
        } else {
            10.0
        };
        let allowed = theirs.cpu / goal;
        println!(
            "  floor (mapped, every byte read by CRC-64, nothing parsed): {:.3} s on one core, \
             {tool} / floor {:.1}x; {goal:.0}x allows the reader {:.3} s, of which the floor \
             takes {:.0}%: {:.3} s left for parsing {keys} keys ({:.1} ns a key; the reader \
             parses in {:.1} ns a key beyond the floor)",
            floor.cpu,
            theirs.cpu / floor.cpu,
            allowed,
            100.0 * floor.cpu / allowed,
            allowed - floor.cpu,
            (allowed - floor.cpu) * 1e9 / keys.max(1) as f64,
            (one_core.cpu - floor.cpu) * 1e9 / keys.max(1) as f64,
        );
    }
    if only_small || std::env::var_os("BENCH_READER_ONLY").is_some() {
        return;
    }
    // Several files at once use all cores.
    let many = vec![rdb.clone(), aof.clone()];
    let bytes: u64 = many.iter().map(|p| size_of(p)).sum();
    header();
    let args = std::iter::once("--check".into())
        .chain(many.into_iter().map(|p| p.into()))
        .collect();
    let (both, _) = measure_rounds(&[(me.as_os_str(), args)]);
    row("check_paths(rdb, aof) in parallel", &both[0], bytes, 0);
}
