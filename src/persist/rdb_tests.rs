//! Hand-built RDBs for what redis-server 7.0 no longer writes (old encodings, 7.4 hash
//! TTL types, Valkey 9, modules, slot info): every opcode and value type the reader knows.

use super::error::FaultKind;
use super::listpack::tests::build as listpack;
use super::listpack::LpEntry::{Int, Str};
use super::rdb::{Rdb, RdbOutcome};
use super::source::{crc64, Source};

fn s(v: &[u8]) -> Vec<u8> {
    let mut out = vec![v.len() as u8];
    out.extend_from_slice(v);
    out
}

/// A long-form string (14-bit length), for blobs.
fn blob(v: &[u8]) -> Vec<u8> {
    let mut out = vec![0x40 | (v.len() >> 8) as u8, v.len() as u8];
    out.extend_from_slice(v);
    out
}

fn rdb(magic: &[u8], body: &[u8]) -> Vec<u8> {
    let mut b = magic.to_vec();
    b.extend_from_slice(body);
    b.push(0xff);
    let crc = crc64(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn run(bytes: &[u8]) -> (Result<(), super::error::ParseError>, RdbOutcome) {
    let mut src = Source::new(bytes, 0, bytes.len() as u64);
    let mut r = Rdb::new(&mut src, None, 200_000);
    let mut res = r.run();
    let repeated = if res.is_ok() {
        r.repeated_keys()
    } else {
        Vec::new()
    };
    let out = std::mem::take(&mut r.out);
    for &(db, fp) in &repeated {
        // As check.rs does: a second run names the repeated key.
        let mut src = Source::new(bytes, 0, bytes.len() as u64);
        let mut r = Rdb::new(&mut src, None, 200_000);
        r.hunt = Some(super::rdb::Hunt::new(db, fp));
        res = r.run();
        if res.is_err() {
            break;
        }
    }
    assert!(
        repeated.is_empty() || res.is_err(),
        "the hunt finds the repeat"
    );
    (res, out)
}

/// The fault the file of `body` is refused with, which must say `what`.
fn refused(magic: &[u8], body: &[u8], what: &str) -> super::error::ParseError {
    let (res, _) = run(&rdb(magic, body));
    let e = res.expect_err(what);
    assert!(e.expected.contains(what), "{what}: {e:?}");
    e
}

fn ok(magic: &[u8], body: &[u8]) -> RdbOutcome {
    let (res, out) = run(&rdb(magic, body));
    res.unwrap_or_else(|e| panic!("{e:?}"));
    out
}

fn ziplist(items: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    let (mut prev, mut tail) = (0usize, 10usize);
    for it in items {
        tail = 10 + body.len();
        let e = [&[prev as u8, it.len() as u8][..], it].concat();
        prev = e.len();
        body.extend_from_slice(&e);
    }
    let mut z = ((11 + body.len()) as u32).to_le_bytes().to_vec();
    z.extend_from_slice(&(tail as u32).to_le_bytes());
    z.extend_from_slice(&(items.len() as u16).to_le_bytes());
    z.extend_from_slice(&body);
    z.push(0xff);
    z
}

#[test]
fn every_opcode_and_old_encoding() {
    let mut b = Vec::new();
    b.extend([0xfa].iter().chain(&s(b"redis-ver")).chain(&s(b"6.2.0")));
    b.extend([0xfa].iter().chain(&s(b"ctime")).chain(&s(b"1700000000")));
    b.extend([0xfe, 0x00, 0xfb, 0x05, 0x01]);
    // Expiry in seconds (already past) on a string; LRU idle; LFU freq.
    b.push(0xfd);
    b.extend(100i32.to_le_bytes());
    b.extend([0xf8, 0x05, 0xf9, 0x07]);
    b.extend([0x00].iter().chain(&s(b"str")).chain(&s(b"v")));
    // Integer-encoded strings.
    b.extend([0x00].iter().chain(&s(b"i8")).chain(&[0xc0, 0x7f]));
    b.extend([0x00].iter().chain(&s(b"i32")).chain(&[0xc2, 1, 2, 3, 4]));
    // Old ZSET with ASCII scores and the special NaN/inf markers.
    b.extend([0x03].iter().chain(&s(b"zs")).chain(&[0x02]));
    b.extend(s(b"a").iter().chain(&s(b"1.5")));
    b.extend(s(b"b").iter().chain(&[254]));
    // Zipmap, ziplist list / zset / hash, intset, quicklist of ziplists.
    let zm = [1, 1, b'f', 1, 0, b'v', 0xff];
    b.extend([0x09].iter().chain(&s(b"zm")).chain(&s(&zm)));
    b.extend(
        [0x0a]
            .iter()
            .chain(&s(b"zl"))
            .chain(&s(&ziplist(&[b"a", b"b"]))),
    );
    b.extend(
        [0x0c]
            .iter()
            .chain(&s(b"zz"))
            .chain(&s(&ziplist(&[b"m", b"1"]))),
    );
    b.extend(
        [0x0d]
            .iter()
            .chain(&s(b"zh"))
            .chain(&s(&ziplist(&[b"f", b"v"]))),
    );
    let intset = [2, 0, 0, 0, 2, 0, 0, 0, 1, 0, 2, 0];
    b.extend([0x0b].iter().chain(&s(b"is")).chain(&s(&intset)));
    b.extend(
        [0x0e]
            .iter()
            .chain(&s(b"ql"))
            .chain(&[0x01])
            .chain(&s(&ziplist(&[b"x"]))),
    );
    // Functions, slot info.
    b.extend([0xf5].iter().chain(&s(
        b"#!lua name=x\nredis.register_function('f', function() end)",
    )));
    // Empty list: dropped by Redis, not counted.
    b.extend([0x01].iter().chain(&s(b"empty")).chain(&[0x00]));
    let out = ok(b"REDIS0009", &b);
    assert_eq!(out.keys_per_db.get(&0), Some(&10));
    assert_eq!(out.empty_skipped, 1);
    assert_eq!((out.expires, out.expired), (1, 1));
    assert_eq!(out.server_version.as_deref(), Some("6.2.0"));
    assert_eq!(out.created, Some(1_700_000_000));
}

#[test]
fn redis_7_4_hash_ttl_types_and_valkey_9_hashes() {
    let mut b = vec![0xfe, 0x02];
    // 24: min expiry, then (ttl, field, value) triples.
    b.extend(
        [24].iter()
            .chain(&s(b"h24"))
            .chain(&[0u8; 8])
            .chain(&[0x02]),
    );
    b.extend([0x00].iter().chain(&s(b"f")).chain(&s(b"v")));
    b.extend([0x05].iter().chain(&s(b"g")).chain(&s(b"w")));
    // 25: min expiry, then a listpack of triples.
    let lp = listpack(&[Str(b"f"), Str(b"v"), Int(0)]);
    b.extend(
        [25].iter()
            .chain(&s(b"h25"))
            .chain(&[0u8; 8])
            .chain(&blob(&lp)),
    );
    let out = ok(b"REDIS0012", &b);
    assert_eq!(out.keys_per_db.get(&2), Some(&2));

    // Valkey 9: type 22 is (field, value, 8-byte expiry) triples.
    let mut b = vec![0xfa];
    b.extend(s(b"valkey-ver").iter().chain(&s(b"9.0.0")));
    b.extend(
        [22].iter()
            .chain(&s(b"h"))
            .chain(&[0x01])
            .chain(&s(b"f"))
            .chain(&s(b"v")),
    );
    b.extend((-1i64).to_le_bytes());
    let out = ok(b"VALKEY080", &b);
    assert!(out.valkey);
    assert_eq!(out.version, 80);
    assert_eq!(out.server_version.as_deref(), Some("9.0.0"));
    assert_eq!(out.keys_per_db.get(&0), Some(&1));
    // The report names the writer: the magic alone says Valkey.
    let r = super::check_rdb_stream(
        std::path::Path::new("v.rdb"),
        &rdb(b"VALKEY080", &[])[..],
        None,
        &Default::default(),
    );
    assert_eq!(
        (r.engine, r.writer()),
        (Some("valkey"), Some("valkey".into()))
    );
}

#[test]
fn versions_and_faults() {
    let (res, _) = run(&rdb(b"REDIS0013", &[]));
    assert_eq!(res.unwrap_err().kind, FaultKind::Unsupported);
    let (res, _) = run(&rdb(b"VALKEY081", &[]));
    assert_eq!(res.unwrap_err().kind, FaultKind::Unsupported);
    let (res, _) = run(&rdb(b"RODIS0010", &[]));
    assert_eq!(res.unwrap_err().offset, 0);
    // Unknown value type 8, at the byte after the magic.
    let (res, _) = run(&rdb(b"REDIS0010", &[8, 1, b'k', 0]));
    let e = res.unwrap_err();
    assert_eq!((e.kind, e.offset), (FaultKind::Corrupt, 9));
    // Pre-GA module values cannot be parsed without the module.
    let (res, _) = run(&rdb(b"REDIS0010", &[6, 1, b'k', 0]));
    assert_eq!(res.unwrap_err().kind, FaultKind::Unsupported);
    // Module values and module AUX: the servers Lazarus starts have no modules.
    let mut module = vec![0x07];
    module.extend(s(b"mod").iter().chain(&[0x10, 0x02, 0x05, 0x05]));
    module.extend(
        s(b"hello")
            .iter()
            .chain(&[0x04])
            .chain(&[0u8; 8])
            .chain(&[0x00]),
    );
    let (res, _) = run(&rdb(b"REDIS0010", &module));
    let e = res.unwrap_err();
    assert_eq!(e.kind, FaultKind::Unsupported);
    assert!(e.expected.contains("module `AAAAAAAAA`"), "{e:?}");
    // As the server names it: "no matching module type 'EjRWeJCrz'".
    assert_eq!(super::rdb::module_name(0x1234567890abcdef), "EjRWeJCrz");
    let (res, _) = run(&rdb(
        b"REDIS0010",
        &[0xf7, 0x10, 0x02, 0x02, 0x05, 0x01, 0x2a, 0x00],
    ));
    assert_eq!(res.unwrap_err().kind, FaultKind::Unsupported);
    // A quicklist2 node container other than plain (1) or packed (2).
    let (res, _) = run(&rdb(b"REDIS0010", &[18, 1, b'k', 1, 3, 0]));
    assert_eq!(res.unwrap_err().offset, 13);
    // A count the file cannot hold is refused without looping over it.
    let (res, _) = run(&rdb(
        b"REDIS0010",
        &[2, 1, b'k', 0x81, 0, 0, 0, 1, 0, 0, 0, 0],
    ));
    assert_eq!(res.unwrap_err().kind, FaultKind::Truncated);
    // RDB versions before 5 have no checksum.
    let mut old = b"REDIS0004".to_vec();
    old.extend([0, 1, b'k', 1, b'v', 0xff]);
    let (res, out) = run(&old);
    res.unwrap();
    assert_eq!(out.keys_per_db.get(&0), Some(&1));
}

#[test]
fn buffered_fast_paths_keep_counts_and_fault_offsets() {
    // String records with int-encoded and LZF values go through the tight loop.
    let lzf = [0xc3, 4, 3, 2, b'a', b'b', b'c'];
    let mut body = vec![
        0, 1, b'k', 0xc0, 7, 0, 2, b'k', b'2', 0xc2, 1, 2, 3, 4, 0, 1, b'z',
    ];
    body.extend(lzf);
    let out = ok(b"REDIS0010", &body);
    assert_eq!(out.keys_per_db.get(&0), Some(&3));
    // A listpack checked in place: a fault names its file offset.
    let lp = listpack(&[Str(b"a"), Int(1)]);
    let mut bad_count = lp.clone();
    bad_count[4] = 3;
    let mut body = vec![20, 1, b'k'];
    body.extend(blob(&bad_count));
    let (res, out) = run(&rdb(b"REDIS0011", &body));
    res.unwrap();
    // A wrong element count loads (the server checks only total bytes and terminator,
    // then takes the count as the size): a warning names its offset and the way forward.
    let w = format!(
        "element count at offset {} is 3 where it holds 2",
        9 + 3 + 2 + 4
    );
    assert!(
        out.warnings
            .iter()
            .any(|x| x.contains(&w) && x.contains("way forward")),
        "{:?}",
        out.warnings
    );
    assert_eq!(out.keys_per_db.get(&0), Some(&1));
    // A count of 0: the server drops the key as empty, so it is not counted.
    bad_count[4] = 0;
    let mut body = vec![20, 1, b'k'];
    body.extend(blob(&bad_count));
    let (res, out) = run(&rdb(b"REDIS0011", &body));
    res.unwrap();
    assert_eq!(out.keys_per_db.get(&0).copied().unwrap_or(0), 0);
    assert_eq!(out.empty_skipped, 1);
    assert!(
        out.warnings
            .iter()
            .any(|x| x.contains("is 0 where it holds 2")),
        "{:?}",
        out.warnings
    );
    // A wrong back-length loads (the server never reads one on load): a warning names
    // its file offset and the way forward.
    let mut bad_back = lp;
    let at = bad_back.len() - 2;
    bad_back[at] ^= 0x40;
    let mut body = vec![20, 1, b'k'];
    body.extend(blob(&bad_back));
    let (res, out) = run(&rdb(b"REDIS0011", &body));
    res.unwrap();
    let w = format!(
        "key `k` in database 0 is damaged at offset {}",
        9 + 3 + 2 + at
    );
    assert!(
        out.warnings
            .iter()
            .any(|x| x.contains(&w) && x.contains("back-length") && x.contains("way forward")),
        "{:?}",
        out.warnings
    );
    // An empty quicklist node is named as such, not as a short listpack.
    let (res, _) = run(&rdb(b"REDIS0011", &[18, 1, b'k', 1, 2, 0]));
    let e = res.unwrap_err();
    assert_eq!(e.offset, 14);
    assert!(e.expected.contains("a non-empty quicklist node"), "{e:?}");
}

/// The members of big sets, sorted sets and hashes are read in bulk while they are plain
/// strings (`buffered_members`), one by one otherwise: either way a repeat or a NaN score
/// is refused at its own offset, and members of other encodings between plain ones (an
/// integer, LZF) are taken and checked for repeats as the server holds them.
#[test]
fn members_in_bulk_or_one_by_one_meet_faults_at_their_offsets() {
    let member = |i: usize| format!("member-{i}").into_bytes();
    // Member `i` as written: an integer (1 in 50), LZF (1 in 50) or a plain string.
    let enc = |i: usize| match i % 50 {
        7 => vec![0xc1, i as u8, (i >> 8) as u8],
        9 => {
            let m = member(i);
            let mut lzf = vec![
                0xc3,
                (m.len() + 1) as u8,
                m.len() as u8,
                (m.len() - 1) as u8,
            ];
            lzf.extend_from_slice(&m);
            lzf
        }
        _ => s(&member(i)),
    };
    // Type `t`, `n` members, `tail` after each; member `d` written as `dup` instead.
    let build = |t: u8, n: usize, tail: &dyn Fn(usize) -> Vec<u8>, dup: Option<(usize, &[u8])>| {
        let mut b = [&[t][..], &s(b"v"), &[0x40 | (n >> 8) as u8, n as u8]].concat();
        let mut at = Vec::new();
        for i in 0..n {
            at.push(9 + b.len() as u64);
            let m = match dup {
                Some((d, m)) if d == i => m.to_vec(),
                _ => enc(i),
            };
            b.extend(m);
            b.extend(tail(i));
        }
        (b, at)
    };
    let nothing = |_: usize| Vec::new();
    let score = |i: usize| (i as f64).to_le_bytes().to_vec();
    let value = |_: usize| s(b"v");
    for (t, tail, what) in [
        (
            2u8,
            &nothing as &dyn Fn(usize) -> Vec<u8>,
            "set member not already",
        ),
        (5, &score, "sorted set member not already"),
        (4, &value, "Duplicate hash fields detected"),
    ] {
        let (b, _) = build(t, 600, tail, None);
        assert_eq!(
            ok(b"REDIS0010", &b).keys_per_db.get(&0),
            Some(&1),
            "type {t}"
        );
        // Deep in the value, a repeat of a plain member, of an integer one (57, written
        // plain) and of an LZF one, in each encoding: the server holds them all as
        // strings. The second of the two is refused.
        let plain = |i: usize| s(&member(i));
        for (d, m, first) in [
            (300, plain(120), 120),
            (301, s(b"57"), 57),
            (302, plain(109), 109),
            (303, enc(109), 109),
            (304, enc(57), 57),
            (257, plain(310), 310),
        ] {
            let (b, at) = build(t, 600, tail, Some((d, &m)));
            let e = refused(b"REDIS0010", &b, what);
            assert_eq!(
                e.offset,
                at[d.max(first)],
                "type {t}, member {d} again as {first}"
            );
        }
    }
    // A NaN score in the middle of a big sorted set.
    let nan_at = |i: usize| {
        if i == 333 {
            f64::NAN.to_le_bytes().to_vec()
        } else {
            score(i)
        }
    };
    let (b, at) = build(5, 600, &nan_at, None);
    let e = refused(b"REDIS0010", &b, "not NaN");
    assert_eq!(e.offset, at[333] + s(&member(333)).len() as u64);
}

/// A key twice among many, in a database big enough for the fingerprints' tag tables
/// (runs of 64 and more): found and named; without it, nothing is.
#[test]
fn a_key_twice_among_many_is_found() {
    let string = |k: &[u8]| [&[0u8][..], &s(k), &s(b"v")].concat();
    let many: Vec<u8> = (0..50_000)
        .flat_map(|i| string(format!("key:{i}").as_bytes()))
        .collect();
    assert_eq!(ok(b"REDIS0010", &many).keys_per_db.get(&0), Some(&50_000));
    let twice = [many.as_slice(), &string(b"key:31337")].concat();
    refused(b"REDIS0010", &twice, "not `key:31337` again");
}

/// What redis-server refuses to load although every byte is well-formed (issue 18; the
/// same files go through a real server in tests/persist_refusals.rs).
#[test]
fn what_the_server_refuses_is_refused() {
    let string = |k: &[u8]| [&[0u8][..], &s(k), &s(b"v")].concat();
    // The same key twice in a database, through the fast loop and the careful path.
    refused(
        b"REDIS0010",
        &[string(b"k"), string(b"k")].concat(),
        "not already in database 0",
    );
    let int_key = [0u8, 0xc0, 12, 1, b'v'];
    refused(
        b"REDIS0010",
        &[string(b"12"), int_key.to_vec()].concat(),
        "duplicated key",
    );
    // ... but once per database is fine, and an empty collection is dropped first.
    let ok_body = [
        string(b"k"),
        vec![0xfe, 1],
        string(b"k"),
        vec![0xfe, 0],
        vec![1],
        s(b"k"),
        vec![0],
    ]
    .concat();
    assert_eq!(ok(b"REDIS0010", &ok_body).keys_per_db.len(), 2);
    // A hash-table set or sorted set member twice; a NaN score.
    let set = [&[2u8][..], &s(b"s"), &[2], &s(b"a"), &s(b"a")].concat();
    refused(b"REDIS0010", &set, "set member not already");
    let zset = [
        &[5u8][..],
        &s(b"z"),
        &[2],
        &s(b"a"),
        &1f64.to_le_bytes(),
        &s(b"a"),
        &2f64.to_le_bytes(),
    ]
    .concat();
    refused(b"REDIS0010", &zset, "sorted set member not already");
    let nan = [
        &[5u8][..],
        &s(b"z"),
        &[1],
        &s(b"a"),
        &f64::NAN.to_le_bytes(),
    ]
    .concat();
    refused(b"REDIS0010", &nan, "not NaN");
    refused(
        b"REDIS0009",
        &[&[3u8][..], &s(b"z"), &[1], &s(b"a"), &[253]].concat(),
        "not NaN",
    );
    refused(
        b"REDIS0009",
        &[&[3u8][..], &s(b"z"), &[1], &s(b"a"), &s(b"nan")].concat(),
        "not NaN",
    );
    // An old score `sscanf %lg` reads no number from stops the load; one it reads a
    // number from the start of loads, whatever follows.
    let old_score = |t: &[u8]| [&[3u8][..], &s(b"z"), &[1], &s(b"a"), &s(t)].concat();
    for t in [&b"value"[..], b"", b"-", b" .x", b"\x001", b"i"] {
        refused(b"REDIS0009", &old_score(t), "reads as a number");
    }
    for t in [
        &b"2"[..],
        b" -.5e1x",
        b"+7",
        b"\t1",
        b"INF",
        b"-Infinity",
        b"0x1p3",
    ] {
        ok(b"REDIS0009", &old_score(t));
    }
    // A database the server does not have.
    let e = refused(
        b"REDIS0010",
        &[&[0xfe, 16][..], &string(b"k")].concat(),
        "below 16",
    );
    assert_eq!(e.kind, FaultKind::Unsupported);
    ok(b"REDIS0010", &[&[0xfe, 15][..], &string(b"k")].concat());
    // A type newer than the file's version.
    let lp = listpack(&[Str(b"a")]);
    refused(
        b"REDIS0010",
        &[&[20u8][..], &s(b"s"), &blob(&lp)].concat(),
        "first in RDB 11",
    );
    // One both engines of the day know (16, a listpack hash, first in RDB 10) loads: a
    // warning says the header or the byte is damaged.
    let hash = listpack(&[Str(b"f"), Str(b"v")]);
    let body = [&[16u8][..], &s(b"h"), &blob(&hash)].concat();
    let out = ok(
        b"REDIS0009",
        &[&body[..], &body[..1], &s(b"h2"), &body[2 + 1..]].concat(),
    );
    assert_eq!(out.keys_per_db.get(&0), Some(&2));
    let warned: Vec<_> = out
        .warnings
        .iter()
        .filter(|w| w.contains("first in RDB 10"))
        .collect();
    assert_eq!(warned.len(), 1, "{:?}", out.warnings);
    // Slot info (opcode 244): RDB 12 (redis 7.4) and valkey 9's own version only.
    let slot_info = [&[0xf4u8, 0x05, 0x01, 0x00][..], &string(b"k")].concat();
    refused(b"REDIS0011", &slot_info, "not 244");
    assert_eq!(ok(b"REDIS0012", &slot_info).keys_per_db.get(&0), Some(&1));
    assert_eq!(ok(b"VALKEY080", &slot_info).keys_per_db.get(&0), Some(&1));
    // The pre-release library form (246), which valkey-server 8.1 refuses.
    let pre_ga = [
        &[0xf6u8][..],
        &s(b"lib"),
        &s(b"LUA"),
        &[0x01],
        &s(b"d"),
        &s(b"code"),
    ]
    .concat();
    refused(
        b"REDIS0010",
        &pre_ga,
        "Pre-release function format not supported",
    );
    // Function libraries: header, engine, name rules, twice.
    let lib = |code: &[u8]| [&[0xf5u8][..], &s(code)].concat();
    refused(b"REDIS0010", &lib(b"return 1"), "Missing library metadata");
    refused(b"REDIS0010", &lib(b"#!js name=x\nreturn 1"), "engine `js`");
    refused(b"REDIS0010", &lib(b"#!lua name=a-b\nreturn 1"), "not `a-b`");
    refused(b"REDIS0010", &lib(b"#!lua nom=x\nreturn 1"), "`nom=x`");
    refused(
        b"REDIS0010",
        &[
            lib(b"#!lua name=x\nredis.register_function('f', function() end)"),
            lib(b"#!LUA name=x\n2"),
        ]
        .concat(),
        "not `x` again",
    );
    refused(
        b"REDIS0010",
        &lib(b"#!lua name=x\nreturn 1"),
        "No functions registered",
    );
    let out = ok(
        b"REDIS0010",
        &lib(b"#!lua name=x\nredis.register_function('f', function() end)"),
    );
    assert!(!out.warnings.iter().any(|w| w.contains("function library")));
    refused(
        b"REDIS0010",
        &lib(b"#!lua name=x\nredis.register_function('f', f)"),
        "nonexistent global variable 'f'",
    );
}

#[test]
fn a_candidate_that_is_not_a_repeat_passes_the_hunt() {
    use super::fp_set::fingerprint;
    use super::rdb::{find_repeated_key, KeyRuns};
    let string = |k: &[u8]| [&[0u8][..], &s(k), &s(b"v")].concat();
    let bytes = rdb(
        b"REDIS0010",
        &[string(b"a"), string(b"b"), vec![0xfe, 1], string(b"a")].concat(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dump.rdb");
    std::fs::write(&path, &bytes).unwrap();
    // Kept fingerprints of keys each once in their database (as different keys sharing
    // the kept bits are): no fault, whichever the candidates.
    let kept = |k: &[u8]| KeyRuns::kept(fingerprint(k));
    assert!(find_repeated_key(&path, &[(0, kept(b"a")), (1, kept(b"a"))], 0).is_none());
    // A real repeat after a false candidate is still named.
    let bytes = rdb(
        b"REDIS0010",
        &[string(b"a"), string(b"b"), string(b"b")].concat(),
    );
    std::fs::write(&path, &bytes).unwrap();
    let e = find_repeated_key(&path, &[(0, kept(b"a")), (0, kept(b"b"))], 0).unwrap();
    assert!(e.expected.contains("not `b` again"), "{e:?}");
}

#[test]
fn a_field_twice_is_refused_where_the_server_builds_a_table() {
    // A hash of field-value pairs (type 4): its length, then the pairs.
    let hash = |pairs: &[(Vec<u8>, Vec<u8>)]| {
        let n = pairs.len();
        let mut b = [&[4u8][..], &s(b"h"), &[0x40 | (n >> 8) as u8, n as u8]].concat();
        let mut at = Vec::new();
        for (f, v) in pairs {
            at.push(9 + b.len() as u64);
            let enc = |v: &[u8]| if v.len() < 64 { s(v) } else { blob(v) };
            b.extend(enc(f).iter().chain(&enc(v)));
        }
        (b, at)
    };
    let field = |i: usize| format!("f{i}").into_bytes();
    // Over hash-max-listpack-entries (512): a table from the start, a repeat refused.
    let mut pairs: Vec<_> = (0..600).map(|i| (field(i), b"v".to_vec())).collect();
    pairs[300].0 = field(7);
    let (b, at) = hash(&pairs);
    assert_eq!(
        refused(b"REDIS0010", &b, "Duplicate hash fields detected").offset,
        at[300]
    );
    // Small, with short values: a listpack, the repeat unchecked; the file loads, said.
    let small = [
        (field(1), b"v".to_vec()),
        (field(2), b"v".to_vec()),
        (field(1), b"w".to_vec()),
    ];
    let (b, at) = hash(&small);
    let out = ok(b"REDIS0010", &b);
    assert_eq!(out.keys_per_db.get(&0), Some(&1));
    let said = format!("holds a field twice (again at offset {})", at[2]);
    assert!(
        out.warnings.iter().any(|w| w.contains(&said)),
        "{:?}",
        out.warnings
    );
    // ... until a long value converts it: the conversion stops on the earlier repeat.
    let mut long = small.to_vec();
    long.push((field(3), vec![b'x'; 65]));
    let (b, at) = hash(&long);
    assert_eq!(
        refused(b"REDIS0010", &b, "Listpack corruption detected").offset,
        at[2]
    );
    // Converted by the first pair's long value: the repeat after it meets the table.
    let (b, at) = hash(&[(field(1), vec![b'x'; 65]), (field(1), b"v".to_vec())]);
    assert_eq!(
        refused(b"REDIS0010", &b, "Duplicate hash fields detected").offset,
        at[1]
    );
    // No repeat, however long the values: loads, nothing said.
    let (b, _) = hash(&[(field(1), vec![b'x'; 65]), (field(2), b"v".to_vec())]);
    assert!(ok(b"REDIS0010", &b).warnings.is_empty());

    // The ziplist of a hash (13) or sorted set (12), and a zipmap: always checked.
    let zl = ziplist(&[b"f", b"v", b"g", b"v", b"f", b"w"]);
    let body = [&[0x0d][..], &s(b"zh"), &s(&zl)].concat();
    let at = refused(b"REDIS0009", &body, "ziplist integrity check failed").offset;
    // The second `f`: header 10 bytes, then 3-byte entries.
    assert_eq!(at, 9 + 1 + 3 + 1 + 10 + 4 * 3);
    let zl = ziplist(&[b"m", b"1", b"m", b"2"]);
    refused(
        b"REDIS0009",
        &[&[0x0c][..], &s(b"zz"), &s(&zl)].concat(),
        "ziplist integrity check failed",
    );
    let zm = [2, 1, b'f', 1, 0, b'v', 1, b'f', 1, 0, b'w', 0xff];
    refused(
        b"REDIS0006",
        &[&[0x09][..], &s(b"zm"), &s(&zm)].concat(),
        "Hash zipmap with dup elements",
    );

    // A listpack hash (16): over 512 pairs the load converts it and stops on a repeat,
    // an integer entry being the same field as its decimal text; under, it loads.
    let mut items = vec![Int(5), Str(b"v")];
    let names: Vec<Vec<u8>> = (0..512).map(field).collect();
    for n in &names {
        items.extend([Str(n), Str(b"v")]);
    }
    let ok_lp = listpack(&items);
    ok(
        b"REDIS0010",
        &[&[16u8][..], &s(b"lh"), &blob(&ok_lp)].concat(),
    );
    items[2 * 300] = Str(b"5");
    let lp = listpack(&items);
    refused(
        b"REDIS0010",
        &[&[16u8][..], &s(b"lh"), &blob(&lp)].concat(),
        "over the server's default hash-max-listpack-entries (512)",
    );
    let lp = listpack(&[Str(b"a"), Str(b"v"), Str(b"a"), Str(b"w")]);
    ok(b"REDIS0010", &[&[16u8][..], &s(b"lh"), &blob(&lp)].concat());

    // An intset over set-max-intset-entries (512) is converted too; under, a repeat is
    // only out of order (a warning).
    let intset = |n: u16| {
        let mut is = vec![2, 0, 0, 0];
        is.extend(u32::from(n).to_le_bytes());
        for v in 0..n {
            is.extend((if v == 300 { 299 } else { v }).to_le_bytes());
        }
        [&[11u8][..], &s(b"is"), &blob(&is)].concat()
    };
    let at = refused(b"REDIS0010", &intset(513), "set-max-intset-entries (512)").offset;
    assert_eq!(at, 9 + 1 + 3 + 2 + 8 + 300 * 2);
    let out = ok(b"REDIS0010", &intset(512));
    assert!(
        out.warnings.iter().any(|w| w.contains("not above")),
        "{:?}",
        out.warnings
    );
}

/// A visitor of fingerprints whose filter lets every key through: told each key once,
/// whatever the deferral holds when the file ends (none, some, more than a batch), each
/// asked for before it is told.
#[test]
fn a_fingerprint_visitor_is_told_every_key_it_lets_through_once() {
    use super::fp_set::fingerprint;
    use super::rdb::KeyVisitor;
    use std::cell::RefCell;

    struct Every {
        filter: Vec<u64>,
        told: Vec<(u32, u64, Option<i64>)>,
        asked: RefCell<Vec<u64>>,
    }
    impl KeyVisitor for Every {
        fn key(&mut self, db: u32, key: &[u8], expire_ms: Option<i64>) {
            self.told.push((db, fingerprint(key), expire_ms));
        }
        fn fingerprints(&self) -> Option<&[u64]> {
            Some(&self.filter)
        }
        fn key_fp(&mut self, db: u32, fp: u64, expire_ms: Option<i64>) {
            assert!(self.asked.borrow().contains(&fp), "told before asked for");
            self.told.push((db, fp, expire_ms));
        }
        fn prefetch_fp(&self, _db: u32, fp: u64) {
            self.asked.borrow_mut().push(fp);
        }
    }
    for n in [0usize, 1, 15, 16, 17, 31, 32, 33, 100] {
        let mut body = Vec::new();
        let mut want = Vec::new();
        for i in 0..n {
            let key = format!("key:{i}");
            // Every fifth in database 1 with an expiry, the rest in database 0.
            let (db, expire) = if i % 5 == 0 {
                (1, Some(4_000_000_000_000i64 + i as i64))
            } else {
                (0, None)
            };
            body.extend_from_slice(&[0xfe, db as u8]);
            if let Some(ms) = expire {
                body.push(0xfc);
                body.extend_from_slice(&ms.to_le_bytes());
            }
            body.push(0);
            body.extend(s(key.as_bytes()));
            body.extend(s(b"v"));
            want.push((db, fingerprint(key.as_bytes()), expire));
        }
        let bytes = rdb(b"REDIS0011", &body);
        let mut v = Every {
            filter: vec![u64::MAX; 64],
            told: Vec::new(),
            asked: RefCell::new(Vec::new()),
        };
        let mut src = Source::new(&bytes[..], 0, bytes.len() as u64);
        let mut r = Rdb::new(&mut src, Some(&mut v), 200_000);
        r.run().unwrap_or_else(|e| panic!("{n} keys: {e:?}"));
        drop(r);
        let (mut told, mut want) = (v.told, want);
        told.sort_unstable();
        want.sort_unstable();
        assert_eq!(told, want, "{n} keys");
    }
}

/// What a file's first bytes say of it: its aux fields (the replication offset as an
/// integer-encoded string or as digits) and whether a database follows them, nothing
/// guessed past them.
#[test]
fn a_head_says_its_replication_offset_and_whether_it_holds_keys() {
    use super::rdb::{head_of, RdbHead};
    let id = b"7820e203f80be390c6e60a00da1b00b347f4c3c3";
    let mut aux = [0xfa].to_vec();
    aux.extend(s(b"ctime"));
    aux.push(0xc2);
    aux.extend(1_796_660_790u32.to_le_bytes());
    aux.push(0xfa);
    aux.extend(s(b"repl-id"));
    aux.extend(s(id));
    aux.push(0xfa);
    aux.extend(s(b"repl-offset"));
    // An integer-encoded string (32 bits), as redis-server writes a small number.
    aux.push(0xc2);
    aux.extend(34_433u32.to_le_bytes());
    let said = RdbHead {
        created: Some(1_796_660_790),
        repl_id: Some(String::from_utf8(id.to_vec()).unwrap()),
        repl_offset: Some(34_433),
        keys: Some(false),
    };
    let empty = rdb(b"REDIS0010", &aux);
    assert_eq!(head_of(&empty), Some(said));
    let mut with_key = aux.clone();
    with_key.extend([0xfe, 0, 0]);
    with_key.extend(s(b"k"));
    with_key.extend(s(b"v"));
    let full = head_of(&rdb(b"REDIS0010", &with_key)).unwrap();
    assert_eq!((full.keys, full.repl_offset), (Some(true), Some(34_433)));
    // The offset as digits.
    let mut digits = [0xfa].to_vec();
    digits.extend(s(b"repl-offset"));
    digits.extend(s(b"12345678901"));
    let h = head_of(&rdb(b"REDIS0011", &digits)).unwrap();
    assert_eq!(
        (h.repl_offset, h.repl_id, h.created),
        (Some(12_345_678_901), None, None)
    );
    // A function library first, a cut head: whether it holds keys is not said.
    let mut functions = aux.clone();
    functions.push(0xf5);
    functions.extend(s(b"#!lua name=x\nreturn 1"));
    assert_eq!(head_of(&rdb(b"REDIS0010", &functions)).unwrap().keys, None);
    assert_eq!(head_of(&empty[..empty.len() - 10]).unwrap().keys, None);
    assert_eq!(head_of(b"not an rdb at all"), None);
}
