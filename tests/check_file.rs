//! End to end: `lazarus check file ...` one-shot and `--json`, and `check file ... fix`.

mod common;
mod persist_support;

use common::Lazarus;
use persist_support::Server;

/// A minimal valid RDB 10: one AUX field, db 0 with one string key, EOF, CRC-64.
fn tiny_rdb() -> Vec<u8> {
    let mut b = b"REDIS0010".to_vec();
    b.extend_from_slice(b"\xfa\x09redis-ver\x067.0.15");
    b.extend_from_slice(b"\xfe\x00\xfb\x01\x00");
    b.extend_from_slice(b"\x00\x03foo\x03bar");
    b.push(0xff);
    let crc = lazarus::persist::crc64(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn check_file_reports_and_json() {
    let lz = Lazarus::new();
    let rdb = lz.path("dump.rdb");
    std::fs::write(&rdb, tiny_rdb()).unwrap();
    lz.run(&format!("check file {}", rdb.display()))
        .ok()
        .stdout_has("verdict")
        .stdout_has("ok")
        .stdout_has("7.0.15")
        .stdout_has("db0=1");
    let docs = lz
        .cmd([
            "--json",
            "check",
            "file",
            &rdb.display().to_string(),
            "slots",
            "0-100",
        ])
        .run()
        .fails(1)
        .json();
    let r = &docs[0]["result"];
    // `foo` hashes to slot 12182: outside keys make the verdict, and fail the command.
    assert_eq!(r["verdict"], "keys_outside_slots");
    assert_eq!(r["keys"], 1);
    assert_eq!(r["rdb_version"], 10);
    assert_eq!(r["keys_outside_slots"], 1);
    lz.run(&format!("check file {} slots 12000-12999", rdb.display()))
        .ok()
        .stdout_has("ok");
    lz.run(&format!("check file {} slots 0-100", rdb.display()))
        .fails(1)
        .stdout_has("keys outside slots")
        .stderr_has("holds 1 key(s) outside the slots checked");

    let mut bad = tiny_rdb();
    let n = bad.len();
    bad[n - 1] ^= 1;
    std::fs::write(&rdb, &bad).unwrap();
    // A bad file fails the command, as redis-check-rdb does, after the whole report.
    lz.run(&format!("check file {}", rdb.display()))
        .fails(1)
        .stdout_has("corrupt")
        .stdout_has("CRC-64")
        .stdout_has("db0=1")
        .stderr_has("is corrupt");
    let failed = lz
        .cmd(["--json", "check", "file", &rdb.display().to_string()])
        .run()
        .fails(1);
    let docs = failed.json();
    assert_eq!(docs[0]["ok"], false);
    assert_eq!(docs[0]["result"]["verdict"], "corrupt");
    assert!(docs[0]["error"].as_str().unwrap().contains("is corrupt"));
    // A script stops at a bad file, unless told to go on.
    let script = format!(
        "check file {}\ncheck file {}\n",
        rdb.display(),
        lz.path("missing.rdb").display()
    );
    lz.script(&script)
        .fails(1)
        .stdout_has("corrupt")
        .stderr_lacks("no such file");
    lz.cmd(["--continue-on-error"])
        .stdin(&script)
        .run()
        .fails(1)
        .stdout_has("corrupt")
        .stderr_has("no such file");
}

/// Issue 9 item 13: what is not persistence is said so, with no report table.
#[test]
fn not_a_persistence_file_or_no_such_file() {
    let lz = Lazarus::new();
    let dir = lz.path("somedir");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "x").unwrap();
    let conf = lz.path("redis.conf");
    std::fs::write(&conf, "# Redis configuration\nport 6379\n").unwrap();
    for (path, says) in [
        (dir.clone(), "is not a persistence file: a directory"),
        (conf.clone(), "is not a persistence file: it starts with"),
    ] {
        lz.run(&format!("check file {}", path.display()))
            .fails(1)
            .stderr_has(&format!("`{}` {says}", path.display()))
            .stdout_lacks("verdict");
    }
    let nope = lz.path("nope.rdb");
    lz.run(&format!("check file {}", nope.display()))
        .fails(1)
        .stderr_has(&format!("no such file `{}`", nope.display()))
        .stdout_lacks("verdict");
}

#[test]
fn fix_writes_a_truncated_aofs_good_prefix_elsewhere() {
    let lz = Lazarus::new();
    let aof = lz.path("appendonly.aof");
    let good = b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
    let mut cut = good.to_vec();
    cut.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$5\r\nab");
    std::fs::write(&aof, &cut).unwrap();
    lz.run(&format!("check file {}", aof.display()))
        .fails(1)
        .stdout_has("truncated")
        .stdout_has(&format!("{} bytes", good.len()));
    // The next step is named, and is a hint for scripts.
    let fix = format!("check file {} fix <dest>", aof.display());
    let doc = lz
        .cmd(["--json", "check", "file", aof.to_str().unwrap()])
        .run()
        .fails(1)
        .stderr_has(&format!("is truncated: `{fix}` keeps its complete records"))
        .json();
    assert_eq!(doc[0]["hints"], serde_json::json!([fix]));
    let dest = lz.path("fixed.aof");
    lz.run(&format!(
        "check file {} fix {}",
        aof.display(),
        dest.display()
    ))
    .ok()
    .stdout_has(&format!("kept {} of {} bytes", good.len(), cut.len()));
    assert_eq!(std::fs::read(&dest).unwrap(), good);
    assert_eq!(std::fs::read(&aof).unwrap(), cut);
    lz.run(&format!(
        "check file {} fix {}",
        aof.display(),
        dest.display()
    ))
    .fails(1)
    .stderr_has("already exists");
    lz.run(&format!(
        "check file {} fix {}",
        dest.display(),
        lz.path("again.aof").display()
    ))
    .fails(1)
    .stderr_has("is ok: nothing to fix");
    lz.run(&format!(
        "check file {} fix {}",
        aof.display(),
        aof.display()
    ))
    .fails(1)
    .stderr_has("already exists");
}

/// `fix` writes the operator's data owner only, whatever the umask: a file 0600 and a
/// multi-part AOF's directory 0700 (its files 0600), or the original's own mode where
/// that is stricter (a 0400 original gives a 0400 copy).
#[test]
fn fix_writes_its_copy_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let set = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    let lz = Lazarus::new();
    let good = b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
    let mut cut = good.to_vec();
    cut.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$5\r\nab");

    // A single-file AOF, 0600 and then 0400.
    for (original, copy) in [(0o600, 0o600), (0o644, 0o600), (0o400, 0o400)] {
        let aof = lz.path(&format!("single-{original:o}.aof"));
        std::fs::write(&aof, &cut).unwrap();
        set(&aof, original);
        let dest = lz.path(&format!("fixed-{original:o}.aof"));
        lz.run(&format!(
            "check file {} fix {}",
            aof.display(),
            dest.display()
        ))
        .ok();
        assert_eq!(std::fs::read(&dest).unwrap(), good);
        assert_eq!(mode(&dest), copy, "copy of a {original:o} original");
        assert_eq!(mode(&aof), original, "the original keeps its mode");
    }

    // A multi-part AOF directory, 0700 with 0600 parts.
    let dir = lz.path("appendonlydir");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("appendonly.aof.manifest"),
        "file appendonly.aof.1.base.aof seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n",
    )
    .unwrap();
    std::fs::write(dir.join("appendonly.aof.1.base.aof"), good).unwrap();
    std::fs::write(dir.join("appendonly.aof.1.incr.aof"), &cut).unwrap();
    for f in std::fs::read_dir(&dir).unwrap() {
        set(&f.unwrap().path(), 0o600);
    }
    set(&dir, 0o700);
    let dest = lz.path("fixed-dir");
    lz.run(&format!(
        "check file {} fix {}",
        dir.display(),
        dest.display()
    ))
    .ok()
    .stdout_has(&format!("kept {} of {} bytes", good.len(), cut.len()));
    assert_eq!(mode(&dest), 0o700);
    let parts: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(parts.len(), 3, "{parts:?}");
    for part in parts {
        assert_eq!(mode(&part), 0o600, "{}", part.display());
    }
    assert_eq!(
        std::fs::read(dest.join("appendonly.aof.1.incr.aof")).unwrap(),
        good
    );
}

