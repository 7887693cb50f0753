//! Files whose every byte is well-formed but which the server refuses to load (issue 18,
//! "false ok"): each is crafted here, loaded into a real redis-server (and valkey-server
//! when there is one) to prove the refusal, and must not be `ok` to the reader. Beside
//! them, look-alikes the servers do load, which the reader must not refuse.

mod persist_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lazarus::persist::{check_path, crc64, CheckOptions, FileReport, Verdict};
use persist_support::differential::read_dir_files;
use persist_support::{args, judge_load, valkey_server, Load, Server};

/// A plain RDB string (6- or 14-bit length).
fn s(v: &[u8]) -> Vec<u8> {
    assert!(v.len() < 1 << 14);
    let len = if v.len() < 64 {
        vec![v.len() as u8]
    } else {
        vec![0x40 | (v.len() >> 8) as u8, v.len() as u8]
    };
    [&len[..], v].concat()
}

fn rdb(version: u32, body: &[u8]) -> Vec<u8> {
    let mut b = format!("REDIS{version:04}").into_bytes();
    b.extend_from_slice(body);
    b.push(0xff);
    let crc = crc64(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn string(k: &[u8]) -> Vec<u8> {
    [&[0u8][..], &s(k), &s(b"v")].concat()
}

/// A listpack of short strings (a blob of the RDB).
fn listpack(items: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    for it in items {
        let e = [&[0x80 | it.len() as u8][..], it].concat();
        body.extend_from_slice(&e);
        body.push(e.len() as u8);
    }
    let total = (6 + body.len() + 1) as u32;
    let mut lp = total.to_le_bytes().to_vec();
    lp.extend((items.len() as u16).to_le_bytes());
    lp.extend(body);
    lp.push(0xff);
    lp
}

/// redis-server, and valkey-server when there is one.
fn servers() -> Vec<PathBuf> {
    let mut servers = vec![PathBuf::from("redis-server")];
    servers.extend(valkey_server().map(PathBuf::from));
    servers
}

/// What redis-server (and valkey-server) did with it, and what the reader says.
fn judge(name: &str, file: &[u8], aof: bool) -> (Vec<(String, Load)>, FileReport) {
    judge_laid(name, aof, |root| {
        if aof {
            let dir = root.join("appendonlydir");
            fs::create_dir(&dir).unwrap();
            fs::write(dir.join("appendonly.aof.1.incr.aof"), file).unwrap();
            fs::write(
                dir.join("appendonly.aof.manifest"),
                "file appendonly.aof.1.incr.aof seq 1 type i\n",
            )
            .unwrap();
            dir
        } else {
            let path = root.join("dump.rdb");
            fs::write(&path, file).unwrap();
            path
        }
    })
}

/// What each server did with the files `lay` writes into a fresh directory (returning
/// what the reader checks: the RDB or the `appendonlydir/`), with the last fault the
/// server logged, and what the reader says.
fn judge_laid(
    name: &str,
    aof: bool,
    lay: impl Fn(&Path) -> PathBuf,
) -> (Vec<(String, Load)>, FileReport) {
    let mut verdicts = Vec::new();
    let mut report = None;
    for server in servers() {
        let tmp = tempfile::tempdir().unwrap();
        let path = lay(tmp.path());
        if report.is_none() {
            report = Some(check_path(&path, &CheckOptions::default()));
        }
        let load = judge_load(&server, tmp.path(), aof, Duration::from_secs(10));
        let log = fs::read_to_string(tmp.path().join("server.log")).unwrap_or_default();
        let why = log
            .lines()
            .rfind(|l| l.contains('#'))
            .unwrap_or_default()
            .to_string();
        verdicts.push((format!("{name} on {} ({why})", server.display()), load));
    }
    (verdicts, report.unwrap())
}

fn refused_by_all(name: &str, file: &[u8], aof: bool, why: &str) {
    let (loads, r) = judge(name, file, aof);
    for (who, load) in &loads {
        assert_eq!(
            *load,
            Load::Refused,
            "{who}: the server was expected to refuse"
        );
    }
    assert_ne!(r.verdict, Verdict::Ok, "{name}: the reader said ok");
    let fault = r.fault.expect("a fault");
    assert!(fault.expected.contains(why), "{name}: {fault:?}");
}

fn loaded_by_all(name: &str, file: &[u8], aof: bool) {
    let (loads, r) = judge(name, file, aof);
    for (who, load) in &loads {
        assert!(matches!(load, Load::Loaded(_)), "{who}: {load:?}");
    }
    assert_eq!(r.verdict, Verdict::Ok, "{name}: {:?}", r.fault);
}

#[test]
fn rdbs_the_server_refuses_are_not_ok() {
    if valkey_server().is_none() {
        println!("note: no valkey-server (set LAZARUS_VALKEY_SERVER): judged by redis-server only");
    }
    let dup_key = rdb(10, &[string(b"k"), string(b"k")].concat());
    refused_by_all(
        "duplicate key",
        &dup_key,
        false,
        "not already in database 0",
    );
    let int_key = [0u8, 0xc0, 12, 1, b'v'];
    let dup_int = rdb(10, &[string(b"12"), int_key.to_vec()].concat());
    refused_by_all("duplicate int key", &dup_int, false, "duplicated key");
    let set = [&[2u8][..], &s(b"s"), &[2], &s(b"a"), &s(b"a")].concat();
    refused_by_all("set member twice", &rdb(10, &set), false, "set member");
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
    refused_by_all(
        "zset member twice",
        &rdb(10, &zset),
        false,
        "sorted set member",
    );
    let nan = [
        &[5u8][..],
        &s(b"z"),
        &[1],
        &s(b"a"),
        &f64::NAN.to_le_bytes(),
    ]
    .concat();
    refused_by_all("zset NaN score", &rdb(10, &nan), false, "not NaN");
    let old_nan = [&[3u8][..], &s(b"z"), &[1], &s(b"a"), &[253]].concat();
    refused_by_all("old zset NaN score", &rdb(9, &old_nan), false, "not NaN");
    // An old score is read with `sscanf %lg`: no number at its start stops the load
    // ("Unexpected EOF reading RDB file"); a number followed by anything loads.
    let old_score = |t: &[u8]| [&[3u8][..], &s(b"z"), &[1], &s(b"a"), &s(t)].concat();
    refused_by_all(
        "old zset score that is no number",
        &rdb(9, &old_score(b"value")),
        false,
        "reads as a number",
    );
    loaded_by_all(
        "old zset score with a tail",
        &rdb(9, &old_score(b" -.5e1x")),
        false,
    );
    let db16 = [&[0xfe, 16][..], &string(b"k")].concat();
    refused_by_all("SELECTDB 16", &rdb(10, &db16), false, "below 16");
    let module = [
        &[7u8][..],
        &s(b"m"),
        &[0x81],
        &0x1234567890abcdefu64.to_be_bytes(),
        &[0],
    ]
    .concat();
    refused_by_all("module value", &rdb(10, &module), false, "EjRWeJCrz");
    let lib = |code: &[u8]| [&[0xf5u8][..], &s(code)].concat();
    let body = b"redis.register_function('f', function() return 1 end)";
    let with = |header: &[u8]| rdb(10, &lib(&[header, body].concat()));
    refused_by_all(
        "library name",
        &with(b"#!lua name=a-b\n"),
        false,
        "not `a-b`",
    );
    refused_by_all(
        "library header",
        &with(b""),
        false,
        "Missing library metadata",
    );
    refused_by_all(
        "library engine",
        &with(b"#!js name=x\n"),
        false,
        "engine `js`",
    );
    let twice = [
        lib(&[&b"#!lua name=x\n"[..], body].concat()),
        lib(b"#!lua name=x\nreturn"),
    ]
    .concat();
    refused_by_all("library twice", &rdb(10, &twice), false, "not `x` again");
    // Code that never calls `register_function` (a flip in its name, in the campaigns).
    refused_by_all(
        "misspelt register_function",
        &rdb(
            10,
            &lib(b"#!lua name=x\nredis.register_functiom('f', function() return 1 end)"),
        ),
        false,
        "nonexistent global variable 'register_functiom'",
    );
    refused_by_all(
        "no function registered",
        &rdb(10, &lib(b"#!lua name=x\nlocal x = 1")),
        false,
        "No functions registered",
    );
    // A function name the server's rule refuses (the campaign's last false ok: a flip
    // made `f!`), and one function registered twice.
    let code = |body: &[u8]| rdb(10, &lib(&[&b"#!lua name=x\n"[..], body].concat()));
    refused_by_all(
        "function name",
        &code(b"redis.register_function('f!', function() return 1 end)"),
        false,
        "Function names can only contain letters",
    );
    refused_by_all(
        "function twice",
        &code(b"redis.register_function('f', function() return 1 end)\nredis.register_function{function_name='f', callback=function() return 2 end}"),
        false,
        "Function already exists in the library",
    );
    loaded_by_all(
        "function names",
        &code(b"-- redis.register_function('not run!')\nredis.register_function('f_1', function() return 1 end)\nredis.register_function{function_name=\"G2\", callback=function() return 2 end}"),
        false,
    );
    // Code the server compiles and runs at load (issue 18): a syntax error, a runtime
    // error, a `redis.*` call the load environment lacks, a body that never ends (the
    // server's 500 ms load timeout; the reader's instruction cap), each refused.
    refused_by_all(
        "library syntax error",
        &code(b"redis.register_function('f', function() return 1 end"),
        false,
        "Error compiling function",
    );
    refused_by_all(
        "library runtime error",
        &code(b"local t = nil\nlocal x = t.field\nredis.register_function('f', function() return 1 end)"),
        false,
        "user_function:3: attempt to index",
    );
    refused_by_all(
        "library calls redis.call at load",
        &code(
            b"redis.call('SET', 'k', 'v')\nredis.register_function('f', function() return 1 end)",
        ),
        false,
        "nonexistent global variable 'call'",
    );
    refused_by_all(
        "library never ends",
        &code(b"while true do end\nredis.register_function('f', function() return 1 end)"),
        false,
        "FUNCTION LOAD timeout",
    );
    loaded_by_all(
        "library with functions and flags",
        &code(b"local function get(keys, args) return redis.call('GET', keys[1]) end\n\
redis.log(redis.LOG_NOTICE, 'loading')\n\
redis.register_function('get_1', get)\n\
redis.register_function{function_name='ro', callback=get, flags={'no-writes', 'ALLOW-STALE'}, description='read'}\n\
redis.register_function{function_name='any', callback=function() return 1 end, flags={'allow-oom', 'no-cluster', 'allow-cross-slot-keys'}}"),
        false,
    );
    // The file's version (10) has no type 20: Redis 7.0 stops at "Unknown RDB encoding
    // type 20". Valkey 8.1 loads it (it checks a type against the types it knows, not the
    // file's version): the reader is stricter there, and names who does what.
    let set20 = [&[20u8][..], &s(b"s"), &s(&listpack(&[b"a", b"b"]))].concat();
    let (loads, r) = judge("type 20 in RDB 10", &rdb(10, &set20), false);
    assert_eq!(loads[0].1, Load::Refused);
    if let Some((who, load)) = loads.get(1) {
        assert!(matches!(load, Load::Loaded(_)), "{who}: {load:?}");
    }
    let expected = r.fault.unwrap().expected;
    assert!(expected.contains("first in RDB 11"), "{expected}");
    assert!(
        expected.contains("redis-server 7.0 refuses it")
            && expected.contains("valkey-server 8.1 and redis-server 7.2 and later load it"),
        "{expected}"
    );
    // A type both servers know in a file whose header says an older version (a listpack
    // hash, first in RDB 10, in an RDB 9 file): both load it, so the reader says ok and
    // warns the header or the byte is damaged.
    let hash16 = [&[16u8][..], &s(b"h"), &s(&listpack(&[b"f", b"v"]))].concat();
    let (loads, r) = judge("type 16 in RDB 9", &rdb(9, &hash16), false);
    for (who, load) in &loads {
        assert_eq!(*load, Load::Loaded([(0, 1)].into()), "{who}");
    }
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.fault);
    assert!(
        r.warnings.iter().any(|w| w.contains("first in RDB 10")
            && w.contains("redis-server 7.0 and valkey-server 8.1 load it")),
        "{:?}",
        r.warnings
    );

    // What the servers do load: an intset or listpack holding a value twice, a hash-table
    // hash with a field twice (they check those only with sanitize-dump-payload), a
    // working library, database 15.
    let intset = [2, 0, 0, 0, 2, 0, 0, 0, 5, 0, 5, 0];
    loaded_by_all(
        "intset twice",
        &rdb(10, &[&[11u8][..], &s(b"s"), &s(&intset)].concat()),
        false,
    );
    let zlp = [
        &[17u8][..],
        &s(b"z"),
        &s(&listpack(&[b"a", b"1", b"a", b"2"])),
    ]
    .concat();
    loaded_by_all("listpack zset twice", &rdb(10, &zlp), false);
    let hash = [
        &[4u8][..],
        &s(b"h"),
        &[2],
        &s(b"f"),
        &s(b"v"),
        &s(b"f"),
        &s(b"w"),
    ]
    .concat();
    loaded_by_all("hash field twice", &rdb(10, &hash), false);
    loaded_by_all("library", &with(b"#!lua name=x\n"), false);
    loaded_by_all(
        "db 15",
        &rdb(10, &[&[0xfe, 15][..], &string(b"k")].concat()),
        false,
    );
}

/// Damage inside one key's value that a load without sanitization does not look at (the
/// campaigns' false alarms: a wrong back-length, a field without its value, an entry
/// running past the terminator or not parsing, a stream entry's element count or master
/// terminator): both servers load the file, the key is there, broken. The reader says ok,
/// counts the keys as the servers do, and warns naming the key, the offset, what is wrong
/// and the way forward. What the load does check stays corrupt: a stream node's first
/// entry (`lpFirst`), and any entry of a listpack whose header count is 65535 ("count
/// them": `lpLength` walks every entry on load).
#[test]
fn damage_the_load_does_not_check_loads_with_a_warning_naming_the_key() {
    let hash = |lp: &[u8]| [&[16u8][..], &s(b"h"), &s(lp), &string(b"k")].concat();
    let fvgw = listpack(&[b"f", b"v", b"g", b"w"]);
    let edit = |lp: &[u8], at: usize, b: u8| {
        let mut lp = lp.to_vec();
        lp[at] = b;
        lp
    };
    let unknown = |lp: &[u8]| {
        let mut lp = lp.to_vec();
        lp[4..6].copy_from_slice(&[0xff, 0xff]);
        lp
    };
    // Entry i of `fvgw` starts at 6 + 3i, its back-length at 6 + 3i + 2; the blob at 13.
    let zset = [
        &[17u8][..],
        &s(b"z"),
        &s(&edit(&listpack(&[b"m", b"1", b"n", b"2"]), 15, 0x85)),
        &string(b"k"),
    ]
    .concat();
    let list = [
        &[18u8][..],
        &s(b"l"),
        &[1, 2],
        &s(&edit(&listpack(&[b"a", b"b"]), 9, 0xf6)),
        &string(b"k"),
    ]
    .concat();
    let node = |items: &[&[u8]]| {
        let lp = listpack(items);
        let mut v = [&[19u8][..], &s(b"x"), &[1]].concat();
        v.extend(s(&[[0u8; 7].as_slice(), &[1], &[0; 8]].concat()));
        v.extend(s(&lp));
        v.extend([1, 1, 1, 1, 0, 0, 0, 1, 0]);
        [v, string(b"k")].concat()
    };
    let good_node: [&[u8]; 10] = [b"1", b"0", b"1", b"f", b"0", b"2", b"0", b"0", b"v", b"4"];
    let mut count_5 = good_node;
    count_5[9] = b"5";
    let mut term_1 = good_node;
    term_1[4] = b"1";
    // (what, body, keys the servers load, the offset and words of the warning).
    type Case<'a> = (&'a str, Vec<u8>, u64, Option<(u64, &'a str)>);
    let loads: Vec<Case> = vec![
        (
            "hash: a field without its value",
            hash(&listpack(&[b"f", b"v", b"g"])),
            2,
            Some((17, "2-entry tuples, not 3")),
        ),
        (
            "hash: one field, no value: dropped",
            hash(&listpack(&[b"f"])),
            1,
            None, // dropped: see below
        ),
        (
            "hash: past the terminator",
            hash(&edit(&fvgw, 15, 0x85)),
            2,
            Some((28, "ends before the terminator")),
        ),
        (
            "hash: an encoding no entry has",
            hash(&edit(&fvgw, 12, 0xf6)),
            2,
            Some((25, "encoding, not 0xf6")),
        ),
        (
            "hash: an end mark inside",
            hash(&edit(&fvgw, 12, 0xff)),
            2,
            Some((25, "not 0xff before the end")),
        ),
        (
            "hash: the first back-length",
            hash(&edit(&fvgw, 8, 5)),
            2,
            Some((21, "back-length")),
        ),
        (
            "hash of 65535 entries, a field without its value",
            hash(&unknown(&listpack(&[b"f", b"v", b"g"]))),
            2,
            Some((17, "2-entry tuples, not 3")),
        ),
        (
            "sorted set: past the terminator",
            zset,
            2,
            Some((28, "ends before the terminator")),
        ),
        (
            "list node: an encoding no entry has",
            list,
            2,
            Some((24, "encoding, not 0xf6")),
        ),
        ("stream node", node(&good_node), 2, None),
        (
            "stream entry element count",
            node(&count_5),
            2,
            Some((64, "stream entry element count 4")),
        ),
        (
            "stream master terminator",
            node(&term_1),
            2,
            Some((49, "master entry terminator 0")),
        ),
    ];
    for (what, body, keys, warned) in loads {
        let (servers, r) = judge(what, &rdb(10, &body), false);
        for (who, load) in &servers {
            let want = std::collections::BTreeMap::from([(0, keys)]);
            assert_eq!(*load, Load::Loaded(want), "{who}");
        }
        assert_eq!(r.verdict, Verdict::Ok, "{what}: {:?}", r.fault);
        assert!(r.keys_exact);
        assert_eq!(r.keys_per_db.get(&0), Some(&keys), "{what}");
        if let Some((at, words)) = warned {
            let named = format!("in database 0 at offset {at}");
            assert!(
                r.damaged_values.iter().any(|d| d.ends_with(&named)),
                "{what}: {:?}",
                r.damaged_values
            );
            let here = format!("is damaged at offset {at} (expected there: ");
            assert!(
                r.warnings
                    .iter()
                    .any(|w| w.starts_with("loads, but the value of key `")
                        && w.contains(&here)
                        && w.contains(words)
                        && w.contains("way forward")
                        && w.contains("UNLINK")),
                "{what}: {:?}",
                r.warnings
            );
        }
    }
    // Damaged, and under one pair by its header count: the servers drop the hash as empty.
    let mut dropped = edit(&fvgw, 15, 0x85);
    dropped[4] = 1;
    let (servers, r) = judge("hash: damaged, count 1", &rdb(10, &hash(&dropped)), false);
    for (who, load) in &servers {
        let want = std::collections::BTreeMap::from([(0, 1)]);
        assert_eq!(*load, Load::Loaded(want), "{who}");
    }
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.fault);
    assert_eq!(r.keys_per_db.get(&0), Some(&1));
    assert!(r.damaged_values.is_empty(), "{:?}", r.damaged_values);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("dropped by the server as empty") && w.contains("offset 28")),
        "{:?}",
        r.warnings
    );
    let mut first_back = listpack(&good_node);
    first_back[8] = 5;
    let refused_node = {
        let mut v = [&[19u8][..], &s(b"x"), &[1]].concat();
        v.extend(s(&[[0u8; 7].as_slice(), &[1], &[0; 8]].concat()));
        v.extend(s(&first_back));
        v.extend([1, 1, 1, 1, 0, 0, 0, 1, 0]);
        v
    };
    refused_by_all(
        "stream node: the first entry's back-length",
        &rdb(10, &refused_node),
        false,
        "first listpack entry's back-length",
    );
    refused_by_all(
        "hash of 65535 entries, past the terminator",
        &rdb(10, &hash(&unknown(&edit(&fvgw, 15, 0x85)))),
        false,
        "walks every entry while loading to count them",
    );
}

