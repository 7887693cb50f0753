//! Hostile input to the configuration store: extreme ids, unsound documents, files that
//! are not documents. Each is refused promptly with the fault named, and nothing changes.

mod common;

use common::Lazarus;

/// A cluster made in one home, its node backup given to `cluster recover` in another.
fn backup_of_a_new_cluster() -> (Lazarus, std::path::PathBuf) {
    let old = Lazarus::new();
    old.run("cluster create name prod").ok();
    let backup = old.path("nodes/1/ccs/ccs.json");
    assert!(backup.is_file());
    (old, backup)
}

#[test]
fn an_alloc_id_without_room_is_refused_naming_the_limit() {
    let (_old, backup) = backup_of_a_new_cluster();
    let lz = Lazarus::new();
    let line = format!(
        "cluster recover filename {} alloc_id 18446744073709551614",
        backup.display()
    );
    lz.run(&line)
        .fails(1)
        .stderr_has("leaves no room: ids stay at or below 9007199254740992 (2^53");
    assert!(!lz.path("ccs.json").exists(), "nothing stored");
    // At the limit itself there is no room either: the next id would be out of range.
    let line = format!(
        "cluster recover filename {} alloc_id 9007199254740993",
        backup.display()
    );
    lz.run(&line).fails(1).stderr_has("leaves no room");
}

#[test]
fn a_hostile_backup_is_refused_with_the_path_of_its_fault() {
    let (old, backup) = backup_of_a_new_cluster();
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&backup).unwrap()).unwrap();
    type Breaker = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(Breaker, &str)> = vec![
        (
            Box::new(|d| d["generation"] = serde_json::json!(u64::MAX)),
            "generation: 18446744073709551615 is above the limit",
        ),
        (
            Box::new(|d| d["nodes"]["1"]["addr"] = "not-an-ip".into()),
            "nodes[1].addr: `not-an-ip` is not an IP address",
        ),
        (
            Box::new(|d| d["nodes"]["1"]["persistent_path"] = "relative/dir".into()),
            "nodes[1].persistent_path: `relative/dir` is not absolute",
        ),
    ];
    let hostile = old.path("hostile.json");
    for (breaker, expected) in &cases {
        let mut d = doc.clone();
        breaker(&mut d);
        std::fs::write(&hostile, serde_json::to_vec(&d).unwrap()).unwrap();
        let lz = Lazarus::new();
        lz.run(&format!("cluster recover filename {}", hostile.display()))
            .fails(1)
            .stderr_has(expected);
        assert!(!lz.path("ccs.json").exists(), "nothing stored");
    }
    // The home's own document is held to the same rules.
    doc["local_node"] = serde_json::json!(7);
    let lz = Lazarus::new();
    std::fs::write(lz.path("ccs.json"), serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = lz.cmd(["--json", "info", "cluster"]).run().fails(1);
    let json = out.json().pop().expect("a JSON document");
    assert_eq!(json["kind"], "damaged", "{json}");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("local_node: node:7 is not among the nodes"),
        "{json}"
    );
}

#[test]
fn files_that_are_not_documents_are_refused_before_reading() {
    let lz = Lazarus::new();
    let fifo = lz.path("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    lz.run(&format!("cluster recover filename {}", fifo.display()))
        .fails(1)
        .stderr_has("not a regular file: a FIFO");
    lz.run(&format!("check file {}", fifo.display()))
        .fails(1)
        .stdout_has("not a regular file: a FIFO");
    lz.run("cluster recover filename /dev/zero")
        .fails(1)
        .stderr_has("not a regular file: a character device");
    let sparse = lz.path("sparse.json");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(10 << 30)
        .unwrap();
    lz.run(&format!("cluster recover filename {}", sparse.display()))
        .fails(1)
        .stderr_has("is not a CCS document (at most 64 MiB)");
    assert!(!lz.path("ccs.json").exists());
}

/// The one shard directory's files of a single-shard database.
fn shard_file(lz: &Lazarus, name: &str) -> std::path::PathBuf {
    let dbs = lz.path("n1/redis");
    let db = std::fs::read_dir(&dbs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let shard = std::fs::read_dir(db)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    shard.join(name)
}

#[test]
fn a_server_binary_that_never_returns_is_named_not_waited_for() {
    use std::os::unix::fs::PermissionsExt;
    let lz = Lazarus::new();
    let _guard = common::procs::ProcessGuard::new(lz.home());
    lz.create_cluster("t");
    // Answers `--version` like redis-server, then never daemonizes nor answers.
    let fake = lz.path("redis-server");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'Redis server v=7.0.15'; exit 0; }\nexec sleep 600\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let started = std::time::Instant::now();
    lz.cmd([
        "--redis-server",
        fake.to_str().unwrap(),
        "create",
        "db",
        "x",
    ])
    .run()
    .fails(1)
    .stderr_has("did not return within 10s (killed)");
    assert!(started.elapsed() < std::time::Duration::from_secs(40));
}

#[test]
fn a_rewritten_redis_conf_stays_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let lz = Lazarus::new();
    let _guard = common::procs::ProcessGuard::new(lz.home());
    lz.create_cluster("t");
    lz.run("create db s password hunter2secret").ok();
    let port = lz.ccs()["databases"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()["shards"][0]["port"]
        .as_u64()
        .unwrap();
    // Recovery (sync source, persistence) makes the server rewrite its own redis.conf.
    let out = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &port.to_string(),
            "--no-auth-warning",
            "-a",
            "hunter2secret",
        ])
        .args(["CONFIG", "REWRITE"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("OK"),
        "{out:?}"
    );
    let conf = shard_file(&lz, "redis.conf");
    let mode = std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", conf.display());
    // Committed: the identity file lost the `creating` mark its create wrote.
    let identity = std::fs::read_to_string(shard_file(&lz, "lazarus-shard.json")).unwrap();
    assert!(!identity.contains("creating"), "{identity}");
    lz.run("delete db s").ok();
}

