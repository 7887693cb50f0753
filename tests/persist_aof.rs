//! The reader on AOFs written by a real redis-server: multi-part with and without an RDB
//! preamble, legacy single files, and damaged copies (truncations, corrupt records, bad
//! manifest lines, missing parts), compared with the server and with redis-check-aof.

mod persist_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use lazarus::persist::{check_path, fix_truncated, CheckOptions, FileKind, FileReport, Verdict};
use persist_support::{args, Server};

fn check(path: &Path) -> FileReport {
    check_path(path, &CheckOptions::default())
}

fn check_aof_tool(path: &Path) -> bool {
    // redis-check-aof wants the manifest of a multi-part AOF.
    let target = if path.is_dir() {
        manifest(path)
    } else {
        path.to_path_buf()
    };
    Command::new("redis-check-aof")
        .arg(&target)
        .output()
        .expect("redis-check-aof must be installed (redis-tools)")
        .status
        .success()
}

fn manifest(dir: &Path) -> PathBuf {
    dir.join("appendonly.aof.manifest")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// Base data, a rewrite into the base, then incremental commands that create, delete,
/// rename, move keys and swap databases.
fn aof_server(preamble: &str) -> (Server, BTreeMap<u32, u64>) {
    let mut s = Server::start(&[
        ("appendonly", "yes"),
        ("aof-use-rdb-preamble", preamble),
        ("appendfsync", "always"),
    ]);
    let mut cmds = Vec::new();
    for db in [0u32, 1, 5] {
        cmds.push(args(&["SELECT", &db.to_string()]));
        for i in 0..200 {
            cmds.push(args(&["SET", &format!("k{db}:{i}"), &format!("v{i}")]));
        }
        for i in 0..300 {
            cmds.push(args(&["HSET", &format!("h{db}"), &format!("f{i}"), "v"]));
            cmds.push(args(&["RPUSH", &format!("l{db}"), &format!("e{i}")]));
            cmds.push(args(&[
                "ZADD",
                &format!("z{db}"),
                &i.to_string(),
                &format!("m{i}"),
            ]));
            cmds.push(args(&["SADD", &format!("s{db}"), &i.to_string()]));
        }
        cmds.push(args(&["XADD", &format!("x{db}"), "*", "a", "1"]));
        cmds.push(args(&["XGROUP", "CREATE", &format!("x{db}"), "g", "0"]));
        cmds.push(args(&["SET", &format!("ttl{db}"), "v", "EX", "10000"]));
    }
    s.batch(&cmds);
    s.cmd(&[
        "FUNCTION",
        "LOAD",
        "#!lua name=aoflib\nredis.register_function('f1', function() return 1 end)",
    ]);
    assert!(s.cmd(&["BGREWRITEAOF"]).text().contains("rewriting"));
    s.wait_persistence();
    let incr = [
        vec!["SELECT", "0"],
        vec!["SET", "new:0", "a"],
        vec!["SET", "k0:1", "overwritten"],
        vec!["DEL", "k0:2", "k0:3", "missing"],
        vec!["MSET", "new:1", "a", "k0:4", "b"],
        vec!["RENAME", "k0:5", "renamed:0"],
        vec!["MOVE", "k0:6", "3"],
        vec!["EXPIRE", "k0:7", "5000"],
        vec!["INCR", "counter"],
        vec!["SELECT", "1"],
        vec!["HSET", "h1", "extra", "x"],
        vec!["SADD", "newset", "a", "b"],
        vec!["UNLINK", "k1:0", "k1:1"],
        vec!["SWAPDB", "1", "5"],
        vec!["SELECT", "3"],
        vec!["FLUSHDB"],
        vec!["SET", "after-flush", "x"],
    ];
    for c in incr {
        let r = s.cmd(&c);
        assert!(
            !matches!(r, persist_support::Reply::Error(_)),
            "{c:?}: {r:?}"
        );
    }
    let keyspace = s.keyspace();
    (s, keyspace)
}

fn dir_of(s: &Server) -> PathBuf {
    s.path().join("appendonlydir")
}

fn files_in(dir: &Path, suffix: &str) -> PathBuf {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap_or_else(|| panic!("no *{suffix} in {}", dir.display()))
}

#[test]
fn multi_part_aof_with_rdb_preamble_counts_what_replay_leaves() {
    let (mut s, keyspace) = aof_server("yes");
    // Its RDB base (past 4 KiB) is read once, the incremental file walked first.
    let base = files_in(&dir_of(&s), ".base.rdb");
    assert!(fs::metadata(base).unwrap().len() > 4096);
    let r = check(&dir_of(&s));
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.fault);
    assert_eq!(r.kind, FileKind::AofMultiPart);
    assert_eq!(r.rdb_version, Some(10));
    assert!(r.keys_exact, "{:?}", r.warnings);
    assert_eq!(r.keys_per_db, keyspace);
    assert_eq!(r.expires, keys_and_expires(&mut s).1);
    assert!(check_aof_tool(&dir_of(&s)));
    // The manifest itself leads to the directory.
    assert_eq!(check(&manifest(&dir_of(&s))).keys_per_db, keyspace);
}