/// An AOF whose RDB preamble holds a key damaged where the load does not look, and whose
/// incr file then runs a command on it (the third campaign's false ok: `HSET hash x y`
/// after a base whose `hash` was damaged): the server loads the base, then stops on the
/// command, which walks the value. A key dropped first, then written again, loads; one
/// renamed carries its damage along.
#[test]
fn an_aof_command_on_a_key_its_preamble_holds_damaged_is_not_ok() {
    let mut lp = listpack(&[b"f", b"v", b"g", b"w"]);
    lp[15] = 0x85; // the last entry runs past the terminator
    let base = rdb(
        10,
        &[&[16u8][..], &s(b"h"), &s(&lp), &string(b"k")].concat(),
    );
    let resp = |cmds: &[&[&str]]| -> Vec<u8> {
        cmds.iter().flat_map(|c| persist_support::resp(c)).collect()
    };
    let servers = servers();
    // (what, the incr file's commands, the fault's words when the server stops).
    type Case<'a> = (&'a str, &'a [&'a [&'a str]], Option<&'a str>);
    let cases: [Case; 3] = [
        (
            "HSET on it",
            &[&["HSET", "h", "x", "y"]],
            Some("not `HSET` on key `h` in database 0"),
        ),
        (
            "DEL, then HSET",
            &[&["DEL", "h"], &["HSET", "h", "x", "y"]],
            None,
        ),
        (
            "RENAME, then HSET",
            &[&["RENAME", "h", "h2"], &["HSET", "h2", "x", "y"]],
            Some("not `HSET` on key `h2` in database 0"),
        ),
    ];
    for (what, cmds, fault) in cases {
        let mut report = None;
        for server in &servers {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("appendonlydir");
            fs::create_dir(&dir).unwrap();
            fs::write(dir.join("appendonly.aof.1.base.rdb"), &base).unwrap();
            let mut incr = resp(&[&["SELECT", "0"]]);
            incr.extend(resp(cmds));
            fs::write(dir.join("appendonly.aof.1.incr.aof"), incr).unwrap();
            fs::write(
                dir.join("appendonly.aof.manifest"),
                "file appendonly.aof.1.base.rdb seq 1 type b\n\
                 file appendonly.aof.1.incr.aof seq 1 type i\n",
            )
            .unwrap();
            let r = report.get_or_insert_with(|| check_path(&dir, &CheckOptions::default()));
            let load = judge_load(server, tmp.path(), true, Duration::from_secs(10));
            match fault {
                Some(_) => assert_eq!(load, Load::Refused, "{what} on {}", server.display()),
                None => assert_eq!(
                    load,
                    Load::Loaded(std::collections::BTreeMap::from([(0, 2)])),
                    "{what} on {}",
                    server.display()
                ),
            }
            match fault {
                Some(words) => {
                    assert_eq!(r.verdict, Verdict::Corrupt, "{what}");
                    let f = r.fault.as_ref().expect("a fault");
                    assert!(f.expected.contains(words), "{what}: {f:?}");
                }
                None => {
                    assert_eq!(r.verdict, Verdict::Ok, "{what}: {:?}", r.fault);
                    assert_eq!(r.keys_per_db.get(&0), Some(&2), "{what}");
                }
            }
        }
    }
}