/// A `create db` whose configuration cannot be saved takes back all it made: shards,
/// directories, and writes no tombstone for the database that never was.
#[test]
fn a_backup_that_cannot_be_written_leaves_no_database_behind() {
    let lz = Lazarus::new();
    let _guard = common::procs::ProcessGuard::new(lz.home());
    lz.create_cluster("t");
    // A second node whose `ccs/` cannot be made (as on a full or read-only disk).
    let mut doc = lz.ccs();
    let mut n2 = doc["nodes"]["1"].clone();
    n2["id"] = 2.into();
    n2["persistent_path"] = lz.path("n2").to_str().unwrap().into();
    doc["nodes"]["2"] = n2;
    doc["alloc_id"] = 3.into();
    std::fs::write(lz.path("ccs.json"), doc.to_string()).unwrap();
    std::fs::create_dir_all(lz.path("n2")).unwrap();
    std::fs::write(lz.path("n2/ccs"), "not a directory").unwrap();
    lz.run("create db x")
        .fails(1)
        .stderr_has("was not saved (every copy is as it was)");
    let after = lz.ccs();
    assert_eq!(after["databases"], serde_json::json!({}), "{after}");
    assert_eq!(after["generation"], doc["generation"], "{after}");
    assert!(
        !lz.path("n1/ccs/ccs.json").exists() || {
            let b: serde_json::Value =
                serde_json::from_slice(&std::fs::read(lz.path("n1/ccs/ccs.json")).unwrap())
                    .unwrap();
            b["databases"] == serde_json::json!({})
        }
    );
    // Nor a tombstone, nor a shard directory: the database never existed. The roll back
    // was a `delete db`, whose tombstone a rebuild would have read as a deleted database.
    let left: Vec<String> = std::fs::read_dir(lz.path("n1/redis"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // Once the disk is back the same name is free.
    std::fs::remove_file(lz.path("n2/ccs")).unwrap();
    lz.run("create db x").ok();
    lz.run("delete db x").ok();
}

/// `delete db` on a configuration that cannot be saved (a node's `ccs/` on a full or
/// read-only disk) is refused before any shard stops: the database stays configured and
/// serving, its identity file unmarked and no tombstone written. It used to stop the
/// shards, mark the identity files `deleted` and write the tombstones, then fail to save:
/// a database still configured, down, and marked for a rebuild to leave out.
#[test]
fn a_delete_that_cannot_be_saved_stops_nothing() {
    let lz = Lazarus::new();
    let _guard = common::procs::ProcessGuard::new(lz.home());
    lz.create_cluster("t");
    lz.run("create db x").ok();
    let before = lz.ccs();
    std::fs::rename(lz.path("n1/ccs"), lz.path("n1/ccs.aside")).unwrap();
    std::fs::write(lz.path("n1/ccs"), "not a directory").unwrap();
    lz.run("delete db x")
        .fails(1)
        .stderr_has("was not saved (every copy is as it was)")
        .stderr_has(lz.path("n1/ccs").to_str().unwrap());
    assert_eq!(lz.ccs()["databases"], before["databases"]);
    lz.run("status databases").ok().stdout_has("active");
    let identity = std::fs::read_to_string(shard_file(&lz, "lazarus-shard.json")).unwrap();
    assert!(!identity.contains("deleted"), "{identity}");
    let redis = lz.path("n1/redis");
    let tombstones: Vec<_> = std::fs::read_dir(&redis)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".deleted.json"))
        .collect();
    assert!(tombstones.is_empty(), "{tombstones:?}");
    // Once the disk is back the delete goes through.
    std::fs::remove_file(lz.path("n1/ccs")).unwrap();
    std::fs::rename(lz.path("n1/ccs.aside"), lz.path("n1/ccs")).unwrap();
    lz.run("delete db x").ok();
}

