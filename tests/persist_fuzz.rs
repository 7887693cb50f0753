//! The reader never panics: arbitrary bytes, and mutations (flips, cuts, insertions) of
//! an RDB and an AOF written by a real redis-server.

mod persist_support;

use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use lazarus::ccs::SlotRange;
use lazarus::persist::{check_path, CheckOptions, FileReport};
use persist_support::{args, Server};
use proptest::prelude::*;

/// An RDB and a legacy AOF with a bit of every type, written once per test run.
fn samples() -> &'static (Vec<u8>, Vec<u8>) {
    static SAMPLES: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let mut s = Server::start(&[("appendonly", "yes"), ("aof-use-rdb-preamble", "no")]);
        let mut cmds = Vec::new();
        for i in 0..20 {
            cmds.push(args(&["SET", &format!("s{i}"), &"x".repeat(i * 10)]));
            cmds.push(args(&["RPUSH", "list", &i.to_string()]));
            cmds.push(args(&["HSET", "hash", &format!("f{i}"), "v"]));
            cmds.push(args(&["SADD", "ints", &i.to_string()]));
            cmds.push(args(&["SADD", "set", &format!("m{i}")]));
            cmds.push(args(&["ZADD", "zset", &i.to_string(), &format!("m{i}")]));
            cmds.push(args(&["XADD", "stream", "*", "f", &i.to_string()]));
        }
        cmds.push(args(&["XGROUP", "CREATE", "stream", "g", "0"]));
        cmds.push(args(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "COUNT",
            "3",
            "STREAMS",
            "stream",
            ">",
        ]));
        cmds.push(args(&["SET", "ttl", "v", "EX", "1000"]));
        s.batch(&cmds);
        s.cmd(&["SAVE"]);
        let rdb = fs::read(s.file("dump.rdb")).unwrap();
        let dir = s.path().join("appendonlydir");
        let aof = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".incr.aof"))
            .map(|p| fs::read(p).unwrap())
            .unwrap();
        (rdb, aof)
    })
}

fn check_bytes(dir: &Path, name: &str, bytes: &[u8]) -> FileReport {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    let opts = CheckOptions {
        slots: Some(SlotRange { start: 0, end: 100 }),
    };
    check_path(&p, &opts)
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Cut(usize),
    Insert(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => any::<usize>().prop_map(Mutation::Cut),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, v)| Mutation::Insert(i, v)),
    ]
}

fn mutate(mut bytes: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if bytes.is_empty() {
            break;
        }
        match m {
            Mutation::Set(i, b) => {
                let n = bytes.len();
                bytes[i % n] = *b;
            }
            Mutation::Cut(i) => bytes.truncate(i % bytes.len()),
            Mutation::Insert(i, v) => {
                let at = i % bytes.len();
                bytes.splice(at..at, v.iter().copied());
            }
        }
    }
    bytes
}

/// 200 cases in CI; `PERSIST_FUZZ_CASES=100000` for a long local run.
fn cases() -> u32 {
    std::env::var("PERSIST_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let dir = tempfile::tempdir().unwrap();
        check_bytes(dir.path(), "f.rdb", &bytes);
        check_bytes(dir.path(), "f.aof", &bytes);
        let mut rdb = b"REDIS0010".to_vec();
        rdb.extend_from_slice(&bytes);
        check_bytes(dir.path(), "g.rdb", &rdb);
        let mut aof = b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n".to_vec();
        aof.extend_from_slice(&bytes);
        check_bytes(dir.path(), "g.aof", &aof);
    }

    #[test]
    fn mutated_real_files_never_panic(muts in proptest::collection::vec(mutation(), 1..6)) {
        let (rdb, aof) = samples();
        let dir = tempfile::tempdir().unwrap();
        let r = check_bytes(dir.path(), "m.rdb", &mutate(rdb.clone(), &muts));
        prop_assert!(r.keys <= 1000);
        check_bytes(dir.path(), "m.aof", &mutate(aof.clone(), &muts));
    }

    #[test]
    fn arbitrary_manifests_never_panic(text in "[a-z0-9 \"'\\\\.\n#]{0,200}") {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("appendonly.aof.manifest"), &text).unwrap();
        fs::write(dir.path().join("a"), b"*1\r\n$4\r\nPING\r\n").unwrap();
        check_path(dir.path(), &CheckOptions::default());
    }
}