/// An AOF whose RDB preamble holds a key with a negative expire time (the third
/// campaign's false ok on valkey): valkey-server 8.1 loads an AOF's keys expired or not,
/// and its first expiry cycle then asserts (`t >= 0`); redis-server 7.0 deletes the key.
/// The same RDB loaded as a snapshot drops the key as expired on both; on an empty
/// collection, which the load drops, nothing is left to assert on (the campaign saw that).
#[test]
fn a_negative_expire_time_in_an_aof_preamble_is_not_ok() {
    let Some(valkey) = valkey_server() else {
        println!("note: no valkey-server (set LAZARUS_VALKEY_SERVER): skipped");
        return;
    };
    let expiring = [
        &[0xfcu8][..],
        &(-5000i64).to_le_bytes(),
        &string(b"t"),
        &string(b"k"),
    ]
    .concat();
    let base = rdb(10, &expiring);
    // On an empty set, which the load drops: nothing is left to assert on.
    let on_empty = [
        &[0xfcu8][..],
        &(-5000i64).to_le_bytes(),
        &[2],
        &s(b"e"),
        &[0],
        &string(b"k"),
    ]
    .concat();
    for (file, refused) in [(base.clone(), true), (rdb(10, &on_empty), false)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("appendonlydir");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("appendonly.aof.1.base.rdb"), &file).unwrap();
        fs::write(
            dir.join("appendonly.aof.manifest"),
            "file appendonly.aof.1.base.rdb seq 1 type b\n",
        )
        .unwrap();
        let r = check_path(&dir, &CheckOptions::default());
        let settle = Duration::from_millis(500);
        let load = persist_support::judge_load_settled(
            std::path::Path::new(&valkey),
            tmp.path(),
            true,
            Duration::from_secs(10),
            settle,
        );
        if refused {
            assert_eq!(load, Load::Refused, "valkey-server");
            assert_eq!(r.verdict, Verdict::Corrupt);
            let fault = r.fault.expect("a fault");
            assert!(
                fault.expected.contains("an expire time of 0 or more"),
                "{fault:?}"
            );
        } else {
            let want = std::collections::BTreeMap::from([(0, 1)]);
            assert_eq!(load, Load::Loaded(want), "valkey-server, the empty set");
            assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.fault);
        }
    }
    // As a snapshot: both load it, without the expired key.
    let (loads, r) = judge("a negative expire time in an RDB", &base, false);
    for (who, load) in &loads {
        let want = std::collections::BTreeMap::from([(0, 1)]);
        assert_eq!(*load, Load::Loaded(want), "{who}");
    }
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.fault);
}

