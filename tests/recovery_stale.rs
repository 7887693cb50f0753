//! A second incident never brings back the first one's data (issue 9 items 2, 5, 15): a
//! recovery path is cleared once the recovery that used it completes, `cluster recover`
//! never carries one across and looks for the newer backups a recovered node left in its
//! `-recovered` sibling, and a node's live persistent path is refused as a recovery path.

mod common;

use std::fs;
use std::path::Path;

use common::Lazarus;

fn node1(lz: &Lazarus) -> serde_json::Value {
    lz.ccs()["nodes"]["1"].clone()
}

fn generation(path: &Path) -> u64 {
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    doc["generation"].as_u64().unwrap()
}

#[test]
fn a_second_cluster_recover_takes_the_newest_backup_and_no_old_recovery_path() {
    let first = Lazarus::new();
    let n1 = first.path("n1");
    let disk = first.path("disk-of-incident-1");
    fs::create_dir_all(&disk).unwrap();
    first
        .run(&format!(
            "cluster create name c persistent_path {}",
            n1.display()
        ))
        .ok();
    // The node had shard data: a recovery moves it aside into `n1-recovered`.
    fs::create_dir_all(n1.join("redis")).unwrap();

    // Incident 1: the home is lost; the configuration comes back from n1's backup, and
    // the operator points the node at the old disk.
    let second = Lazarus::new();
    second
        .run(&format!(
            "cluster recover filename {}",
            n1.join("ccs/ccs.json").display()
        ))
        .ok();
    let recovered = first.path("n1-recovered");
    assert_eq!(
        node1(&second)["persistent_path"],
        recovered.display().to_string()
    );
    second
        .run(&format!("node 1 recovery_path set {}", disk.display()))
        .ok();
    // The cluster lives on in `n1-recovered`: its databases there, its backups newer.
    fs::create_dir_all(recovered.join("redis")).unwrap();
    let newest = recovered.join("ccs/ccs.json");
    assert!(generation(&newest) > generation(&n1.join("ccs/ccs.json")));

    // Incident 2: the home is lost again. The old backup at `n1` is refused while the
    // newer one Lazarus itself left in `n1-recovered` exists.
    let third = Lazarus::new();
    let out = third
        .run(&format!(
            "cluster recover filename {}",
            n1.join("ccs/ccs.json").display()
        ))
        .fails(1);
    assert!(
        out.stderr.contains(&format!(
            "`{}` is a newer backup of this cluster",
            newest.display()
        )),
        "{}",
        out.stderr
    );
    assert!(!third.path("ccs.json").exists());

    // From the newest backup: the first incident's recovery path is not carried over;
    // the node recovers from where it lived, into a fresh sibling, numbered (the name
    // does not grow with each incident).
    third
        .run(&format!("cluster recover filename {}", newest.display()))
        .ok()
        .stdout_has("(an earlier recovery's) is not carried over");
    let node = node1(&third);
    assert_eq!(node["recovery_path"], recovered.display().to_string());
    let live = first.path("n1-recovered-2");
    assert_eq!(node["persistent_path"], live.display().to_string());

    // A node's own live persistent path is no recovery path.
    fs::create_dir_all(&live).unwrap();
    third
        .run(&format!("node 1 recovery_path set {}", live.display()))
        .fails(1)
        .stderr_has(&format!(
            "recovery path `{}` is node:1's persistent path",
            live.display()
        ));
    assert_eq!(
        node1(&third)["recovery_path"],
        recovered.display().to_string()
    );

    // And a recovery path can be forgotten.
    third
        .run("node 1 recovery_path clear")
        .ok()
        .stdout_has("node:1 no longer has a recovery path");
    assert!(node1(&third).get("recovery_path").is_none());
    third
        .run("node 1 recovery_path clear")
        .ok()
        .stdout_has("node:1 had no recovery path");
}

/// Sets one key in `db` of the cluster stored in `lz`'s home, and saves a snapshot.
fn write_and_save(lz: &Lazarus, db: &str, key: &str) {
    let ccs = lz.ccs();
    let port = ccs["databases"]
        .as_object()
        .unwrap()
        .values()
        .find(|d| d["name"] == db)
        .unwrap()["port"]
        .as_u64()
        .unwrap() as u16;
    common::runtime().block_on(async {
        let mut con = common::data::connect("127.0.0.1", port, 0).await;
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("v")
            .query_async(&mut con)
            .await
            .unwrap();
        let _: () = redis::cmd("SAVE").query_async(&mut con).await.unwrap();
    });
}

