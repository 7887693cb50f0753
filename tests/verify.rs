//! Proof of content against real servers: the digest of an RDB equals the digest of the
//! server that wrote it and of servers that loaded it with other encodings (and Valkey),
//! DUMP payloads rebuilt from the file are accepted by RESTORE and digest the same, and
//! deliberate differences are each named.

mod persist_support;

use std::path::PathBuf;
use std::time::Duration;

use lazarus::persist::{self, encode_dump, rdb_entries, DigestOptions, Value};
use lazarus::server::ShardAddr;
use lazarus::verify::{self, Difference};
use persist_support::{args, Reply, Server};

const TIMEOUT: Duration = Duration::from_secs(10);

fn addr(s: &Server) -> ShardAddr {
    ShardAddr::plain("127.0.0.1", s.port, None)
}

/// Every type in small and big encodings, in dbs 0 and 3, with TTLs far off and soon.
fn populate(s: &mut Server) {
    let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
    let big = "v".repeat(20_000);
    for db in [0u32, 3] {
        cmds.push(args(&["SELECT", &db.to_string()]));
        let p = format!("d{db}");
        for i in 0..20 {
            cmds.push(args(&[
                "SET",
                &format!("{p}:int:{i}"),
                &(i * 1000 - 7).to_string(),
            ]));
            cmds.push(args(&[
                "SET",
                &format!("{p}:str:{i}"),
                &format!("value-{i}"),
            ]));
        }
        cmds.push(args(&["SET", &format!("{p}:lzf"), &big]));
        cmds.push(args(&["SET", &format!("{p}:bin"), "a\u{0}\u{1}\u{ff}b"]));
        for i in 0..5 {
            cmds.push(args(&[
                "RPUSH",
                &format!("{p}:list:small"),
                &format!("e{i}"),
                &(i * 100).to_string(),
            ]));
            cmds.push(args(&[
                "HSET",
                &format!("{p}:hash:small"),
                &format!("f{i}"),
                &(i * 7).to_string(),
            ]));
            cmds.push(args(&[
                "SADD",
                &format!("{p}:set:ints"),
                &(i - 2).to_string(),
            ]));
            cmds.push(args(&["SADD", &format!("{p}:set:small"), &format!("m{i}")]));
            cmds.push(args(&[
                "ZADD",
                &format!("{p}:zset:small"),
                &format!("{i}.25"),
                &format!("z{i}"),
            ]));
        }
        cmds.push(args(&[
            "ZADD",
            &format!("{p}:zset:small"),
            "-inf",
            "low",
            "inf",
            "high",
        ]));
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
                &format!("{}", i as f64 / 3.0),
                &format!("m{i}"),
            ]));
        }
        cmds.push(args(&["RPUSH", &format!("{p}:list:plain"), "a", &big, "b"]));
        cmds.push(args(&["PFADD", &format!("{p}:hll"), "a", "b", "c"]));
        let st = format!("{p}:stream");
        for i in 0..150 {
            if i % 3 == 0 {
                cmds.push(args(&["XADD", &st, "*", "other", &i.to_string()]));
            } else {
                cmds.push(args(&["XADD", &st, "*", "f", &i.to_string(), "g", "x"]));
            }
        }
        cmds.push(args(&["XDEL", &st, "0-1"]));
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
        for i in 0..5 {
            cmds.push(args(&["SET", &format!("{p}:ttl:{i}"), "x", "EX", "100000"]));
            cmds.push(args(&["SET", &format!("{p}:soon:{i}"), "y", "EX", "600"]));
        }
    }
    cmds.push(args(&["SELECT", "0"]));
    s.batch(&cmds);
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn saved(config: &[(&str, &str)]) -> (Server, PathBuf) {
    let mut s = Server::start(config);
    populate(&mut s);
    assert_eq!(s.cmd(&["SAVE"]).text(), "OK");
    let path = s.file("dump.rdb");
    (s, path)
}

/// A server started on a copy of `rdb`.
fn loaded(rdb: &PathBuf, config: &[(&str, &str)], binary: Option<&str>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(rdb, dir.path().join("dump.rdb")).unwrap();
    match binary {
        None => Server::start_in(dir, config),
        Some(b) => Server::start_with(b, dir, config),
    }
}

fn assert_equal(files: &[PathBuf], s: &Server) -> verify::Comparison {
    let rt = rt();
    let c = rt
        .block_on(verify::verify_content(
            files,
            &[addr(s)],
            &DigestOptions::default(),
            TIMEOUT,
        ))
        .unwrap();
    assert!(c.equal, "{c:#?}");
    assert!(c.files.keys > 0);
    c
}