/// A listpack whose header element count is not its number of entries: the servers check
/// only the total bytes and the terminator on load and take the count as the size, so
/// the file loads (the reader says ok and warns where and what to do); a count under one
/// pair makes the server drop the hash as empty, and the reader's key count leaves it out
/// too (most of the second campaign's false alarms were these).
#[test]
fn a_wrong_listpack_element_count_loads_with_a_warning() {
    for (declared, keys) in [(6u16, 1u64), (1, 0)] {
        let mut lp = listpack(&[b"f", b"v", b"g", b"w"]);
        lp[4..6].copy_from_slice(&declared.to_le_bytes());
        let body = [&[16u8][..], &s(b"h"), &s(&lp), &string(b"k")].concat();
        let file = rdb(10, &body);
        let (loads, r) = judge("hash listpack with a wrong element count", &file, false);
        for (who, load) in &loads {
            let want = std::collections::BTreeMap::from([(0, keys + 1)]);
            assert_eq!(*load, Load::Loaded(want), "{who}: count {declared}");
        }
        assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.fault);
        assert!(r.keys_exact);
        assert_eq!(r.keys_per_db.get(&0), Some(&(keys + 1)), "count {declared}");
        let offset = format!(
            "element count at offset {} is {declared} where it holds 4",
            9 + 1 + 2 + 1 + 4
        );
        assert!(
            r.warnings.iter().any(|w| w.starts_with("loads, but")
                && w.contains(&offset)
                && w.contains("way forward")),
            "{:?}",
            r.warnings
        );
    }
}