fn has_key(lz: &Lazarus, db: &str, key: &str) -> bool {
    let ccs = lz.ccs();
    let port = ccs["databases"]
        .as_object()
        .unwrap()
        .values()
        .find(|d| d["name"] == db)
        .unwrap()["port"]
        .as_u64()
        .unwrap() as u16;
    common::runtime().block_on(async {
        let mut con = common::data::connect("127.0.0.1", port, 0).await;
        let n: u64 = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut con)
            .await
            .unwrap();
        n == 1
    })
}

/// The second incident: after a first recovery, the node lives on and takes
/// writes; the home is lost again. The first incident's files are refused as older than
/// what the node wrote since, and the newest files come back.
#[test]
fn a_second_incident_never_brings_the_first_ones_files_back() {
    let first = Lazarus::new();
    let guard = common::procs::ProcessGuard::new(first.home());
    let n1 = first.create_cluster("c");
    first.run("create db cache persistence snapshot").ok();
    write_and_save(&first, "cache", "early");

    // Incident 1: every shard killed, the home lost.
    guard.kill_all();
    let second = Lazarus::new();
    second
        .run(&format!(
            "cluster recover filename {}",
            n1.join("ccs/ccs.json").display()
        ))
        .ok();
    assert_eq!(node1(&second)["recovery_path"], n1.display().to_string());
    second
        .run("recover all")
        .ok()
        .stdout_has(&format!("node:1 recovery path `{}` cleared", n1.display()));
    assert!(node1(&second).get("recovery_path").is_none());
    // The node lives on in `n1-recovered` and takes writes (times on disk are compared
    // to the nanosecond: no need to wait for the next second).
    write_and_save(&second, "cache", "late");

    // Incident 2.
    guard.kill_all();
    let third = Lazarus::new();
    let recovered = first.path("n1-recovered");
    third
        .run(&format!(
            "cluster recover filename {}",
            recovered.join("ccs/ccs.json").display()
        ))
        .ok();
    assert_eq!(
        node1(&third)["recovery_path"],
        recovered.display().to_string()
    );
    // The operator points the node at the first incident's files: refused as stale.
    third
        .run(&format!("node 1 recovery_path set {}", n1.display()))
        .ok();
    let list = third.run("recover list").ok();
    assert!(
        list.stdout.contains("missing files: stale: `")
            && list
                .stdout
                .contains(&format!("older than `{}", recovered.display())),
        "{}",
        list.stdout
    );
    third
        .run("recover all")
        .fails(1)
        .stdout_has("`cache`: failed: redis:")
        .stdout_has("stale: ")
        .stdout_has("`recover db cache allow_stale`");
    // From the newest files, the writes since the first incident come back.
    third
        .run(&format!("node 1 recovery_path set {}", recovered.display()))
        .ok();
    third.run("recover list").ok().stdout_has("ready: snapshot");
    third.run("recover all").ok();
    assert!(has_key(&third, "cache", "late"));
    assert!(has_key(&third, "cache", "early"));
    drop(guard);
}