/// Hash tables, skiplists and one-element quicklist nodes instead of listpacks/intsets.
const BIG_ENCODINGS: &[(&str, &str)] = &[
    ("hash-max-listpack-entries", "0"),
    ("set-max-intset-entries", "0"),
    ("zset-max-listpack-entries", "0"),
    ("list-max-listpack-size", "1"),
];

#[test]
fn the_file_digest_equals_the_server_digest_for_every_type_and_encoding() {
    let (mut s, rdb) = saved(&[]);
    for (key, enc) in [
        ("d0:hash:small", "listpack"),
        ("d0:set:ints", "intset"),
        ("d0:zset:small", "listpack"),
        ("d0:list:big", "quicklist"),
        ("d0:hash:big", "hashtable"),
        ("d0:zset:big", "skiplist"),
        ("d0:set:big", "hashtable"),
    ] {
        assert_eq!(s.cmd(&["OBJECT", "ENCODING", key]).text(), enc, "{key}");
    }
    let c = assert_equal(std::slice::from_ref(&rdb), &s);
    assert_eq!(c.files.digest, c.server.digest);
    // 2 dbs × (20 ints, 20 strings, lzf, bin, 5 small + 5 big collections, plain list,
    // hll, stream, 10 TTL keys).
    assert_eq!(c.files.keys, 2 * (40 + 2 + 10 + 1 + 1 + 1 + 10));
    // The same data written with the big encodings digests the same.
    let (big, big_rdb) = saved(BIG_ENCODINGS);
    let c2 = assert_equal(std::slice::from_ref(&big_rdb), &big);
    assert_eq!(c2.files.keys, c.files.keys);
    // Loaded by a server that re-encodes (small → big) while loading.
    let mut reencoded = loaded(&rdb, BIG_ENCODINGS, None);
    assert_eq!(
        reencoded
            .cmd(&["OBJECT", "ENCODING", "d0:hash:small"])
            .text(),
        "hashtable"
    );
    assert_equal(std::slice::from_ref(&rdb), &reencoded);
    // DUMP payloads without LZF (as recovery asks of its own servers) digest the same, and
    // the server's setting is put back.
    let lifted = DigestOptions {
        uncompressed_dumps: true,
        ..DigestOptions::default()
    };
    let c4 = rt()
        .block_on(verify::verify_content(
            std::slice::from_ref(&rdb),
            &[addr(&s)],
            &lifted,
            TIMEOUT,
        ))
        .unwrap();
    assert!(c4.equal && c4.server.digest == c.server.digest, "{c4:#?}");
    assert_eq!(
        s.cmd(&["CONFIG", "GET", "rdbcompression"]).text(),
        format!(
            "{:?}",
            [
                Reply::Bulk(Some(b"rdbcompression".to_vec())),
                Reply::Bulk(Some(b"yes".to_vec()))
            ]
        )
    );
    // Uncompressed strings digest the same as LZF ones.
    let (plain, plain_rdb) = saved(&[("rdbcompression", "no")]);
    let c3 = assert_equal(std::slice::from_ref(&plain_rdb), &plain);
    assert_eq!(c3.files.keys, c.files.keys);
}

#[test]
fn valkey_files_and_servers_digest_the_same_as_redis() {
    let Some(valkey) = persist_support::valkey_server() else {
        eprintln!("no valkey-server: skipped");
        return;
    };
    let (_s, rdb) = saved(&[]);
    // Valkey loading Redis' RDB 10.
    let v = loaded(&rdb, &[], Some(&valkey));
    let c = assert_equal(std::slice::from_ref(&rdb), &v);
    // Valkey's own RDB 11 (listpack sets, streams with active times).
    let mut v = v;
    assert_eq!(v.cmd(&["SAVE"]).text(), "OK");
    let own = v.file("dump.rdb");
    let c2 = assert_equal(std::slice::from_ref(&own), &v);
    assert_eq!(c.files.digest, c2.files.digest);
    let head = std::fs::read(&own).unwrap();
    assert_eq!(&head[..9], b"REDIS0011", "Valkey 8 writes RDB 11");
}

