//! Shell speed: process start to a finished one-shot `help`, commands parsed per second,
//! and completion latency with 10,000 nodes in the CCS.
//!
//! Run: `cargo bench --bench shell` (release build). Prints figures; asserts nothing.
//! Wall time suffers when other work shares the machine, so CPU time (of the child
//! process, or of this thread) is printed beside it.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lazarus::ccs::{default_local_cluster, Node, PortRange, Store};
use lazarus::cmd::{parse, registry};
use lazarus::lang::complete;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn show(label: &str, samples: &mut [Duration], cpu: &mut [Duration], target: &str) {
    let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
    println!(
        "{label:<58} wall median {:>8.3} ms  p99 {:>8.3} ms  cpu median {:>8.3} ms  (target {target}, n={})",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        percentile(cpu, 0.5).as_secs_f64() * 1e3,
        samples.len()
    );
}

/// CPU time (user + system) of this thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time (user + system) of all waited-for children so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Wall and CPU time of one run of the binary.
fn run_binary(home: &std::path::Path, args: &[&str]) -> (Duration, Duration) {
    let cpu = children_cpu();
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_lazarus"))
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the binary runs");
    let took = start.elapsed();
    assert!(status.success(), "lazarus {args:?} failed");
    (took, children_cpu() - cpu)
}

fn main() {
    let home = tempfile::tempdir().unwrap();

    // 1. Process start to a finished one-shot `help`.
    for _ in 0..5 {
        run_binary(home.path(), &["help"]);
    }
    let (mut samples, mut cpu): (Vec<_>, Vec<_>) =
        (0..100).map(|_| run_binary(home.path(), &["help"])).unzip();
    show(
        "process start -> one-shot `help` finished",
        &mut samples,
        &mut cpu,
        "< 20 ms",
    );

    // 2. Commands parsed per second, over every registry example.
    let lines: Vec<&str> = registry()
        .iter()
        .flat_map(|s| s.examples.iter().copied())
        .collect();
    let start = Instant::now();
    let cpu = thread_cpu();
    let mut parsed = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for line in &lines {
            black_box(parse(black_box(line)).unwrap());
            parsed += 1;
        }
    }
    let rate = parsed as f64 / start.elapsed().as_secs_f64();
    let cpu_rate = parsed as f64 / (thread_cpu() - cpu).as_secs_f64();
    println!(
        "{:<58} {:>9.0} lines/s wall, {:>9.0} lines/s of CPU ({} distinct example lines)",
        "commands parsed per second",
        rate,
        cpu_rate,
        lines.len()
    );

    // 3. Completion with 10,000 nodes in the CCS.
    let mut cluster = default_local_cluster(home.path());
    let mut nodes = BTreeMap::new();
    for id in 1..=10_000u64 {
        nodes.insert(
            id,
            Node {
                id,
                addr: "127.0.0.1".into(),
                persistent_path: home.path().join(format!("nodes/{id}")),
                recovery_path: None,
                port_range: PortRange::DEFAULT,
                rack_id: None,
                ssh: None,
                redis_server: None,
            },
        );
    }
    cluster.nodes = nodes;
    cluster.alloc_id = 10_001;
    for (line, expect) in [
        ("node 12", 111usize),
        ("node ", 10_001),
        ("info node node:99", 111),
        // persistent_path, port_range, rack_id, redis_server, ssh, ssh_key.
        ("node add addr 127.0.0.1 ", 6),
        ("cl", 1),
    ] {
        let got = complete(registry(), Some(&cluster), line, line.len())
            .candidates
            .len();
        assert_eq!(got, expect, "`{line}`");
        let (mut samples, mut cpu): (Vec<_>, Vec<_>) = (0..300)
            .map(|_| {
                let (start, cpu) = (Instant::now(), thread_cpu());
                black_box(complete(
                    registry(),
                    Some(&cluster),
                    black_box(line),
                    line.len(),
                ));
                (start.elapsed(), thread_cpu() - cpu)
            })
            .unzip();
        show(
            &format!("completion, 10k nodes, `{line}<TAB>` ({expect} found)"),
            &mut samples,
            &mut cpu,
            "< 1 ms",
        );
    }

    // The shell completion scripts' path: a process that loads the 10k-node CCS first.
    let store = Store::new(home.path().to_path_buf());
    let lock = store.lock().unwrap();
    lock.save(&mut cluster).unwrap();
    drop(lock);
    let (mut samples, mut cpu): (Vec<_>, Vec<_>) = (0..30)
        .map(|_| run_binary(home.path(), &["complete", "--", "node", "12"]))
        .unzip();
    show(
        "`lazarus complete -- node 12` process, 10k-node CCS",
        &mut samples,
        &mut cpu,
        "none",
    );
}
