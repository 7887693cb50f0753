//! Test data for recovery: every value type, TTLs, several logical databases; and a
//! comparable picture of what a shard holds (every key's DUMP and whether it has a TTL).

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;

use lazarus::server::ShardAddr;

/// (logical db, key) -> (the value, normalised; has a TTL)
pub type Contents = BTreeMap<(u32, Vec<u8>), (Vec<u8>, bool)>;

pub async fn connect(host: &str, port: u16, logical: u32) -> MultiplexedConnection {
    connect_at(&ShardAddr::plain(host, port, None), logical).await
}

/// A connection to `addr` (over TLS when it speaks TLS), on logical database `logical`.
pub async fn connect_at(addr: &ShardAddr, logical: u32) -> MultiplexedConnection {
    let mut info = addr.connection_info().unwrap();
    info.redis.db = i64::from(logical);
    let client = redis::Client::open(info).unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .expect("connect in time")
    .expect("connect")
}

/// Writes one of each kind of value, with keys named after `tag`, through `con`. `tag`
/// may carry a `{hash tag}` to pin all keys to one cluster slot.
pub async fn write_sample(con: &mut MultiplexedConnection, tag: &str, n: usize) {
    for i in 0..n {
        let _: () = con
            .set(format!("{tag}:s:{i}"), format!("value-{i}"))
            .await
            .unwrap();
    }
    let _: () = con.set(format!("{tag}:int"), 12345).await.unwrap();
    let _: () = con
        .set(format!("{tag}:big"), "x".repeat(20_000))
        .await
        .unwrap();
    let _: () = con
        .hset_multiple(
            format!("{tag}:h"),
            &[("f1", "v1"), ("f2", "v2"), ("n", "3")],
        )
        .await
        .unwrap();
    let _: () = con
        .rpush(format!("{tag}:l"), &["a", "b", "c", "d"])
        .await
        .unwrap();
    let _: () = con
        .sadd(format!("{tag}:set"), &["x", "y", "z"])
        .await
        .unwrap();
    let _: () = con
        .sadd(format!("{tag}:iset"), &[1, 2, 3, 99])
        .await
        .unwrap();
    let _: () = con
        .zadd_multiple(
            format!("{tag}:z"),
            &[(1.5, "one"), (2.0, "two"), (-3.0, "neg")],
        )
        .await
        .unwrap();
    let stream = format!("{tag}:st");
    for i in 0..5 {
        let _: String = con
            .xadd(&stream, "*", &[("n", i.to_string())])
            .await
            .unwrap();
    }
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("grp")
        .arg("0")
        .query_async(con)
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("grp")
        .arg("alice")
        .arg("COUNT")
        .arg(2)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(con)
        .await
        .unwrap();
    let _: () = con
        .set_ex(format!("{tag}:ttl"), "soon", 3600)
        .await
        .unwrap();
    let _: () = con.hset(format!("{tag}:httl"), "f", "v").await.unwrap();
    let _: () = con.expire(format!("{tag}:httl"), 7200).await.unwrap();
}

/// Every key of every logical database of the server at `host:port`, as a
/// representation independent of encoding and of hash-table order.
pub async fn contents(host: &str, port: u16) -> Contents {
    contents_at(&ShardAddr::plain(host, port, None)).await
}

/// [`contents`] of the shard at `addr`, over TLS when it speaks TLS.
pub async fn contents_at(addr: &ShardAddr) -> Contents {
    let mut con = connect_at(addr, 0).await;
    let keyspace: String = redis::cmd("INFO")
        .arg("keyspace")
        .query_async(&mut con)
        .await
        .unwrap();
    let dbs: Vec<u32> = keyspace
        .lines()
        .filter_map(|l| l.strip_prefix("db")?.split(':').next()?.parse().ok())
        .collect();
    let mut out = Contents::new();
    for logical in dbs {
        let mut con = connect_at(addr, logical).await;
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut con)
            .await
            .unwrap();
        for key in keys {
            let value = value_of(&mut con, &key).await;
            let pttl: i64 = con.pttl(&key).await.unwrap();
            out.insert((logical, key), (value, pttl > 0));
        }
    }
    out
}