#[test]
fn payloads_rebuilt_from_the_file_restore_and_digest_the_same() {
    let (_s, rdb) = saved(&[]);
    let mut target = Server::start(&[]);
    let entries = rdb_entries(&rdb).unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for e in &entries {
        kinds.insert(e.value.kind());
        let payload = encode_dump(&e.value).unwrap();
        assert_eq!(persist::decode_dump(&payload).unwrap(), e.value);
        target.cmd(&["SELECT", &e.db.to_string()]);
        let ttl = e.expire_ms.map_or("0".to_string(), |t| t.to_string());
        let mut cmd: Vec<&[u8]> = vec![b"RESTORE", &e.key, ttl.as_bytes(), &payload];
        if e.expire_ms.is_some() {
            cmd.push(b"ABSTTL");
        }
        let r = target.cmd(&cmd);
        assert_eq!(
            r,
            Reply::Status("OK".into()),
            "{}",
            String::from_utf8_lossy(&e.key)
        );
    }
    assert_eq!(kinds.len(), 6, "{kinds:?}");
    assert_equal(std::slice::from_ref(&rdb), &target);
    // And the server's own DUMP of each key decodes to the value in the file.
    target.cmd(&["SELECT", "0"]);
    for e in entries.iter().filter(|e| e.db == 0) {
        let Reply::Bulk(Some(p)) = target.cmd(&[&b"DUMP"[..], &e.key]) else {
            panic!("no DUMP of {:?}", e.key)
        };
        let v = persist::decode_dump(&p).unwrap();
        if let (Value::Stream(a), Value::Stream(b)) = (&v, &e.value) {
            assert_eq!(a.entries, b.entries);
        } else if matches!(v, Value::String(_) | Value::List(_)) {
            assert_eq!(v, e.value);
        } else {
            assert_eq!(v.kind(), e.value.kind());
        }
    }
}

#[test]
fn deliberate_differences_are_each_named() {
    let (_s, rdb) = saved(&[]);
    let mut s = loaded(&rdb, &[], None);
    s.cmd(&["SET", "d0:str:3", "changed"]);
    s.cmd(&["DEL", "d0:hash:big"]);
    s.cmd(&["EXPIRE", "d0:str:4", "5000"]);
    s.cmd(&["SET", "d0:new", "added"]);
    s.cmd(&["HSET", "d0:hash:small", "f1", "other"]);
    let rt = rt();
    let c = rt
        .block_on(verify::verify_content(
            std::slice::from_ref(&rdb),
            &[addr(&s)],
            &DigestOptions::default(),
            TIMEOUT,
        ))
        .unwrap();
    assert!(!c.equal);
    let named: Vec<(String, Difference)> = c
        .differences
        .iter()
        .map(|d| (d.key.clone(), d.difference))
        .collect();
    for want in [
        ("d0:str:3", Difference::DifferentValue),
        ("d0:hash:big", Difference::Missing),
        ("d0:str:4", Difference::DifferentTtl),
        ("d0:new", Difference::Extra),
        ("d0:hash:small", Difference::DifferentValue),
    ] {
        assert!(
            named.contains(&(want.0.to_string(), want.1)),
            "{want:?} not in {named:?}"
        );
    }
    assert_eq!(named.len(), 5, "{named:?}");
}

#[test]
fn keys_that_expire_between_the_file_and_the_check_are_counted_apart() {
    let mut s = Server::start(&[]);
    s.cmd(&["SET", "stays", "1"]);
    s.cmd(&["SET", "goes", "1", "PX", "300"]);
    assert_eq!(s.cmd(&["SAVE"]).text(), "OK");
    let rdb = s.file("dump.rdb");
    let early =
        verify::digest_of_files(std::slice::from_ref(&rdb), &DigestOptions::default()).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let rt = rt();
    let server = rt
        .block_on(verify::digest_of_server(
            &addr(&s),
            &DigestOptions::default(),
            TIMEOUT,
        ))
        .unwrap();
    let c = verify::compare(&early, &server.digest, None);
    assert!(c.equal, "{c:#?}");
    assert_eq!((c.files.keys, c.expired), (1, 1));
}

#[path = "common/mod.rs"]
mod common;

