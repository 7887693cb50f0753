//! The persistence reader against files written by a real redis-server: every type in
//! small and big encodings, expiries, several databases, streams with groups, functions;
//! RDB and AOF (with and without RDB preamble); damaged copies of each.

mod persist_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use lazarus::ccs::SlotRange;
use lazarus::persist::{self, check_path, CheckOptions, FileKind, FileReport, Verdict};
use persist_support::{args, Server};

fn check(path: &Path) -> FileReport {
    check_path(path, &CheckOptions::default())
}

/// Every type, in its small (listpack/intset) and big (hash table, skiplist, quicklist of
/// many nodes, plain nodes) encodings, in dbs 0, 1 and 5, with and without expiry.
fn populate(s: &mut Server) -> BTreeMap<u32, u64> {
    let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
    let big_value = "v".repeat(20_000);
    let noisy: String = (0..3000u32)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    for db in [0u32, 1, 5] {
        cmds.push(args(&["SELECT", &db.to_string()]));
        let p = format!("d{db}");
        for i in 0..50 {
            cmds.push(args(&[
                "SET",
                &format!("{p}:int:{i}"),
                &(i * 1000).to_string(),
            ]));
            cmds.push(args(&[
                "SET",
                &format!("{p}:str:{i}"),
                &format!("value-{i}"),
            ]));
        }
        cmds.push(args(&["SET", &format!("{p}:compressible"), &big_value]));
        cmds.push(args(&["SET", &format!("{p}:noisy"), &noisy]));
        for i in 0..5 {
            cmds.push(args(&[
                "RPUSH",
                &format!("{p}:list:small"),
                &format!("e{i}"),
            ]));
            cmds.push(args(&[
                "HSET",
                &format!("{p}:hash:small"),
                &format!("f{i}"),
                &format!("v{i}"),
            ]));
            cmds.push(args(&["SADD", &format!("{p}:set:ints"), &i.to_string()]));
            cmds.push(args(&["SADD", &format!("{p}:set:small"), &format!("m{i}")]));
            cmds.push(args(&[
                "ZADD",
                &format!("{p}:zset:small"),
                &format!("{i}.5"),
                &format!("z{i}"),
            ]));
        }
        for i in 0..600 {
            cmds.push(args(&[
                "RPUSH",
                &format!("{p}:list:big"),
                &format!("element-{i}"),
            ]));
            cmds.push(args(&[
                "HSET",
                &format!("{p}:hash:big"),
                &format!("field-{i}"),
                &format!("v{i}"),
            ]));
            cmds.push(args(&[
                "SADD",
                &format!("{p}:set:big"),
                &format!("member-{i}"),
            ]));
            cmds.push(args(&[
                "SADD",
                &format!("{p}:set:bigints"),
                &(i * 3).to_string(),
            ]));
            cmds.push(args(&[
                "ZADD",
                &format!("{p}:zset:big"),
                &i.to_string(),
                &format!("m{i}"),
            ]));
        }
        cmds.push(args(&[
            "RPUSH",
            &format!("{p}:list:plain"),
            "a",
            &big_value,
            "b",
        ]));
        cmds.push(args(&["PFADD", &format!("{p}:hll"), "a", "b", "c"]));
        cmds.push(args(&[
            "GEOADD",
            &format!("{p}:geo"),
            "13.36",
            "38.11",
            "palermo",
        ]));
        cmds.push(args(&["SETBIT", &format!("{p}:bits"), "10000", "1"]));
        // Streams: same-fields and own-fields entries, deletions, a group with pending
        // entries and two consumers.
        let st = format!("{p}:stream");
        for i in 0..300 {
            if i % 3 == 0 {
                cmds.push(args(&["XADD", &st, "*", "other", &i.to_string()]));
            } else {
                cmds.push(args(&["XADD", &st, "*", "f", &i.to_string(), "g", "x"]));
            }
        }
        cmds.push(args(&["XGROUP", "CREATE", &st, "grp", "0"]));
        cmds.push(args(&["XGROUP", "CREATE", &st, "idle", "$"]));
        cmds.push(args(&[
            "XREADGROUP",
            "GROUP",
            "grp",
            "alice",
            "COUNT",
            "5",
            "STREAMS",
            &st,
            ">",
        ]));
        cmds.push(args(&[
            "XREADGROUP",
            "GROUP",
            "grp",
            "bob",
            "COUNT",
            "3",
            "STREAMS",
            &st,
            ">",
        ]));
        cmds.push(args(&["XADD", &format!("{p}:stream:empty"), "*", "a", "1"]));
        cmds.push(args(&[
            "XTRIM",
            &format!("{p}:stream:empty"),
            "MAXLEN",
            "0",
        ]));
        for i in 0..10 {
            cmds.push(args(&["SET", &format!("{p}:ttl:{i}"), "x", "EX", "100000"]));
        }
    }
    s.batch(&cmds);
    // Already expired but still present: active expiry off, nothing touches them.
    assert_eq!(s.cmd(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]).text(), "OK");
    s.cmd(&["SELECT", "0"]);
    for i in 0..4 {
        s.cmd(&["SET", &format!("gone:{i}"), "x", "PX", "1"]);
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    let lib =
        "#!lua name=lazlib\nredis.register_function('lazfn', function(keys, args) return 1 end)";
    s.cmd(&["FUNCTION", "LOAD", lib]);
    s.keyspace()
}

