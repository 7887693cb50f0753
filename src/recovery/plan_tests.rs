//! Planning against hand-made recovery trees, with a stand-in reader whose verdict each
//! file spells out in its own text (`keys=3 v=10 verdict=corrupt ...`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::*;
use crate::ccs::{fixtures, Node, SHARD_IDENTITY_FILE};

const CLUSTER_ID: u64 = 0xC0FFEE;

fn fake_check(path: &Path, slots: Option<SlotRange>) -> SourceCheck {
    let spec_file = if path.is_dir() {
        path.join("spec")
    } else {
        path.to_path_buf()
    };
    let text = fs::read_to_string(&spec_file).unwrap_or_default();
    let mut check = SourceCheck {
        keys_exact: true,
        ..Default::default()
    };
    for word in text.split_whitespace() {
        let (k, v) = word.split_once('=').unwrap_or((word, ""));
        match k {
            "keys" => {
                check.keys = v.parse().unwrap();
                check.keys_per_db = BTreeMap::from([(0, check.keys)]);
            }
            "v" => check.rdb_version = Some(v.parse().unwrap()),
            "created" => check.created = Some(v.parse().unwrap()),
            "damaged" => check.damaged_values = vec![format!("`{v}` in database 0 at offset 21")],
            "outside" if slots.is_some() => {
                check.keys_outside_slots = v.parse().unwrap();
                check.outside_examples = vec!["k1".into()];
            }
            "verdict" => {
                check.verdict = match v {
                    "corrupt" => CheckVerdict::Corrupt,
                    "truncated" => CheckVerdict::Truncated,
                    "unsupported" => CheckVerdict::UnsupportedVersion,
                    _ => CheckVerdict::Ok,
                };
                if check.verdict != CheckVerdict::Ok {
                    check.fault = Some((spec_file.clone(), 42, "an opcode".into()));
                }
            }
            _ => {}
        }
    }
    check
}

/// node:1 and node:2 with recovery paths `<root>/old<id>`; db:3 one master (redis:4 on
/// node 1) with a replica (redis:5 on node 2); db:6 a two-shard cluster (redis:7, redis:8
/// on node 1).
fn cluster_at(root: &Path) -> Cluster {
    let node = |id: Id| Node {
        persistent_path: root.join(format!("new{id}")),
        recovery_path: Some(root.join(format!("old{id}"))),
        ..fixtures::node(id, root)
    };
    let shard = |id, node, role, master, slots| {
        fixtures::shard(id, node, role, master, slots, 30000 + id as u16)
    };
    let config = fixtures::db_config;
    let half = |start, end| Some(SlotRange { start, end });
    let dbs = [
        Database {
            id: 3,
            config: config("cache", 1, true),
            port: 30004,
            state: DbState::PendingRecovery,
            shards: vec![
                shard(4, 1, Role::Master, None, None),
                shard(5, 2, Role::Replica, Some(4), None),
            ],
        },
        Database {
            id: 6,
            config: config("orders", 2, false),
            port: 30007,
            state: DbState::PendingRecovery,
            shards: vec![
                shard(7, 1, Role::Master, None, half(0, 8191)),
                shard(8, 1, Role::Master, None, half(8192, 16383)),
            ],
        },
    ];
    Cluster {
        name: "c".into(),
        databases: dbs.into_iter().map(|d| (d.id, d)).collect(),
        ..fixtures::cluster(CLUSTER_ID, 9, vec![node(1), node(2)])
    }
}

struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cluster: Cluster,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for id in [1, 2] {
            fs::create_dir_all(root.join(format!("old{id}"))).unwrap();
        }
        let cluster = cluster_at(&root);
        World {
            _tmp: tmp,
            root,
            cluster,
        }
    }

    fn dir(&self, node: Id, db: Id, shard: Id) -> PathBuf {
        shard_dir_under(&self.root.join(format!("old{node}")), db, shard)
    }

    /// Writes a file with a spec and an mtime `age` seconds in the past.
    fn file(&self, node: Id, db: Id, shard: Id, name: &str, spec: &str, age: u64) -> PathBuf {
        let path = self.dir(node, db, shard).join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, spec).unwrap();
        let f = fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(age))
            .unwrap();
        path
    }

    fn identity(&self, node: Id, db: Id, shard: Id, cluster_id: u64) {
        let d = &self.cluster.databases[&db];
        let s = d.shards.iter().find(|s| s.id == shard).unwrap();
        let identity = ShardIdentity {
            cluster_id,
            cluster_name: "c".into(),
            db_id: db,
            shard_id: shard,
            node_id: node,
            role: s.role,
            master: s.master,
            slots: s.slots,
            port: s.port,
            db_port: d.port,
            db: d.config.clone(),
            node_addr: None,
            node_port_range: None,
            creating: false,
            deleted: false,
        };
        let path = self.dir(node, db, shard).join(SHARD_IDENTITY_FILE);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, serde_json::to_vec(&identity).unwrap()).unwrap();
    }

    fn plan(&self) -> RecoveryPlan {
        plan_all(&self.cluster, Some(10), "7.0.15", &fake_check)
    }
}

fn shard(plan: &RecoveryPlan, db: Id, shard: Id) -> &ShardPlan {
    let db = plan.databases.iter().find(|d| d.id == db).unwrap();
    db.shard_plans.iter().find(|s| s.shard == shard).unwrap()
}

fn source(plan: &ShardPlan) -> &Source {
    match &plan.outcome {
        Outcome::Ready { source } => source,
        other => panic!("expected ready, got {other:?}"),
    }
}

fn reason(plan: &ShardPlan) -> &Reason {
    match &plan.outcome {
        Outcome::Missing { reason } => reason,
        other => panic!("expected missing, got {other:?}"),
    }
}

#[test]
fn the_fresher_of_aof_and_snapshot_wins() {
    let w = World::new();
    w.identity(1, 3, 4, CLUSTER_ID);
    w.file(1, 3, 4, "dump.rdb", "keys=5 v=10", 600);
    w.file(1, 3, 4, "appendonlydir/spec", "keys=7 v=10", 10);
    w.file(1, 6, 7, "dump.rdb", "keys=2 v=9", 10);
    w.file(1, 6, 7, "appendonlydir/spec", "keys=1 v=10", 900);
    w.file(1, 6, 8, "appendonly.aof", "keys=4", 5);
    let plan = w.plan();
    let s = source(shard(&plan, 3, 4));
    assert_eq!((s.kind, s.keys, s.from_shard), (SourceKind::AofDir, 7, 4));
    assert_eq!(source(shard(&plan, 6, 7)).kind, SourceKind::Rdb);
    assert_eq!(source(shard(&plan, 6, 8)).kind, SourceKind::AofFile);
    assert_eq!(shard(&plan, 3, 5).outcome, Outcome::Replica);
    assert!(plan.databases.iter().all(|d| d.status == DbStatus::Ready));
}

#[test]
fn an_rdb_ctime_beats_its_mtime() {
    let w = World::new();
    // Copied without preserving times: the RDB's own ctime says it is old.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    w.file(
        1,
        6,
        7,
        "dump.rdb",
        &format!("keys=2 created={}", now - 5000),
        0,
    );
    w.file(1, 6, 7, "appendonlydir/spec", "keys=1", 100);
    let plan = w.plan();
    assert_eq!(source(shard(&plan, 6, 7)).kind, SourceKind::AofDir);
}

#[test]
fn a_damaged_aof_older_than_the_snapshot_falls_back_to_it() {
    let w = World::new();
    w.file(1, 3, 4, "dump.rdb", "keys=5", 10);
    w.file(1, 3, 4, "appendonlydir/spec", "verdict=truncated", 600);
    let plan = w.plan();
    let s = shard(&plan, 3, 4);
    assert_eq!(source(s).kind, SourceKind::Rdb);
    assert!(matches!(
        &s.set_aside[..],
        [Reason::TruncatedAof { offset: 42, .. }]
    ));
    assert_eq!(plan.databases[0].status, DbStatus::Ready);
}