#[test]
fn multi_part_aof_without_preamble_and_legacy_single_files() {
    let (s, keyspace) = aof_server("no");
    let dir = dir_of(&s);
    let r = check(&dir);
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.fault);
    assert_eq!(r.rdb_version, None);
    assert!(r.keys_exact);
    assert_eq!(r.keys_per_db, keyspace);
    assert!(check_aof_tool(&dir));
    // Base and incr glued together: a legacy appendonly.aof.
    let (_tmp, legacy, r) = check_glued(&dir);
    assert!(r.keys_exact);
    assert_eq!(r.keys_per_db, keyspace);
    assert!(check_aof_tool(&legacy));
}

/// A multi-part AOF's base and incr files glued into one legacy `appendonly.aof` (in a
/// temporary directory, returned to keep it), checked: ok, and a single file.
fn check_glued(dir: &Path) -> (tempfile::TempDir, PathBuf, FileReport) {
    let tmp = tempfile::tempdir().unwrap();
    let legacy = tmp.path().join("appendonly.aof");
    fs::write(&legacy, glued(dir)).unwrap();
    let r = check(&legacy);
    assert_eq!(
        (r.verdict, r.kind),
        (Verdict::Ok, FileKind::AofSingle),
        "{:?}",
        r.fault
    );
    (tmp, legacy, r)
}

/// A multi-part AOF's base (RESP or RDB) and its incr file, one after the other: what a
/// legacy `appendonly.aof` holds.
fn glued(dir: &Path) -> Vec<u8> {
    let base = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains(".base."))
        .unwrap_or_else(|| panic!("no base in {}", dir.display()));
    let mut bytes = fs::read(base).unwrap();
    bytes.extend(fs::read(files_in(dir, ".incr.aof")).unwrap());
    bytes
}