/// A one-node cluster in `lz`'s home with a snapshot database `x` (db:2, one shard).
fn snapshot_db(lz: &Lazarus) {
    lz.create_cluster("t");
    lz.run("create db x persistence snapshot").ok();
}

/// `redis-cli` against db `x`'s shard on the port the configuration gives it now.
fn cli_x(lz: &Lazarus, args: &[&str]) -> String {
    let port = lz.ccs()["databases"]["2"]["shards"][0]["port"]
        .as_u64()
        .expect("the shard's port");
    common::redis_cli(port, args)
}

/// A snapshot shard that cannot save its data when told to stop (its `dump.rdb` made a
/// directory, so the save's rename fails, as on a full disk) refuses to exit and keeps
/// serving with every write since its last save. `restart db` leaves it running and says
/// why; it used to SIGKILL it after 60 s, losing those writes.
#[test]
fn a_shard_that_cannot_save_on_stop_is_left_running_not_killed() {
    let lz = Lazarus::new();
    let _guard = common::procs::ProcessGuard::new(lz.home());
    snapshot_db(&lz);
    let cli = |args: &[&str]| cli_x(&lz, args);
    assert_eq!(cli(&["SET", "only-in-memory", "1"]), "OK");
    let dump = shard_file(&lz, "dump.rdb");
    let _ = std::fs::remove_file(&dump);
    std::fs::create_dir_all(dump.join("in-the-way")).unwrap();
    lz.run("restart db x")
        .fails(1)
        .stderr_has("refuses to stop: it could not save its data")
        .stderr_has("it was not killed");
    assert_eq!(
        cli(&["GET", "only-in-memory"]),
        "1",
        "the write is still served"
    );
    // Once it can save, the restart goes through with the write.
    std::fs::remove_dir_all(&dump).unwrap();
    lz.run("restart db x").ok();
    assert_eq!(cli(&["GET", "only-in-memory"]), "1");
}

/// A snapshot shard whose save on stop takes longer than the stop's 60 s (a large
/// dataset; here 650 keys of 10 kB at 0.1 s a key, some 65 s) is waited for while the
/// save grows, not killed mid-save: it used to be SIGKILLed at 60 s, losing every write
/// since its last save.
#[test]
fn a_shard_saving_for_longer_than_a_minute_on_stop_is_waited_for() {
    let lz = Lazarus::new();
    let _guard = common::procs::ProcessGuard::new(lz.home());
    snapshot_db(&lz);
    let cli = |args: &[&str]| cli_x(&lz, args);
    cli(&[
        "EVAL",
        "for i = 1, 650 do redis.call('SET', 'k' .. i, string.rep('x', 10000)) end",
        "0",
    ]);
    assert_eq!(cli(&["DBSIZE"]), "650");
    assert_eq!(
        cli(&["CONFIG", "SET", "rdb-key-save-delay", "100000"]),
        "OK"
    );
    lz.run("restart db x").ok();
    assert_eq!(
        cli(&["DBSIZE"]),
        "650",
        "every write saved on stop came back"
    );
}

/// A server whose pidfile cannot be written (its disk full: the write fails, the server
/// runs and serves all the same; here its pidfile is put where no file can be made) is
/// found by the process working in its directory. The start used to wait for a pidfile
/// that never came, to the end of its timeout (an hour in a recovery), the server
/// serving all along.
#[test]
fn a_shard_that_cannot_write_its_pidfile_is_found_running() {
    let lz = Lazarus::new();
    let _guard = common::procs::ProcessGuard::new(lz.home());
    lz.create_cluster("t");
    let wrapper = lz.path("redis-server-without-pidfile");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nexec redis-server \"$@\" --pidfile /nonexistent-dir/redis.pid\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let wrapper = wrapper.to_str().unwrap();
    lz.cmd(["--redis-server", wrapper, "create", "db", "x"])
        .run()
        .ok()
        .stdout_has("Created db:");
    lz.run("status shards").ok().stdout_has("OK");
    lz.cmd(["--redis-server", wrapper, "restart", "db", "x"])
        .run()
        .ok()
        .stdout_has("1 shard running");
    lz.run("delete db x").ok().stdout_has("stopped 1 shard");
}

/// One run of the binary, measured by the kernel: exit code, output, peak resident memory
/// of that one child (`wait4`'s `ru_maxrss`) and wall time.
struct Measured {
    code: i32,
    output: String,
    peak_rss: u64,
    took: std::time::Duration,
}

/// The whole memory bound the issue sets for reading a hostile file.
const RSS_BOUND: u64 = 64 << 20;