#[test]
fn a_snapshot_older_than_a_damaged_aof_is_stale_unless_allowed() {
    // The AOF logged every write after the snapshot: loading the snapshot would come
    // back "successfully" without them.
    let w = World::new();
    w.file(1, 3, 4, "dump.rdb", "keys=5", 600);
    w.file(1, 3, 4, "appendonlydir/spec", "verdict=truncated", 10);
    let plan = w.plan();
    let s = shard(&plan, 3, 4);
    let Reason::Stale {
        file, newer, next, ..
    } = reason(s)
    else {
        panic!("expected stale, got {:?}", s.outcome);
    };
    assert!(file.ends_with("dump.rdb"), "{file:?}");
    assert!(
        newer.contains("appendonlydir") && newer.contains("damaged"),
        "{newer}"
    );
    assert!(
        next.contains("fix <dest>") && next.contains("allow_stale"),
        "{next}"
    );
    assert!(matches!(&s.set_aside[..], [Reason::TruncatedAof { .. }]));
    assert_eq!(plan.databases[0].status, DbStatus::MissingFiles);
    assert!(
        reason(s).to_string().contains("older than"),
        "{}",
        reason(s)
    );

    let db = &w.cluster.databases[&3];
    let allowed = plan_db_with(&w.cluster, db, Some(10), "7.0.15", &fake_check, false, true);
    let s = allowed.shard_plans.iter().find(|s| s.shard == 4).unwrap();
    assert_eq!(source(s).kind, SourceKind::Rdb);
    assert_eq!(allowed.status, DbStatus::Ready);
}

#[test]
fn a_replica_copy_stands_in_for_a_bad_master_older_than_it() {
    let w = World::new();
    w.file(1, 3, 4, "dump.rdb", "verdict=corrupt", 20);
    w.file(2, 3, 5, "dump.rdb", "keys=9", 10);
    w.identity(2, 3, 5, CLUSTER_ID);
    let plan = w.plan();
    let s = shard(&plan, 3, 4);
    assert_eq!((source(s).from_shard, source(s).keys), (5, 9));
    assert!(matches!(&s.set_aside[..], [Reason::Corrupted { .. }]));
}

#[test]
fn a_replica_copy_older_than_its_damaged_master_is_stale() {
    // A replica's first sync (empty) beside its master's truncated RDB written after.
    let w = World::new();
    w.file(1, 3, 4, "dump.rdb", "verdict=corrupt", 10);
    w.file(2, 3, 5, "dump.rdb", "keys=0", 20);
    w.identity(2, 3, 5, CLUSTER_ID);
    let plan = w.plan();
    let s = shard(&plan, 3, 4);
    let Reason::Stale { file, next, .. } = reason(s) else {
        panic!("expected stale, got {:?}", s.outcome);
    };
    assert!(file.starts_with(w.dir(2, 3, 5)), "{file:?}");
    assert!(
        next.contains("repair it") && next.contains("allow_stale"),
        "{next}"
    );
    assert!(matches!(&s.set_aside[..], [Reason::Corrupted { .. }]));
}

#[test]
fn the_fresher_replica_copy_wins_and_ties_go_to_the_master() {
    let w = World::new();
    w.file(1, 3, 4, "dump.rdb", "keys=5", 100);
    w.file(2, 3, 5, "dump.rdb", "keys=6", 10);
    assert_eq!(source(shard(&w.plan(), 3, 4)).from_shard, 5);
    w.file(1, 3, 4, "dump.rdb", "keys=5", 10);
    assert_eq!(source(shard(&w.plan(), 3, 4)).from_shard, 4);
}