/// Keys and keys with a TTL per database, from INFO keyspace.
fn keys_and_expires(s: &mut Server) -> (BTreeMap<u32, u64>, u64) {
    let info = s.cmd(&["INFO", "keyspace"]).text();
    let expires = info
        .lines()
        .filter_map(|l| {
            l.split(",expires=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    (s.keyspace(), expires)
}

/// A legacy `appendonly.aof` whose rewrite holds more keys than the reader probes a lone
/// file for (65,536 commands) before reading it as a base, then writes that delete,
/// expire, rename, overwrite keys of the base and set new ones in two databases: the
/// counts are the server's. (The same path, with a small probe, is compared with a
/// replay of every command on random files in the crate's tests.)
#[test]
fn a_legacy_aof_of_a_big_rewrite_then_writes_counts_what_the_server_holds() {
    let mut s = Server::start(&[
        ("appendonly", "yes"),
        ("aof-use-rdb-preamble", "no"),
        ("appendfsync", "always"),
        ("enable-debug-command", "yes"),
    ]);
    s.cmd(&["DEBUG", "POPULATE", "70000", "key", "8"]);
    let mut cmds = Vec::new();
    for i in 0..500 {
        cmds.push(args(&["EXPIRE", &format!("key:{i}"), "100000"]));
    }
    cmds.push(args(&["SELECT", "2"]));
    for i in 0..100 {
        cmds.push(args(&["RPUSH", &format!("d2:{i}"), "a", "b"]));
    }
    s.batch(&cmds);
    assert!(s.cmd(&["BGREWRITEAOF"]).text().contains("rewriting"));
    s.wait_persistence();
    let incr = [
        vec!["SELECT", "0"],
        vec!["DEL", "key:10", "key:20000", "missing"],
        vec!["SET", "key:1", "overwritten"],
        vec!["EXPIRE", "key:30000", "5000"],
        vec!["RENAME", "key:40000", "renamed"],
        vec!["SET", "new", "v", "EX", "1000"],
        vec!["PERSIST", "key:2"],
        vec!["SELECT", "2"],
        vec!["DEL", "d2:0"],
        vec!["RPUSH", "d2:new", "x"],
    ];
    for c in incr {
        let r = s.cmd(&c);
        assert!(
            !matches!(r, persist_support::Reply::Error(_)),
            "{c:?}: {r:?}"
        );
    }
    let (keyspace, expires) = keys_and_expires(&mut s);
    let dir = dir_of(&s);
    let (_tmp, _legacy, r) = check_glued(&dir);
    assert!(r.keys_exact, "{:?}", r.keys_estimate_why);
    assert_eq!(r.keys_per_db, keyspace);
    assert_eq!((r.keys, r.expires), (70_099, expires));
    // The base file on its own: the rewrite's keys, its TTLs.
    let base = check(&files_in(&dir, ".base.aof"));
    assert!(base.keys_exact, "{:?}", base.keys_estimate_why);
    assert_eq!(base.keys_per_db, BTreeMap::from([(0, 70_000), (2, 100)]));
    assert_eq!(base.expires, 500);
}

#[test]
fn legacy_aof_with_rdb_preamble() {
    let (mut s, keyspace) = aof_server("yes");
    let expires = keys_and_expires(&mut s).1;
    let dir = dir_of(&s);
    let tmp = tempfile::tempdir().unwrap();
    let legacy = tmp.path().join("appendonly.aof");
    let bytes = glued(&dir);
    fs::write(&legacy, &bytes).unwrap();
    // Told apart by content, whatever the name.
    let renamed = tmp.path().join("data.bin");
    fs::write(&renamed, &bytes).unwrap();
    for p in [&legacy, &renamed] {
        let r = check(p);
        assert_eq!(
            (r.verdict, r.kind),
            (Verdict::Ok, FileKind::AofSingle),
            "{:?}",
            r.fault
        );
        // Its commands walked first (from where the preamble is found to end), the
        // preamble read once: the keys and TTLs the server holds.
        assert!(r.keys_exact, "{:?}", r.warnings);
        assert_eq!(r.keys_per_db, keyspace);
        assert_eq!(r.expires, expires);
        assert_eq!(r.rdb_version, Some(10));
    }
}

/// Offsets where RESP records start in an AOF (test data holds no `\r\n*` in values).
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(
        bytes
            .windows(3)
            .enumerate()
            .filter(|(_, w)| w == b"\r\n*")
            .map(|(i, _)| i + 2),
    );
    v
}

#[test]
fn truncated_last_incr_is_truncated_and_fixable() {
    let (s, _) = aof_server("yes");
    let src = dir_of(&s);
    let incr = files_in(&src, ".incr.aof");
    let good = fs::read(&incr).unwrap();
    let starts = record_starts(&good);
    let tmp = tempfile::tempdir().unwrap();
    for (i, cut) in (1..good.len())
        .step_by((good.len() / 25).max(1))
        .enumerate()
    {
        let dir = tmp.path().join(format!("cut{i}"));
        copy_dir(&src, &dir);
        let part = dir.join(incr.file_name().unwrap());
        fs::write(&part, &good[..cut]).unwrap();
        let r = check(&dir);
        if starts.contains(&cut) {
            assert_eq!(r.verdict, Verdict::Ok, "cut {cut}");
            continue;
        }
        assert_eq!(r.verdict, Verdict::Truncated, "cut {cut}: {:?}", r.fault);
        let valid = r.valid_len.unwrap();
        assert!(
            starts.contains(&(valid as usize)) && valid < cut as u64,
            "cut {cut} valid {valid}"
        );
        assert_eq!(r.fault.as_ref().unwrap().file, part);
        assert!(
            !check_aof_tool(&dir),
            "redis-check-aof calls cut {cut} good"
        );
        let fixed = tmp.path().join(format!("fixed{i}"));
        let out = fix_truncated(&r, &fixed).unwrap();
        assert_eq!(out.kept_len, valid);
        let f = check(&fixed);
        assert_eq!(f.verdict, Verdict::Ok, "{:?}", f.fault);
        assert!(check_aof_tool(&fixed));
        // The original is untouched, and a second fix to the same place is refused.
        assert_eq!(fs::read(&part).unwrap(), &good[..cut]);
        assert!(fix_truncated(&r, &fixed).is_err());
    }
}

#[test]
fn damaged_aofs_are_corrupt_where_the_damage_is() {
    let (s, _) = aof_server("yes");
    let src = dir_of(&s);
    let incr = files_in(&src, ".incr.aof");
    let incr_name = incr.file_name().unwrap().to_string_lossy().into_owned();
    let good = fs::read(&incr).unwrap();
    let starts = record_starts(&good);
    let tmp = tempfile::tempdir().unwrap();
    let variant = |name: &str| {
        let d = tmp.path().join(name);
        copy_dir(&src, &d);
        d
    };

    // A record's `*` replaced: corrupt right there.
    let d = variant("star");
    let mid = starts[starts.len() / 2];
    let mut b = good.clone();
    b[mid] = b'X';
    fs::write(d.join(&incr_name), &b).unwrap();
    let r = check(&d);
    assert_eq!(r.verdict, Verdict::Corrupt);
    assert_eq!(r.fault.as_ref().unwrap().offset, mid as u64);
    assert!(!check_aof_tool(&d));

    // The incr split in two at a record boundary, the first one then cut short: a damaged
    // middle is corruption, not truncation.
    let d = variant("middle");
    let split = starts[starts.len() / 2];
    fs::write(d.join("first.incr.aof"), &good[..split - 3]).unwrap();
    fs::write(d.join("second.incr.aof"), &good[split..]).unwrap();
    fs::remove_file(d.join(&incr_name)).unwrap();
    let base = files_in(&d, ".base.rdb");
    let text = format!(
        "file {} seq 1 type b\nfile first.incr.aof seq 1 type i\nfile second.incr.aof seq 2 type i\n",
        base.file_name().unwrap().to_string_lossy()
    );
    fs::write(manifest(&d), &text).unwrap();
    let r = check(&d);
    assert_eq!(r.verdict, Verdict::Corrupt, "{:?}", r.fault);
    assert_eq!(r.fault.as_ref().unwrap().file, d.join("first.incr.aof"));
    assert!(!check_aof_tool(&d));

    // A missing incr file: corrupt, pointing at its manifest line.
    fs::remove_file(d.join("second.incr.aof")).unwrap();
    fs::write(d.join("first.incr.aof"), &good[..split]).unwrap();
    let r = check(&d);
    assert_eq!(r.verdict, Verdict::Corrupt);
    let f = r.fault.unwrap();
    assert_eq!(
        (f.file, f.offset),
        (manifest(&d), text.find("file second").unwrap() as u64)
    );
    assert!(!check_aof_tool(&d));

    // A bad manifest line.
    let d = variant("manifest");
    let m = fs::read_to_string(manifest(&d)).unwrap();
    let first_line = m.find('\n').unwrap() + 1;
    fs::write(
        manifest(&d),
        format!("{}file x seq 9 type z\n", &m[..first_line]),
    )
    .unwrap();
    let r = check(&d);
    assert_eq!(r.verdict, Verdict::Corrupt);
    let f = r.fault.unwrap();
    assert_eq!((f.file, f.offset), (manifest(&d), first_line as u64));
    assert!(f.expected.contains("line 2"), "{}", f.expected);
    assert!(!check_aof_tool(&d));

    // Damage in the RDB preamble of the base.
    let d = variant("preamble");
    let base = files_in(&d, ".base.rdb");
    let mut b = fs::read(&base).unwrap();
    b[3] ^= 0x40;
    fs::write(&base, &b).unwrap();
    let r = check(&d);
    assert_eq!(r.verdict, Verdict::Corrupt);
    assert_eq!(r.fault.unwrap().file, base);
    assert!(!check_aof_tool(&d));
}

#[test]
fn unreadable_paths_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let r = check(&tmp.path().join("nope.rdb"));
    assert_eq!(r.verdict, Verdict::Unreadable);
    let r = check(tmp.path());
    assert_eq!(r.verdict, Verdict::Corrupt);
    assert!(r.fault.unwrap().expected.contains("manifest"));
}

/// A session store (issue 18): keys with TTLs in the base and in the incremental part,
/// the server gone before they pass, the copy checked and loaded after most passed. The
/// reader follows every TTL; the server holds the keys alive at load.
#[test]
fn ttls_are_followed_through_the_aof_and_match_what_the_server_keeps() {
    let mut s = Server::start(&[("appendonly", "yes"), ("appendfsync", "always")]);
    let mut cmds = Vec::new();
    for i in 0..50 {
        cmds.push(args(&["SET", &format!("u{i}"), "v"]));
    }
    for i in 0..10 {
        cmds.push(args(&["SET", &format!("b{i}"), "v", "EX", "2"]));
    }
    for i in 0..5 {
        cmds.push(args(&["SET", &format!("L{i}"), "v", "EX", "100000"]));
    }
    s.batch(&cmds);
    assert!(s.cmd(&["BGREWRITEAOF"]).text().contains("rewriting"));
    s.wait_persistence();
    let mut cmds = Vec::new();
    for i in 0..10 {
        cmds.push(args(&["SET", &format!("t{i}"), "v", "PX", "2000"]));
        cmds.push(args(&["SET", &format!("e{i}"), "v"]));
        cmds.push(args(&["EXPIRE", &format!("e{i}"), "2"]));
    }
    for i in 0..5 {
        cmds.push(args(&["SETEX", &format!("p{i}"), "2", "v"]));
        cmds.push(args(&["PERSIST", &format!("p{i}")]));
    }
    cmds.push(args(&["SET", "b0", "again"]));
    cmds.push(args(&["GETEX", "u0", "PX", "2000"]));
    cmds.push(args(&["RENAME", "b1", "moved"]));
    cmds.push(args(&["EXPIRE", "missing", "100"]));
    s.batch(&cmds);
    // The "crash": what the disk held while every TTL was still ahead.
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&dir_of(&s), &tmp.path().join("appendonlydir"));
    drop(s);
    let fresh = check(&tmp.path().join("appendonlydir"));
    assert_eq!((fresh.keys, fresh.expires, fresh.expired), (90, 35, 0));
    std::thread::sleep(std::time::Duration::from_millis(2300));
    let r = check(&tmp.path().join("appendonlydir"));
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.fault);
    assert!(r.keys_exact, "{:?}", r.keys_estimate_why);
    // u 50, b 10 (b1 now `moved`), L 5, t 10, e 10, p 5; TTLs: b 9, L 5, t 10, e 10, u0.
    assert_eq!((r.keys, r.expires, r.expired), (90, 35, 30));
    assert_eq!(r.expires_per_db, BTreeMap::from([(0, 35)]));
    assert_eq!(r.expired_per_db, BTreeMap::from([(0, 30)]));
    // The server loads the expired keys too, and its expiry cycle removes them.
    let mut loaded = Server::start_in(tmp, &[("appendonly", "yes")]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut keys = loaded.keyspace().get(&0).copied().unwrap_or(0);
    assert!((r.keys - r.expires..=r.keys).contains(&keys), "{keys}");
    while keys != r.keys - r.expired && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        keys = loaded.keyspace().get(&0).copied().unwrap_or(0);
    }
    assert_eq!(keys, r.keys - r.expired);
}