/// Runs the binary under `lz`'s home with `args`; killed (and the test failed) past 60 s.
// The child is reaped by `wait4` (which alone reports its own peak memory), not `wait`.
#[allow(clippy::zombie_processes)]
fn run_measured(lz: &Lazarus, args: &[&str]) -> Measured {
    let out = lz.path("measured.out");
    let file = std::fs::File::create(&out).unwrap();
    let started = std::time::Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_lazarus"))
        .arg("--home")
        .arg(lz.home())
        .args(args)
        .env_remove("LAZARUS_HOME")
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("the lazarus binary runs");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own unreaped child; status and usage are valid pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        assert_eq!(r, 0, "wait4: {}", std::io::Error::last_os_error());
        if started.elapsed() > std::time::Duration::from_secs(60) {
            // SAFETY: the child is not reaped yet, so `pid` is still ours.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::wait4(pid, &mut status, 0, &mut usage);
            }
            panic!(
                "lazarus {args:?} still ran after 60 s:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Measured {
        code: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
        output: std::fs::read_to_string(&out).unwrap_or_default(),
        // Linux counts ru_maxrss in KiB.
        peak_rss: usage.ru_maxrss as u64 * 1024,
        took: started.elapsed(),
    }
}

/// A 10 GiB sparse file at `name` under the home, starting with `head`.
fn sparse_file(lz: &Lazarus, name: &str, head: &[u8]) -> std::path::PathBuf {
    use std::io::Write;
    let p = lz.path(name);
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(head).unwrap();
    f.set_len(10 << 30).unwrap();
    p
}

/// `check file` and `cluster recover filename` on 10 GiB sparse files and on a FIFO: a
/// prompt, clear answer in well under 64 MB of memory, whatever the file claims.
#[test]
fn huge_and_endless_files_are_judged_promptly_in_bounded_memory() {
    let lz = Lazarus::new();
    let fifo = lz.path("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // An RDB whose first key's value claims 16 GiB (a 64-bit length), more than the
    // file's 10 GiB: refused before a byte of it is allocated or read.
    let mut rdb = b"REDIS0011\x00\x01k\x81".to_vec();
    rdb.extend_from_slice(&(16u64 << 30).to_be_bytes());
    let rdb = sparse_file(&lz, "dump.rdb", &rdb);
    // An AOF whose first record's value claims 20 GB.
    let aof = sparse_file(
        &lz,
        "appendonly.aof",
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$20000000000\r\n",
    );
    let zeros = sparse_file(&lz, "zeros.rdb", b"");
    // An appendonlydir whose manifest names a FIFO as its base file.
    let dir = lz.path("appendonlydir");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("appendonly.aof.manifest"),
        "file appendonly.aof.1.base.rdb seq 1 type b\n",
    )
    .unwrap();
    let base =
        std::ffi::CString::new(dir.join("appendonly.aof.1.base.rdb").to_str().unwrap()).unwrap();
    // SAFETY: a valid C string path.
    assert_eq!(unsafe { libc::mkfifo(base.as_ptr(), 0o600) }, 0);
    let doc = sparse_file(&lz, "ccs.json.bak", b"{\"name\": \"");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["check".into(), "file".into(), fifo.display().to_string()],
            "not a regular file: a FIFO",
        ),
        (
            vec![
                "cluster".into(),
                "recover".into(),
                "filename".into(),
                fifo.display().to_string(),
            ],
            "not a regular file: a FIFO",
        ),
        (
            vec!["check".into(), "file".into(), rdb.display().to_string()],
            "data of 17179869184 byte(s) at offset 21, but the file ends at 10737418240",
        ),
        (
            vec!["check".into(), "file".into(), aof.display().to_string()],
            "data of 20000000000 byte(s) at offset 34, but the file ends at 10737418240",
        ),
        (
            vec!["check".into(), "file".into(), dir.display().to_string()],
            "named on line 1 to be a regular file, not a FIFO",
        ),
        (
            vec!["check".into(), "file".into(), zeros.display().to_string()],
            "corrupt",
        ),
        (
            vec![
                "cluster".into(),
                "recover".into(),
                "filename".into(),
                doc.display().to_string(),
            ],
            "is not a CCS document (at most 64 MiB)",
        ),
    ];
    for (args, expected) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let m = run_measured(&lz, &args);
        assert_ne!(m.code, 0, "{args:?} passed:\n{}", m.output);
        assert!(
            m.output.contains(expected),
            "{args:?} lacks `{expected}`:\n{}",
            m.output
        );
        assert!(
            m.peak_rss < RSS_BOUND,
            "{args:?} peaked at {} MiB",
            m.peak_rss >> 20
        );
        assert!(
            m.took < std::time::Duration::from_secs(20),
            "{args:?} took {:?}",
            m.took
        );
        eprintln!("{args:?}: {:?}, peak RSS {} KiB", m.took, m.peak_rss >> 10);
    }
    assert!(!lz.path("ccs.json").exists());
}