/// A stream with two consumer groups and two consumers, written by the server, then made
/// to repeat a name (same length, CRC-64 recomputed).
#[test]
fn streams_with_a_repeated_group_or_consumer_are_not_ok() {
    let mut s = Server::start(&[]);
    s.batch(&[
        args(&["XADD", "x", "1-1", "f", "v"]),
        args(&["XGROUP", "CREATE", "x", "grpA", "0"]),
        args(&["XGROUP", "CREATE", "x", "grpB", "0"]),
        args(&["XGROUP", "CREATECONSUMER", "x", "grpA", "conA"]),
        args(&["XGROUP", "CREATECONSUMER", "x", "grpA", "conB"]),
    ]);
    s.cmd(&["SAVE"]);
    let good = fs::read(s.file("dump.rdb")).unwrap();
    drop(s);
    let renamed = |from: &[u8], to: &[u8]| {
        let mut b = good.clone();
        let at = b.windows(from.len()).position(|w| w == from).unwrap();
        b[at..at + to.len()].copy_from_slice(to);
        let n = b.len() - 8;
        let crc = crc64(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
        b
    };
    loaded_by_all("stream", &good, false);
    refused_by_all(
        "stream group twice",
        &renamed(b"grpB", b"grpA"),
        false,
        "consumer group name",
    );
    refused_by_all(
        "stream consumer twice",
        &renamed(b"conB", b"conA"),
        false,
        "consumer name",
    );
}

/// A stream's pending lists and nodes as the servers check them on load (the third
/// campaign's false ok: a pending entry owned twice). Both refuse an entry a consumer
/// owns twice, an ID twice in a group's list, a node ID twice, and a length over 0
/// without nodes; redis-server 7.0.15 also refuses an entry owned by two consumers,
/// which valkey-server 8.1 loads (the reader takes the stricter); an unordered group
/// list without repeats loads.
#[test]
fn stream_pending_lists_and_nodes_as_the_servers_check_them() {
    let mut server = Server::start(&[]);
    server.batch(&[
        args(&["XADD", "x", "1-1", "f", "v"]),
        args(&["XADD", "x", "1-2", "f", "w"]),
        args(&["XADD", "x", "1-3", "f", "u"]),
        args(&["XGROUP", "CREATE", "x", "g", "0"]),
        args(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "COUNT",
            "2",
            "STREAMS",
            "x",
            ">",
        ]),
        args(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "c2",
            "COUNT",
            "1",
            "STREAMS",
            "x",
            ">",
        ]),
    ]);
    server.cmd(&["SAVE"]);
    let good = fs::read(server.file("dump.rdb")).unwrap();
    drop(server);
    let id = |seq: u8| {
        let mut b = [0u8; 16];
        b[7] = 1;
        b[15] = seq;
        b
    };
    // Where the raw ID 1-seq is, matches not overlapping (1-1 then 1-2 hold 1-1 across
    // their boundary).
    let at = |seq: u8| -> Vec<usize> {
        let mut found: Vec<usize> = Vec::new();
        for i in 0..good.len() - 15 {
            if good[i..i + 16] == id(seq) && found.last().is_none_or(|&l| i >= l + 16) {
                found.push(i);
            }
        }
        found
    };
    // Raw IDs in order: the node's ID (1-1), the group's list (1-1, 1-2, 1-3), then
    // c1's (1-1, 1-2) and c2's (1-3).
    assert_eq!((at(1).len(), at(2).len(), at(3).len()), (3, 2, 2));
    let edit = |edits: &[(usize, u8)]| {
        let mut b = good.clone();
        for &(i, seq) in edits {
            b[i..i + 16].copy_from_slice(&id(seq));
        }
        let n = b.len() - 8;
        let crc = crc64(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
        b
    };
    loaded_by_all("stream with two consumers", &good, false);
    refused_by_all(
        "a pending entry a consumer owns twice",
        &edit(&[(at(2)[1], 1)]),
        false,
        "owned twice",
    );
    let (loads, r) = judge(
        "a pending entry owned by two consumers",
        &edit(&[(at(3)[1], 1)]),
        false,
    );
    for (who, load) in &loads {
        if who.contains("valkey") {
            assert!(matches!(load, Load::Loaded(_)), "{who}: {load:?}");
        } else {
            assert_eq!(*load, Load::Refused, "{who}");
        }
    }
    let fault = r.fault.expect("a fault");
    assert!(fault.expected.contains("owned twice"), "{fault:?}");
    refused_by_all(
        "a pending entry twice in the group's list",
        &edit(&[(at(2)[0], 3)]),
        false,
        "not already in its group's pending list",
    );
    loaded_by_all(
        "a group's list out of order",
        &edit(&[(at(1)[1], 5), (at(1)[2], 5)]),
        false,
    );
    // Hand-made nodes of short strings: the same node ID twice, and a length without nodes.
    let node = listpack(&[b"1", b"0", b"1", b"f", b"0", b"2", b"0", b"0", b"v", b"4"]);
    let stream = |nodes: &[[u8; 16]], length: u8| {
        let mut v = [&[19u8][..], &s(b"x"), &[nodes.len() as u8]].concat();
        for n in nodes {
            v.extend(s(n));
            v.extend(s(&node));
        }
        // length, last ID, first ID, max deleted ID, entries added, no groups.
        v.extend([length, 1, 1, 1, 1, 0, 0, length, 0]);
        rdb(10, &v)
    };
    loaded_by_all("a stream node", &stream(&[id(1)], 1), false);
    refused_by_all(
        "a stream node ID twice",
        &stream(&[id(1), id(1)], 2),
        false,
        "stream node ID not already",
    );
    loaded_by_all("an empty stream", &stream(&[], 0), false);
    refused_by_all(
        "a stream length without nodes",
        &stream(&[], 3),
        false,
        "a stream length of 0",
    );
}