/// Past 2^20 distinct keys (the old tracking cap) the count stays exact: 1.1 million keys
/// set by incremental commands, some deleted, some given a TTL, in a legacy AOF.
#[test]
fn counts_stay_exact_past_a_million_keys() {
    let n = 1_100_000u32;
    let mut aof = Vec::with_capacity(n as usize * 40);
    for i in 0..n {
        let k = format!("key:{i}");
        aof.extend_from_slice(
            format!("*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n$1\r\nv\r\n", k.len()).as_bytes(),
        );
    }
    for i in (0..n).step_by(10) {
        let k = format!("key:{i}");
        aof.extend_from_slice(format!("*2\r\n$3\r\nDEL\r\n${}\r\n{k}\r\n", k.len()).as_bytes());
    }
    for i in (1..n).step_by(10) {
        let k = format!("key:{i}");
        aof.extend_from_slice(
            format!(
                "*3\r\n$9\r\nPEXPIREAT\r\n${}\r\n{k}\r\n$13\r\n9999999999999\r\n",
                k.len()
            )
            .as_bytes(),
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("appendonly.aof");
    fs::write(&path, &aof).unwrap();
    let r = check(&path);
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.fault);
    assert!(r.keys_exact, "{:?}", r.keys_estimate_why);
    assert_eq!((r.keys, r.expires, r.expired), (990_000, 110_000, 0));
}

/// A multi-part `appendonlydir` in `root` whose base is these commands in RESP (a base
/// as a rewrite without an RDB preamble writes it) and whose incremental file is empty.
fn resp_base_aof(root: &Path, cmds: &[&[&str]]) -> PathBuf {
    let dir = root.join("appendonlydir");
    fs::create_dir(&dir).unwrap();
    let base: Vec<u8> = cmds.iter().flat_map(|c| persist_support::resp(c)).collect();
    fs::write(dir.join("appendonly.aof.1.base.aof"), base).unwrap();
    fs::write(dir.join("appendonly.aof.1.incr.aof"), "").unwrap();
    fs::write(
        manifest(&dir),
        "file appendonly.aof.1.base.aof seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n",
    )
    .unwrap();
    dir
}

/// A RESP base that comes back to a database it left (a rewrite never does: a hand-made
/// or damaged file), with a key written again after others: counted as the server loads it.
#[test]
fn a_resp_base_returning_to_a_database_counts_as_the_server_loads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = resp_base_aof(
        tmp.path(),
        &[
            &["SELECT", "0"][..],
            &["SET", "a", "1"],
            &["SET", "b", "1"],
            &["SELECT", "1"],
            &["SET", "a", "1"],
            &["SELECT", "0"],
            &["SET", "c", "1"],
            &["SET", "a", "2"],
            &["SELECT", "2"],
            &["SET", "only", "1"],
            &["SELECT", "1"],
            &["SET", "d", "1"],
            &["SET", "a", "3"],
        ],
    );
    let r = check(&dir);
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.fault);
    assert!(r.keys_exact);
    let want = BTreeMap::from([(0, 3), (1, 2), (2, 1)]);
    assert_eq!(r.keys_per_db, want);
    let server = persist_support::Load::Loaded(want);
    assert_eq!(
        persist_support::judge_load(
            Path::new("redis-server"),
            tmp.path(),
            true,
            std::time::Duration::from_secs(20)
        ),
        server
    );
}