#[test]
fn absences_are_told_apart_from_refusals() {
    let mut w = World::new();
    let plan = w.plan();
    let cache = shard(&plan, 3, 4);
    assert!(matches!(reason(cache), Reason::LocationNotFound { .. }));
    let db = &plan.databases[0];
    assert_eq!(db.status, DbStatus::MissingFiles);
    assert!(db.blocking().is_empty());
    assert_eq!(db.empty_masters(), vec![4]);

    fs::create_dir_all(w.dir(1, 6, 7)).unwrap();
    assert!(matches!(
        reason(shard(&w.plan(), 6, 7)),
        Reason::FileMissing { .. }
    ));

    fs::remove_dir_all(w.root.join("old1")).unwrap();
    let plan = w.plan();
    assert!(matches!(
        reason(shard(&plan, 6, 7)),
        Reason::RecoveryPathNotFound { .. }
    ));
    assert!(!plan.databases[1].blocking().is_empty());

    w.cluster.nodes.get_mut(&1).unwrap().recovery_path = None;
    let text = reason(shard(&w.plan(), 6, 7)).to_string();
    assert!(text.contains("node:1 has no recovery path"), "{text}");
}

#[test]
fn foreign_and_misplaced_files_are_refused() {
    let w = World::new();
    w.file(1, 6, 7, "dump.rdb", "keys=1", 10);
    w.identity(1, 6, 7, 999);
    w.file(1, 6, 8, "dump.rdb", "keys=1", 10);
    w.identity(1, 3, 4, CLUSTER_ID);
    // db:3's identity put where db:6's redis:8 should be.
    fs::copy(
        w.dir(1, 3, 4).join(SHARD_IDENTITY_FILE),
        w.dir(1, 6, 8).join(SHARD_IDENTITY_FILE),
    )
    .unwrap();
    let plan = w.plan();
    let r = reason(shard(&plan, 6, 7)).to_string();
    assert!(
        r.starts_with("foreign:") && r.contains("cluster_id 999"),
        "{r}"
    );
    let r = reason(shard(&plan, 6, 8)).to_string();
    assert!(r.contains("names db:3 redis:4"), "{r}");
    // A damaged identity names nobody else: the directory names the shard (as when it
    // has none), its files are judged as any copy's, and the plan says so.
    fs::write(
        w.dir(1, 6, 8).join(SHARD_IDENTITY_FILE),
        "{\n  \"cluster_id\": x",
    )
    .unwrap();
    let plan = w.plan();
    let s8 = shard(&plan, 6, 8);
    assert_eq!(source(s8).path, w.dir(1, 6, 8).join("dump.rdb"));
    assert_eq!(
        s8.notes,
        [format!(
            "the identity file `{}` is damaged (expected value at line 2 column 17): the files beside it are taken as redis:8's by their directory",
            w.dir(1, 6, 8).join(SHARD_IDENTITY_FILE).display()
        )]
    );
}

/// A master whose identity file is damaged (cut short by the crash) beside its own files:
/// they are chosen by the same rules as any master's, against its replica's copy, the
/// fresher winning, and the plan says what it chose and why the identity was passed over.
#[test]
fn a_master_with_a_damaged_identity_competes_with_its_replica() {
    let w = World::new();
    w.identity(1, 3, 4, CLUSTER_ID);
    w.identity(2, 3, 5, CLUSTER_ID);
    let file = w.dir(1, 3, 4).join(SHARD_IDENTITY_FILE);
    let text = fs::read(&file).unwrap();
    fs::write(&file, &text[..text.len() / 2]).unwrap();
    w.file(1, 3, 4, "dump.rdb", "keys=9", 10);
    w.file(2, 3, 5, "dump.rdb", "keys=7", 100);
    let plan = w.plan();
    let s4 = shard(&plan, 3, 4);
    assert_eq!(source(s4).path, w.dir(1, 3, 4).join("dump.rdb"));
    assert_eq!(source(s4).keys, 9);
    assert!(
        s4.notes[0].contains("is damaged") && s4.notes[0].contains("taken as redis:4's"),
        "{:?}",
        s4.notes
    );
    // Older than the replica's copy: the replica's wins, as for any master.
    w.file(1, 3, 4, "dump.rdb", "keys=9", 1000);
    let plan = w.plan();
    assert_eq!(source(shard(&plan, 3, 4)).from_shard, 5);
}