/// `verify db` through the binary on a two-shard Redis Cluster database: verified after a
/// save, then each deliberate difference named, and the JSON carrying digest and keys.
#[test]
fn verify_db_proves_a_running_database_and_names_what_differs() {
    let lz = common::Lazarus::new();
    let _guard = common::procs::ProcessGuard::new(lz.home());
    lz.create_cluster("t");
    lz.run("create db shop shards 2 persistence snapshot").ok();
    let db_id = lz.ccs()["databases"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let ports: Vec<u16> = lz.ccs()["databases"][&db_id]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["port"].as_u64().unwrap() as u16)
        .collect();
    let client = redis::cluster::ClusterClient::new(
        ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let mut c = client.get_connection().unwrap();
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
        let _: () = redis::cmd("HSET")
            .arg(format!("h{i}"))
            .arg("f")
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("t")
        .arg("x")
        .arg("EX")
        .arg(9999)
        .query(&mut c)
        .unwrap();
    for p in &ports {
        let mut m = redis::Client::open(format!("redis://127.0.0.1:{p}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let _: () = redis::cmd("SAVE").query(&mut m).unwrap();
    }
    let dir = lz.path("n1").join("redis").join(format!("db-{db_id}"));
    let line = format!("verify db shop against {}", dir.display());
    lz.run(&line)
        .ok()
        .stdout_has("content verified: 401 keys, digest ");
    let _: () = redis::cmd("SET")
        .arg("k7")
        .arg("changed")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("DEL").arg("h9").query(&mut c).unwrap();
    let _: () = redis::cmd("EXPIRE")
        .arg("k8")
        .arg(5000)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("added")
        .arg("1")
        .query(&mut c)
        .unwrap();
    let out = lz.run(&line).fails(1).stdout_has("content differs");
    for (key, what) in [
        ("k7", "different value"),
        ("h9", "missing"),
        ("k8", "different TTL"),
        ("added", "extra"),
    ] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.contains(&format!(" {key} ")) && l.contains(what)),
            "{key} {what}:\n{}",
            out.stdout
        );
    }
    let json = lz
        .cmd([
            "--json",
            "verify",
            "db",
            "shop",
            "against",
            &dir.display().to_string(),
        ])
        .run()
        .json();
    let r = &json[0]["result"];
    assert_eq!(r["equal"], false);
    assert_eq!(r["differences"].as_array().unwrap().len(), 4, "{r}");
    assert_eq!(r["files"]["keys"], 401);
    assert_eq!(r["files_read"].as_array().unwrap().len(), 2);
    lz.run("delete db shop purge").ok();
}