/// A RESP base's `PEXPIREAT` counts as a TTL right after its key's data (as a rewrite
/// writes it); on any other key (a damaged or hand-made base) the count is only an
/// estimate, which says why: the server applies it only to a key that exists.
#[test]
fn a_resp_base_expiry_counts_only_after_its_own_key() {
    let run = |cmds: &[&[&str]]| {
        let tmp = tempfile::tempdir().unwrap();
        check(&resp_base_aof(tmp.path(), cmds))
    };
    let far = "99999999999999";
    let r = run(&[
        &["SELECT", "0"],
        &["SET", "a", "1"],
        &["PEXPIREAT", "a", far],
        &["RPUSH", "l", "x", "y"],
        &["RPUSH", "l", "z"],
        &["PEXPIREAT", "l", far],
        &["SET", "b", "1"],
    ]);
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.fault);
    assert!(r.keys_exact, "{:?}", r.keys_estimate_why);
    assert_eq!((r.keys, r.expires), (3, 2));
    let r = run(&[
        &["SELECT", "0"],
        &["SET", "a", "1"],
        &["SET", "b", "1"],
        &["PEXPIREAT", "a", far],
    ]);
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.fault);
    assert!(!r.keys_exact);
    let why = r.keys_estimate_why.unwrap_or_default();
    assert!(why.contains("did not just write"), "{why}");
}