#[test]
fn aof_records_the_server_cannot_run_are_not_ok() {
    let aof = |cmds: &[&[&str]]| -> Vec<u8> {
        cmds.iter().flat_map(|c| persist_support::resp(c)).collect()
    };
    refused_by_all(
        "unknown command",
        &aof(&[&["SET", "k", "v"], &["FOOBAR", "x"]]),
        true,
        "not `FOOBAR`",
    );
    refused_by_all(
        "unknown subcommand",
        &aof(&[&["XGROUP", "FOO", "k"]]),
        true,
        "subcommand of `XGROUP`",
    );
    // The server runs a command of the wrong arity anyway and reads past its arguments:
    // it crashed in one run and loaded garbage in another. The reader refuses it.
    let (_, r) = judge("wrong arity", &aof(&[&["set", "k"]]), true);
    assert!(r
        .fault
        .unwrap()
        .expected
        .contains("`set` with at least 2 argument(s), not 1"));
    loaded_by_all(
        "known commands",
        &aof(&[&["set", "k", "v"], &["XGROUP", "HELP"], &["get", "k"]]),
        true,
    );
}

/// The listpacks the load converts over their default limit: (type, entries per element,
/// the limit, RDB version). Sets as listpacks arrive in RDB 11, which only valkey-server
/// 8.1 of the two loads.
const CONVERTED_LISTPACKS: [(u8, usize, usize, u32); 3] =
    [(16, 2, 512, 10), (17, 2, 128, 10), (20, 1, 128, 11)];

/// Every server that knows the file's RDB version loaded a listpack of `n` elements at its
/// limit `max` and refused one over it.
fn loads_up_to_the_limit(loads: &[(String, Load)], version: u32, n: usize, max: usize) {
    for (who, load) in loads {
        if version > 10 && !who.contains("valkey") {
            continue;
        }
        if n > max {
            assert_eq!(*load, Load::Refused, "{who}");
        } else {
            assert!(matches!(load, Load::Loaded(_)), "{who}: {load:?}");
        }
    }
}

/// A hash, sorted set or set listpack over the server's default `*-max-listpack-entries`
/// (512 fields, 128 members, 128 members) is converted while loading; the conversion walks
/// every entry whole, so a wrong back-length on any entry stops the load (both servers
/// assert), where the same damage in a listpack at the limit loads (with the warning).
/// The reader called the bigger ones ok (a false ok no campaign seed could reach: servers
/// at their defaults never write such a listpack).
#[test]
fn a_wrong_back_length_in_a_listpack_converted_on_load_is_not_ok() {
    for (t, tuple, max, version) in CONVERTED_LISTPACKS {
        for n in [max, max + 1] {
            let items: Vec<Vec<u8>> = (0..n * tuple).map(|i| i.to_string().into_bytes()).collect();
            let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
            let mut lp = listpack(&refs);
            // The back-length of the fourth entry (not the first, which loads refuse anyway).
            let at = 6 + refs[..3].iter().map(|e| e.len() + 2).sum::<usize>() + 1 + refs[3].len();
            assert_eq!(usize::from(lp[at]), 1 + refs[3].len());
            lp[at] += 3;
            let file = rdb(version, &[&[t][..], &s(b"k"), &s(&lp)].concat());
            let name = format!("type {t} listpack of {n} elements, a wrong back-length");
            let (loads, r) = judge(&name, &file, false);
            loads_up_to_the_limit(&loads, version, n, max);
            if n > max {
                assert_ne!(r.verdict, Verdict::Ok, "{name}");
                let fault = r.fault.expect("a fault");
                assert!(
                    fault.expected.contains("converts it while loading"),
                    "{name}: {fault:?}"
                );
            } else {
                assert_eq!(r.verdict, Verdict::Ok, "{name}: {:?}", r.fault);
                assert!(
                    r.warnings.iter().any(|w| w.contains("UNLINK")),
                    "{name}: {:?}",
                    r.warnings
                );
            }
        }
    }
}

