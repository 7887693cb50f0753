//! A bounded sample of the differential campaign (issues 9, 18): mutants of files a real
//! redis-server wrote, each loaded by redis-server 7.0 (and valkey-server 8.1 when there
//! is one) and checked by the reader. No false ok, no wrong exact key count. The big run
//! is `cargo bench --bench differential`.

mod persist_support;

use std::path::PathBuf;

use persist_support::differential::{campaign, seeds, Engine};
use persist_support::valkey_server;

#[test]
fn the_reader_never_calls_ok_what_the_server_refuses() {
    let n = std::env::var("LAZARUS_DIFF_MUTANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut engines = vec![Engine::new(
        "redis-server 7.0",
        PathBuf::from("redis-server"),
    )];
    match valkey_server() {
        Some(v) => engines.push(Engine::new("valkey-server 8.1", PathBuf::from(v))),
        None => println!("note: no valkey-server (LAZARUS_VALKEY_SERVER unset): redis-server only"),
    }
    let seeds = seeds();
    let tallies = campaign(n, 0x1a2a_5005, &mut engines, &seeds);
    let mut failures = Vec::new();
    for (engine, t) in &tallies {
        println!(
            "{engine}: {} mutants: {} agree, {} truncated AOFs the server loads in part, {} false alarms, {} false ok, {} libraries too big to load whose Lua does not compile, {} key mismatches",
            t.mutants, t.agree, t.stricter_truncated, t.false_alarm, t.false_ok, t.lua_not_compiled, t.key_mismatch
        );
        for a in &t.alarms {
            println!("  alarm: {a}");
        }
        failures.extend(t.failures.iter().map(|f| format!("{engine}: {f}")));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