fn redis_check(tool: &str, path: &Path) -> bool {
    Command::new(tool)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("{tool} must be installed (redis-tools): {e}"))
        .status
        .success()
}

fn assert_ok(r: &FileReport) {
    assert_eq!(r.verdict, Verdict::Ok, "{:#?}", r.fault);
}

fn saved_rdb(config: &[(&str, &str)]) -> (Server, PathBuf, BTreeMap<u32, u64>) {
    let mut config = config.to_vec();
    config.push(("enable-debug-command", "local"));
    let mut s = Server::start(&config);
    let keyspace = populate(&mut s);
    assert_eq!(s.cmd(&["SAVE"]).text(), "OK");
    let path = s.file("dump.rdb");
    (s, path, keyspace)
}

#[test]
fn rdb_counts_match_the_server() {
    let (_s, path, keyspace) = saved_rdb(&[]);
    let r = check(&path);
    assert_ok(&r);
    assert_eq!(r.kind, FileKind::Rdb);
    assert_eq!(r.rdb_version, Some(10));
    assert_eq!(r.server_version.as_deref(), Some("7.0.15"));
    assert_eq!(r.keys_per_db, keyspace);
    assert!(r.keys_exact);
    assert_eq!(r.expires, 3 * 10 + 4);
    assert_eq!(r.expired, 4);
    assert!(r.created.is_some());
    assert!(redis_check("redis-check-rdb", &path));
}

#[test]
fn rdb_with_small_and_big_encodings_and_no_compression() {
    // Tiny listpack limits force hash tables / skiplists / many list nodes everywhere.
    let (_s, path, keyspace) = saved_rdb(&[
        ("rdbcompression", "no"),
        ("rdbchecksum", "no"),
        ("hash-max-listpack-entries", "2"),
        ("zset-max-listpack-entries", "2"),
        ("set-max-intset-entries", "2"),
        ("list-max-listpack-size", "2"),
        ("stream-node-max-entries", "7"),
    ]);
    let r = check(&path);
    assert_ok(&r);
    assert_eq!(r.keys_per_db, keyspace);
    assert!(r.warnings.iter().any(|w| w.contains("checksums off")));
}

#[test]
fn slot_ranges_count_keys_outside() {
    let (_s, path, _) = saved_rdb(&[]);
    let all = check_path(
        &path,
        &CheckOptions {
            slots: Some(SlotRange::ALL),
        },
    );
    assert_eq!(all.keys_outside_slots, 0);
    let half = check_path(
        &path,
        &CheckOptions {
            slots: Some(SlotRange {
                start: 0,
                end: 8191,
            }),
        },
    );
    assert!(half.keys_outside_slots > 0 && half.keys_outside_slots < half.keys);
    assert!(!half.outside_examples.is_empty());
    let example = &half.outside_examples[0];
    let key = example.split(' ').next().unwrap();
    assert!(persist::key_slot(key.as_bytes()) > 8191, "{example}");
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not in file", String::from_utf8_lossy(needle)))
}

/// Writes `bytes` next to the original and checks it.
fn check_variant(dir: &Path, name: &str, bytes: &[u8]) -> (FileReport, PathBuf) {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    (check(&p), p)
}