/// `check file` names the engine and version that wrote a file, in text and JSON: an RDB
/// and an AOF directory (its RDB base) from redis-server, and from valkey-server when
/// there is one (Valkey writes `redis-ver` 7.2.4 beside its own `valkey-ver`).
#[test]
fn check_file_names_the_engine_that_wrote_the_file() {
    let lz = Lazarus::new();
    let mut engines = vec![("redis", None)];
    match persist_support::valkey_server() {
        Some(v) => engines.push(("valkey", Some(v))),
        None => eprintln!("engine valkey: not tested (no valkey-server)"),
    }
    for (engine, binary) in engines {
        eprintln!("engine {engine}");
        let config = [("appendonly", "yes"), ("appendfsync", "always")];
        let dir = tempfile::tempdir().unwrap();
        let mut s = match &binary {
            Some(b) => Server::start_with(b, dir, &config),
            None => Server::start_in(dir, &config),
        };
        s.cmd(&["SET", "k", "v"]);
        s.cmd(&["SAVE"]);
        s.cmd(&["BGREWRITEAOF"]);
        s.wait_persistence();
        for file in [s.path().join("dump.rdb"), s.path().join("appendonlydir")] {
            let shown = file.display().to_string();
            let out = lz.run(&format!("check file {shown}")).ok();
            let line = out
                .stdout
                .lines()
                .find(|l| l.contains("written by"))
                .unwrap_or_else(|| panic!("{}", out.stdout))
                .to_string();
            let docs = lz
                .cmd(["--json", "check", "file", &shown])
                .run()
                .ok()
                .json();
            let r = &docs[0]["result"];
            assert_eq!(r["engine"], engine, "{shown}: {r}");
            let version = r["server_version"].as_str().unwrap();
            assert!(
                line.contains(&format!("{engine} {version}")),
                "{shown}: {line}"
            );
            let major = if engine == "valkey" { "8." } else { "7." };
            assert!(version.starts_with(major), "{shown}: {version}");
        }
    }
}

