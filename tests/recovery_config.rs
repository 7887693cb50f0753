//! End to end: `cluster recover` through the real binary, on clusters made with Lazarus
//! on real redis-server processes (both forms, foreign files, `alloc_id`).

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use std::io::Write;
use std::process::Stdio;

use common::data;
use common::procs::ProcessGuard;
use common::runtime;
use common::world::{picture, save_snapshots, slot_tag};
use lazarus::ccs::{Cluster, DbState, Role};
use lazarus::db::shard_addr;
use serde_json::Value;

/// One test's world: a temp root holding the homes and the nodes' disks, and a guard that
/// kills every redis-server started under it, even when the test fails.
struct World {
    // Dropped first: the guard kills the servers before their directories go.
    guard: ProcessGuard,
    root: tempfile::TempDir,
    _serial: MutexGuard<'static, ()>,
}

/// Clusters made by `cluster create` put node:1 on the default port range; tests that
/// create databases there run one at a time so their port probes do not race.
static SERIAL: Mutex<()> = Mutex::new(());

impl World {
    fn new() -> World {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let root = tempfile::tempdir().unwrap();
        let guard = ProcessGuard::new(root.path());
        World {
            guard,
            root,
            _serial: serial,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// `lazarus --home <root>/<home> --json <words...>`: every document printed, and the
    /// exit status.
    fn run(&self, home: &str, words: &[&str]) -> (i32, Vec<Value>, Output) {
        let out = Command::new(env!("CARGO_BIN_EXE_lazarus"))
            .arg("--home")
            .arg(self.path(home))
            .arg("--json")
            .args(words)
            .output()
            .unwrap();
        let docs = serde_json::Deserializer::from_slice(&out.stdout)
            .into_iter::<Value>()
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code().unwrap_or(-1), docs, out)
    }

    /// Runs a command that must succeed; its `result`.
    fn ok(&self, home: &str, words: &[&str]) -> Value {
        let (code, docs, out) = self.run(home, words);
        assert_eq!(
            code,
            0,
            "`{}` failed: {}{}",
            words.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        docs.last().map_or(Value::Null, |d| d["result"].clone())
    }

    /// Runs a command that must fail; its error message.
    fn fails(&self, home: &str, words: &[&str]) -> String {
        let (code, docs, out) = self.run(home, words);
        assert_eq!(
            code,
            1,
            "`{}` did not fail as refused: {out:?}",
            words.join(" ")
        );
        let doc = docs.last().unwrap_or_else(|| panic!("no output: {out:?}"));
        assert_eq!(doc["ok"], false);
        doc["error"].as_str().unwrap().to_string()
    }

    fn p(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }
}

/// `cluster create name prod` with node:1 at `n1`, then node:2 at `n2` on a port block
/// of its own, clear of node:1's default 10000-10999 (`node add` refuses an overlap).
fn two_nodes(w: &World) {
    let lo = common::ports::block();
    let range = format!("{lo}-{}", lo + 49);
    w.ok(
        "home",
        &[
            "cluster",
            "create",
            "name",
            "prod",
            "persistent_path",
            &w.p("n1"),
        ],
    );
    w.ok(
        "home",
        &[
            "node",
            "add",
            "addr",
            "127.0.0.1",
            "persistent_path",
            &w.p("n2"),
            "port_range",
            &range,
        ],
    );
}

/// A cluster made with Lazarus: node:1 at `n1`, node:2 at `n2` (its own random port
/// range), a replicated AOF database `cache` and a 3-shard snapshot cluster database
/// `orders`. Returns the CCS as stored.
fn build_with_lazarus(w: &World) -> Value {
    two_nodes(w);
    w.ok(
        "home",
        &[
            "create",
            "db",
            "cache",
            "replication",
            "enabled",
            "persistence",
            "aof",
        ],
    );
    w.ok(
        "home",
        &[
            "create",
            "db",
            "orders",
            "shards",
            "3",
            "persistence",
            "snapshot",
        ],
    );
    stored(w, "home")
}

/// The disaster: every shard SIGKILLed, the home gone.
fn wreck(w: &World) {
    w.guard.kill_all();
    fs::remove_dir_all(w.path("home")).unwrap();
}

/// [`build_with_lazarus`] then [`wreck`]; the CCS as it was.
fn disaster(w: &World) -> Value {
    let ccs = build_with_lazarus(w);
    wreck(w);
    ccs
}

/// The databases of a CCS document as recovery must bring them back: same ids, config,
/// ports and shards, pending recovery, no pids.
fn expected_databases(ccs: &Value) -> Value {
    let mut dbs = ccs["databases"].clone();
    for db in dbs.as_object_mut().unwrap().values_mut() {
        db["state"] = "pending_recovery".into();
        for shard in db["shards"].as_array_mut().unwrap() {
            shard.as_object_mut().unwrap().remove("pid");
        }
    }
    dbs
}

/// `cluster recover cluster_id <id> recovery_path <path>` in the home, which succeeds: its
/// reply.
fn recover_cluster(w: &World, cluster_id: &str, path: &str) -> Value {
    w.ok(
        "home",
        &[
            "cluster",
            "recover",
            "cluster_id",
            cluster_id,
            "recovery_path",
            path,
        ],
    )
}

fn stored(w: &World, home: &str) -> Value {
    serde_json::from_slice(&fs::read(w.path(home).join("ccs.json")).unwrap()).unwrap()
}

fn largest_id(ccs: &Value) -> u64 {
    let mut ids: Vec<u64> = ccs["nodes"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.parse().unwrap())
        .collect();
    for db in ccs["databases"].as_object().unwrap().values() {
        ids.push(db["id"].as_u64().unwrap());
        ids.extend(
            db["shards"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_u64().unwrap()),
        );
    }
    ids.into_iter().max().unwrap()
}

#[test]
fn identity_files_rebuild_the_configuration_and_refuse_foreign_ones() {
    let w = World::new();
    let rt = runtime();
    let before = build_with_lazarus(&w);
    let old: Cluster = serde_json::from_value(before.clone()).unwrap();
    rt.block_on(fill(&old));
    let contents = rt.block_on(picture(&old));
    wreck(&w);
    let cluster_id = before["cluster_id"].as_str().unwrap().to_string();
    // No backup survives anywhere.
    fs::remove_dir_all(w.path("n1/ccs")).unwrap();
    fs::remove_dir_all(w.path("n2/ccs")).unwrap();

    // Another cluster's node disk, mounted next to ours.
    w.ok(
        "other",
        &[
            "cluster",
            "create",
            "name",
            "other",
            "persistent_path",
            &w.p("f1"),
        ],
    );
    w.ok("other", &["create", "db", "alien", "persistence", "aof"]);
    w.guard.kill_all();
    let other_id = stored(&w, "other")["cluster_id"]
        .as_str()
        .unwrap()
        .to_string();

    let e = w.fails(
        "home",
        &[
            "cluster",
            "recover",
            "cluster_id",
            &cluster_id,
            "recovery_path",
            &w.p("f1"),
        ],
    );
    assert!(
        e.contains(&format!(
            "no shard identity file of cluster_id {cluster_id}"
        )) && e.contains(&format!("cluster_id {other_id} only")),
        "{e}"
    );
    assert!(!w.path("home/ccs.json").exists());

    let r = w.ok(
        "home",
        &[
            "cluster",
            "recover",
            "cluster_id",
            &cluster_id,
            "recovery_path",
            &w.p("n1"),
            &w.p("n2"),
            &w.p("f1"),
        ],
    );
    let problems = r["problems"].to_string();
    assert!(
        problems.contains(&format!(
            "belongs to cluster_id {other_id}, not {cluster_id}: skipped"
        )),
        "{r}"
    );
    let after = stored(&w, "home");
    assert_eq!(after["name"], "prod");
    assert_eq!(after["databases"], expected_databases(&before));
    assert_eq!(after["nodes"]["1"]["recovery_path"], w.p("n1"));
    assert_eq!(after["nodes"]["2"]["recovery_path"], w.p("n2"));
    for id in ["1", "2"] {
        assert_eq!(after["nodes"][id]["addr"], before["nodes"][id]["addr"]);
        assert_eq!(
            after["nodes"][id]["port_range"],
            before["nodes"][id]["port_range"]
        );
    }
    assert!(after["alloc_id"].as_u64().unwrap() > largest_id(&before));
    assert_eq!(r["alloc_id"], after["alloc_id"]);

    // `status` shows the databases waiting, none running.
    let status = w.ok("home", &["status", "databases"]).to_string();
    assert!(
        status.contains("pending recovery") || status.contains("pending_recovery"),
        "{status}"
    );

    // And from that configuration alone, the data comes back at the same endpoints.
    w.ok("home", &["recover", "all"]);
    let new: Cluster = serde_json::from_value(stored(&w, "home")).unwrap();
    assert!(new.databases.values().all(|d| d.state == DbState::Active));
    let after = rt.block_on(picture(&new));
    for (shard, was) in &contents {
        let d = data::diff(was, &after[shard]);
        assert!(d.is_empty(), "redis:{shard}: {d:?}");
    }
}

#[test]
fn backup_brings_the_configuration_back_and_ids_are_never_reused() {
    let w = World::new();
    let before = disaster(&w);
    let largest = largest_id(&before);
    // A database directory created after the last backup was written.
    let late = largest + 40;
    let late_dir = w.path(&format!("n2/redis/db-{}/shard-{late}", late - 1));
    fs::create_dir_all(&late_dir).unwrap();

    let backup = w.p("n1/ccs/ccs.json");
    let too_small = late.to_string();
    let e = w.fails(
        "home",
        &[
            "cluster",
            "recover",
            "filename",
            &backup,
            "persistent_path",
            &w.p("new1"),
            "alloc_id",
            &too_small,
        ],
    );
    assert_eq!(
        e,
        format!(
            "alloc_id {late} is too small: id {late} is already in use (shard directory `{}`); give an alloc_id above {late} or leave it out",
            late_dir.display()
        )
    );
    assert!(!w.path("home/ccs.json").exists());

    let r = w.ok(
        "home",
        &[
            "cluster",
            "recover",
            "filename",
            &backup,
            "node_uid",
            "1",
            "persistent_path",
            &w.p("new1"),
        ],
    );
    let alloc = r["alloc_id"].as_u64().unwrap();
    assert!(alloc > late, "{r}");
    let after = stored(&w, "home");
    assert_eq!(after["alloc_id"].as_u64(), Some(alloc));
    assert_eq!(after["databases"], expected_databases(&before));
    // node:1 moved to a fresh path; its old one, still holding data, is where it recovers from.
    assert_eq!(after["nodes"]["1"]["persistent_path"], w.p("new1"));
    assert_eq!(after["nodes"]["1"]["recovery_path"], w.p("n1"));
    // node:2 was not given a path: its old one still holds its data, so it recovers from
    // there into a fresh sibling rather than in place.
    assert_eq!(after["nodes"]["2"]["persistent_path"], w.p("n2-recovered"));
    assert_eq!(after["nodes"]["2"]["recovery_path"], w.p("n2"));
    // Backups are written to every node again; the old ones are left as they were.
    assert!(w.path("new1/ccs/ccs.json").is_file());
    assert!(w.path("n2-recovered/ccs/ccs.json").is_file());
    let old_backup: Value =
        serde_json::from_slice(&fs::read(w.path("n2/ccs/ccs.json")).unwrap()).unwrap();
    assert_eq!(old_backup, before);

    // A second recover into the same home is refused and changes nothing.
    let e = w.fails("home", &["cluster", "recover", "filename", &backup]);
    assert!(e.starts_with("a cluster already exists in"), "{e}");
    assert_eq!(stored(&w, "home"), after);

    // With no more than that, the data comes back. (`orders` never saved a snapshot:
    // it has no files, and comes back EMPTY only when asked.)
    let e = w.fails("home", &["recover", "all"]);
    assert!(e.starts_with("1 of 2 databases failed"), "{e}");
    w.ok("home", &["recover", "all", "allow_empty"]);
    let now = stored(&w, "home");
    for db in now["databases"].as_object().unwrap().values() {
        assert_eq!(db["state"], "active", "{db}");
    }

    // A database created now never takes an old id.
    w.ok(
        "home",
        &["create", "db", "fresh", "persistence", "disabled"],
    );
    let now = stored(&w, "home");
    let fresh = now["databases"]
        .as_object()
        .unwrap()
        .values()
        .find(|d| d["name"] == "fresh")
        .unwrap();
    assert!(fresh["id"].as_u64().unwrap() >= alloc, "{fresh}");
    for s in fresh["shards"].as_array().unwrap() {
        assert!(s["id"].as_u64().unwrap() > alloc);
    }
}

#[test]
fn bad_backups_are_refused_naming_the_file() {
    let w = World::new();
    fs::create_dir_all(w.path("old")).unwrap();
    let file = w.path("old/ccs.json");
    fs::write(&file, "{\"format\": 1, \"name\": ").unwrap();
    let e = w.fails(
        "home",
        &["cluster", "recover", "filename", &w.p("old/ccs.json")],
    );
    assert!(
        e.starts_with(&format!("the CCS backup `{}` is not valid", file.display())),
        "{e}"
    );
    fs::write(&file, r#"{"format": 9}"#).unwrap();
    let e = w.fails(
        "home",
        &["cluster", "recover", "filename", &w.p("old/ccs.json")],
    );
    assert!(
        e.contains("has format 9, this lazarus reads format 1"),
        "{e}"
    );
    let e = w.fails(
        "home",
        &["cluster", "recover", "filename", &w.p("nope.json")],
    );
    assert!(e.starts_with("cannot read the CCS backup"), "{e}");
    assert!(!w.path("home/ccs.json").exists());
}

/// Sample data in every master (a hash tag per slot range for the cluster database),
/// snapshots saved, and time for AOF's once-a-second fsync.
async fn fill(cluster: &Cluster) {
    for db in cluster.databases.values() {
        for (i, m) in db.masters().enumerate() {
            let a = shard_addr(cluster, db, m.id).unwrap();
            let tag = match m.slots {
                Some(slots) if db.config.shards > 1 => format!("{{{}}}", slot_tag(slots.start)),
                _ => format!("{}{i}", db.config.name),
            };
            let mut con = data::connect(&a.host, a.port, 0).await;
            data::write_sample(&mut con, &tag, 30).await;
        }
    }
    save_snapshots(cluster).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
}

/// The runbook case: after the disaster, one piped script brings the configuration back
/// from a surviving backup, says where the old disks are, checks and recovers every
/// database; the data is what it was, at the same endpoints.
#[test]
fn a_piped_runbook_brings_the_cluster_and_its_data_back() {
    let w = World::new();
    let rt = runtime();
    let old: Cluster = serde_json::from_value(build_with_lazarus(&w)).unwrap();
    rt.block_on(fill(&old));
    let before = rt.block_on(picture(&old));
    wreck(&w);
    // The machines were replaced; their old disks are mounted under `old/`.
    fs::create_dir_all(w.path("old")).unwrap();
    fs::rename(w.path("n1"), w.path("old/n1")).unwrap();
    fs::rename(w.path("n2"), w.path("old/n2")).unwrap();

    let script = format!(
        "# runbook: bring the cluster back\n\
         cluster recover filename {backup} node_uid 1\n\
         \n\
         node 1 recovery_path set {old1}\n\
         node 2 recovery_path set {old2}\n\
         recover list\n\
         recover all\n",
        backup = w.p("old/n1/ccs/ccs.json"),
        old1 = w.p("old/n1"),
        old2 = w.p("old/n2"),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_lazarus"))
        .arg("--home")
        .arg(w.path("home"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Recovered cluster `prod`"), "{text}");
    assert_eq!(text.matches("Completed successfully").count(), 2, "{text}");

    let new: Cluster = serde_json::from_value(stored(&w, "home")).unwrap();
    assert!(new.databases.values().all(|d| d.state == DbState::Active));
    for (id, db) in &old.databases {
        assert_eq!(new.databases[id].port, db.port, "same endpoint");
    }
    let after = rt.block_on(picture(&new));
    for (shard, was) in &before {
        let d = data::diff(was, &after[shard]);
        assert!(d.is_empty(), "redis:{shard}: {d:?}");
    }
    // The old disks were copied from, never changed.
    assert!(w.path("old/n1/ccs/ccs.json").is_file());
    let untouched: Cluster =
        serde_json::from_slice(&fs::read(w.path("old/n1/ccs/ccs.json")).unwrap()).unwrap();
    assert_eq!(untouched.generation, old.generation);
}

/// `cluster recover filename` run again from the old disks after its home was lost
/// (before `recover all`) is refused by the backup the first run wrote under the
/// `-recovered` paths; the hint's command line, run as it is, brings the configuration
/// back with the recovery paths the first run recorded, and the data follows.
#[test]
fn a_second_recover_from_a_backup_follows_the_first_runs_backup_as_hinted() {
    let w = World::new();
    let rt = runtime();
    let old: Cluster = serde_json::from_value(build_with_lazarus(&w)).unwrap();
    rt.block_on(fill(&old));
    let before = rt.block_on(picture(&old));
    wreck(&w);

    let backup = w.p("n1/ccs/ccs.json");
    w.ok("first", &["cluster", "recover", "filename", &backup]);
    let first = stored(&w, "first");
    for id in ["1", "2"] {
        assert_eq!(first["nodes"][id]["recovery_path"], w.p(&format!("n{id}")));
    }
    // The first run's home is lost in its turn, nothing recovered yet.
    fs::remove_dir_all(w.path("first")).unwrap();

    let (code, docs, out) = w.run("second", &["cluster", "recover", "filename", &backup]);
    assert_eq!(code, 1, "{out:?}");
    let newer = w.p("n1-recovered/ccs/ccs.json");
    assert!(
        docs[0]["error"]
            .as_str()
            .unwrap()
            .starts_with(&format!("`{newer}` is a newer backup of this cluster")),
        "{}",
        docs[0]
    );
    assert!(!w.path("second/ccs.json").exists());
    let hint = docs[0]["hints"][0].as_str().unwrap();
    let line = hint
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("a command line in the hint: {hint}"));
    assert_eq!(line, format!("cluster recover filename {newer}"));
    let words: Vec<String> = lazarus::lang::lex(line)
        .unwrap()
        .into_iter()
        .map(|t| t.text)
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let r = w.ok("second", &words);
    let notes = r.to_string();
    assert!(notes.contains("kept from the backup"), "{notes}");
    let second = stored(&w, "second");
    for id in ["1", "2"] {
        assert_eq!(
            second["nodes"][id]["recovery_path"],
            w.p(&format!("n{id}")),
            "{second}"
        );
        assert_eq!(
            second["nodes"][id]["persistent_path"],
            w.p(&format!("n{id}-recovered"))
        );
    }
    w.ok("second", &["recover", "all"]);
    let new: Cluster = serde_json::from_value(stored(&w, "second")).unwrap();
    assert!(new.databases.values().all(|d| d.state == DbState::Active));
    let after = rt.block_on(picture(&new));
    for (shard, was) in &before {
        let d = data::diff(was, &after[shard]);
        assert!(d.is_empty(), "redis:{shard}: {d:?}");
    }
}

/// The worst night: node:1's disk is lost and no CCS backup is left. What survives is
/// node:2's disk, holding the replicas of node:1's masters. The identity files there name
/// each lost master (its id and slots): the databases are rebuilt from them, the lost
/// masters placed where their replicas lie, and `recover all` brings the data back from
/// the replicas' files. A database of which some slots have no identity at all (a shard's
/// master and replica both lost) cannot be rebuilt: named, and the command fails.
#[test]
fn a_replicas_disk_alone_rebuilds_its_lost_masters_and_their_data() {
    let w = World::new();
    let rt = runtime();
    two_nodes(&w);
    for (name, shards) in [("cache", "1"), ("sharded", "2"), ("gone", "2")] {
        w.ok(
            "home",
            &[
                "create",
                "db",
                name,
                "shards",
                shards,
                "replication",
                "enabled",
                "persistence",
                "aof",
            ],
        );
    }
    let before = stored(&w, "home");
    let old: Cluster = serde_json::from_value(before.clone()).unwrap();
    rt.block_on(fill(&old));
    let contents = rt.block_on(picture(&old));
    wreck(&w);
    let cluster_id = before["cluster_id"].as_str().unwrap().to_string();
    let by_name = |name: &str| {
        old.databases
            .values()
            .find(|d| d.config.name == name)
            .unwrap()
    };
    // node:1's disk is gone; node:2's CCS backup too.
    fs::remove_dir_all(w.path("n1")).unwrap();
    fs::remove_dir_all(w.path("n2/ccs")).unwrap();
    // Of `gone`, the replica of node:1's master is lost as well: its slots have no
    // identity left anywhere.
    let gone = by_name("gone");
    let gone_master = gone.masters().find(|m| m.node == 1).unwrap();
    let gone_replica = gone
        .shards
        .iter()
        .find(|s| s.master == Some(gone_master.id))
        .unwrap();
    fs::remove_dir_all(
        w.path("n2/redis")
            .join(format!("db-{}", gone.id))
            .join(format!("shard-{}", gone_replica.id)),
    )
    .unwrap();

    let (code, docs, out) = w.run(
        "home",
        &[
            "cluster",
            "recover",
            "cluster_id",
            &cluster_id,
            "recovery_path",
            &w.p("n2"),
        ],
    );
    assert_eq!(code, 1, "{out:?}");
    let doc = docs.last().unwrap();
    assert_eq!(doc["ok"], false, "{doc}");
    let error = doc["error"].as_str().unwrap();
    let slots = gone_master.slots.unwrap();
    assert!(
        error.starts_with("1 database cannot be rebuilt from the identity files found")
            && error.contains(&format!(
                "`db:{}` `gone` cannot be rebuilt: slots {slots} have no master shard",
                gone.id
            )),
        "{error}"
    );
    let r = &doc["result"];
    assert_eq!(r["left_out"][0]["db"], gone.id, "{r}");
    // The rest is stored: `cache` and `sharded`, their lost masters named.
    let after: Cluster = serde_json::from_value(stored(&w, "home")).unwrap();
    let names: Vec<&str> = after
        .databases
        .values()
        .map(|d| d.config.name.as_str())
        .collect();
    assert_eq!(names, ["cache", "sharded"]);
    let lost: Vec<u64> = r["lost_shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["shard"].as_u64().unwrap())
        .collect();
    let mut expected_lost: Vec<u64> = ["cache", "sharded"]
        .iter()
        .flat_map(|n| by_name(n).masters().filter(|m| m.node == 1).map(|m| m.id))
        .collect();
    expected_lost.sort();
    assert_eq!(lost, expected_lost, "{r}");
    for name in ["cache", "sharded"] {
        let (was, now) = (by_name(name), &after.databases[&by_name(name).id]);
        assert_eq!(now.state, DbState::PendingRecovery);
        assert_eq!(now.config, was.config);
        // Every master is back, and every replica whose disk survived, with its role,
        // master and slots; all on node:2 now (node:1's replicas are gone with it).
        let shape = |d: &lazarus::ccs::Database, lost_node: Option<u64>| {
            let mut s: Vec<_> = d
                .shards
                .iter()
                .filter(|s| s.role == Role::Master || Some(s.node) != lost_node)
                .map(|s| (s.id, s.role, s.master, s.slots))
                .collect();
            s.sort_by_key(|s| s.0);
            s
        };
        assert_eq!(shape(now, None), shape(was, Some(1)), "{name}");
        assert!(now.shards.iter().all(|s| s.node == 2), "{name}: {now:?}");
    }
    let problems = r["problems"].to_string();
    assert!(
        problems.contains(&format!(
            "master `redis:{}` was lost with its disk; rebuilt from the identity of its replica",
            expected_lost[0]
        )),
        "{problems}"
    );

    // The data comes back from the replicas' files.
    w.ok("home", &["recover", "all"]);
    let new: Cluster = serde_json::from_value(stored(&w, "home")).unwrap();
    assert!(new.databases.values().all(|d| d.state == DbState::Active));
    let now = rt.block_on(picture(&new));
    for db in new.databases.values() {
        for m in db.masters() {
            let d = data::diff(&contents[&m.id], &now[&m.id]);
            assert!(d.is_empty(), "redis:{}: {d:?}", m.id);
            assert!(!contents[&m.id].is_empty(), "redis:{} had keys", m.id);
        }
    }
    // The surviving disk was copied from, never changed.
    assert!(w.path("n2/redis").is_dir());
}

/// Two incidents on one disk: the cluster was rebuilt from its identity files once and
/// ran on the `-recovered` directories beside the old disks; then it was lost again. The
/// directory holding both lives is given: each shard comes back from its later life, with
/// the data written since the first recovery. A database deleted and purged in the later
/// life stays deleted (its tombstone there outweighs the earlier life's copies).
#[test]
fn a_disk_holding_two_lives_rebuilds_the_later_one() {
    let w = World::new();
    let rt = runtime();
    let before = disaster(&w);
    let cluster_id = before["cluster_id"].as_str().unwrap().to_string();
    fs::remove_dir_all(w.path("n1/ccs")).unwrap();
    fs::remove_dir_all(w.path("n2/ccs")).unwrap();
    let recover = |paths: &[String]| {
        let mut words = vec![
            "cluster",
            "recover",
            "cluster_id",
            &cluster_id,
            "recovery_path",
        ];
        words.extend(paths.iter().map(String::as_str));
        w.ok("home", &words)
    };
    recover(&[w.p("n1"), w.p("n2")]);
    w.ok("home", &["recover", "all", "allow_empty"]);
    // The later life: data written after the first recovery.
    let first: Cluster = serde_json::from_value(stored(&w, "home")).unwrap();
    assert_eq!(
        first.nodes[&1].persistent_path,
        w.path("n1-recovered"),
        "{first:?}"
    );
    rt.block_on(fill(&first));
    let mut contents = rt.block_on(picture(&first));
    let orders = first
        .databases
        .values()
        .find(|d| d.config.name == "orders")
        .unwrap();
    w.ok("home", &["delete", "db", "orders", "purge"]);
    contents.retain(|shard, _| !orders.shards.iter().any(|s| s.id == *shard));
    assert!(w
        .path(&format!("n1-recovered/redis/db-{}.deleted.json", orders.id))
        .is_file());
    wreck(&w);
    fs::create_dir_all(w.path("old")).unwrap();
    for n in ["n1", "n2", "n1-recovered", "n2-recovered"] {
        fs::rename(w.path(n), w.path(&format!("old/{n}"))).unwrap();
    }
    for n in ["n1-recovered", "n2-recovered"] {
        fs::remove_dir_all(w.path(&format!("old/{n}/ccs"))).unwrap();
    }

    let r = recover(&[w.p("old")]);
    let after = stored(&w, "home");
    for id in ["1", "2"] {
        assert_eq!(
            after["nodes"][id]["recovery_path"],
            w.p(&format!("old/n{id}-recovered")),
            "{r}"
        );
        assert_eq!(
            after["nodes"][id]["persistent_path"],
            w.p(&format!("old/n{id}-recovered-2")),
            "{r}"
        );
    }
    assert!(
        after["databases"].get(orders.id.to_string()).is_none(),
        "{r}"
    );
    assert!(
        r["problems"].to_string().contains(&format!(
            "`db:{}` `orders` was deleted (its tombstone",
            orders.id
        )),
        "{r}"
    );
    w.ok("home", &["recover", "all"]);
    let new: Cluster = serde_json::from_value(stored(&w, "home")).unwrap();
    let now = rt.block_on(picture(&new));
    for (shard, was) in &contents {
        assert!(!was.is_empty(), "redis:{shard} had keys");
        let d = data::diff(was, &now[shard]);
        assert!(d.is_empty(), "redis:{shard}: {d:?}");
    }
}

/// A master's identity file damaged by the crash (cut short), its directory and data
/// there: no CCS backup left. Its replica went down first, and the master took writes
/// after, so the master's own AOF is the freshest copy. The rebuilt master is placed in its
/// own directory (not on its replica's node), `recover list` chooses its own files by the
/// rules of any master and says why the identity was passed over, and `recover all`
/// brings back the writes the replica never saw.
#[test]
fn a_master_whose_identity_is_damaged_recovers_from_its_own_fresher_files() {
    let w = World::new();
    let rt = runtime();
    let before = build_with_lazarus(&w);
    let old: Cluster = serde_json::from_value(before.clone()).unwrap();
    rt.block_on(fill(&old));
    let cache = old
        .databases
        .values()
        .find(|d| d.config.name == "cache")
        .unwrap();
    let master = cache.masters().next().unwrap().clone();
    let replica = cache
        .shards
        .iter()
        .find(|s| s.role == Role::Replica)
        .unwrap();
    rt.block_on(async {
        let r = shard_addr(&old, cache, replica.id).unwrap();
        let mut con = data::connect(&r.host, r.port, 0).await;
        let _: Result<(), _> = redis::cmd("SHUTDOWN")
            .arg("NOSAVE")
            .query_async(&mut con)
            .await;
        let m = shard_addr(&old, cache, master.id).unwrap();
        let mut con = data::connect(&m.host, m.port, 0).await;
        for i in 0..10 {
            let _: () = redis::cmd("SET")
                .arg(format!("late-{i}"))
                .arg("after the replica")
                .query_async(&mut con)
                .await
                .unwrap();
        }
        // The AOF's once-a-second fsync, and a later modification time than the replica's.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    });
    wreck(&w);
    let cluster_id = before["cluster_id"].as_str().unwrap().to_string();
    fs::remove_dir_all(w.path("n1/ccs")).unwrap();
    fs::remove_dir_all(w.path("n2/ccs")).unwrap();
    let master_dir = old.nodes[&master.node].shard_dir(cache.id, master.id);
    let identity = master_dir.join("lazarus-shard.json");
    let text = fs::read(&identity).unwrap();
    fs::write(&identity, &text[..text.len() / 2]).unwrap();

    let r = w.ok(
        "home",
        &[
            "cluster",
            "recover",
            "cluster_id",
            &cluster_id,
            "recovery_path",
            &w.p("n1"),
            &w.p("n2"),
        ],
    );
    let problems = r["problems"].to_string();
    assert!(
        problems.contains(&format!(
            "rebuilt from the identity of its replica `redis:{}` in its own directory, on `node:{}` port {}",
            replica.id, master.node, master.port
        )),
        "{r}"
    );
    assert_eq!(r["lost_shards"], serde_json::json!([]), "{r}");
    let after: Cluster = serde_json::from_value(stored(&w, "home")).unwrap();
    assert_eq!(after.databases[&cache.id], {
        let mut d = cache.clone();
        d.state = DbState::PendingRecovery;
        d.shards.iter_mut().for_each(|s| s.pid = None);
        d
    });

    let list = w.ok("home", &["recover", "list"]);
    let plan = list["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == cache.id)
        .unwrap();
    let m = plan["shard_plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["shard"] == master.id)
        .unwrap();
    assert_eq!(m["outcome"]["status"], "ready", "{m}");
    assert_eq!(m["outcome"]["source"]["from_shard"], master.id, "{m}");
    assert!(
        m["notes"][0]
            .as_str()
            .unwrap()
            .contains(&format!("`{}` is damaged", identity.display())),
        "{m}"
    );

    w.ok("home", &["recover", "all"]);
    let new: Cluster = serde_json::from_value(stored(&w, "home")).unwrap();
    let db = &new.databases[&cache.id];
    assert_eq!(db.state, DbState::Active);
    rt.block_on(async {
        let m = shard_addr(&new, db, master.id).unwrap();
        let mut con = data::connect(&m.host, m.port, 0).await;
        for i in 0..10 {
            let v: Option<String> = redis::cmd("GET")
                .arg(format!("late-{i}"))
                .query_async(&mut con)
                .await
                .unwrap();
            assert_eq!(v.as_deref(), Some("after the replica"), "late-{i}");
        }
    });
    // The damaged identity file, the old disk's, was only read.
    assert_eq!(fs::read(&identity).unwrap(), &text[..text.len() / 2]);
}

/// A database created with a `port` outside its node's range (node:1's default
/// 10000-10999, the port a test block's): rebuilt from the identity files alone, node:1
/// has the range it had, not one widened to the shard's port, and the shard keeps its
/// port outside it, as at create; `recover all` starts it there.
#[test]
fn a_port_given_at_create_leaves_the_rebuilt_nodes_range_as_it_was() {
    let w = World::new();
    w.ok(
        "home",
        &[
            "cluster",
            "create",
            "name",
            "prod",
            "persistent_path",
            &w.p("n1"),
        ],
    );
    let port = common::ports::block();
    w.ok(
        "home",
        &["create", "db", "apart", "port", &port.to_string()],
    );
    let before = stored(&w, "home");
    let old: Cluster = serde_json::from_value(before.clone()).unwrap();
    assert!(!old.nodes[&1].port_range.contains(port), "{before}");
    wreck(&w);
    fs::remove_dir_all(w.path("n1/ccs")).unwrap();
    let cluster_id = before["cluster_id"].as_str().unwrap().to_string();
    let r = recover_cluster(&w, &cluster_id, &w.p("n1"));
    let after: Cluster = serde_json::from_value(stored(&w, "home")).unwrap();
    assert_eq!(after.nodes[&1].port_range, old.nodes[&1].port_range, "{r}");
    let db = after.databases.values().next().unwrap();
    assert_eq!((db.port, db.shards[0].port), (port, port), "{r}");
    w.ok("home", &["recover", "all", "allow_empty"]);
    let new: Cluster = serde_json::from_value(stored(&w, "home")).unwrap();
    let db = new.databases.values().next().unwrap();
    assert_eq!(db.state, DbState::Active);
    assert_eq!(db.shards[0].port, port);
}

/// A rebuild that loses node:1's disk: of a replicated 2-shard database, node:1's master
/// is rebuilt on node:2 beside its replica, and node:2's master has lost its replica
/// (it lived on node:1). Everything serves after `recover all`, yet no slot has a copy
/// on another node: `status` says so on the database and the shard rows, in JSON and in
/// `issues_only`, and fails, naming both masters.
#[test]
fn status_after_a_rebuild_names_the_masters_left_without_a_replica_elsewhere() {
    let w = World::new();
    two_nodes(&w);
    w.ok(
        "home",
        &[
            "create",
            "db",
            "sharded",
            "shards",
            "2",
            "replication",
            "enabled",
        ],
    );
    let before = stored(&w, "home");
    let old: Cluster = serde_json::from_value(before.clone()).unwrap();
    let db = old.databases.values().next().unwrap();
    let rebuilt_master = db.masters().find(|m| m.node == 1).unwrap().id;
    let bereft_master = db.masters().find(|m| m.node == 2).unwrap().id;
    let replica_of = |m: u64| db.shards.iter().find(|s| s.master == Some(m)).unwrap().id;
    // Made whole: nothing to report.
    let report = w.ok("home", &["status", "issues_only"]);
    assert_eq!(report["databases"], serde_json::json!([]), "{report}");
    wreck(&w);
    fs::remove_dir_all(w.path("n1")).unwrap();
    fs::remove_dir_all(w.path("n2/ccs")).unwrap();
    let cluster_id = before["cluster_id"].as_str().unwrap().to_string();
    let r = recover_cluster(&w, &cluster_id, &w.p("n2"));
    let problems = r["problems"].to_string();
    assert!(
        problems.contains(&format!(
            "the master runs on the node of its replica `redis:{}`: no copy of its data is on another node",
            replica_of(rebuilt_master)
        )),
        "{problems}"
    );
    w.ok("home", &["recover", "all"]);

    // Named in shard id order.
    let rebuilt_why = format!(
        "redis:{rebuilt_master} has its replica redis:{} on its own node:2",
        replica_of(rebuilt_master)
    );
    let bereft_why = format!("redis:{bereft_master} has no replica");
    let rebuilt_json = serde_json::json!({"shard": rebuilt_master, "node": 2, "replicas_beside": [replica_of(rebuilt_master)]});
    let bereft_json = serde_json::json!({"shard": bereft_master, "node": 2, "replicas_beside": []});
    let (first, second) = match rebuilt_master < bereft_master {
        true => (
            (rebuilt_master, rebuilt_why, rebuilt_json),
            (bereft_master, bereft_why, bereft_json),
        ),
        false => (
            (bereft_master, bereft_why, bereft_json),
            (rebuilt_master, rebuilt_why, rebuilt_json),
        ),
    };
    let error = w.fails("home", &["status"]);
    assert_eq!(
        error,
        format!(
            "`sharded` (replication enabled): {}; `sharded` (replication enabled): {}",
            first.1, second.1
        )
    );
    let (code, docs, _) = w.run("home", &["status", "issues_only"]);
    assert_eq!(code, 1);
    let report = &docs.last().unwrap()["result"];
    let row = &report["databases"][0];
    assert_eq!(
        row["status"],
        format!(
            "active, no replica on another node: redis:{}, redis:{}",
            first.0, second.0
        ),
        "{report}"
    );
    assert_eq!(
        row["unprotected_masters"],
        serde_json::json!([first.2, second.2]),
        "{report}"
    );
    let mut shards: Vec<(u64, String)> = report["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_u64().unwrap(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    shards.sort();
    let no_replica = "NO REPLICA ELSEWHERE".to_string();
    assert_eq!(
        shards,
        [(first.0, no_replica.clone()), (second.0, no_replica)],
        "{report}"
    );
}