#[test]
fn too_new_files_and_stray_keys_are_refused() {
    let w = World::new();
    w.file(1, 6, 7, "dump.rdb", "keys=1 v=11", 10);
    w.file(1, 6, 8, "dump.rdb", "keys=3 outside=2", 10);
    w.file(1, 3, 4, "dump.rdb", "verdict=unsupported v=13", 10);
    let plan = w.plan();
    let r = reason(shard(&plan, 6, 7)).to_string();
    assert!(
        r.contains("RDB version 11, 7.0.15 loads up to 10; `replay` can write"),
        "{r}"
    );
    assert!(matches!(
        reason(shard(&plan, 6, 8)),
        Reason::KeysOutsideSlots { count: 2, .. }
    ));
    assert!(matches!(
        reason(shard(&plan, 3, 4)),
        Reason::Incompatible {
            rdb_version: 13,
            ..
        }
    ));
    let blocking: Vec<usize> = plan.databases.iter().map(|d| d.blocking().len()).collect();
    assert_eq!(blocking, vec![1, 2]);
}

/// A file holding a damaged value (which a load does not look inside) is a source, the
/// damage carried to the recovery line; but not one to replay, which decodes every value.
#[test]
fn damaged_values_load_but_are_not_replayed() {
    let w = World::new();
    w.file(1, 6, 7, "dump.rdb", "keys=1 damaged=h", 10);
    w.file(1, 6, 8, "dump.rdb", "keys=1 v=11 damaged=h", 10);
    let db = &w.cluster.databases[&6];
    let plan = plan_db_with(&w.cluster, db, Some(10), "7.0.15", &fake_check, true, false);
    let loaded = plan.shard_plans.iter().find(|s| s.shard == 7).unwrap();
    assert_eq!(
        source(loaded).damaged_values,
        ["`h` in database 0 at offset 21"]
    );
    let replayed = plan.shard_plans.iter().find(|s| s.shard == 8).unwrap();
    let r = reason(replayed).to_string();
    assert!(
        r.contains("whole enough to replay") && r.contains("`h`"),
        "{r}"
    );
}

#[test]
fn active_databases_are_not_planned() {
    let mut w = World::new();
    w.cluster.databases.get_mut(&3).unwrap().state = DbState::Active;
    let plan = w.plan();
    assert_eq!(
        plan.databases.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![6]
    );
}

#[test]
fn ages_read_like_an_operator_says_them() {
    assert_eq!(format_age(42), "42s");
    assert_eq!(format_age(600), "10m");
    assert_eq!(format_age(3 * 3600 + 20 * 60), "3h 20m");
    assert_eq!(format_age(2 * 86400 + 4 * 3600), "2d 4h");
}

/// Set in the child run of [`unreadable_files_are_named_as_permission_denied`].
const AS_NOBODY_ROOT: &str = "LAZARUS_TEST_PERMISSION_ROOT";