/// The time `check file` shows says what it is: an RDB's `ctime` (when it was saved) is
/// `created`; an `appendonlydir/` written to after its base is `last written`, the
/// modification time of its newest part, named; never an incr file's mtime as `created`.
#[test]
fn check_file_names_what_its_time_is() {
    let lz = Lazarus::new();
    let config = [("appendonly", "yes"), ("appendfsync", "always")];
    let mut s = Server::start_in(tempfile::tempdir().unwrap(), &config);
    s.cmd(&["SET", "k", "v"]);
    s.cmd(&["SAVE"]);
    s.cmd(&["BGREWRITEAOF"]);
    s.wait_persistence();
    // A second later, a write only the incr file holds.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    s.cmd(&["SET", "later", "v"]);
    let row = |shown: &str, label: &str| -> String {
        let out = lz.run(&format!("check file {shown}")).ok();
        out.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` row: {}", out.stdout))
            .to_string()
    };
    let json = |shown: &str| {
        lz.cmd(["--json", "check", "file", shown]).run().ok().json()[0]["result"].clone()
    };
    let rdb = s.path().join("dump.rdb").display().to_string();
    assert!(
        row(&rdb, "created").ends_with(", ctime)"),
        "{}",
        row(&rdb, "created")
    );
    assert_eq!(json(&rdb)["created_from"], "ctime");
    // A time a person reads, as `backup` and `restore` show theirs (the JSON keeps unix
    // seconds): `created  2026-12-07 05:20:41Z (3 s ago, ctime)`.
    let created = json(&rdb)["created"].as_i64().unwrap();
    let shown = lazarus::backup::format_time(created * 1000);
    assert!(
        row(&rdb, "created").contains(&format!("  {shown} (")),
        "{}",
        row(&rdb, "created")
    );
    let dir = s.path().join("appendonlydir").display().to_string();
    let line = row(&dir, "last written");
    assert!(
        line.contains("mtime of `") && line.contains(".incr.aof`)"),
        "{line}"
    );
    let r = json(&dir);
    let from = r["created_from"].as_str().unwrap();
    assert!(
        from.starts_with("mtime of `") && from.ends_with(".incr.aof`"),
        "{r}"
    );
}