async fn value_of(con: &mut MultiplexedConnection, key: &[u8]) -> Vec<u8> {
    let kind: String = redis::cmd("TYPE").arg(key).query_async(con).await.unwrap();
    let q = |parts: &[&str]| {
        let mut c = redis::cmd(parts[0]);
        c.arg(key);
        for p in &parts[1..] {
            c.arg(*p);
        }
        c
    };
    let v: redis::Value = match kind.as_str() {
        "string" => q(&["GET"]).query_async(con).await.unwrap(),
        "list" => q(&["LRANGE", "0", "-1"]).query_async(con).await.unwrap(),
        "zset" => q(&["ZRANGE", "0", "-1", "WITHSCORES"])
            .query_async(con)
            .await
            .unwrap(),
        "hash" => {
            let mut m: Vec<(Vec<u8>, Vec<u8>)> = q(&["HGETALL"]).query_async(con).await.unwrap();
            m.sort();
            return format!("{kind}:{m:?}").into_bytes();
        }
        "set" => {
            let mut m: Vec<Vec<u8>> = q(&["SMEMBERS"]).query_async(con).await.unwrap();
            m.sort();
            return format!("{kind}:{m:?}").into_bytes();
        }
        "stream" => {
            let entries: redis::Value = q(&["XRANGE", "-", "+"]).query_async(con).await.unwrap();
            let groups: Vec<Vec<redis::Value>> = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(key)
                .query_async(con)
                .await
                .unwrap();
            // `entries-read` and `lag` are derived counters that an AOF replay does not
            // restore (Redis 7.0 propagates XREADGROUP without them): not data.
            let groups: Vec<Vec<&redis::Value>> = groups
                .iter()
                .map(|g| {
                    g.chunks(2)
                        .filter(|kv| {
                            !matches!(&kv[0], redis::Value::BulkString(k) if k == b"entries-read" || k == b"lag")
                        })
                        .flatten()
                        .collect()
                })
                .collect();
            let pending: redis::Value = redis::cmd("XPENDING")
                .arg(key)
                .arg("grp")
                .query_async(con)
                .await
                .unwrap();
            return format!("{kind}:{entries:?}|{groups:?}|{pending:?}").into_bytes();
        }
        other => panic!("unexpected type `{other}`"),
    };
    format!("{kind}:{v:?}").into_bytes()
}

/// The keys whose value or TTL differ, for a readable assertion message.
pub fn diff(a: &Contents, b: &Contents) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!(
                "missing db{} `{}`",
                k.0,
                String::from_utf8_lossy(&k.1)
            )),
            Some(w) if w != v => out.push(format!(
                "differs db{} `{}`: {} vs {}",
                k.0,
                String::from_utf8_lossy(&k.1),
                String::from_utf8_lossy(&v.0),
                String::from_utf8_lossy(&w.0)
            )),
            _ => {}
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        out.push(format!(
            "extra db{} `{}`",
            k.0,
            String::from_utf8_lossy(&k.1)
        ));
    }
    out.truncate(20);
    out
}

/// Sets an RDB file's version to 11 (newer than Redis 7.0 loads), its CRC-64 trailer
/// made again: what a newer server would have written, for these plain strings.
pub fn make_rdb_11(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..9], b"REDIS0010", "{}", path.display());
    bytes[5..9].copy_from_slice(b"0011");
    let body = bytes.len() - 8;
    let crc = lazarus::persist::crc64(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

/// Polls `INFO persistence` on `con` until `done` holds for it; panics naming `what`
/// after `within`.
pub async fn wait_for_persistence(
    con: &mut MultiplexedConnection,
    done: impl Fn(&str) -> bool,
    within: Duration,
    what: &str,
) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query_async(con)
            .await
            .unwrap();
        if done(&info) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