#[test]
fn unreadable_files_are_named_as_permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    if let Some(root) = std::env::var_os(AS_NOBODY_ROOT) {
        // The child, as `nobody`: the tree is root's, with an owner-only dump.rdb and an
        // owner-only shard directory.
        let plan = plan_all(
            &cluster_at(Path::new(&root)),
            Some(10),
            "7.0.15",
            &fake_check,
        );
        let r = reason(shard(&plan, 3, 4));
        assert!(matches!(r, Reason::PermissionDenied { .. }), "{r}");
        assert!(r.to_string().starts_with("permission denied: `"), "{r}");
        let r = reason(shard(&plan, 6, 7));
        assert!(matches!(r, Reason::PermissionDenied { .. }), "{r}");
        assert!(!plan.databases[1].blocking().is_empty());
        return;
    }
    let w = World::new();
    w.file(1, 3, 4, "dump.rdb", "keys=5", 10);
    fs::set_permissions(
        w.dir(1, 3, 4).join("dump.rdb"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    w.file(1, 6, 7, "dump.rdb", "keys=5", 10);
    fs::set_permissions(w.dir(1, 6, 7), fs::Permissions::from_mode(0o700)).unwrap();
    if unsafe { libc::geteuid() } != 0 {
        // Not root: the mode bits already apply to this process.
        let plan = w.plan();
        assert!(matches!(
            reason(shard(&plan, 3, 4)),
            Reason::PermissionDenied { .. }
        ));
        return;
    }
    // Root reads whatever the mode bits say: check again as `nobody`, whose reads they do
    // refuse, by running this same test in a child process.
    let mut walk = vec![w.root.clone()];
    while let Some(dir) = walk.pop() {
        if dir == w.dir(1, 6, 7) {
            continue;
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        walk.extend(
            fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir()),
        );
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "recovery::plan::tests::unreadable_files_are_named_as_permission_denied",
        ])
        .env(AS_NOBODY_ROOT, &w.root)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "as nobody:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
}

/// The first bytes of an RDB that says it was written at `ctime` (seconds).
fn rdb_head(ctime: u32) -> Vec<u8> {
    let mut b = b"REDIS0011".to_vec();
    b.extend([0xfa, 9]);
    b.extend(b"redis-ver");
    b.extend([6]);
    b.extend(b"7.0.15");
    b.extend([0xfa, 10]);
    b.extend(b"redis-bits");
    b.extend([0xc0, 64]);
    b.extend([0xfa, 5]);
    b.extend(b"ctime");
    b.push(0xc2);
    b.extend(ctime.to_le_bytes());
    b.extend([0xfe, 0, 0xff]);
    b
}

#[test]
fn an_rdb_is_dated_by_its_own_ctime_as_validation_dates_it() {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    assert_eq!(
        crate::persist::rdb_created_in_head(&rdb_head(now)),
        Some(i64::from(now))
    );
    assert_eq!(
        crate::persist::rdb_created_in_head(b"REDIS0011\xfe\x00"),
        None
    );
    assert_eq!(crate::persist::rdb_created_in_head(b"not an rdb"), None);

    // A save that began 100 s ago and ended 5 s ago, after the AOF's last write 50 s
    // ago: the AOF is the fresher copy (its writes came after the snapshot's point in
    // time), as validation says; the files' times alone would pick the RDB and make
    // recovery load twice.
    let w = World::new();
    let rdb = w.file(1, 3, 4, "dump.rdb", "", 5);
    fs::write(&rdb, rdb_head(now - 100)).unwrap();
    fs::File::options()
        .write(true)
        .open(&rdb)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(5))
        .unwrap();
    w.file(1, 3, 4, "appendonlydir/appendonly.aof.1.incr.aof", "", 50);
    let db = &w.cluster.databases[&3];
    let picks = likely_sources(&Disk::local(), &w.cluster, db);
    assert_eq!(picks[&4].0, SourceKind::AofDir, "{picks:?}");
    // Saved after the AOF's last write: the RDB.
    fs::write(&rdb, rdb_head(now - 10)).unwrap();
    let picks = likely_sources(&Disk::local(), &w.cluster, db);
    assert_eq!(picks[&4].0, SourceKind::Rdb, "{picks:?}");
}

fn set_mtime(path: &Path, at: SystemTime) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(at).unwrap();
}