/// Look-alikes of faults the servers read past (the campaign's false alarms): every
/// length that is not a string's is read with the "encoded" mark ignored (0xc2 as a count
/// is 2, 0xc3 as a database is 3). A version is read with atoi, as both servers read it:
/// `REDIS010x` is version 10; but valkey-server 8.1 wants its first digit to be `0`, so
/// `REDIS+010` and `REDIS 010`, which redis-server 7.0 loads, stay corrupt.
#[test]
fn lengths_read_as_the_server_reads_them() {
    let set = [&[2u8][..], &s(b"s"), &[0xc2], &s(b"a"), &s(b"b")].concat();
    loaded_by_all("a set count marked encoded", &rdb(10, &set), false);
    let db = [&[0xfe, 0xc3][..], &string(b"k")].concat();
    let (loads, r) = judge("a database number marked encoded", &rdb(10, &db), false);
    for (who, load) in &loads {
        let want = std::collections::BTreeMap::from([(3, 1)]);
        assert_eq!(*load, Load::Loaded(want), "{who}");
    }
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.fault);
    assert_eq!(r.keys_per_db.get(&3), Some(&1));
    let version = |digits: &[u8]| {
        let mut b = [b"REDIS", digits, &string(b"k"), &[0xff]].concat();
        let crc = crc64(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    };
    loaded_by_all(
        "a version with a letter after its digits",
        &version(b"010x"),
        false,
    );
    let (loads, r) = judge("a version after a sign", &version(b"+010"), false);
    for (who, load) in &loads {
        if who.contains("valkey") {
            assert_eq!(*load, Load::Refused, "{who}");
        }
    }
    assert_eq!(r.verdict, Verdict::Corrupt);
}

/// Opcode 244 (slot info) first came with RDB 12 (redis 7.4); redis-server 7.0 and
/// valkey-server 8.1 stop at it ("Unknown RDB encoding type 244"), in an RDB and in an AOF's
/// RDB base alike. The campaigns' two real false ok: an expire opcode (252) with bit 3
/// flipped, in an AOF's base, its next bytes read as the three lengths slot info holds.
#[test]
fn slot_info_in_a_file_before_rdb_12_is_not_ok() {
    let body = [&[0xfe, 0, 0xf4, 5, 1, 0][..], &string(b"k")].concat();
    for version in [10, 11] {
        let file = rdb(version, &body);
        let (loads, r) = judge(&format!("slot info in RDB {version}"), &file, false);
        for (who, load) in &loads {
            // RDB 11: redis-server 7.0 refuses the version itself.
            assert_eq!(*load, Load::Refused, "{who}");
        }
        assert_eq!(r.verdict, Verdict::Corrupt, "RDB {version}: {:?}", r.fault);
        assert!(r.fault.unwrap().expected.contains("244"));
        let (loads, r) = judge_base(&format!("slot info in an AOF base of RDB {version}"), &file);
        for (who, load) in &loads {
            assert_eq!(*load, Load::Refused, "{who}");
        }
        assert_eq!(r.verdict, Verdict::Corrupt, "AOF base: {:?}", r.fault);
        assert!(r.fault.unwrap().expected.contains("244"));
    }
    // The same file without the opcode loads everywhere.
    let plain = rdb(10, &[&[0xfe, 0][..], &string(b"k")].concat());
    loaded_by_all("no slot info", &plain, false);
    let (loads, r) = judge_base("no slot info, an AOF base", &plain);
    for (who, load) in &loads {
        assert!(matches!(load, Load::Loaded(_)), "{who}: {load:?}");
    }
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.fault);
}

/// [`judge`] for an `appendonlydir/` whose base is the RDB `base` (no incr part's commands).
fn judge_base(name: &str, base: &[u8]) -> (Vec<(String, Load)>, FileReport) {
    judge_laid(name, true, |root| {
        let dir = root.join("appendonlydir");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("appendonly.aof.1.base.rdb"), base).unwrap();
        fs::write(dir.join("appendonly.aof.1.incr.aof"), b"").unwrap();
        fs::write(
            dir.join("appendonly.aof.manifest"),
            "file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n",
        )
        .unwrap();
        dir
    })
}

/// A function library in the pre-release form (opcode 246, from redis 7.0's release
/// candidates): valkey-server 8.1 refuses it outright, redis-server 7.0 loads a good one.
/// The reader takes the stricter answer and names both.
#[test]
fn a_pre_release_function_library_is_not_ok() {
    let code = b"redis.register_function('f', function() return 1 end)";
    let lib = [&[0xf6u8][..], &s(b"x"), &s(b"LUA"), &[0], &s(code)].concat();
    let (loads, r) = judge("pre-release library", &rdb(10, &lib), false);
    assert!(matches!(loads[0].1, Load::Loaded(_)), "{loads:?}");
    if let Some((who, load)) = loads.get(1) {
        assert_eq!(*load, Load::Refused, "{who}");
    }
    assert_eq!(r.verdict, Verdict::Corrupt, "{:?}", r.fault);
    let expected = r.fault.unwrap().expected;
    assert!(
        expected.contains("valkey-server 8.1 refuses it")
            && expected.contains("redis-server 7.0 loads it"),
        "{expected}"
    );
}