#[test]
fn damaged_rdbs_are_found_where_the_damage_is() {
    let (_s, path, _) = saved_rdb(&[("rdbcompression", "no")]);
    let good = fs::read(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let corrupt_at = |name: &str, bytes: Vec<u8>, lo: usize, hi: usize| {
        let (r, p) = check_variant(dir.path(), name, &bytes);
        assert_eq!(r.verdict, Verdict::Corrupt, "{name}: {:?}", r.fault);
        let off = r.fault.as_ref().unwrap().offset as usize;
        assert!(
            (lo..=hi).contains(&off),
            "{name}: fault at {off}, expected {lo}..={hi}: {:?}",
            r.fault
        );
        assert!(
            !redis_check("redis-check-rdb", &p),
            "{name}: redis-check-rdb calls it good"
        );
    };
    // Header: the magic.
    let mut b = good.clone();
    b[1] ^= 0x20;
    corrupt_at("magic.rdb", b, 0, 8);
    // AUX: the length byte of `redis-ver`'s value made an unknown string encoding.
    let aux = find(&good, b"redis-ver");
    let mut b = good.clone();
    b[aux + 9] = 0xc7;
    corrupt_at("aux.rdb", b, aux - 2, aux + 9);
    // A key: its length byte turned into an invalid length encoding.
    let key = find(&good, b"d1:hash:small");
    let mut b = good.clone();
    b[key - 1] = 0x85;
    corrupt_at("key.rdb", b, key - 2, key);
    // A value: the listpack's total-bytes header of that hash.
    let value = key + b"d1:hash:small".len();
    let mut b = good.clone();
    b[value + 1] ^= 0x01;
    corrupt_at("value.rdb", b, key - 2, value + 60);
    // A value's contents: only the checksum can tell.
    let content = find(&good, b"value-17");
    let mut b = good.clone();
    b[content + 3] ^= 0x01;
    corrupt_at("content.rdb", b, good.len() - 8, good.len() - 8);
    // The checksum itself.
    let mut b = good.clone();
    let last = b.len() - 1;
    b[last] ^= 0xff;
    corrupt_at("crc.rdb", b, good.len() - 8, good.len() - 8);
    // A version this reader does not know.
    let mut b = good.clone();
    b[5..9].copy_from_slice(b"0013");
    let (r, _) = check_variant(dir.path(), "version.rdb", &b);
    assert_eq!(r.verdict, Verdict::UnsupportedVersion);
}

#[test]
fn truncated_rdbs_are_truncated_at_every_offset() {
    let (_s, path, _) = saved_rdb(&[]);
    let good = fs::read(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let step = (good.len() / 40).max(1);
    let cuts = (0..good.len())
        .step_by(step)
        .chain(good.len() - 9..good.len());
    for (i, cut) in cuts.enumerate() {
        let (r, p) = check_variant(dir.path(), &format!("cut{i}.rdb"), &good[..cut]);
        assert_eq!(r.verdict, Verdict::Truncated, "cut at {cut}: {:?}", r.fault);
        assert!(r.fault.unwrap().offset <= cut as u64);
        if i % 8 == 0 {
            assert!(!redis_check("redis-check-rdb", &p), "cut at {cut}");
        }
    }
}

#[test]
fn lzf_strings_are_decompressed_and_length_checked() {
    let (_s, path, _) = saved_rdb(&[]);
    let good = fs::read(&path).unwrap();
    // `d0:compressible` is 20000 `v`s: LZF, with lengths clen then ulen after 0xc3.
    let key = find(&good, b"d0:compressible") + b"d0:compressible".len();
    assert_eq!(good[key], 0xc3);
    let dir = tempfile::tempdir().unwrap();
    let mut b = good.clone();
    // Lengths: clen, then ulen; make ulen one short (its last byte is its low byte).
    let len_size = |b: u8| match b >> 6 {
        0 => 1,
        1 => 2,
        _ if b == 0x80 => 5,
        _ => 9,
    };
    let ulen_at = key + 1 + len_size(good[key + 1]);
    let ulen_last = ulen_at + len_size(good[ulen_at]) - 1;
    b[ulen_last] = b[ulen_last].wrapping_sub(1);
    let (r, _) = check_variant(dir.path(), "lzf.rdb", &b);
    assert_eq!(r.verdict, Verdict::Corrupt);
    let off = r.fault.unwrap().offset as usize;
    assert!(off > key && off < key + 400, "{off}");
}

/// A file checked twice in one run is read once, while unchanged (issue 16); a file
/// written since, or written just now, is read again.
#[test]
fn unchanged_files_are_validated_once_per_run() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("dump.rdb");
    let mut s = Server::start(&[]);
    s.cmd(&["SET", "k", "v"]);
    s.cmd(&["SAVE"]);
    fs::copy(s.file("dump.rdb"), &path).unwrap();
    let opts = CheckOptions::default();
    // Just written: never remembered.
    assert!(!check_path(&path, &opts).from_cache);
    assert!(!check_path(&path, &opts).from_cache);
    // Older than the racy window: remembered.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let first = check_path(&path, &opts);
    assert!(!first.from_cache);
    let again = check_path(&path, &opts);
    assert!(again.from_cache);
    assert_eq!((again.verdict, again.keys), (first.verdict, first.keys));
    // Any write changes the ctime: read again.
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes).unwrap();
    assert!(!check_path(&path, &opts).from_cache);
}