/// The one `dump.rdb` under `root`'s shard directories.
fn dump_under(root: &Path) -> std::path::PathBuf {
    let mut found = Vec::new();
    for db in fs::read_dir(root.join("redis")).unwrap() {
        for shard in fs::read_dir(db.unwrap().path()).unwrap() {
            let dump = shard.unwrap().path().join("dump.rdb");
            if dump.exists() {
                found.push(dump);
            }
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

fn modified_ns(path: &Path) -> i64 {
    let t = fs::metadata(path).unwrap().modified().unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// The CCS records, per master, the written time of the source a recovery loaded, to the
/// nanosecond: offered again, that very file is ready (not "older" than the copy recovery
/// made of it); a file written before it, even within the same second, is stale.
#[test]
fn the_file_a_recovery_loaded_is_known_to_the_nanosecond() {
    let first = Lazarus::new();
    let guard = common::procs::ProcessGuard::new(first.home());
    let n1 = first.create_cluster("c");
    first.run("create db cache persistence snapshot").ok();
    write_and_save(&first, "cache", "early");
    let loaded = dump_under(&n1);

    // Incident 1: recovered from `n1`; what it loaded is recorded.
    guard.kill_all();
    let second = Lazarus::new();
    second
        .run(&format!(
            "cluster recover filename {}",
            n1.join("ccs/ccs.json").display()
        ))
        .ok();
    second.run("recover all").ok();
    let shards = second.ccs()["databases"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()["shards"]
        .clone();
    assert_eq!(
        shards[0]["loaded_ns"].as_i64(),
        Some(modified_ns(&loaded)),
        "{shards}"
    );
    // Recovery's copy is as old as its data.
    let recovered = first.path("n1-recovered");
    assert_eq!(modified_ns(&dump_under(&recovered)), modified_ns(&loaded));

    // Incident 2, no write in between: the very file loaded the first time is offered
    // again, and is no older than the copy made of it.
    guard.kill_all();
    let third = Lazarus::new();
    third
        .run(&format!(
            "cluster recover filename {}",
            recovered.join("ccs/ccs.json").display()
        ))
        .ok();
    third
        .run(&format!("node 1 recovery_path set {}", n1.display()))
        .ok();
    third
        .run("recover list")
        .ok()
        .stdout_has("ready: snapshot")
        .stdout_has("(the very files the last recovery or restore loaded)");

    // A copy written 300 ms before the file loaded (the same second, as likely as not),
    // while the node's later files are lost: stale by the CCS's record alone.
    let older = first.path("older");
    let dump = older.join(loaded.strip_prefix(&n1).unwrap());
    fs::create_dir_all(dump.parent().unwrap()).unwrap();
    for entry in fs::read_dir(loaded.parent().unwrap()).unwrap() {
        let from = entry.unwrap().path();
        if !from.is_file() {
            continue;
        }
        fs::copy(
            &from,
            dump.parent().unwrap().join(from.file_name().unwrap()),
        )
        .unwrap();
    }
    let before =
        fs::metadata(&loaded).unwrap().modified().unwrap() - std::time::Duration::from_millis(300);
    fs::File::options()
        .write(true)
        .open(&dump)
        .unwrap()
        .set_modified(before)
        .unwrap();
    fs::remove_dir_all(recovered.join("redis")).unwrap();
    fs::rename(&n1, first.path("n1-away")).unwrap();
    third
        .run(&format!("node 1 recovery_path set {}", older.display()))
        .ok();
    let list = third.run("recover list").ok();
    assert!(
        list.stdout.contains(&format!(
            "missing files: stale: `{}` is 300 ms older than the files the last recovery or restore loaded into redis:",
            dump.display()
        )),
        "{}",
        list.stdout
    );
    third
        .run("recover all")
        .fails(1)
        .stdout_has("`recover db cache allow_stale`");

    // The file loaded the first time still comes back.
    fs::rename(first.path("n1-away"), &n1).unwrap();
    third
        .run(&format!("node 1 recovery_path set {}", n1.display()))
        .ok();
    third.run("recover all").ok();
    assert!(has_key(&third, "cache", "early"));
    drop(guard);
}

/// A deleted database never comes back from its identity files (issue 9 item 6).
#[test]
fn a_deleted_database_does_not_come_back_from_its_identity_files() {
    let first = Lazarus::new();
    let guard = common::procs::ProcessGuard::new(first.home());
    let n1 = first.create_cluster("c");
    first.run("create db kept persistence snapshot").ok();
    first.run("create db gone persistence snapshot").ok();
    first.run("delete db gone").ok();
    let cluster_id = first.ccs()["cluster_id"].as_str().unwrap().to_string();
    guard.kill_all();
    // No backup survives: only the identity files.
    fs::remove_dir_all(n1.join("ccs")).unwrap();

    let second = Lazarus::new();
    let out = second
        .run(&format!(
            "cluster recover cluster_id {cluster_id} recovery_path {}",
            n1.display()
        ))
        .ok()
        .stdout_has("is marked `deleted`");
    let dbs = second.ccs()["databases"].clone();
    let names: Vec<&str> = dbs
        .as_object()
        .unwrap()
        .values()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kept"], "{}", out.stdout);
    // The rebuilt node's persistent path lies beside its recovery path, outside the
    // home: losing the home again loses no data (issue 9 item 15).
    assert_eq!(
        node1(&second)["persistent_path"],
        first.path("n1-recovered").display().to_string()
    );

    // An identity file not marked and no tombstone (written before either existed): the
    // node's CCS backup, newer than the database, records the deletion.
    first.run("delete db kept").ok();
    let kept_id = dbs.as_object().unwrap().keys().next().unwrap().clone();
    fs::remove_file(n1.join(format!("redis/db-{kept_id}.deleted.json"))).unwrap();
    for entry in fs::read_dir(n1.join(format!("redis/db-{kept_id}"))).unwrap() {
        let file = entry.unwrap().path().join("lazarus-shard.json");
        let text = fs::read_to_string(&file).unwrap();
        fs::write(
            &file,
            text.replace("\"deleted\": true", "\"deleted\": false"),
        )
        .unwrap();
    }
    // (The second home's node, never used, is set aside with its backup.)
    fs::remove_dir_all(first.path("n1-recovered")).unwrap();
    let third = Lazarus::new();
    third
        .run(&format!(
            "cluster recover cluster_id {cluster_id} recovery_path {}",
            n1.display()
        ))
        .ok()
        .stdout_has("is not in the newest CCS backup found");
    assert!(third.ccs()["databases"]
        .as_object()
        .is_none_or(|d| d.is_empty()));
    drop(guard);
}

/// A master's snapshot written after its replica's copy, then damaged (cut short by the
/// crash): the replica's copy is valid but lacks the master's later writes. Recovery
/// says so and loads it only when told to (`allow_stale`), where it used to come back
/// "successfully" from the older copy.
#[test]
fn an_older_copy_does_not_stand_in_for_a_newer_damaged_one_unless_allowed() {
    use lazarus::ccs::{shard_dir_under, Persistence};
    let common::World(_lz, guard, rt, old) = common::World::with(2)
        .db("replicated", 1, true, Persistence::Snapshot)
        .installed();
    let db = old.database_by_name("replicated").unwrap();
    let master = db.masters().next().unwrap();
    let replica = db
        .shards
        .iter()
        .find(|s| s.master == Some(master.id))
        .unwrap();
    let dump_of = |s: &lazarus::ccs::Shard| {
        shard_dir_under(&old.nodes[&s.node].persistent_path, db.id, s.id).join("dump.rdb")
    };
    let (master_dump, replica_dump) = (dump_of(master), dump_of(replica));
    assert!(replica_dump.exists(), "{replica_dump:?}");
    // A second on (a replica's copy within a second of its master's holds the same
    // writes), the master takes a write and saves it; its replica's copy stays as it was.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let a = lazarus::db::shard_addr(&old, db, master.id).unwrap();
    rt.block_on(async {
        let mut con = common::data::connect(&a.host, a.port, 0).await;
        let _: () = redis::cmd("SET")
            .arg("later")
            .arg("v")
            .query_async(&mut con)
            .await
            .unwrap();
        let _: () = redis::cmd("SAVE").query_async(&mut con).await.unwrap();
    });
    guard.kill_all();
    assert!(modified_ns(&master_dump) > modified_ns(&replica_dump));
    let len = fs::metadata(&master_dump).unwrap().len();
    fs::File::options()
        .write(true)
        .open(&master_dump)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let second = Lazarus::new();
    second
        .run(&format!(
            "cluster recover filename {}",
            old.nodes[&1].persistent_path.join("ccs/ccs.json").display()
        ))
        .ok();
    let stale = format!("stale: `{}` is ", replica_dump.display());
    let newer = format!("older than `{}`, which is damaged", master_dump.display());
    second
        .run("recover list")
        .ok()
        .stdout_has("missing files: ")
        .stdout_has(&stale)
        .stdout_has(&newer)
        .stdout_has("not used: corrupted: `");
    second
        .run("recover db replicated")
        .fails(1)
        .stdout_has(&newer)
        .stdout_has("`recover db replicated allow_stale`");
    assert_eq!(db_state(&second, "replicated"), "pending_recovery");
    second
        .run("recover db replicated allow_stale verify counts")
        .ok()
        .stdout_has("`replicated`: Completed successfully")
        .stdout_has(&format!(
            "redis:{} from replica redis:{}'s copy",
            master.id, replica.id
        ));
    // The replica's copy came back, without the master's later write.
    assert!(!has_key(&second, "replicated", "later"));
    // Nothing Lazarus did touched the damaged original.
    assert_eq!(fs::metadata(&master_dump).unwrap().len(), len / 2);
    drop(guard);
}

/// `db`'s state in `lz`'s CCS.
fn db_state(lz: &Lazarus, db: &str) -> String {
    let ccs = lz.ccs();
    let d = ccs["databases"]
        .as_object()
        .unwrap()
        .values()
        .find(|d| d["name"] == db)
        .unwrap()
        .clone();
    d["state"].as_str().unwrap().to_string()
}