/// The campaigns' false ok as it came: a real AOF directory whose base is an RDB holding a
/// function library, its first key's expire opcode (252) with bit 3 flipped into 244 and the
/// CRC-64 made right again. Both servers refuse it; so does the reader, at that byte.
#[test]
fn an_expire_opcode_flipped_into_slot_info_in_a_real_aof_base_is_not_ok() {
    let mut s = Server::start(&[("appendonly", "yes"), ("aof-use-rdb-preamble", "yes")]);
    s.cmd(&[
        "FUNCTION",
        "LOAD",
        "#!lua name=difflib\nredis.register_function('f1', function() return 1 end)",
    ]);
    s.cmd(&["SET", "ttl", "v", "EX", "100000"]);
    s.cmd(&["SET", "plain", "v"]);
    s.cmd(&["BGREWRITEAOF"]);
    s.wait_persistence();
    let dir = s.path().join("appendonlydir");
    let mut files = read_dir_files(&dir);
    drop(s);
    let base = files
        .iter_mut()
        .find(|(n, _)| n.ends_with(".base.rdb"))
        .map(|(_, b)| b)
        .expect("an RDB base");
    let code = base.windows(5).position(|w| w == b"#!lua").unwrap();
    let at = code
        + base[code..]
            .iter()
            .position(|&b| b == 0xfc)
            .expect("an expire opcode");
    base[at] ^= 1 << 3;
    let body = base.len() - 8;
    let crc = crc64(&base[..body]);
    base[body..].copy_from_slice(&crc.to_le_bytes());
    let servers = servers();
    for server in servers {
        let tmp = tempfile::tempdir().unwrap();
        let copy = tmp.path().join("appendonlydir");
        fs::create_dir(&copy).unwrap();
        for (n, b) in &files {
            fs::write(copy.join(n), b).unwrap();
        }
        let r = check_path(&copy, &CheckOptions::default());
        assert_eq!(r.verdict, Verdict::Corrupt, "{:?}", r.fault);
        let fault = r.fault.unwrap();
        assert!(fault.expected.contains("not 244"), "{fault:?}");
        assert_eq!(fault.offset, at as u64, "{fault:?}");
        let load = judge_load(&server, tmp.path(), true, Duration::from_secs(10));
        // (redis-server 7.0 reads the key after a type it does not know before it names
        // the type, so what it logs depends on the timestamp's bytes.)
        assert_eq!(load, Load::Refused, "{}", server.display());
    }
}

/// A ziplist of short strings (a blob of an RDB before 10).
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

/// A field (or member) twice in one value: refused where the load puts the value in a
/// hash table (a big type-4 hash, or one a long value converts, a listpack over its
/// default limit, the ziplists and zipmaps of old files, which the load checks), loaded
/// where it keeps a small hash as a listpack unchecked (then the reader says so).
#[test]
fn a_field_twice_is_not_ok_where_the_server_builds_a_table() {
    let hash = |pairs: &[(Vec<u8>, Vec<u8>)]| {
        let n = pairs.len();
        let mut b = [&[4u8][..], &s(b"h"), &[0x40 | (n >> 8) as u8, n as u8]].concat();
        for (f, v) in pairs {
            b.extend(s(f).iter().chain(&s(v)));
        }
        rdb(10, &b)
    };
    let field = |i: usize| format!("field-{i}").into_bytes();
    let mut big: Vec<_> = (0..600).map(|i| (field(i), b"v".to_vec())).collect();
    big[400].0 = field(17);
    refused_by_all(
        "a 600-field hash with a field twice",
        &hash(&big),
        false,
        "Duplicate hash fields detected",
    );
    let mut small: Vec<_> = (0..3).map(|i| (field(i), b"v".to_vec())).collect();
    small.push((field(1), b"w".to_vec()));
    let (loads, r) = judge("a 4-field hash with a field twice", &hash(&small), false);
    for (who, load) in &loads {
        assert!(matches!(load, Load::Loaded(_)), "{who}: {load:?}");
    }
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.fault);
    assert!(
        r.warnings.iter().any(|w| w.contains("holds a field twice")),
        "{:?}",
        r.warnings
    );
    small.push((field(9), vec![b'x'; 100]));
    refused_by_all(
        "a small hash with a field twice, then a long value",
        &hash(&small),
        false,
        "Listpack corruption detected",
    );

    // Listpacks: over the default limit the load converts them and stops on a repeat.
    for (t, tuple, max, version) in CONVERTED_LISTPACKS {
        for n in [max, max + 1] {
            let mut items: Vec<Vec<u8>> =
                (0..n * tuple).map(|i| i.to_string().into_bytes()).collect();
            items[tuple * (n - 1)] = items[0].clone();
            let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
            let file = rdb(
                version,
                &[&[t][..], &s(b"k"), &s(&listpack(&refs))].concat(),
            );
            let name = format!("type {t} listpack of {n} elements, one twice");
            let (loads, r) = judge(&name, &file, false);
            loads_up_to_the_limit(&loads, version, n, max);
            if n > max {
                let fault = r.fault.expect("a fault");
                assert!(
                    fault.expected.contains("stops on a repeat"),
                    "{name}: {fault:?}"
                );
            } else {
                assert_eq!(r.verdict, Verdict::Ok, "{name}: {:?}", r.fault);
            }
        }
    }

    // The ziplists of hashes (13) and sorted sets (12), and zipmaps (9): always checked.
    let zl = ziplist(&[b"f", b"v", b"g", b"v", b"f", b"w"]);
    refused_by_all(
        "a ziplist hash with a field twice",
        &rdb(9, &[&[13u8][..], &s(b"k"), &s(&zl)].concat()),
        false,
        "ziplist integrity check failed",
    );
    let zl = ziplist(&[b"m", b"1", b"m", b"2"]);
    refused_by_all(
        "a ziplist sorted set with a member twice",
        &rdb(9, &[&[12u8][..], &s(b"k"), &s(&zl)].concat()),
        false,
        "ziplist integrity check failed",
    );
    // An intset over set-max-intset-entries (512): converted while loading, asserting.
    let intset = |n: u16| {
        let mut is = vec![2, 0, 0, 0];
        is.extend(u32::from(n).to_le_bytes());
        for v in 0..n {
            is.extend((if v == 300 { 299 } else { v }).to_le_bytes());
        }
        rdb(10, &[&[11u8][..], &s(b"k"), &s(&is)].concat())
    };
    refused_by_all(
        "an intset of 513 members, one twice",
        &intset(513),
        false,
        "set-max-intset-entries (512)",
    );
    loaded_by_all("an intset of 512 members, one twice", &intset(512), false);
    let zm = [2, 1, b'f', 1, 0, b'v', 1, b'f', 1, 0, b'w', 0xff];
    refused_by_all(
        "a zipmap with a field twice",
        &rdb(3, &[&[9u8][..], &s(b"k"), &s(&zm)].concat()),
        false,
        "zipmap with dup elements",
    );
}
