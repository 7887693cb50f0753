//! The differential campaign at scale (issues 9 and 18): mutants of files redis-server 7.0
//! wrote (RDB of every type, AOF with and without an RDB preamble, and an old single
//! `appendonly.aof` with one), each judged by
//! redis-server 7.0 and valkey-server 8.1 loading it and by the reader. Prints, per
//! engine: agreements, truncated AOFs the server loads in part (the reader says
//! `truncated`, with the length to keep), false alarms (the reader refuses what the
//! server loads), false ok (the failure this hunts), libraries whose Lua does not compile
//! left unjudged (only one over 32 MiB, which the reader warns it did not load; every
//! other library is loaded in a sandbox as the server does), and wrong exact key counts.
//!
//! Run: `cargo bench --bench differential` (`DIFF_MUTANTS`, default 20000; `DIFF_SEED`;
//! `LAZARUS_VALKEY_SERVER` for valkey; `LAZARUS_DIFF_KEEP=<dir>` keeps failures and the
//! first 5 false alarms of each chunk of 1000, by default in `target/diff-failures`: a
//! failure cannot be remade from its seed alone).
//!
//! `DIFF_FLIPS=<seed>:<file>[:<from>-<to>]` (e.g. `aof-preamble-yes:1`, the base RDB of the
//! AOF with a preamble) runs an exhaustive scan instead: every single-bit flip of those
//! bytes (by default from 16 bytes before the function library's code to 400 past the
//! first `SELECTDB` after it), with the CRC-64 recomputed and left alone
//! (`DIFF_FLIPS_CRC=fix` or `keep` for one), each loaded only when the reader says `ok`
//! (`DIFF_FLIPS_ALL=1`: all of them).

#[path = "../tests/persist_support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::Instant;

use support::differential::{
    campaign, flip_scan, library_layout, materialize, seeds, Engine, Seed,
};

fn main() {
    let n: u64 = std::env::var("DIFF_MUTANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = std::env::var("DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_0018);
    let mut engines = vec![Engine::new(
        "redis-server 7.0",
        PathBuf::from("redis-server"),
    )];
    match support::valkey_server() {
        Some(v) => engines.push(Engine::new("valkey-server 8.1", PathBuf::from(v))),
        None => println!("note: no valkey-server (LAZARUS_VALKEY_SERVER unset): redis-server only"),
    }
    // Failures are kept unless told where: the seeds are made afresh each run (their
    // times differ), so a chunk run again does not remake the same mutant.
    if std::env::var_os("LAZARUS_DIFF_KEEP").is_none() {
        let keep = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/diff-failures");
        println!("failures kept in {}", keep.display());
        std::env::set_var("LAZARUS_DIFF_KEEP", keep);
    }
    let started = Instant::now();
    let seeds = seeds();
    // DIFF_SEEDS_OUT=<dir>: the seeds written there too, to look at.
    if let Some(out) = std::env::var_os("DIFF_SEEDS_OUT") {
        for s in &seeds {
            let dir = PathBuf::from(&out).join(&s.name);
            std::fs::create_dir_all(&dir).unwrap();
            materialize(s.kind, &s.files, &dir);
        }
    }
    if let Ok(spec) = std::env::var("DIFF_FLIPS") {
        flips(&spec, &seeds, &mut engines, started);
        return;
    }
    println!(
        "{n} mutants of {} seeds ({}), seed {seed:#x}",
        seeds.len(),
        seeds
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    // In chunks, so a long run reports as it goes.
    let chunk = 1000.min(n.max(1));
    let mut done = 0;
    let mut totals: Vec<(String, [u64; 9])> =
        engines.iter().map(|e| (e.name.clone(), [0; 9])).collect();
    while done < n {
        let k = chunk.min(n - done);
        let tallies = campaign(k, seed.wrapping_add(done), &mut engines, &seeds);
        done += k;
        for ((name, sum), (_, t)) in totals.iter_mut().zip(&tallies) {
            let add = [
                t.mutants,
                t.agree,
                t.stricter_truncated,
                t.false_alarm,
                t.false_ok,
                t.lua_not_compiled,
                t.key_mismatch,
                t.expired_between,
                t.agree_refused,
            ];
            for (s, a) in sum.iter_mut().zip(add) {
                *s += a;
            }
            for f in &t.failures {
                println!("  FAILURE {name}: {f}");
            }
            for a in &t.alarms {
                println!("  alarm {name}: {a}");
            }
        }
        for (name, s) in &totals {
            println!(
                "{name}: {} mutants: {} agree ({} both refuse), {} truncated AOFs the server loads in part, {} false alarms, {} false ok, {} Lua too big to load, {} key mismatches, {} TTLs run out between check and load ({:.0} s)",
                s[0], s[1], s[8], s[2], s[3], s[4], s[5], s[6], s[7],
                started.elapsed().as_secs_f64()
            );
        }
    }
}

fn flips(spec: &str, seeds: &[Seed], engines: &mut [Engine], started: Instant) {
    let mut parts = spec.split(':');
    let name = parts.next().unwrap_or_default();
    let Some(seed) = seeds.iter().find(|s| s.name == name) else {
        panic!("DIFF_FLIPS: no seed `{name}`");
    };
    let file: usize = parts.next().and_then(|f| f.parse().ok()).unwrap_or(0);
    let bytes = &seed.files[file].1;
    let range = match parts.next().and_then(|r| r.split_once('-')) {
        Some((a, b)) => a.parse().unwrap()..b.parse().unwrap(),
        None => {
            let (code, db) = library_layout(bytes).expect("a function library in the file");
            code.saturating_sub(16)..db + 400
        }
    };
    println!(
        "{} {} ({} bytes, library code at {:?}): every bit of bytes {range:?}",
        seed.name,
        seed.files[file].0,
        bytes.len(),
        library_layout(bytes)
    );
    let all = std::env::var_os("DIFF_FLIPS_ALL").is_some();
    let crc = std::env::var("DIFF_FLIPS_CRC").unwrap_or_default();
    for fix in [true, false] {
        if (crc == "fix" && !fix) || (crc == "keep" && fix) {
            continue;
        }
        let scan = flip_scan(seed, file, range.clone(), fix, all, engines);
        println!(
            "CRC-64 {}: {} mutants, {} the reader refuses (not loaded)",
            if fix { "recomputed" } else { "left alone" },
            scan.mutants,
            scan.reader_refused_unloaded
        );
        for (name, t) in &scan.tallies {
            for f in &t.failures {
                println!("  FAILURE {name}: {f}");
            }
            for a in &t.alarms {
                println!("  alarm {name}: {a}");
            }
            println!(
                "{name}: {} loaded: {} agree ({} both refuse), {} truncated, {} false alarms, {} false ok, {} Lua too big to load, {} key mismatches ({:.0} s)",
                t.judged, t.agree, t.agree_refused, t.stricter_truncated, t.false_alarm, t.false_ok,
                t.lua_not_compiled, t.key_mismatch, started.elapsed().as_secs_f64()
            );
        }
    }
}