/// A key outside the slots checked counts once however many commands name it, whatever
/// the first one did to it (an expiry or a `SET ... XX` of a key not yet there leaves it
/// absent), and once when the base holds it too: in the one-pass replay (a single file of
/// commands) and in the two-pass one (after a RESP base).
#[test]
fn a_key_outside_the_slots_counts_once_whatever_names_it_first() {
    use lazarus::persist::SlotRange;
    let incr: &[&[&str]] = &[
        &["EXPIRE", "foo", "100"],
        &["SET", "foo", "1", "XX"],
        &["PERSIST", "foo"],
        &["SET", "foo", "2"],
        &["HSET", "bar", "f", "v"],
        &["HSET", "bar", "g", "v"],
    ];
    let slots = CheckOptions {
        slots: Some(SlotRange { start: 0, end: 100 }),
    };
    // `foo` is slot 12182 and `bar` 5061: both outside 0-100 (the library counts them;
    // the command makes the verdict of them).
    let tmp = tempfile::tempdir().unwrap();
    let single = tmp.path().join("appendonly.aof");
    let bytes: Vec<u8> = incr.iter().flat_map(|c| persist_support::resp(c)).collect();
    fs::write(&single, &bytes).unwrap();
    let r = check_path(&single, &slots);
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.fault);
    assert_eq!(r.keys_outside_slots, 2, "{:?}", r.outside_examples);
    assert_eq!(r.keys_per_db, BTreeMap::from([(0, 2)]));

    let tmp = tempfile::tempdir().unwrap();
    let dir = resp_base_aof(
        tmp.path(),
        &[
            &["SELECT", "0"][..],
            &["SET", "base", "1"],
            &["SET", "foo", "0"],
        ],
    );
    fs::write(dir.join("appendonly.aof.1.incr.aof"), &bytes).unwrap();
    let r = check_path(&dir, &slots);
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.fault);
    // `base` too; `foo`, in the base and named again by the commands, once.
    assert!(lazarus::persist::key_slot(b"base") > 100);
    assert_eq!(r.keys_outside_slots, 3, "{:?}", r.outside_examples);
    assert_eq!(r.keys_per_db, BTreeMap::from([(0, 3)]));
}