/// `verify db ... against` a backup run: by run id, `latest`, the run's directory and
/// `<repository>/<run|latest>`, compressed (the default) and age-encrypted; a key changed
/// after the run is named, an encrypted run without its identity is refused naming
/// `identity`, and a wrong identity is named.
#[test]
fn verify_db_against_backup_runs_compressed_and_encrypted() {
    use std::process::Command;
    let lz = common::Lazarus::new();
    let _guard = common::procs::ProcessGuard::new(lz.home());
    lz.create_cluster("t");
    lz.run("create db shop persistence disabled").ok();
    let port = lz.ccs()["databases"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()["shards"][0]["port"]
        .as_u64()
        .unwrap();
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    for i in 0..50 {
        let _: () = redis::pipe()
            .cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .cmd("HSET")
            .arg(format!("h{i}"))
            .arg("f")
            .arg(i)
            .cmd("ZADD")
            .arg(format!("z{i}"))
            .arg(i)
            .arg("m")
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("t")
        .arg("x")
        .arg("EX")
        .arg(9999)
        .query(&mut c)
        .unwrap();
    let keygen = |name: &str| {
        let key = lz.path(name);
        assert!(Command::new("age-keygen")
            .arg("-o")
            .arg(&key)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success());
        key
    };
    let (key, other) = (keygen("key.txt"), keygen("other.txt"));
    let public = Command::new("age-keygen")
        .arg("-y")
        .arg(&key)
        .output()
        .unwrap()
        .stdout;
    let recipients = lz.path("recipients.txt");
    std::fs::write(&recipients, public).unwrap();
    let repo = lz.path("repo");
    let run_of = |extra: &[&str]| {
        let mut args = vec![
            "--json",
            "backup",
            "db",
            "shop",
            "path",
            repo.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        lz.cmd(args).run().ok().json()[0]["result"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let zstd = run_of(&[]);
    let encrypted = run_of(&["encrypt", recipients.to_str().unwrap()]);
    let verified = "content verified: 151 keys, digest ";
    let key_arg = format!("identity {}", key.display());
    for (against, extra) in [
        (zstd.clone(), ""),
        (repo.join(&zstd).display().to_string(), ""),
        (format!("{}/{zstd}", repo.display()), ""),
        (encrypted.clone(), key_arg.as_str()),
        ("latest".to_string(), key_arg.as_str()),
        (format!("{}/latest", repo.display()), key_arg.as_str()),
    ] {
        let out = lz
            .run(&format!("verify db shop against {against} {extra}"))
            .ok()
            .stdout_has(verified);
        assert!(
            out.stdout.contains("against backup run `"),
            "{}",
            out.stdout
        );
    }
    lz.run("verify db shop against latest")
        .fails(2)
        .stderr_has("is encrypted: add `identity");
    lz.run(&format!(
        "verify db shop against {encrypted} identity {}",
        other.display()
    ))
    .fails(1)
    .stderr_has("wrong identity");
    lz.run("verify db shop against 20991231-000000-1")
        .fails(1)
        .stderr_has("no backup run of this cluster");
    let _: () = redis::cmd("SET")
        .arg("k7")
        .arg("changed")
        .query(&mut c)
        .unwrap();
    let json = lz
        .cmd(["--json", "verify", "db", "shop", "against", &zstd])
        .run()
        .json();
    let r = &json[0]["result"];
    assert_eq!(r["equal"], false, "{r}");
    assert_eq!(r["run"]["id"], zstd.as_str());
    assert_eq!(r["differences"][0]["key"], "k7");
    assert_eq!(r["differences"][0]["difference"], "different_value");
    assert!(
        r["files_read"][0].as_str().unwrap().ends_with(".rdb.zst"),
        "{r}"
    );
    lz.run("delete db shop").ok();
}

/// The RDB files of Redis' own test suite (tests/assets/*.rdb: zipmap, ziplist, intset and
/// quicklist encodings from old versions) digest the same as a server that loaded each.
/// They are not shipped here: point `LAZARUS_REDIS_PEER_RDBS` at a directory of them.
#[test]
fn redis_peer_files_digest_the_same_as_the_server_that_loaded_them() {
    let Some(dir) = std::env::var_os("LAZARUS_REDIS_PEER_RDBS") else {
        eprintln!("LAZARUS_REDIS_PEER_RDBS not set: skipped");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rdb"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in files {
        let s = loaded(&f, &[], None);
        let c = rt()
            .block_on(verify::verify_content(
                std::slice::from_ref(&f),
                &[addr(&s)],
                &DigestOptions::default(),
                TIMEOUT,
            ))
            .unwrap();
        assert!(c.equal, "{}: {c:#?}", f.display());
        eprintln!(
            "{}: {} keys, digest {}",
            f.display(),
            c.files.keys,
            c.files.hex()
        );
    }
}

/// An AOF's commands replayed into values digest the same as the server that wrote them:
/// a base RDB from a rewrite, then incremental commands of every kind the replay knows
/// (relative TTLs, counters, MULTI, renames across logical dbs, list/set/zset/hash edits);
/// a stream command after them is named as not replayed.
#[test]
fn an_aof_replayed_digests_the_same_as_the_server_that_wrote_it() {
    let mut s = Server::start(&[("appendonly", "yes"), ("appendfsync", "always")]);
    let cmds: Vec<Vec<Vec<u8>>> = [
        "SET base:s v",
        "RPUSH base:l a b c d e f",
        "HSET base:h a 1 b 2 c 3",
        "SADD base:set x y z",
        "ZADD base:z 1 a 2 b 3 c",
    ]
    .iter()
    .map(|c| args(&c.split(' ').collect::<Vec<_>>()))
    .collect();
    s.batch(&cmds);
    s.cmd(&["BGREWRITEAOF"]);
    s.wait_persistence();
    let cmds: Vec<Vec<Vec<u8>>> = [
        "SET s1 hello EX 100000",
        "SET s2 x PX 100000000",
        "SET s3 y KEEPTTL",
        "SETEX s4 5000 z",
        "EXPIRE base:s 7200",
        "APPEND s1 -world",
        "SETRANGE s5 3 abc",
        "INCR n",
        "INCRBY n 41",
        "DECR n",
        "INCRBYFLOAT f 1.5",
        "MSET m1 a m2 b",
        "MSETNX m1 z m3 c",
        "SETNX m2 q",
        "GETSET m3 d",
        "GETDEL m1",
        "GETEX m2 PX 900000",
        "PERSIST m2",
        "MULTI",
        "LPUSH base:l z",
        "RPOP base:l",
        "EXEC",
        "LSET base:l 1 B",
        "LINSERT base:l AFTER c cc",
        "LREM base:l 1 d",
        "LTRIM base:l 0 4",
        "LMOVE base:l l2 LEFT RIGHT",
        "RPOPLPUSH base:l l2",
        "HSET base:h d 4",
        "HDEL base:h a",
        "HINCRBY base:h b 10",
        "HINCRBYFLOAT base:h c 0.5",
        "HSETNX base:h b 99",
        "SADD base:set w",
        "SREM base:set x",
        "SMOVE base:set set2 y",
        "SPOP base:set",
        "ZADD base:z 5 d",
        "ZADD base:z XX 7 a",
        "ZINCRBY base:z 2.5 b",
        "ZREM base:z c",
        "RENAME s3 s3r",
        "COPY s1 s1c DB 2",
        "MOVE m3 3",
        "SELECT 2",
        "SET two 2",
        "SELECT 5",
        "SET gone 1",
        "FLUSHDB",
        "SELECT 0",
        "DEL n",
        "UNLINK f",
    ]
    .iter()
    .map(|c| args(&c.split(' ').collect::<Vec<_>>()))
    .collect();
    s.batch(&cmds);
    let aof = s.path().join("appendonlydir");
    let c = assert_equal(std::slice::from_ref(&aof), &s);
    assert!(c.files.keys >= 15, "{c:#?}");
    // A stream command is not guessed at.
    s.cmd(&["XADD", "st", "*", "f", "v"]);
    let err = rt()
        .block_on(verify::verify_content(
            &[aof],
            &[addr(&s)],
            &DigestOptions::default(),
            TIMEOUT,
        ))
        .unwrap_err();
    assert!(err.to_string().contains("`XADD` is not replayed"), "{err}");
}

/// An RDB base followed by commands that touch only some of its keys (no FLUSH or
/// SWAPDB): the untouched keys are digested as the base streams, the touched ones held
/// and replayed; the digest still equals the server's.
#[test]
fn an_aof_whose_commands_touch_few_base_keys_digests_the_same() {
    let mut s = Server::start(&[("appendonly", "yes"), ("appendfsync", "always")]);
    let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
    for i in 0..300 {
        cmds.push(args(&["SET", &format!("s{i}"), &format!("v{i}")]));
        cmds.push(args(&["HSET", &format!("h{i}"), "a", "1", "b", "2"]));
        cmds.push(args(&["RPUSH", &format!("l{i}"), "x", "y"]));
    }
    s.batch(&cmds);
    s.cmd(&["BGREWRITEAOF"]);
    s.wait_persistence();
    let cmds: Vec<Vec<Vec<u8>>> = [
        "SET s1 changed",
        "HDEL h2 a",
        "PEXPIREAT l3 99999999999999",
        "DEL s4",
        "MSET s5 five new1 one",
        "RPUSH l6 z",
        "SELECT 1",
        "SET s1 elsewhere",
    ]
    .iter()
    .map(|c| args(&c.split(' ').collect::<Vec<_>>()))
    .collect();
    s.batch(&cmds);
    let aof = s.path().join("appendonlydir");
    let c = assert_equal(std::slice::from_ref(&aof), &s);
    assert_eq!(c.files.keys, 900 - 1 + 1 + 1, "{c:#?}");
    // The same as one legacy file: the RDB preamble, then the commands.
    let mut legacy = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&aof)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with("manifest"))
        .collect();
    names.sort_by_key(|p| !p.to_string_lossy().ends_with(".base.rdb"));
    for p in names {
        legacy.extend(std::fs::read(p).unwrap());
    }
    let file = s.path().join("appendonly.aof");
    std::fs::write(&file, legacy).unwrap();
    assert_eq!(assert_equal(&[file], &s).files.keys, 901);
}

/// Replay into a Redis Cluster master: strings go as one `MSETNX` only while they share
/// a slot (the cluster refuses a command whose keys are in several), so keys of two hash
/// tags and of many slots all arrive, digesting the same as the file.
#[test]
fn replay_into_a_cluster_master_keeps_each_msetnx_in_one_slot() {
    let mut src = Server::start(&[]);
    let mut cmds = Vec::new();
    for i in 0..300 {
        cmds.push(args(&["SET", &format!("{{a}}:{i}"), "x"]));
        cmds.push(args(&["SET", &format!("{{b}}:{i}"), "y"]));
        cmds.push(args(&["SET", &format!("k:{i}"), &i.to_string()]));
    }
    cmds.push(args(&["SET", "t", "1", "PXAT", "4000000000000"]));
    cmds.push(args(&["HSET", "h", "f", "v"]));
    for c in &cmds {
        src.send(c);
    }
    for _ in &cmds {
        src.read();
    }
    assert_eq!(src.cmd(&["SAVE"]).text(), "OK");
    let rdb = src.file("dump.rdb");
    let mut cluster = Server::start(&[
        ("cluster-enabled", "yes"),
        ("cluster-config-file", "nodes.conf"),
    ]);
    assert_eq!(
        cluster
            .cmd(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])
            .text(),
        "OK"
    );
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !cluster
        .cmd(&["CLUSTER", "INFO"])
        .text()
        .contains("cluster_state:ok")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "cluster state never ok"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let written = lazarus::replay::write_all(
        std::slice::from_ref(&rdb),
        &[lazarus::replay::Target {
            slots: lazarus::ccs::SlotRange::ALL,
            addr: addr(&cluster),
        }],
        true,
        &|_| {},
    )
    .unwrap();
    assert_eq!(written, 902);
    assert_equal(std::slice::from_ref(&rdb), &cluster);
}

/// Replay writes every key of a file (strings as `SET ... NX PXAT`, the rest as
/// `RESTORE ... ABSTTL`) into an empty server, digesting the same as the file; into a
/// server that already holds one of its keys it stops, saying so, and overwrites nothing.
#[test]
fn replay_writes_a_file_and_never_overwrites_a_key() {
    let (_src, rdb) = saved(&[]);
    let mut empty = Server::start(&[]);
    let target = |s: &Server| lazarus::replay::Target {
        slots: lazarus::ccs::SlotRange::ALL,
        addr: addr(s),
    };
    let written = lazarus::replay::write_all(
        std::slice::from_ref(&rdb),
        &[target(&empty)],
        false,
        &|_| {},
    )
    .unwrap();
    assert!(written > 0);
    assert_equal(std::slice::from_ref(&rdb), &empty);
    for key in ["d0:str:1", "d0:hash:small"] {
        let mut busy = Server::start(&[]);
        let value = busy.cmd(&["SET", key, "mine"]).text();
        assert_eq!(value, "OK");
        let err = lazarus::replay::write_all(
            std::slice::from_ref(&rdb),
            &[target(&busy)],
            false,
            &|_| {},
        )
        .unwrap_err();
        assert!(
            err.contains("already exists") || err.contains("BUSYKEY"),
            "{key}: {err}"
        );
        assert_eq!(busy.cmd(&["GET", key]).text(), "mine");
    }
    empty.cmd(&["PING"]);
}

/// A replay stopped by a refused write returns only once the server answered every
/// command it was sent. It used to drop its connection with batches still queued in the
/// server's socket: these ran after it returned, so a master emptied right after a
/// failed fill (`recover db ... from_files`) took them, and held 1000 keys again.
#[test]
fn a_failed_replay_leaves_nothing_running_on_the_server() {
    // An AOF of large commands, as a fill meets them: the server reads each in many
    // chunks, so one is still arriving when the replay sees a write refused.
    let mut src = Server::start(&[("appendonly", "yes"), ("appendfsync", "always")]);
    let value = "v".repeat(200);
    let cmds: Vec<_> = (0..8)
        .map(|batch| {
            let mut cmd = vec![b"MSET".to_vec()];
            for i in batch * 5000..(batch + 1) * 5000 {
                cmd.push(format!("k{i}").into_bytes());
                cmd.push(value.clone().into_bytes());
            }
            cmd
        })
        .collect();
    src.batch(&cmds);
    let aof = src.file("appendonlydir");
    let mut target = Server::start(&[]);
    let info = target.cmd(&["INFO", "memory"]).text();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cap = (used + 2_000_000).to_string();
    assert_eq!(
        target.cmd(&["CONFIG", "SET", "maxmemory", &cap]).text(),
        "OK"
    );
    let err = lazarus::replay::write_all(
        std::slice::from_ref(&aof),
        &[lazarus::replay::Target {
            slots: lazarus::ccs::SlotRange::ALL,
            addr: addr(&target),
        }],
        false,
        &|_| {},
    )
    .unwrap_err();
    assert!(err.contains("OOM"), "{err}");
    // Emptied at once, as a failed fill empties its master (room again: a write still
    // queued would land now), and nothing the replay sent runs after it returned.
    let msets = |s: &mut Server| {
        let stats = s.cmd(&["INFO", "commandstats"]).text();
        stats
            .lines()
            .find(|l| l.starts_with("cmdstat_mset:"))
            .map(|l| {
                let calls: Vec<&str> = l.split(',').filter(|f| f.contains("calls=")).collect();
                calls.join(",")
            })
            .unwrap()
    };
    let ran = msets(&mut target);
    assert_eq!(target.cmd(&["FLUSHALL"]).text(), "OK");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(target.cmd(&["DBSIZE"]).int(), 0);
    assert_eq!(msets(&mut target), ran);
}

/// `verify db` on a sharded database whose master was killed and failed over proves the
/// replica serving its slots. It used to ask the dead master and fail with "Connection
/// refused", while the database served every key; asked while the failover was under
/// way, it failed with the servers' raw `CLUSTERDOWN`: it now waits for the failover.
#[test]
fn verify_db_proves_the_replica_a_failover_promoted() {
    let lz = common::Lazarus::new();
    let _guard = common::procs::ProcessGuard::new(lz.home());
    lz.create_cluster("t");
    let second = lz.path("node2");
    lz.run(&format!(
        "node add addr 127.0.0.1 persistent_path {}",
        second.display()
    ))
    .ok();
    lz.run("create db fo shards 3 replication enabled persistence aof")
        .ok();
    let ccs = lz.ccs();
    let db = ccs["databases"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    let shards = db["shards"].as_array().unwrap();
    let port = |s: &serde_json::Value| s["port"].as_u64().unwrap() as u16;
    let client = redis::cluster::ClusterClient::new(
        shards
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}/", port(s)))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let mut c = client.get_connection().unwrap();
    for i in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
        let _: () = redis::cmd("HSET")
            .arg(format!("h{i}"))
            .arg("f")
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let repo = lz.path("repo");
    let run = lz.backup_run("fo", &repo);
    let masters: Vec<&serde_json::Value> =
        shards.iter().filter(|s| s["master"].is_null()).collect();
    let dead = masters[1];
    let promoted = shards.iter().find(|s| s["master"] == dead["id"]).unwrap();
    unsafe { libc::kill(dead["pid"].as_u64().unwrap() as i32, libc::SIGKILL) };
    // Asked while the failover is under way: once the others marked the master failed
    // (and say `cluster_state:fail`, so reads answer `CLUSTERDOWN`), before or just as
    // its replica takes over. `verify db` waits for the cluster to serve again (it
    // printed the raw `CLUSTERDOWN`, or that the dead master does not answer).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let other = masters[0];
    while !cluster_info(port(other)).is_some_and(|i| i.contains("cluster_state:fail")) {
        assert!(std::time::Instant::now() < deadline, "never marked failed");
        std::thread::sleep(Duration::from_millis(50));
    }
    lz.run(&format!("verify db fo against {run}"))
        .ok()
        .stdout_has("content verified: 600 keys");
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{}/", port(promoted)))
        .unwrap()
        .get_connection()
        .unwrap();
    let role: String = redis::cmd("INFO").arg("replication").query(&mut c).unwrap();
    assert!(role.contains("role:master"), "what was proved: {role}");
}

/// `CLUSTER INFO` of the server on `port`, if it answers.
fn cluster_info(port: u16) -> Option<String> {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .ok()?
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    redis::cmd("CLUSTER").arg("INFO").query(&mut c).ok()
}

/// `verify db` of a sharded database whose master is down with no replica to take its
/// slots over (the others say `cluster_state:fail`): refused at once, naming the
/// database, the shard, its slots and the way on, not a server's raw `CLUSTERDOWN`. On
/// each engine.
#[test]
fn verify_db_of_a_cluster_that_is_down_names_what_is_not_served() {
    for engine in common::engine::engines() {
        let common::World(lz, _guard, _rt, c) = common::World::with(1)
            .redis_server(engine.path.clone())
            .db("split", 3, false, lazarus::ccs::Persistence::Disabled)
            .installed();
        let repo = lz.path("repo");
        let run = lz.backup_run("split", &repo);
        let db = c.database_by_name("split").unwrap();
        let masters: Vec<_> = db.masters().collect();
        let (dead, other) = (masters[1], masters[0]);
        let port = |id| lazarus::db::shard_addr(&c, db, id).unwrap().port;
        unsafe { libc::kill(dead.pid.unwrap() as i32, libc::SIGKILL) };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !cluster_info(port(other.id)).is_some_and(|i| i.contains("cluster_state:fail")) {
            assert!(std::time::Instant::now() < deadline, "never marked failed");
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = lz
            .run(&format!("verify db split against {run}"))
            .fails(1)
            .stderr_has(&format!(
                "db `split` is not served: redis:{} (127.0.0.1:{}), slots {}, does not answer",
                dead.id,
                port(dead.id),
                dead.slots.unwrap()
            ))
            .stderr_has("no replica of a master down answers")
            .stderr_has("`restart db split`");
        assert!(
            !out.stderr.contains("The cluster is down"),
            "{}: {}",
            engine.name,
            out.stderr
        );
    }
}

/// A shard `verify db` cannot reach is named once, as `redis:N (host:port)`, not by its
/// address twice and no id.
#[test]
fn a_shard_that_does_not_answer_is_named_once_with_its_address() {
    let lz = common::Lazarus::new();
    let guard = common::procs::ProcessGuard::new(lz.home());
    lz.create_cluster("t");
    lz.run("create db down persistence snapshot").ok();
    let ccs = lz.ccs();
    let (db_id, db) = ccs["databases"].as_object().unwrap().iter().next().unwrap();
    let shard = &db["shards"][0];
    let (id, port) = (
        shard["id"].as_u64().unwrap(),
        shard["port"].as_u64().unwrap(),
    );
    let mut m = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("SAVE").query(&mut m).unwrap();
    guard.kill_all();
    let dir = lz.path("n1").join("redis").join(format!("db-{db_id}"));
    let out = lz
        .run(&format!("verify db down against {}", dir.display()))
        .fails(1)
        .stderr_has(&format!("lazarus: redis:{id} (127.0.0.1:{port}): "));
    let stderr = &out.stderr;
    assert_eq!(
        stderr.matches(&format!("127.0.0.1:{port}")).count(),
        1,
        "the address once: {stderr}"
    );
}