/// A replica writes what its master wrote a moment later: its copy a few ms newer holds
/// nothing more, whether it lies in the node's persistent path (an earlier life) or is
/// a damaged copy beside the master's in the recovery path. A second or more newer, it
/// does.
#[test]
fn a_replicas_copy_moments_after_its_master_holds_nothing_more() {
    let w = World::new();
    let t0 = SystemTime::now() - Duration::from_secs(60);
    let master = w.file(1, 3, 4, "dump.rdb", "keys=5", 60);
    set_mtime(&master, t0);
    let live = shard_dir_under(&w.root.join("new2"), 3, 5).join("dump.rdb");
    fs::create_dir_all(live.parent().unwrap()).unwrap();
    fs::write(&live, "keys=5").unwrap();
    set_mtime(&live, t0 + Duration::from_millis(3));
    assert_eq!(source(shard(&w.plan(), 3, 4)).from_shard, 4);

    set_mtime(&live, t0 + Duration::from_millis(1500));
    let plan = w.plan();
    let Reason::Stale { newer, .. } = reason(shard(&plan, 3, 4)) else {
        panic!("expected stale, got {:?}", shard(&plan, 3, 4).outcome);
    };
    assert!(newer.contains("new2"), "{newer}");
    fs::remove_file(&live).unwrap();

    // The replica's copy in the recovery path, damaged, 3 ms after the master's.
    w.identity(2, 3, 5, CLUSTER_ID);
    let damaged = w.file(2, 3, 5, "dump.rdb", "verdict=corrupt", 60);
    set_mtime(&damaged, t0 + Duration::from_millis(3));
    let plan = w.plan();
    let s = shard(&plan, 3, 4);
    assert_eq!(source(s).from_shard, 4);
    assert!(matches!(&s.set_aside[..], [Reason::Corrupted { .. }]));
    set_mtime(&damaged, t0 + Duration::from_millis(1500));
    assert!(matches!(
        reason(shard(&w.plan(), 3, 4)),
        Reason::Stale { .. }
    ));
}

/// A forced restore takes a safety backup of the data it replaces, then loads the run's
/// file as `dump.rdb`, whose own `ctime` is the older run's. That file is what the
/// database holds after the restore: a run taken before the load (the safety backup) is
/// no newer data, while one taken after it still is.
#[test]
fn a_backup_run_before_the_last_load_does_not_make_the_loaded_file_stale() {
    let mut w = World::new();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    let restored = w.file(
        1,
        3,
        4,
        "dump.rdb",
        &format!("keys=5 created={}", now.as_secs() - 100),
        10,
    );
    let loaded_ns = {
        let t = fs::metadata(&restored).unwrap().modified().unwrap();
        t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as i64
    };
    let run = |id: &str, ago_s: u64| crate::ccs::BackupRun {
        id: id.into(),
        task: None,
        db: 3,
        db_name: "cache".into(),
        path: w.root.join("repo"),
        started: (now.as_millis() as i64) - (ago_s as i64) * 1000,
        took_ms: Some(5),
        status: crate::ccs::RunStatus::Succeeded,
        reason: None,
        keys: 9,
        bytes: 100,
        server_version: None,
        pause_us: None,
        safety_for: Some("undo".into()),
    };
    w.cluster.backups.runs.push(run("20261207-000000-1", 50));
    let db = w.cluster.databases.get_mut(&3).unwrap();
    db.shards[0].loaded_ns = Some(loaded_ns);
    assert_eq!(source(shard(&w.plan(), 3, 4)).keys, 5);

    // Without the record of the load, the run is later data than the file's cut.
    let db = w.cluster.databases.get_mut(&3).unwrap();
    db.shards[0].loaded_ns = None;
    let plan = w.plan();
    let Reason::Stale { newer, .. } = reason(shard(&plan, 3, 4)) else {
        panic!("expected stale, got {:?}", shard(&plan, 3, 4).outcome);
    };
    assert!(newer.contains("20261207-000000-1"), "{newer}");

    // A run taken after the load holds writes the file lacks.
    let db = w.cluster.databases.get_mut(&3).unwrap();
    db.shards[0].loaded_ns = Some(loaded_ns);
    w.cluster.backups.runs.push(run("20261207-000000-2", 5));
    let plan = w.plan();
    let Reason::Stale { newer, .. } = reason(shard(&plan, 3, 4)) else {
        panic!("expected stale, got {:?}", shard(&plan, 3, 4).outcome);
    };
    assert!(newer.contains("20261207-000000-2"), "{newer}");
}
