//! End to end: restore tasks on real redis-server processes through the real binary:
//! backup, accident, restore; verify's refusals; a shard that cannot start and a shell
//! killed mid-restore; a deleted database recreated from its backup.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::data::{contents, diff, write_sample, Contents};
use common::engine::{engines, Engine};
use common::procs::ProcessGuard;
use common::world::{config, test_cluster};
use common::{Lazarus, World};
use lazarus::backup::Manifest;
use lazarus::ccs::{DbConfig, Persistence, Store};
use lazarus::db::shard_addr;

fn with_password(mut c: DbConfig, pw: &str) -> DbConfig {
    c.password = Some(pw.into());
    c
}

/// What a database's masters hold, through the password.
fn picture(rt: &tokio::runtime::Runtime, lz: &Lazarus, name: &str) -> Contents {
    let c = Store::new(lz.home().to_path_buf()).load().unwrap().unwrap();
    let db = c.database_by_name(name).unwrap();
    let mut all = Contents::new();
    for m in db.masters() {
        let a = shard_addr(&c, db, m.id).unwrap();
        let port = a.port;
        if a.password.is_none() {
            all.extend(rt.block_on(contents("127.0.0.1", port)));
            continue;
        }
        all.extend(rt.block_on(async {
            // The test helpers connect without a password: lift it for the reading.
            let mut con = redis::Client::open(format!(
                "redis://:{}@127.0.0.1:{port}",
                a.password.clone().unwrap_or_default()
            ))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("requirepass")
                .arg("")
                .query_async(&mut con)
                .await
                .unwrap();
            let out = contents("127.0.0.1", port).await;
            if let Some(pw) = &a.password {
                let mut con = common::data::connect("127.0.0.1", port, 0).await;
                let _: () = redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("requirepass")
                    .arg(pw)
                    .query_async(&mut con)
                    .await
                    .unwrap();
            }
            out
        }));
    }
    all
}

fn assert_same(a: &Contents, b: &Contents, what: &str) {
    let d = diff(a, b);
    assert!(d.is_empty(), "{what}: {d:?}");
}

/// The accident: values changed, keys deleted, new keys written (set B).
fn accident(rt: &tokio::runtime::Runtime, port: u16, pw: Option<&str>) {
    rt.block_on(async {
        let url = match pw {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{port}"),
            None => format!("redis://127.0.0.1:{port}"),
        };
        let mut con = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*:s:*")
            .query_async(&mut con)
            .await
            .unwrap();
        for (i, k) in keys.iter().enumerate() {
            if i % 2 == 0 {
                let _: () = redis::cmd("DEL")
                    .arg(k)
                    .query_async(&mut con)
                    .await
                    .unwrap();
            } else {
                let _: () = redis::cmd("SET")
                    .arg(k)
                    .arg("changed")
                    .query_async(&mut con)
                    .await
                    .unwrap();
            }
        }
        write_sample(&mut con, "setb", 10).await;
    });
}

/// An age identity file and the recipients file of its public key, made in `dir`.
fn age_pair(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (key, recipients) = (dir.join("key.txt"), dir.join("recipients.txt"));
    assert!(Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success());
    let public = Command::new("age-keygen")
        .arg("-y")
        .arg(&key)
        .output()
        .unwrap();
    std::fs::write(&recipients, public.stdout).unwrap();
    (key, recipients)
}

fn port_of(lz: &Lazarus, name: &str) -> u16 {
    let c = Store::new(lz.home().to_path_buf()).load().unwrap().unwrap();
    c.database_by_name(name).unwrap().port
}

/// Evidence 1, 3 and 5 (replicated): a piped runbook takes a backup, an accident
/// happens, a restore task brings back exactly the backed-up state at the same endpoint;
/// while it runs no new client can read; `start` after success is refused. On each engine.
#[test]
fn a_piped_runbook_backs_up_and_undoes_an_accident() {
    for engine in engines() {
        engine.announce("a_piped_runbook_backs_up_and_undoes_an_accident");
        runbook_undoes_an_accident(&engine);
    }
}

fn runbook_undoes_an_accident(engine: &Engine) {
    let World(lz, _guard, rt, mut c) = World::with(2)
        .redis_server(engine.path.clone())
        .db("rep", 1, true, Persistence::Snapshot)
        .build();
    // The password is set after the data went in (the helpers write without one).
    let db = c.database_by_name("rep").unwrap().clone();
    for s in &db.shards {
        let a = shard_addr(&c, &db, s.id).unwrap();
        rt.block_on(async {
            let mut con = common::data::connect(&a.host, a.port, 0).await;
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("requirepass")
                .arg("pw")
                .arg("masterauth")
                .arg("pw")
                .query_async(&mut con)
                .await
                .unwrap();
        });
    }
    let id = db.id;
    c.databases.get_mut(&id).unwrap().config = with_password(db.config.clone(), "pw");
    lz.install(&c);
    let before = picture(&rt, &lz, "rep");
    let repo = lz.path("repo");
    lz.script(&format!(
        "# nightly\nbackup task create name nightly db rep path {}\nbackup task run nightly\n",
        repo.display()
    ))
    .ok();
    let port = port_of(&lz, "rep");
    accident(&rt, port, Some("pw"));
    assert!(!diff(&before, &picture(&rt, &lz, "rep")).is_empty());

    lz.script("restore task create name undo db rep backup latest\nrestore task verify undo\n")
        .fails(1)
        .stdout_has("`force` would replace them");
    lz.run("restore task create name undo2 db rep backup latest force")
        .ok();
    // Poll as a client while the restore runs: reads succeed before the fence and after
    // the unfence, never in between.
    let child = Command::new(env!("CARGO_BIN_EXE_lazarus"))
        .arg("--home")
        .arg(lz.home())
        .args(["restore", "task", "start", "undo2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        let got = redis::Client::open(format!("redis://:pw@127.0.0.1:{port}"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| {
                redis::cmd("GET")
                    .arg("setb:s:0")
                    .query::<Option<String>>(&mut c)
            });
        let tag = match got {
            Ok(Some(_)) => 'B', // set B still there: old data
            Ok(None) => 'A',    // restored
            Err(_) => 'x',
        };
        if seen.last() != Some(&tag) {
            seen.push(tag);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("content verified: "),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text: String = seen.iter().collect();
    assert!(text.contains('x'), "clients were never fenced: {text}");
    assert!(
        !text.contains("xB") && !text.contains("Ax"),
        "old data served after the fence, or the new before the unfence: {text}"
    );
    let after = picture(&rt, &lz, "rep");
    assert_same(&before, &after, "after the restore");
    lz.run("restore task start undo2")
        .fails(1)
        .stderr_has("create a new task");
    lz.run("restore task retry undo2")
        .fails(1)
        .stderr_has("create a new task");
    // The replica follows the restored master.
    let c2 = Store::new(lz.home().to_path_buf()).load().unwrap().unwrap();
    let d2 = c2.database_by_name("rep").unwrap();
    // The CCS knows what the master took (the written time of the run's file staged as
    // its `dump.rdb`): a later recovery refuses files older than it.
    let master = d2.masters().next().unwrap();
    let now = lazarus::host::unix_nanos(std::time::SystemTime::now());
    assert!(
        master.loaded_ns.is_some_and(|ns| ns > 0 && ns <= now),
        "{:?}",
        master.loaded_ns
    );
    let r = d2.shards.iter().find(|s| s.master.is_some()).unwrap();
    let ra = shard_addr(&c2, d2, r.id).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut rc = redis::Client::open(format!("redis://:pw@127.0.0.1:{}", ra.port))
            .unwrap()
            .get_connection()
            .unwrap();
        let n: u64 = redis::cmd("DBSIZE").query(&mut rc).unwrap_or(0);
        let want = before.keys().filter(|k| k.0 == 0).count() as u64;
        if n == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica has {n} keys, want {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The JSON `kind` of a `restore task verify` that fails.
fn verify_kind(lz: &Lazarus, task: &str) -> String {
    let json = lz
        .cmd(["--json", "restore", "task", "verify", task])
        .run()
        .fails(1)
        .json();
    json[0]["kind"].as_str().unwrap_or_default().to_string()
}

fn reseal(path: &Path, edit: impl FnOnce(&mut Manifest)) {
    let mut m: Manifest = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut m);
    m.write(path).unwrap();
}

/// Evidence 2: verify names each reason and changes nothing.
#[test]
fn verify_refuses_damaged_missing_and_unloadable_runs() {
    let World(lz, _guard, _rt, _c) = World::with(1)
        .db("v", 1, false, Persistence::Aof)
        .installed();
    let repo = lz.path("repo");
    let run = lz
        .cmd([
            "--json",
            "backup",
            "db",
            "v",
            "path",
            repo.to_str().unwrap(),
            "compress",
            "none",
        ])
        .run()
        .ok()
        .json()[0]["result"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = repo.join(&run);
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "rdb"))
        .unwrap();
    let good = std::fs::read(&file).unwrap();
    let manifest = dir.join("manifest.json");
    let sealed = std::fs::read(&manifest).unwrap();
    lz.run(&format!(
        "restore task create name t db v backup {run} force"
    ))
    .ok();
    lz.run("restore task verify t")
        .ok()
        .stdout_has("ok     target");

    // One flipped byte, sha256 left alone.
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x40;
    std::fs::write(&file, &bad).unwrap();
    lz.run("restore task verify t")
        .fails(1)
        .stdout_has("the file was changed or damaged");
    assert_eq!(verify_kind(&lz, "t"), "damaged");
    // The same, with the sha256 (and the manifest's own checksum) updated: the reader.
    let sum = lazarus::restore::sha256_file(&file).unwrap();
    reseal(&manifest, |m| m.shards[0].sha256 = sum);
    lz.run("restore task verify t")
        .fails(1)
        .stdout_has("FAILED file");
    // The manifest edited by hand: its checksum.
    std::fs::write(&file, &good).unwrap();
    let text = String::from_utf8(sealed.clone())
        .unwrap()
        .replace("\"keys\": ", "\"keys\":  ");
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["shards"][0]["keys"] = serde_json::json!(1);
    std::fs::write(&manifest, serde_json::to_vec(&v).unwrap()).unwrap();
    lz.run("restore task verify t")
        .fails(1)
        .stdout_has("does not match its checksum");
    std::fs::write(&manifest, &sealed).unwrap();
    // A missing file.
    std::fs::remove_file(&file).unwrap();
    lz.run("restore task verify t")
        .fails(1)
        .stdout_has("No such file");
    assert_eq!(verify_kind(&lz, "t"), "not_found");
    std::fs::write(&file, &good).unwrap();
    // An RDB version this server cannot load.
    reseal(&manifest, |m| m.shards[0].rdb_version = 99);
    lz.run("restore task verify t")
        .fails(1)
        .stdout_has("the run's files are RDB version 99");
    std::fs::write(&manifest, &sealed).unwrap();
    // Keys and no force.
    lz.run(&format!("restore task create name nf db v backup {run}"))
        .ok();
    lz.run("restore task verify nf")
        .fails(1)
        .stdout_has("`force` would replace them");
    assert_eq!(verify_kind(&lz, "nf"), "conflict");
    let json = lz
        .cmd(["--json", "restore", "task", "show", "nf"])
        .run()
        .ok()
        .json();
    assert_eq!(json[0]["result"]["state"], "verify_failed");
    // The target's shard directories inside a recovery path (`recovery_path set` now
    // refuses such a path; a CCS from before that rule may still hold one).
    let mut c = Store::new(lz.home().to_path_buf()).load().unwrap().unwrap();
    c.nodes.get_mut(&1).unwrap().recovery_path = Some(lz.home().to_path_buf());
    lz.install(&c);
    lz.run("restore task verify t")
        .fails(1)
        .stdout_has("recovery path");
    let mut c = Store::new(lz.home().to_path_buf()).load().unwrap().unwrap();
    c.nodes.get_mut(&1).unwrap().recovery_path = None;
    lz.install(&c);
    lz.run("restore task verify t").ok();

    // `target_path`: never the backup's path, never inside a recovery path; a good one
    // stages the files and is left empty.
    lz.run(&format!(
        "restore task create name in-repo db v backup {run} force target_path {}",
        repo.join(&run).display()
    ))
    .ok();
    lz.run("restore task verify in-repo")
        .fails(1)
        .stdout_has("overlap: give a directory apart from the backups");
    let rp = lz.path("old-disk");
    std::fs::create_dir_all(rp.join("staging")).unwrap();
    lz.run(&format!("node 1 recovery_path set {}", rp.display()))
        .ok();
    lz.run(&format!(
        "restore task create name in-rp db v backup {run} force target_path {}",
        rp.join("staging").display()
    ))
    .ok();
    lz.run("restore task verify in-rp")
        .fails(1)
        .stdout_has("recovery path");
    lz.run("node 1 recovery_path clear").ok();
    let staging = lz.path("staging");
    std::fs::create_dir_all(&staging).unwrap();
    lz.run(&format!(
        "restore task create name staged db v backup {run} force target_path {}",
        staging.display()
    ))
    .ok();
    lz.run("restore task start staged")
        .ok()
        .stdout_has("content verified: ");
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
}

/// Evidence 4 and 5: a shard that cannot start mid-restore (the old data serves again,
/// `retry` finishes), the shell killed mid-restore (`interrupted`, `retry` finishes), a
/// deleted database recreated from its backup.
#[test]
fn failed_and_interrupted_restores_come_back_and_retry_finishes() {
    let World(lz, _guard, rt, _c) = World::with(1)
        .db("f", 1, false, Persistence::Aof)
        .installed();
    let repo = lz.path("repo");
    let backed = picture(&rt, &lz, "f");
    lz.run(&format!("backup db f path {}", repo.display())).ok();
    let port = port_of(&lz, "f");
    accident(&rt, port, None);
    let changed = picture(&rt, &lz, "f");

    // A redis-server that refuses the restore's loading start (`appendonly no`).
    let wrapper = lz.path("picky-redis-server");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nif [ -f \"$1\" ] && grep -q '^appendonly no' \"$1\"; then echo 'refusing to load' >&2; exit 1; fi\nexec redis-server \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    lz.run("restore task create name r db f backup latest force")
        .ok();
    lz.cmd([
        "--redis-server",
        wrapper.to_str().unwrap(),
        "restore",
        "task",
        "start",
        "r",
    ])
    .run()
    .fails(1)
    .stderr_has("the old data is back in place and serving");
    assert_same(&changed, &picture(&rt, &lz, "f"), "after the failed start");
    let json = lz
        .cmd(["--json", "restore", "task", "show", "r"])
        .run()
        .ok()
        .json();
    assert_eq!(json[0]["result"]["state"], "failed");
    lz.run("restore task start r").fails(1).stderr_has("retry");
    lz.run("restore task retry r")
        .ok()
        .stdout_has("content verified: ");
    assert_same(&backed, &picture(&rt, &lz, "f"), "after retry");

    // The shell killed mid-restore.
    accident(&rt, port, None);
    lz.run("restore task create name k db f backup latest force")
        .ok();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lazarus"))
        .arg("--home")
        .arg(lz.home())
        .args(["restore", "task", "start", "k"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ccs = std::fs::read_to_string(lz.path("ccs.json")).unwrap_or_default();
        if ccs.contains("\"step\": \"stopping the shards\"")
            || ccs.contains("\"step\": \"swapping the data\"")
            || ccs.contains("\"step\": \"loading\"")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the restore never got going");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let json = lz
        .cmd(["--json", "restore", "task", "show", "k"])
        .run()
        .ok()
        .json();
    assert_eq!(json[0]["result"]["state"], "interrupted", "{}", json[0]);
    lz.run("restore task retry k")
        .ok()
        .stdout_has("content verified: ");
    assert_same(
        &backed,
        &picture(&rt, &lz, "f"),
        "after retry of the interrupted",
    );

    // A deleted database, recreated from its backup.
    lz.run("delete db f purge").ok();
    lz.run("restore task create name again db f backup latest")
        .ok();
    lz.run("restore task start again verify counts")
        .ok()
        .stdout_has("content not verified: `verify counts`");
    assert_same(&backed, &picture(&rt, &lz, "f"), "recreated");
}

/// Evidence 5: a backup of 3 shards restored into a database of 1 and one of 5 shards:
/// the same content, every key routed to the master owning its slot.
#[test]
fn three_shards_restore_into_one_and_into_five() {
    let World(lz, _guard, rt, mut c) = World::with(1)
        .db("three", 3, false, Persistence::Disabled)
        .build();
    let server = common::world::server();
    for (name, shards) in [("one", 1), ("five", 5)] {
        rt.block_on(lazarus::db::create_db(
            &mut c,
            &server,
            lazarus::db::CreateDb {
                config: config(name, shards, false, Persistence::Aof),
                port: None,
            },
        ))
        .unwrap();
    }
    lz.install(&c);
    let before = picture(&rt, &lz, "three");
    let repo = lz.path("repo");
    let run = lz.backup_run("three", &repo);
    for name in ["one", "five"] {
        lz.run(&format!(
            "restore task create name to-{name} db {name} backup {run} from_other_db"
        ))
        .ok();
        lz.run(&format!("restore task verify to-{name}"))
            .ok()
            .stdout_has("RESTORE ... ABSTTL");
        let port = port_of(&lz, name);
        if name == "five" {
            lz.run(&format!("restore task start to-{name}"))
                .ok()
                .stdout_has("content verified: ");
            assert_same(&before, &picture(&rt, &lz, name), name);
            continue;
        }
        // An ACL user besides the default one: while the keys are written it cannot
        // authenticate (the fence turns it off), and after the restore it can.
        let app = || -> redis::RedisResult<u64> {
            let mut con = redis::Client::open(format!("redis://app:apppw@127.0.0.1:{port}"))?
                .get_connection_with_timeout(Duration::from_millis(200))?;
            redis::cmd("DBSIZE").query(&mut con)
        };
        let mut admin = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .get_connection()
            .unwrap();
        redis::cmd("ACL")
            .arg(&["SETUSER", "app", "on", ">apppw", "~*", "+@all"][..])
            .query::<()>(&mut admin)
            .unwrap();
        assert_eq!(app().unwrap(), 0, "the app user works before the restore");
        let mut child = Command::new(env!("CARGO_BIN_EXE_lazarus"))
            .arg("--home")
            .arg(lz.home())
            .args(["restore", "task", "start", &format!("to-{name}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // 'o': the user authenticates; 'x': refused.
        let mut seen = Vec::new();
        while child.try_wait().unwrap().is_none() {
            let tag = if app().is_ok() { 'o' } else { 'x' };
            if seen.last() != Some(&tag) {
                seen.push(tag);
            }
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("content verified: "),
            "{stdout}"
        );
        let text: String = seen.iter().collect();
        assert!(
            text.contains('x') && !text.contains("xox"),
            "the app user was never fenced, or was let in during the fence: {text}"
        );
        assert!(
            app().unwrap() > 0,
            "the app user is not let in after the restore"
        );
        assert_same(&before, &picture(&rt, &lz, name), name);
    }
    // Into a database that holds keys: refused by verify, nothing written.
    lz.run(&format!(
        "restore task create name again db one backup {run} from_other_db"
    ))
    .ok();
    lz.run("restore task start again")
        .fails(1)
        .stdout_has("`force` would replace them");
}

/// Issue 19: a 3-shard run compressed with zstd and encrypted with age (keys made by the
/// `age` CLI, which also opens the stored file) restores with identical content; a wrong
/// identity file and a missing one are named; no secret key appears in any output or in
/// the CCS.
#[test]
fn an_encrypted_compressed_run_restores_and_a_wrong_identity_is_named() {
    let World(lz, _guard, rt, _c) = World::with(1)
        .db("enc", 3, false, Persistence::Disabled)
        .installed();
    let keygen = |name: &str| -> (std::path::PathBuf, String) {
        let key = lz.path(name);
        let ok = Command::new("age-keygen")
            .arg("-o")
            .arg(&key)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success());
        let secret = std::fs::read_to_string(&key)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .unwrap()
            .to_string();
        (key, secret)
    };
    let (key, secret) = keygen("key.txt");
    let (other, other_secret) = keygen("other.txt");
    let public = Command::new("age-keygen")
        .arg("-y")
        .arg(&key)
        .output()
        .unwrap()
        .stdout;
    let recipients = lz.path("recipients.txt");
    std::fs::write(&recipients, public).unwrap();
    let before = picture(&rt, &lz, "enc");
    let repo = lz.path("repo");
    let mut outputs = Vec::new();
    let out = lz
        .cmd([
            "--json",
            "backup",
            "db",
            "enc",
            "path",
            repo.to_str().unwrap(),
            "encrypt",
            recipients.to_str().unwrap(),
        ])
        .run()
        .ok();
    let run = out.json()[0]["result"]["id"].as_str().unwrap().to_string();
    outputs.push(out);
    let m: Manifest =
        serde_json::from_slice(&std::fs::read(repo.join(&run).join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m.shards.len(), 3);
    for s in &m.shards {
        assert!(s.encrypted && s.file.ends_with(".rdb.zst.age"), "{s:?}");
        // The age CLI opens it: a zstd frame inside.
        let plain = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&key)
            .arg(repo.join(&run).join(&s.file))
            .output()
            .unwrap();
        assert!(plain.status.success());
        assert_eq!(&plain.stdout[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    }
    // The accident: every master emptied.
    {
        let c = Store::new(lz.home().to_path_buf()).load().unwrap().unwrap();
        let db = c.database_by_name("enc").unwrap();
        for m in db.masters() {
            let port = shard_addr(&c, db, m.id).unwrap().port;
            rt.block_on(async {
                let mut con = common::data::connect("127.0.0.1", port, 0).await;
                let _: () = redis::cmd("FLUSHALL").query_async(&mut con).await.unwrap();
            });
        }
    }

    // No identity: refused when the task is made (an own run and the repository's
    // `latest` alike), naming the run as encrypted and the option, no task made. Then the
    // wrong one: verify names what is wrong.
    let ccs = std::fs::read(lz.path("ccs.json")).unwrap();
    for backup in [run.clone(), format!("{}/latest", repo.display())] {
        outputs.push(
            lz.run(&format!(
                "restore task create name none db enc backup {backup}"
            ))
            .fails(2)
            .stderr_has(&format!("run `{run}` is encrypted"))
            .stderr_has("with `identity <file>`"),
        );
        assert_eq!(std::fs::read(lz.path("ccs.json")).unwrap(), ccs, "{backup}");
    }
    outputs.push(
        lz.run(&format!(
            "restore task create name wrong db enc backup {run} identity {}",
            other.display()
        ))
        .ok(),
    );
    outputs.push(
        lz.run("restore task verify wrong")
            .fails(1)
            .stdout_has("wrong identity")
            .stdout_has("other.txt"),
    );
    outputs.push(
        lz.run(&format!(
            "restore task create name right db enc backup {run} identity {}",
            key.display()
        ))
        .ok(),
    );
    outputs.push(lz.run("restore task verify right").ok());
    outputs.push(
        lz.run("restore task start right")
            .ok()
            .stdout_has("content verified: "),
    );
    assert_same(
        &before,
        &picture(&rt, &lz, "enc"),
        "restored from the encrypted run",
    );

    // A new home with no cluster at all lists the repository's runs; a run with a file
    // gone is listed as not restorable, naming it.
    let fresh = Lazarus::new();
    outputs.push(
        fresh
            .run(&format!("backup list path {} db enc", repo.display()))
            .ok()
            .stdout_has(&run)
            .stdout_has("yes"),
    );
    std::fs::remove_file(repo.join(&run).join(&m.shards[0].file)).unwrap();
    let listed = fresh
        .cmd(["--json", "backup", "list", "path", repo.to_str().unwrap()])
        .run()
        .ok();
    let doc = &listed.json()[0]["result"]["runs"][0];
    assert_eq!(doc["restorable"], false, "{doc}");
    assert!(doc["why"].as_str().unwrap().contains("is missing"), "{doc}");
    assert_eq!(doc["encrypted"], true, "{doc}");
    outputs.push(listed);
    let ccs = std::fs::read_to_string(lz.home().join("ccs.json")).unwrap_or_default();
    for text in outputs
        .iter()
        .flat_map(|o| [o.stdout.clone(), o.stderr.clone()])
        .chain([ccs, lz.ccs().to_string()])
    {
        for s in [&secret, &other_secret] {
            assert!(!text.contains(s.as_str()), "a secret key leaked: {text}");
        }
    }
}

/// A Valkey 8.1 run (RDB 11) restored onto Redis 7.0: verify says the files need
/// `replay`; a task with `replay` writes every key as RESTORE into the recreated
/// database, whose shards now run Redis, with every value and expiry identical.
#[test]
fn a_valkey_run_is_replayed_onto_redis() {
    let Some(valkey) = Engine::valkey() else {
        eprintln!("engine valkey: not tested (no valkey-server)");
        return;
    };
    let World(lz, guard, rt, _c) = World::with(1)
        .redis_server(valkey.path.clone())
        .db("v", 1, false, Persistence::Snapshot)
        .installed();
    let before = picture(&rt, &lz, "v");
    let repo = lz.path("repo");
    lz.run(&format!("backup db v path {}", repo.display())).ok();
    lz.run("delete db v purge").ok();
    assert!(guard.pids().is_empty());
    let redis = common::world::redis().path;
    lz.run(&format!("node 1 redis_server set {}", redis.display()))
        .ok()
        .stdout_has("redis 7.");
    lz.script("restore task create name down db v backup latest\nrestore task verify down\n")
        .fails(1)
        .stdout_has("create the task with `replay`")
        .stdout_has("the server is older than the backup's")
        .stdout_lacks("allow_newer_server");
    lz.run("restore task create name down2 db v backup latest replay")
        .ok();
    lz.run("restore task verify down2")
        .ok()
        .stdout_has("replayed key by key");
    lz.run("restore task start down2").ok();
    let after = picture(&rt, &lz, "v");
    assert_same(&before, &after, "valkey run replayed onto redis");
    let c2 = Store::new(lz.home().to_path_buf()).load().unwrap().unwrap();
    let pid = c2.database_by_name("v").unwrap().shards[0].pid.unwrap();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, std::fs::canonicalize(&redis).unwrap());
}

/// Issue 19, evidence 1, 2 and 5 over `s3://` (a real S3 server, moto): a 3-shard
/// database backed up compressed and encrypted; its machine then lost (servers killed,
/// disks removed); a new cluster on a fresh home lists the repository and restores the run
/// `from_other_cluster` with identical content. A run with an object deleted is listed as
/// not restorable and fails verify naming the object. No credential or identity appears
/// in any output or in the CCS.
#[test]
fn an_s3_run_restores_into_a_new_cluster_and_a_missing_object_is_named() {
    let Some(s3) = common::s3::S3Server::start("offsite") else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let World(lz, guard, rt, c) = World::with(1)
        .env(s3.env())
        .db("mig", 3, false, Persistence::Disabled)
        .installed();
    let (key, recipients) = age_pair(keys.path());
    let secret = std::fs::read_to_string(&key)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_string();
    let before = picture(&rt, &lz, "mig");
    let url = "s3://offsite/lazarus/prod";
    let mut outputs = Vec::new();
    let take = |outputs: &mut Vec<_>| -> String {
        let out = lz
            .cmd([
                "--json",
                "backup",
                "db",
                "mig",
                "path",
                url,
                "encrypt",
                recipients.to_str().unwrap(),
            ])
            .run()
            .ok();
        let run = out.json()[0]["result"]["id"].as_str().unwrap().to_string();
        outputs.push(out);
        run
    };
    let good = take(&mut outputs);
    let broken = take(&mut outputs);

    // The machine is lost: its servers and its disks.
    guard.kill_all();
    let old_cluster_name = c.name.clone();
    for n in c.nodes.values() {
        std::fs::remove_dir_all(&n.persistent_path).unwrap();
    }

    // A new cluster on a fresh home.
    let fresh = Lazarus::new().with_env(s3.env());
    let _fresh_guard = ProcessGuard::new(fresh.home());
    let mut new = test_cluster(fresh.home(), 1);
    new.name = "newprod".into();
    fresh.install(&new);
    let listed = fresh
        .cmd(["--json", "backup", "list", "path", url])
        .run()
        .ok();
    let runs = listed.json()[0]["result"]["runs"].clone();
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
    assert_eq!(runs[0]["restorable"], true, "{runs}");
    assert_eq!(runs[0]["encrypted"], true, "{runs}");
    outputs.push(listed);

    // One object of the second run deleted: listed as not restorable, verify names it.
    let m: Manifest =
        serde_json::from_slice(&s3.get("offsite", &format!("lazarus/prod/{broken}/manifest.json")))
            .unwrap();
    let gone = &m.shards[1].file;
    s3.delete("offsite", &format!("lazarus/prod/{broken}/{gone}"));
    let listed = fresh
        .cmd(["--json", "backup", "list", "path", url])
        .run()
        .ok();
    let doc = &listed.json()[0]["result"]["runs"][1];
    assert_eq!(doc["restorable"], false, "{doc}");
    assert!(
        doc["why"].as_str().unwrap().contains(gone.as_str()),
        "{doc}"
    );
    outputs.push(listed);
    outputs.push(
        fresh
            .run(&format!(
                "restore task create name bad db mig backup {url}/{broken} identity {} from_other_cluster",
                key.display()
            ))
            .ok(),
    );
    outputs.push(
        fresh
            .run("restore task verify bad")
            .fails(1)
            .stdout_has(&format!("{broken}/{gone}")),
    );

    // Without `from_other_cluster` the run is refused naming both clusters; with it,
    // verify names them and the database comes back with every key.
    outputs.push(
        fresh
            .run(&format!(
                "restore task create name move db mig backup {url}/latest identity {}",
                key.display()
            ))
            .fails(1)
            .stderr_has(&old_cluster_name)
            .stderr_has("newprod")
            .stderr_has("from_other_cluster"),
    );
    outputs.push(
        fresh
            .run(&format!(
                "restore task create name move db mig backup {url}/{good} identity {} from_other_cluster",
                key.display()
            ))
            .ok(),
    );
    outputs.push(
        fresh
            .run("restore task verify move")
            .ok()
            .stdout_has("from_other_cluster")
            .stdout_has("clock"),
    );
    outputs.push(fresh.run("restore task start move").ok());
    assert_same(&before, &picture(&rt, &fresh, "mig"), "restored from s3://");
    // A prefix holding nothing is named as a repository not there, as a local one is.
    for backup in [format!("{url}-nope/latest"), format!("{url}-nope/{good}")] {
        outputs.push(
            fresh
                .run(&format!(
                    "restore task create name gone db mig backup {backup} from_other_cluster"
                ))
                .fails(1)
                .stderr_has(&format!(
                    "the repository `{url}-nope` holds no objects (a wrong bucket or prefix, or emptied?)"
                )),
        );
    }
    // `verify db` proves the restored database against the run where it lies, read
    // through zstd and age; the run with an object gone is named.
    outputs.push(
        fresh
            .run(&format!(
                "verify db mig against {url}/{good} identity {}",
                key.display()
            ))
            .ok()
            .stdout_has(&format!("against backup run `{good}` in `{url}`"))
            .stdout_has("content verified: "),
    );
    outputs.push(
        fresh
            .run(&format!(
                "verify db mig against {url}/latest identity {}",
                key.display()
            ))
            .fails(1)
            .stderr_has(gone.as_str()),
    );

    let ccs = std::fs::read_to_string(fresh.home().join("ccs.json")).unwrap_or_default();
    let old_ccs = std::fs::read_to_string(lz.home().join("ccs.json")).unwrap_or_default();
    for text in outputs
        .iter()
        .flat_map(|o| [o.stdout.clone(), o.stderr.clone()])
        .chain([ccs, old_ccs])
    {
        for s in [secret.as_str(), common::s3::SECRET_KEY] {
            assert!(!text.contains(s), "a secret leaked: {text}");
        }
    }
}

/// Issue 19, evidence 3: a forced restore over live data first takes a safety backup of
/// it into the task's repository and records it on the task; that run restores to the
/// content the forced restore replaced. The run restored is encrypted, so the safety
/// backup is too, to the task's identity: the same identity opens it.
#[test]
fn a_forced_restore_leaves_a_safety_backup_that_restores_what_it_replaced() {
    let World(lz, _guard, rt, _c) = World::with(1)
        .db("live", 1, false, Persistence::Disabled)
        .installed();
    let repo = lz.path("repo");
    let (key, recipients) = age_pair(&lz.path("keys"));
    let old = picture(&rt, &lz, "live");
    let run = lz
        .cmd([
            "--json",
            "backup",
            "db",
            "live",
            "path",
            repo.to_str().unwrap(),
            "encrypt",
            recipients.to_str().unwrap(),
        ])
        .run()
        .ok()
        .json()[0]["result"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    accident(&rt, port_of(&lz, "live"), None);
    let live = picture(&rt, &lz, "live");
    assert!(!diff(&old, &live).is_empty());
    lz.run(&format!(
        "restore task create name back db live backup {run} force identity {}",
        key.display()
    ))
    .ok();
    lz.run("restore task start back")
        .ok()
        .stdout_has("safety backup of the data replaced");
    assert_same(&old, &picture(&rt, &lz, "live"), "the forced restore");
    let doc = lz
        .cmd(["--json", "restore", "task", "show", "back"])
        .run()
        .ok()
        .json();
    let at = doc[0]["result"]["safety_backup"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(at.starts_with(repo.to_str().unwrap()), "{at}");
    let safety = at.rsplit('/').next().unwrap();
    let listed = lz
        .cmd(["--json", "backup", "list", "path", repo.to_str().unwrap()])
        .run()
        .ok()
        .json();
    let row = listed[0]["result"]["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run"] == safety)
        .unwrap()
        .clone();
    assert_eq!(row["encrypted"], true, "{row}");
    assert_eq!(row["safety_for"], "back", "{row}");
    // The repository's `latest` is the restore point chosen, never the safety backup.
    let picked = lz
        .cmd([
            "--json",
            "restore",
            "task",
            "create",
            "name",
            "again",
            "db",
            "live",
            "backup",
            &format!("{}/latest", repo.display()),
            "force",
            "identity",
            key.to_str().unwrap(),
        ])
        .run()
        .ok()
        .json();
    assert_eq!(picked[0]["result"]["run"], run.as_str(), "{picked:?}");
    lz.run("restore task delete again").ok();
    lz.run(&format!(
        "restore task create name undo db live backup {at} force identity {}",
        key.display()
    ))
    .ok();
    lz.run("restore task start undo").ok();
    assert_same(
        &live,
        &picture(&rt, &lz, "live"),
        "the safety backup restored",
    );
}

/// Issue 19 over `ssh://` (a real sshd on another loopback address, the operator's own
/// OpenSSH with strict host keys): a 3-shard database backed up, compressed and encrypted, into a directory on that
/// host; a home with no cluster lists the run; a new cluster on a fresh home restores it
/// `from_other_cluster` with identical content. An unreachable host, an unknown host key
/// and a missing directory are each named.
#[test]
fn an_ssh_run_restores_into_a_new_cluster_and_ssh_failures_are_named() {
    let lab = common::sshd::SshLab::new();
    let far = lab.host();
    let env = vec![(
        lazarus::host::ssh::CONFIG_ENV.to_string(),
        lab.config().display().to_string(),
    )];
    let World(lz, guard, rt, c) = World::with(1)
        .env(env.clone())
        .db("mig", 3, false, Persistence::Disabled)
        .installed();
    let before = picture(&rt, &lz, "mig");
    let (key, recipients) = age_pair(&lz.path("keys"));
    let dir = far.path("backups/prod");
    let url = format!("ssh://{}{}", far.target(), dir.display());
    let out = lz
        .cmd([
            "--json",
            "backup",
            "db",
            "mig",
            "path",
            &url,
            "encrypt",
            recipients.to_str().unwrap(),
        ])
        .run()
        .ok();
    let run = out.json()[0]["result"]["id"].as_str().unwrap().to_string();
    // On the host: the run's files and its manifest, nothing half-written.
    let mut names: Vec<String> = std::fs::read_dir(dir.join(&run))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names.contains(&"manifest.json".to_string()), "{names:?}");
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");

    // The machine is lost: its servers and its disks.
    guard.kill_all();
    for n in c.nodes.values() {
        std::fs::remove_dir_all(&n.persistent_path).unwrap();
    }

    // A home with no cluster at all lists the run.
    let bare = Lazarus::new().with_env(env.clone());
    let listed = bare
        .cmd(["--json", "backup", "list", "path", &url])
        .run()
        .ok();
    let runs = listed.json()[0]["result"]["runs"].clone();
    assert_eq!(runs[0]["restorable"], true, "{runs}");
    assert_eq!(runs[0]["run"], run.as_str(), "{runs}");

    // Each failure names what failed.
    bare.run(&format!("backup list path {url}/nope"))
        .fails(1)
        .stderr_has(&format!("{url}/nope"))
        .stderr_has("no such directory");
    let closed = std::net::TcpListener::bind((far.addr.as_str(), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = format!("ssh://{}@{}:{closed}/x", far.user, far.addr);
    bare.run(&format!("backup list path {gone}"))
        .fails(1)
        .stderr_has(&format!("{}:{closed}", far.addr))
        .stderr_has("does not answer over ssh");
    let stranger = lab.host_unknown();
    bare.run(&format!("backup list path ssh://{}/x", stranger.target()))
        .fails(1)
        .stderr_has(&stranger.target())
        .stderr_has("host key");

    // A new cluster on a fresh home restores it.
    let fresh = Lazarus::new().with_env(env);
    let _fresh_guard = ProcessGuard::new(fresh.home());
    let mut new = test_cluster(fresh.home(), 1);
    new.name = "newprod".into();
    fresh.install(&new);
    fresh
        .run(&format!(
            "restore task create name move db mig backup {url}/latest from_other_cluster identity {}",
            key.display()
        ))
        .ok();
    fresh
        .run("restore task verify move")
        .ok()
        .stdout_has("clock")
        .stdout_has(&url);
    fresh.run("restore task start move").ok();
    assert_same(
        &before,
        &picture(&rt, &fresh, "mig"),
        "restored from ssh://",
    );
    // A repository not there is named as such, as a local one is.
    for backup in [format!("{url}/nope/latest"), format!("{url}/nope/{run}")] {
        fresh
            .run(&format!(
                "restore task create name gone db mig backup {backup} from_other_cluster"
            ))
            .fails(1)
            .stderr_has(&format!(
                "the repository `{url}/nope` does not exist: no such directory on its host"
            ));
    }
}

/// Issue 19: a shard larger than one multipart part (8 MiB) goes up to `s3://` in
/// several parts (its ETag says how many) and restores byte for byte.
#[test]
fn a_shard_of_several_parts_goes_up_to_s3_and_comes_back() {
    let Some(s3) = common::s3::S3Server::start("parts") else {
        return;
    };
    let World(lz, _guard, rt, _c) = World::with(1)
        .env(s3.env())
        .db("big", 1, false, Persistence::Disabled)
        .installed();
    // 20 MiB that compression cannot shrink: three parts of 8 MiB.
    let mut blob = vec![0u8; 20 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in blob.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let port = port_of(&lz, "big");
    rt.block_on(async {
        let mut con = common::data::connect("127.0.0.1", port, 0).await;
        let _: () = redis::cmd("SET")
            .arg("blob")
            .arg(&blob)
            .query_async(&mut con)
            .await
            .unwrap();
    });
    let before = picture(&rt, &lz, "big");
    let url = "s3://parts/lazarus";
    lz.run(&format!("backup db big path {url}")).ok();
    let run = lz.ccs()["backups"]["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let m: Manifest =
        serde_json::from_slice(&s3.get("parts", &format!("lazarus/{run}/manifest.json"))).unwrap();
    let etag = s3.etag("parts", &format!("lazarus/{run}/{}", m.shards[0].file));
    assert!(etag.ends_with("-3\""), "three parts: {etag}");

    rt.block_on(async {
        let mut con = common::data::connect("127.0.0.1", port, 0).await;
        let _: () = redis::cmd("DEL")
            .arg("blob")
            .query_async(&mut con)
            .await
            .unwrap();
    });
    lz.run(&format!(
        "restore task create name back db big backup {url}/{run} force"
    ))
    .ok();
    lz.run("restore task start back").ok();
    assert_same(
        &before,
        &picture(&rt, &lz, "big"),
        "after the restore from s3://",
    );
}

/// Issue 19: an `s3://` repository whose credentials and region come only from
/// `AWS_PROFILE`'s sections of a credentials file and a config file (no key in the
/// environment), as `~/.aws` gives them: a run is written and listed, and neither key
/// appears in any output or in the CCS.
#[test]
fn s3_credentials_come_from_an_aws_profile() {
    let Some(s3) = common::s3::S3Server::start("profiled") else {
        return;
    };
    let aws = tempfile::tempdir().unwrap();
    let (creds, conf) = (aws.path().join("credentials"), aws.path().join("config"));
    std::fs::write(
        &creds,
        format!(
            "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n[offsite]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            common::s3::ACCESS_KEY,
            common::s3::SECRET_KEY
        ),
    )
    .unwrap();
    std::fs::write(&conf, "[profile offsite]\nregion = us-east-1\n").unwrap();
    let mut env: Vec<(String, String)> = s3
        .env()
        .into_iter()
        .filter(|(k, _)| k == "AWS_ENDPOINT_URL")
        .collect();
    for (k, v) in [
        ("AWS_PROFILE", "offsite".to_string()),
        ("AWS_SHARED_CREDENTIALS_FILE", creds.display().to_string()),
        ("AWS_CONFIG_FILE", conf.display().to_string()),
    ] {
        env.push((k.to_string(), v));
    }
    let World(lz, _guard, _rt, _c) = World::with(1)
        .env(env)
        .db("p", 1, false, Persistence::Disabled)
        .installed();
    let url = "s3://profiled/lazarus";
    let mut outputs = vec![lz.run(&format!("backup db p path {url}")).ok()];
    let run = lz.ccs()["backups"]["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!s3
        .get("profiled", &format!("lazarus/{run}/manifest.json"))
        .is_empty());
    outputs.push(
        lz.run(&format!("backup list path {url}"))
            .ok()
            .stdout_has(&run),
    );
    let ccs = lz.ccs().to_string();
    for text in outputs
        .iter()
        .flat_map(|o| [o.stdout.clone(), o.stderr.clone()])
        .chain([ccs])
    {
        for s in [common::s3::ACCESS_KEY, common::s3::SECRET_KEY] {
            assert!(!text.contains(s), "a credential leaked: {text}");
        }
    }
}

/// Issue 19: two databases in one restore task, on the new machine after a disaster: a
/// home with no cluster gets the default local one from `restore task create` (nothing is
/// stored while the run's cluster is not acknowledged); a task whose second database fails
/// verify starts neither; `db all` restores both, identical, and never runs again.
#[test]
fn two_databases_restore_in_one_task_into_a_home_with_no_cluster() {
    let World(lz, guard, rt, c) = World::with(1)
        .db("orders", 1, false, Persistence::Disabled)
        .db("sessions", 1, false, Persistence::Disabled)
        .installed();
    let before = [picture(&rt, &lz, "orders"), picture(&rt, &lz, "sessions")];
    let repo = lz.path("offsite");
    for db in ["orders", "sessions"] {
        lz.run(&format!(
            "backup db {db} path {} compress none",
            repo.display()
        ))
        .ok();
    }
    // A copy of the repository whose `sessions` run has one byte flipped.
    let damaged = lz.path("damaged");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(&repo)
        .arg(&damaged)
        .status()
        .unwrap();
    assert!(copied.success());
    let file = std::fs::read_dir(&damaged)
        .unwrap()
        .flatten()
        .map(|run| run.path())
        .filter(|run| {
            std::fs::read_to_string(run.join("manifest.json")).is_ok_and(|m| m.contains("sessions"))
        })
        .flat_map(|run| std::fs::read_dir(run).unwrap().flatten().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "rdb"))
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();

    // The machine is lost.
    guard.kill_all();
    for n in c.nodes.values() {
        std::fs::remove_dir_all(&n.persistent_path).unwrap();
    }

    let fresh = Lazarus::new();
    let _fresh_guard = ProcessGuard::new(fresh.home());
    // Without `from_other_cluster`: refused, and the home stays without a cluster.
    fresh
        .run(&format!(
            "restore task create name bad db orders,sessions backup {}/latest",
            damaged.display()
        ))
        .fails(1)
        .stderr_has("from_other_cluster");
    assert!(!fresh.path("ccs.json").exists());
    fresh
        .run(&format!(
            "restore task create name bad db orders,sessions backup {}/latest from_other_cluster",
            damaged.display()
        ))
        .ok()
        .stdout_has("Created the default local cluster")
        .stdout_has("`bad.orders`")
        .stdout_has("`bad.sessions`");
    // Shards of this test on ports of their own, not the default range.
    assert_eq!(fresh.ccs()["local_node"], 1);
    fresh.own_port_range();
    fresh
        .run("restore task start bad")
        .fails(1)
        .stdout_has("bad.sessions")
        .stderr_has("none of its databases started")
        .stderr_has("`bad.sessions`");
    let listed = fresh.cmd(["--json", "status", "databases"]).run().ok();
    assert!(
        !listed.stdout.contains("orders"),
        "nothing may start: {}",
        listed.stdout
    );
    fresh
        .run("restore task delete bad.orders")
        .fails(1)
        .stderr_has("delete `bad`");
    fresh.run("restore task delete bad").ok();

    // Every database of the repository, each its newest run, in one task.
    fresh
        .run(&format!(
            "restore task create name move db all backup {}/latest from_other_cluster",
            repo.display()
        ))
        .ok()
        .stdout_lacks("Created the default local cluster")
        .stdout_has("2 databases");
    let out = fresh
        .cmd(["--json", "restore", "task", "start", "move"])
        .run()
        .ok();
    let tasks = out.json()[0]["result"]["tasks"].clone();
    assert_eq!(tasks.as_array().unwrap().len(), 2, "{tasks}");
    for t in tasks.as_array().unwrap() {
        assert_eq!(t["state"], "succeeded", "{t}");
        assert!(
            t["content"]["line"]
                .as_str()
                .unwrap()
                .starts_with("content verified"),
            "{t}"
        );
    }
    assert_same(&before[0], &picture(&rt, &fresh, "orders"), "orders");
    assert_same(&before[1], &picture(&rt, &fresh, "sessions"), "sessions");
    fresh
        .run("restore task start move")
        .fails(1)
        .stderr_has("already succeeded");
    fresh
        .run("restore task show move")
        .ok()
        .stdout_has("move.orders")
        .stdout_has("move.sessions");
}

/// A file staged by hard link is hashed while the server loads it: one changed after
/// `verify` fails `start`, is named as changed, and the old data serves again.
#[test]
fn a_run_file_changed_after_verify_fails_start_and_the_old_data_serves() {
    let World(lz, _guard, rt, _c) = World::with(1)
        .db("l", 1, false, Persistence::Disabled)
        .installed();
    let repo = lz.path("repo");
    lz.run(&format!(
        "backup db l path {} compress none",
        repo.display()
    ))
    .ok();
    accident(&rt, port_of(&lz, "l"), None);
    let changed = picture(&rt, &lz, "l");
    lz.run("restore task create name t db l backup latest force")
        .ok();
    lz.run("restore task verify t").ok();
    let file = std::fs::read_dir(&repo)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "rdb"))
        .unwrap();
    let mut bad = std::fs::read(&file).unwrap();
    let at = bad.len() / 2;
    bad[at] ^= 0x40;
    std::fs::write(&file, &bad).unwrap();
    // The run is checked before the safety backup: refused with no work done, no
    // safety backup taken, the data never fenced.
    lz.run("restore task start t")
        .fails(1)
        .stderr_has("the file was changed or damaged")
        .stderr_lacks("the old data is back in place");
    let listed = lz
        .cmd(["--json", "backup", "list", "path", repo.to_str().unwrap()])
        .run()
        .ok()
        .json();
    let runs = listed[0]["result"]["runs"].as_array().unwrap();
    assert_eq!(
        runs.len(),
        1,
        "no safety backup of a refused start: {runs:?}"
    );
    let shown = lz
        .cmd(["--json", "restore", "task", "show", "t"])
        .run()
        .ok()
        .json();
    assert_eq!(shown[0]["result"]["state"], "verify_failed", "{shown:?}");
    assert!(shown[0]["result"]["safety_backup"].is_null(), "{shown:?}");
    assert_same(&changed, &picture(&rt, &lz, "l"), "after the refused start");
    // Without a safety backup the staging finds it, and puts the old data back.
    lz.run("restore task create name u db l backup latest force no_safety_backup")
        .ok();
    lz.run("restore task start u")
        .fails(1)
        .stderr_has("the file was changed or damaged")
        .stderr_has("the old data is back in place and serving");
    assert_same(&changed, &picture(&rt, &lz, "l"), "after the failed start");
    // The put-back started the old data again: its servers are the ones recorded.
    assert_pids_recorded(&lz, "l");
}

/// The pid the CCS records for each shard of `name` is the one running in its
/// directory (`redis.pid`): after a restore stopped and started them, no stale pid.
fn assert_pids_recorded(lz: &Lazarus, name: &str) -> Vec<u32> {
    let c = Store::new(lz.home().to_path_buf()).load().unwrap().unwrap();
    let db = c.database_by_name(name).unwrap();
    db.shards
        .iter()
        .map(|s| {
            let dir = c.nodes[&s.node].shard_dir(db.id, s.id);
            let live: u32 = std::fs::read_to_string(dir.join("redis.pid"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert_eq!(s.pid, Some(live), "redis:{}'s recorded pid", s.id);
            live
        })
        .collect()
}

/// `restore task start` stops and starts the shards: the CCS records their new pids,
/// so `status` never shows the pid of a server that is gone.
#[test]
fn a_restore_records_the_new_pids_of_the_shards_it_started() {
    let World(lz, _guard, _rt, _c) = World::with(2)
        .db("p", 1, true, Persistence::Snapshot)
        .installed();
    let repo = lz.path("repo");
    let run = lz.backup_run("p", &repo);
    let before = assert_pids_recorded(&lz, "p");
    lz.run(&format!(
        "restore task create name t db p backup {run} force no_safety_backup"
    ))
    .ok();
    lz.run("restore task start t").ok();
    let after = assert_pids_recorded(&lz, "p");
    assert!(
        before.iter().all(|p| !after.contains(p)),
        "the shards were started again: {before:?} then {after:?}"
    );
    // A shard killed now shows its last pid, the one that ran, not one from before.
    let master = after[0];
    unsafe { libc::kill(master as i32, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(300));
    let doc = lz
        .cmd(["--json", "status", "shards", "extra", "all"])
        .run()
        .json();
    let rows = doc[0]["result"]["shards"].as_array().unwrap().clone();
    assert!(
        rows.iter().all(|r| r["pid"]
            .as_u64()
            .map(|p| p as u32)
            .is_none_or(|p| !before.contains(&p))),
        "status shows a pid from before the restore: {rows:?}"
    );
}

/// The shard directories of database `name`.
fn shard_dirs(lz: &Lazarus, name: &str) -> Vec<std::path::PathBuf> {
    let c = Store::new(lz.home().to_path_buf()).load().unwrap().unwrap();
    let db = c.database_by_name(name).unwrap();
    db.shards
        .iter()
        .map(|s| c.nodes[&s.node].shard_dir(db.id, s.id))
        .collect()
}

/// Starts restore task `task` and kills its shell while its masters load: its old data
/// is set aside, its shards fenced and stopped, the task left `running` with its lock
/// free. The loading start is held by a stand-in for redis-server that only sleeps
/// (killed here too).
fn kill_while_loading(lz: &Lazarus, task: &str) {
    kill_while_loading_after(lz, task, || {});
}

/// [`kill_while_loading`], running `during` while the restore loads (its shell alive,
/// holding the task's lock) before the kill.
fn kill_while_loading_after(lz: &Lazarus, task: &str, during: impl FnOnce()) {
    let sleeper = lz.path("sleeping-redis-server");
    let pid_file = lz.path("sleeper.pid");
    let _ = std::fs::remove_file(&pid_file);
    std::fs::write(
        &sleeper,
        format!(
            "#!/bin/sh\nif [ -f \"$1\" ] && grep -q '^appendonly no' \"$1\"; then echo $$ > '{}'; exec sleep 600; fi\nexec redis-server \"$@\"\n",
            pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &sleeper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lazarus"))
        .arg("--home")
        .arg(lz.home())
        .arg("--redis-server")
        .arg(&sleeper)
        .args(["restore", "task", "start", task])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid = loop {
        let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        if let Ok(pid) = pid.trim().parse::<i32>() {
            break pid;
        }
        assert!(Instant::now() < deadline, "the restore never began to load");
        std::thread::sleep(Duration::from_millis(10));
    };
    during();
    child.kill().unwrap();
    child.wait().unwrap();
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let json = lz.ccs();
    assert_eq!(json["backups"]["restores"][task]["state"], "running");
}

/// What a killed shell leaves: task `task` `running`, its lock free.
fn left_running(lz: &Lazarus, task: &str) {
    let store = Store::new(lz.home().to_path_buf());
    let lock = store.lock().unwrap();
    let mut c = lock.cluster().unwrap();
    c.backups.restores.get_mut(task).unwrap().state = lazarus::ccs::RestoreState::Running;
    lock.save(&mut c).unwrap();
}

/// A restore whose shell died mid-load is found `interrupted` by whichever restore command
/// on it comes first (not only `show`/`list`): `verify` and `start` refuse it, pointing at
/// `retry`, and change nothing; `retry` puts the old data back and finishes.
#[test]
fn the_first_command_on_a_restore_whose_shell_died_finds_it_interrupted() {
    let World(lz, _guard, rt, _c) = World::with(1)
        .db("f", 1, false, Persistence::Aof)
        .installed();
    let repo = lz.path("repo");
    let backed = picture(&rt, &lz, "f");
    lz.run(&format!("backup db f path {}", repo.display())).ok();
    accident(&rt, port_of(&lz, "f"), None);
    lz.run("restore task create name k db f backup latest force")
        .ok();
    kill_while_loading(&lz, "k");
    let old = shard_dirs(&lz, "f")[0].join(".lazarus-restore-old");
    assert!(old.join("appendonlydir").exists(), "nothing set aside");

    lz.run("restore task verify k")
        .fails(1)
        .stderr_has("restore task `k` is interrupted: use `restore task retry k`");
    assert_eq!(lz.ccs()["backups"]["restores"]["k"]["state"], "interrupted");
    // Its half-restored data is no restore point: a backup is refused, recording no run.
    let runs = lz.ccs()["backups"]["runs"].as_array().map_or(0, Vec::len);
    lz.run(&format!("backup db f path {}", repo.display()))
        .fails(1)
        .stderr_has("has restore task `k` cut short")
        .stderr_has("nothing was backed up: `restore task retry k`");
    assert_eq!(
        lz.ccs()["backups"]["runs"].as_array().map_or(0, Vec::len),
        runs
    );
    left_running(&lz, "k");
    lz.run("restore task start k")
        .fails(1)
        .stderr_has("restore task `k` is interrupted: use `restore task retry k`");
    assert_eq!(lz.ccs()["backups"]["restores"]["k"]["state"], "interrupted");
    assert!(
        old.join("appendonlydir").exists(),
        "the refusals changed the data"
    );
    left_running(&lz, "k");
    lz.run("restore task retry k")
        .ok()
        .stdout_has("content verified: ");
    assert_same(&backed, &picture(&rt, &lz, "f"), "after retry");
    assert!(!old.exists());
}

/// A start whose shell died after its safety backup and before the fence did not fail:
/// the retry takes a new safety backup (the data served clients since) and says so
/// without calling the earlier start failed.
#[test]
fn a_retry_after_a_start_cut_short_before_the_fence_does_not_call_it_failed() {
    let World(lz, _guard, _rt, _c) = World::with(1)
        .db("rb", 1, false, Persistence::Aof)
        .installed();
    let repo = lz.path("repo");
    let run = lz.backup_run("rb", &repo);
    lz.run(&format!(
        "restore task create name rb1 db rb backup {run} force"
    ))
    .ok();
    // What a shell killed between its safety backup and the fence leaves: the task
    // `running` with that safety backup, its lock free, the data untouched and serving.
    let earlier = format!("{}/{}", repo.display(), lz.backup_run("rb", &repo));
    let store = Store::new(lz.home().to_path_buf());
    {
        let lock = store.lock().unwrap();
        let mut c = lock.cluster().unwrap();
        let t = c.backups.restores.get_mut("rb1").unwrap();
        t.state = lazarus::ccs::RestoreState::Running;
        t.safety_backup = Some(earlier.clone());
        lock.save(&mut c).unwrap();
    }
    lz.run("restore task retry rb1")
        .ok()
        .stdout_has("content verified: ")
        .stdout_has(&format!(
            "(taken again: the data has served clients since the earlier start that took {earlier})"
        ))
        .stdout_lacks("failed)");
}

/// Writes made after a failed start (the old data back and serving) are in the safety
/// backup of the `retry` that replaces them: the retry takes a new one, and says so.
#[test]
fn a_retry_after_a_failed_start_takes_a_new_safety_backup() {
    let World(lz, _guard, rt, _c) = World::with(1)
        .db("ra", 1, false, Persistence::Aof)
        .installed();
    let repo = lz.path("repo");
    let run = lz.backup_run("ra", &repo);
    let port = port_of(&lz, "ra");
    let set = |key: &str| {
        rt.block_on(async {
            let mut con = common::data::connect("127.0.0.1", port, 0).await;
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg("precious")
                .query_async(&mut con)
                .await
                .unwrap();
        })
    };
    set("written-before-the-start");
    // The run's file damaged where only its decoding finds it (the manifest resealed with
    // the damaged bytes' stored sha256 and size, which the check before the safety
    // backup compares): the start fails after its safety backup and puts the old data back.
    let file = std::fs::read_dir(repo.join(&run))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("shard-")
        })
        .unwrap();
    let good = std::fs::read(&file).unwrap();
    let manifest = repo.join(&run).join("manifest.json");
    let good_manifest = std::fs::read(&manifest).unwrap();
    let bad = &good[..20];
    std::fs::write(&file, bad).unwrap();
    let name = file.file_name().unwrap().to_str().unwrap().to_string();
    reseal(&manifest, |m| {
        use sha2::{Digest, Sha256};
        let e = m.shards.iter_mut().find(|e| e.file == name).unwrap();
        let sum = Sha256::digest(bad);
        e.stored_sha256 = Some(sum.iter().map(|b| format!("{b:02x}")).collect());
        e.stored_bytes = Some(bad.len() as u64);
    });
    lz.run(&format!(
        "restore task create name ra1 db ra backup {run} force"
    ))
    .ok();
    lz.run("restore task start ra1")
        .fails(1)
        .stderr_has("the old data is back in place and serving");
    let earlier = lz.ccs()["backups"]["restores"]["ra1"]["safety_backup"]
        .as_str()
        .unwrap()
        .to_string();
    set("written-after-failed-start");
    std::fs::write(&file, &good).unwrap();
    std::fs::write(&manifest, &good_manifest).unwrap();
    lz.run("restore task retry ra1")
        .ok()
        .stdout_has("content verified: ")
        .stdout_has(&format!(
            "(taken again: the data has served clients since the earlier start that took {earlier})"
        ));
    let at = lz.ccs()["backups"]["restores"]["ra1"]["safety_backup"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(at, earlier);
    // The new safety backup, restored, holds the write made between.
    lz.run(&format!(
        "restore task create name undo db ra backup {at} force no_safety_backup"
    ))
    .ok();
    lz.run("restore task start undo").ok();
    let got: Option<String> = rt.block_on(async {
        let mut con = common::data::connect("127.0.0.1", port, 0).await;
        redis::cmd("GET")
            .arg("written-after-failed-start")
            .query_async(&mut con)
            .await
            .unwrap()
    });
    assert_eq!(got.as_deref(), Some("precious"));
}

/// While a restore cut short holds a shard's data set aside (its only copy), nothing
/// starts the shard without it or removes it: `restart db` / `restart all` refuse,
/// naming the task and the way out; `status` flags the shard; another restore's verify
/// refuses, naming the directory. `restore task delete` of the task, first to find it
/// interrupted, puts the data back before the task goes.
#[test]
fn data_set_aside_by_a_restore_cut_short_is_neither_lost_nor_started_without() {
    let World(lz, _guard, rt, _c) = World::with(1)
        .db("f", 1, false, Persistence::Aof)
        .installed();
    let repo = lz.path("repo");
    lz.run(&format!("backup db f path {}", repo.display())).ok();
    accident(&rt, port_of(&lz, "f"), None);
    let changed = picture(&rt, &lz, "f");
    lz.run("restore task create name k db f backup latest force")
        .ok();
    // While another shell runs the restore, its shard is `RESTORING` (not a restore cut
    // short), naming the task, and serves no client: `status` fails.
    kill_while_loading_after(&lz, "k", || {
        lz.run("status shards")
            .fails(1)
            .stdout_has("RESTORING")
            .stdout_lacks("RESTORE UNFINISHED")
            .stderr_has("1 shard(s) down: redis:");
        let doc = lz.cmd(["--json", "status", "shards"]).run().fails(1).json();
        assert!(
            doc[0]["hints"][0]
                .as_str()
                .is_some_and(|h| h.starts_with("a restore another shell runs holds some")),
            "{}",
            doc[0]
        );
        let row = &doc[0]["result"]["shards"][0];
        assert_eq!(row["status"], "RESTORING", "{row}");
        assert!(
            row["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("restore task `k` is running in another shell")),
            "{row}"
        );
    });
    let old = shard_dirs(&lz, "f")[0].join(".lazarus-restore-old");
    let named = format!(
        "restore task `k` set the shard's data aside in `{}` (its only copy) and did not finish: `restore task retry k` puts it back and restores again, `restore task delete k` puts it back and drops the task",
        old.display()
    );

    lz.run("restart db f")
        .fails(1)
        .stderr_has("cannot restart: redis:")
        .stderr_has(&named);
    let all = lz.run("restart all");
    let said = format!("{}{}", all.stdout, all.stderr);
    assert!(all.code != 0 && said.contains(&named), "{all:?}");
    // Cut short, its data set aside: the shard serves no client, and `status` fails as
    // for a fenced one.
    lz.run("status shards issues_only")
        .fails(1)
        .stdout_has("RESTORE UNFINISHED")
        .stderr_has("1 shard(s) down: redis:");
    let json = lz
        .cmd(["--json", "status", "shards", "issues_only"])
        .run()
        .fails(1)
        .json();
    assert!(
        json[0]["hints"][0]
            .as_str()
            .is_some_and(|h| h.contains("`status shards` names its task, to `restore task retry`")),
        "{}",
        json[0]
    );
    assert!(
        json[0].to_string().contains("restore task `k` set"),
        "{}",
        json[0]
    );
    assert!(
        old.join("appendonlydir").exists(),
        "a refusal moved the data"
    );

    // Another restore of the database neither replaces nor removes it.
    lz.run("restore task create name other db f backup latest force")
        .ok();
    lz.run("restore task start other")
        .fails(1)
        .stderr_has(&named);
    lz.run("restore task delete other")
        .ok()
        .stdout_has("Deleted restore task `other`.");
    assert!(
        old.join("appendonlydir").exists(),
        "another restore moved the data"
    );

    left_running(&lz, "k");
    lz.run("restore task delete k").ok().stdout_has(
        "Deleted restore task `k`, cut short: first put the old data of db `f` back in place and serving.",
    );
    assert!(!old.exists());
    assert_same(&changed, &picture(&rt, &lz, "f"), "after the delete");
    lz.run("restore task show k").fails(1);
    lz.run("restart db f").ok();
    assert_same(&changed, &picture(&rt, &lz, "f"), "after the restart");
}

/// While another shell runs a restore of a database, nothing else pulls its shards from
/// under it, or backs up its half-restored data: `backup db` and a backup task's run
/// refuse before a run is recorded, `delete db` and `restart db` before anything stops,
/// naming the task,
/// `restart all` leaves the database alone with the same reason, and another restore task
/// of the same database refuses to start. `delete db` used to stop the shards and drop
/// the database mid-restore; the restore's roll-back then started the deleted database's
/// shard again, running unseen. Two restore tasks of one database ran at once, each
/// stopping the shard the other was loading.
#[test]
fn nothing_else_stops_a_database_another_shell_is_restoring() {
    let World(lz, _guard, _rt, _c) = World::with(1)
        .db("f", 1, false, Persistence::Aof)
        .installed();
    let repo = lz.path("repo");
    lz.run(&format!("backup db f path {}", repo.display())).ok();
    lz.run("restore task create name k db f backup latest force no_safety_backup")
        .ok();
    lz.run("restore task create name k2 db f backup latest force no_safety_backup")
        .ok();
    lz.run(&format!(
        "backup task create name nightly db f path {}",
        repo.display()
    ))
    .ok();
    let before = lz.ccs()["databases"].clone();
    let runs = lz.ccs()["backups"]["runs"].clone();
    kill_while_loading_after(&lz, "k", || {
        // Nor is it backed up: its data is fenced and half-restored, which a run would
        // have kept as a good restore point.
        let not_backed_up =
            "`f` is being restored by restore task `k` in another shell: nothing was backed up";
        lz.run(&format!("backup db f path {}", repo.display()))
            .fails(1)
            .stderr_has(not_backed_up);
        lz.run("backup task run nightly")
            .fails(1)
            .stderr_has(not_backed_up);
        assert_eq!(lz.ccs()["backups"]["runs"], runs, "a run was recorded");
        let named =
            "`f` is being restored by restore task `k` in another shell: nothing was stopped";
        lz.run("delete db f").fails(1).stderr_has(named);
        lz.run("restart db f").fails(1).stderr_has(named);
        let all = lz.cmd(["--json", "restart", "all"]).run().fails(1).json();
        let failed = &all[0]["result"]["failed"];
        assert_eq!(failed[0]["name"], "f", "{}", all[0]);
        assert!(
            failed[0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains(named)),
            "{}",
            all[0]
        );
        lz.run("restore task start k2")
            .fails(1)
            .stderr_has("db `f` is being restored by restore task `k` in another shell");
        assert_eq!(
            lz.ccs()["databases"],
            before,
            "the database changed mid-restore"
        );
        assert_eq!(lz.ccs()["backups"]["restores"]["k2"]["state"], "created");
    });
}

fn db_id(lz: &Lazarus, name: &str) -> u64 {
    let c = Store::new(lz.home().to_path_buf()).load().unwrap().unwrap();
    c.database_by_name(name).unwrap().id
}

/// A run of another database is refused at create (naming the run's database, id and
/// name, and the target) and by verify, unless `from_other_db`; a run of the database
/// itself, and of a deleted database recreated by name, are restored as before.
#[test]
fn a_run_of_another_database_needs_from_other_db() {
    let World(lz, _guard, _rt, _c) = World::with(1)
        .db("orders", 1, false, Persistence::Snapshot)
        .db("o2", 1, false, Persistence::Snapshot)
        .installed();
    let repo = lz.path("repo");
    let o2_run = lz.backup_run("o2", &repo);
    let orders_run = lz.backup_run("orders", &repo);
    let (orders, o2) = (db_id(&lz, "orders"), db_id(&lz, "o2"));
    let named = format!("run `{o2_run}` is a backup of db:{o2} `o2`, not of db:{orders} `orders`");
    let refused = lz
        .cmd([
            "--json", "restore", "task", "create", "name", "x3", "db", "orders",
        ])
        .arg("backup")
        .arg(&o2_run)
        .arg("force")
        .run()
        .fails(1)
        .stderr_has(&named)
        .stderr_has("add `from_other_db`")
        .json();
    assert_eq!(refused[0]["kind"], "conflict", "{refused:?}");
    lz.run(&format!(
        "restore task create name x4 db orders backup {}/{o2_run} force",
        repo.display()
    ))
    .fails(1)
    .stderr_has(&named);
    lz.run(&format!("restore task create name c db o3 backup {o2_run}"))
        .fails(1)
        .stderr_has("not of `o3` (to be created)");
    // Nothing was made.
    lz.run("restore task list").ok().stdout_lacks("x3");

    lz.run(&format!(
        "restore task create name x3 db orders backup {o2_run} force from_other_db"
    ))
    .ok();
    let c = Store::new(lz.home().to_path_buf()).load().unwrap().unwrap();
    assert!(
        c.backups.restores["x3"].from_other_db,
        "the task keeps the keyword"
    );
    lz.run("restore task verify x3").ok().stdout_has(&format!(
        "the run is a backup of db:{o2} `o2`, restored into db:{orders} `orders`: `from_other_db`"
    ));
    // A task stored without the keyword (from before it existed): verify refuses it.
    let mut c = Store::new(lz.home().to_path_buf()).load().unwrap().unwrap();
    c.backups.restores.get_mut("x3").unwrap().from_other_db = false;
    lz.install(&c);
    lz.run("restore task verify x3")
        .fails(1)
        .stdout_has("FAILED database: the run is a backup of db:")
        .stdout_has("add `from_other_db`");

    // The database's own run, and a deleted database recreated from its own run.
    lz.run(&format!(
        "restore task create name same db orders backup {orders_run} force"
    ))
    .ok();
    lz.run("restore task verify same")
        .ok()
        .stdout_lacks("database:");
    lz.run("delete db o2 purge").ok();
    lz.run(&format!(
        "restore task create name back db o2 backup {o2_run}"
    ))
    .ok();
    lz.run("restore task start back")
        .ok()
        .stdout_has("content verified: ");
}

/// A backup task whose database a restore made again under a new id names the database
/// by its name, the database of that name now, and how to make the task again. It said
/// only `db:3 no longer exists`.
#[test]
fn a_backup_task_of_a_database_made_again_says_what_to_do() {
    let World(lz, _guard, _rt, _c) = World::with(1)
        .db("orders", 1, false, Persistence::Snapshot)
        .installed();
    let repo = lz.path("repo");
    lz.run(&format!(
        "backup task create name nightly db orders path {}",
        repo.display()
    ))
    .ok();
    lz.run("backup task run nightly").ok();
    let old = db_id(&lz, "orders");
    lz.run("delete db orders purge").ok();
    lz.run("restore task create name back db orders backup latest")
        .ok();
    lz.run("restore task start back").ok();
    let new = db_id(&lz, "orders");
    assert_ne!(old, new);
    lz.run("backup task run nightly")
        .fails(1)
        .stderr_has(&format!(
            "backup task `nightly` backs up db:{old} `orders`, which no longer exists: db:{new} `orders` has its name now"
        ))
        .stderr_has(&format!(
            "`backup task delete nightly` then `backup task create name nightly db orders path {}`",
            repo.display()
        ));
}

/// A repository moved away after the task was made is named as missing (not found), not
/// as a run that did not finish; back in place, the task verifies again.
#[test]
fn a_repository_moved_away_is_named_missing() {
    let World(lz, _guard, _rt, _c) = World::with(1)
        .db("m", 1, false, Persistence::Snapshot)
        .installed();
    let repo = lz.path("repo");
    let run = lz.backup_run("m", &repo);
    lz.run(&format!(
        "restore task create name t db m backup {run} force"
    ))
    .ok();
    lz.run("restore task verify t").ok();
    let moved = lz.path("repo-moved");
    std::fs::rename(&repo, &moved).unwrap();
    let named = format!(
        "the repository `{}` does not exist (moved or unmounted?)",
        repo.display()
    );
    lz.run("restore task verify t")
        .fails(1)
        .stdout_has(&named)
        .stdout_lacks("the run did not finish");
    assert_eq!(verify_kind(&lz, "t"), "not_found");
    lz.run(&format!(
        "restore task create name t2 db m backup {}/{run} force",
        repo.display()
    ))
    .fails(1)
    .stderr_has(&named);
    std::fs::rename(&moved, &repo).unwrap();
    lz.run("restore task verify t").ok();
}

/// A deleted task leaves no lock file behind; while another process holds the task's
/// lock, delete is refused and the lock file stays.
#[test]
fn a_deleted_task_leaves_no_lock_file() {
    let World(lz, _guard, _rt, _c) = World::with(1)
        .db("k", 1, false, Persistence::Snapshot)
        .installed();
    let repo = lz.path("repo");
    let run = lz.backup_run("k", &repo);
    lz.run(&format!(
        "restore task create name t db k backup {run} force"
    ))
    .ok();
    lz.run("restore task verify t").ok();
    let file = lz.home().join("locks").join("restore-t.lock");
    assert!(file.exists(), "verify takes the task's lock");
    // Another shell holding the lock (a flock(2) lock of this test process).
    let holder = std::fs::File::open(&file).unwrap();
    holder.try_lock().unwrap();
    lz.run("restore task delete t")
        .fails(1)
        .stderr_has("is running in another shell");
    assert!(
        file.exists(),
        "a lock another process holds is never removed"
    );
    drop(holder);
    lz.run("restore task delete t").ok();
    assert!(!file.exists(), "the lock file outlives the task");
    lz.run("restore task list")
        .ok()
        .stdout_has("No restore tasks");
}

/// A run that is not in the repository is `not_found`, named as not there (not as a run
/// that did not finish, nor as damaged); a run directory without its manifest is an
/// unfinished run, `not_found` too, as the README's kinds say. Nothing is stored.
#[test]
fn a_run_that_is_not_there_is_not_found() {
    let lz = Lazarus::new();
    let repo = lz.path("repo");
    std::fs::create_dir_all(repo.join("20261204-035012-17")).unwrap();
    for (run, says) in [
        (
            "20261204-035012-99".to_string(),
            format!("`{}/20261204-035012-99` does not exist", repo.display()),
        ),
        (
            "20261204-035012-17".to_string(),
            "the run did not finish".to_string(),
        ),
    ] {
        let out = lz
            .cmd(["--json"])
            .arg("restore")
            .arg("task")
            .arg("create")
            .arg("name")
            .arg("r")
            .arg("db")
            .arg("orders")
            .arg("backup")
            .arg(&format!("{}/{run}", repo.display()))
            .run()
            .fails(1)
            .stderr_has(&says);
        assert_eq!(out.json()[0]["kind"], "not_found", "{run}");
    }
    assert!(!lz.path("ccs.json").exists(), "nothing is stored");
}

/// A forced restore into a sharded database whose replica serves a master's slots (an
/// operator's `CLUSTER FAILOVER`, or a failover after a crash): the masters used to load
/// the run's files, then restart as their replicas' replicas and sync the replicas' emptied
/// data away, so the proof failed and no such restore could succeed. The masters now take
/// their slots back first; the run comes back whole.
#[test]
fn a_forced_restore_into_a_failed_over_database_brings_the_run_back() {
    let World(lz, _guard, rt, c) = World::with(2)
        .db("swap", 3, true, Persistence::Aof)
        .installed();
    let before = picture(&rt, &lz, "swap");
    let repo = lz.path("repo");
    let run = lz.backup_run("swap", &repo);
    let db = c.database_by_name("swap").unwrap().clone();
    let m0 = db.masters().next().unwrap().id;
    let r0 = db.shards.iter().find(|s| s.master == Some(m0)).unwrap().id;
    let url = |id| {
        let a = shard_addr(&c, &db, id).unwrap();
        format!("redis://127.0.0.1:{}", a.port)
    };
    let role = |id| -> String {
        let mut con = redis::Client::open(url(id))
            .unwrap()
            .get_connection()
            .unwrap();
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut con)
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("role:"))
            .unwrap()
            .trim()
            .to_string()
    };
    let mut con = redis::Client::open(url(r0))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query(&mut con)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while role(r0) != "master" {
        assert!(Instant::now() < deadline, "redis:{r0} not promoted");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A write the run does not hold, on the promoted replica.
    let _: () = redis::cmd("SET")
        .arg(format!("{{{}}}after", common::world::slot_tag(0)))
        .arg(1)
        .query(&mut con)
        .unwrap();

    lz.run(&format!(
        "restore task create name back db swap backup {run} force no_safety_backup"
    ))
    .ok();
    lz.run("restore task start back")
        .ok()
        .stdout_has("content verified: ");
    assert_same(&before, &picture(&rt, &lz, "swap"), "after the restore");
    for s in &db.shards {
        let want = if s.master.is_none() {
            "master"
        } else {
            "slave"
        };
        assert_eq!(role(s.id), want, "redis:{}", s.id);
    }
}

/// `backup list` of a parent prefix: a repository nested in it (a directory of runs) is
/// listed apart, as a repository to list, never as an unfinished run; a directory with
/// nothing in it still is one.
#[test]
fn a_nested_repository_is_listed_apart_from_runs() {
    let World(lz, _guard, _rt, _c) = World::with(1)
        .db("n", 1, false, Persistence::Snapshot)
        .installed();
    let parent = lz.path("repo");
    let inner = parent.join("inner");
    lz.backup_run("n", &inner);
    let run = lz.backup_run("n", &parent);
    std::fs::create_dir(parent.join("half")).unwrap();
    let doc = lz
        .cmd(["--json", "backup", "list", "path", parent.to_str().unwrap()])
        .run()
        .ok()
        .json();
    let result = &doc[0]["result"];
    let runs: Vec<&str> = result["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run"].as_str().unwrap())
        .collect();
    assert_eq!(runs, [run.as_str(), "half"], "{result}");
    assert_eq!(result["runs"][1]["restorable"], false, "{result}");
    assert_eq!(
        result["repositories"],
        serde_json::json!([{"path": inner.to_str().unwrap(), "entries": 1}]),
        "{result}"
    );
    lz.run(&format!("backup list path {}", parent.display()))
        .ok()
        .stdout_has(&format!(
            "`{}` is a repository of its own (1 entry), not a run: `backup list path {}` lists it.",
            inner.display(),
            inner.display()
        ))
        .stdout_lacks("inner  ");
}

/// What a shell killed while its restore removed the old data leaves: the restore done
/// (unfenced, serving), the task `running` at `removing the old data` with its lock free,
/// and the data it had set aside (`aside`, a copy of the shard's data before the start)
/// still in the shard directory, as it is before that step renames it away.
fn cut_short_removing_old(lz: &Lazarus, task: &str, aside: &Path) {
    let dir = &shard_dirs(lz, "f")[0];
    let old = dir.join(".lazarus-restore-old");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("lazarus-restore-task"), task).unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(aside.join("appendonlydir"))
        .arg(&old)
        .status()
        .unwrap();
    assert!(copied.success());
    let store = Store::new(lz.home().to_path_buf());
    let lock = store.lock().unwrap();
    let mut c = lock.cluster().unwrap();
    let t = c.backups.restores.get_mut(task).unwrap();
    t.state = lazarus::ccs::RestoreState::Running;
    t.step = Some(lazarus::ccs::RestoreStep::RemovingOld);
    lock.save(&mut c).unwrap();
}

/// A restore whose shell died while it removed the old data had finished: its data was
/// unfenced and served clients. `retry` then removes what is left of the old data and
/// keeps the restored data with every write made since, as `delete` does; neither puts
/// the old data back nor restores the run again (each would drop those writes).
#[test]
fn a_restore_cut_short_while_removing_the_old_data_is_finished_not_undone() {
    let World(lz, _guard, rt, _c) = World::with(1)
        .db("f", 1, false, Persistence::Aof)
        .installed();
    let repo = lz.path("repo");
    lz.run(&format!("backup db f path {}", repo.display())).ok();
    let port = port_of(&lz, "f");
    accident(&rt, port, None);
    let aside = lz.path("aside");
    std::fs::create_dir_all(&aside).unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(shard_dirs(&lz, "f")[0].join("appendonlydir"))
        .arg(&aside)
        .status()
        .unwrap();
    assert!(copied.success());
    let write = |key: &str| {
        rt.block_on(async {
            let mut con = common::data::connect("127.0.0.1", port, 0).await;
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg("written after the restore")
                .query_async(&mut con)
                .await
                .unwrap();
        })
    };
    let old = shard_dirs(&lz, "f")[0].join(".lazarus-restore-old");

    for (task, finish) in [("k1", "retry"), ("k2", "delete")] {
        lz.run(&format!(
            "restore task create name {task} db f backup latest force no_safety_backup"
        ))
        .ok();
        lz.run(&format!("restore task start {task}")).ok();
        write(&format!("after-{task}"));
        let served = picture(&rt, &lz, "f");
        cut_short_removing_old(&lz, task, &aside);

        lz.run(&format!("restore task show {task}"))
            .ok()
            .stdout_has("interrupted")
            .stdout_has(&format!(
                "after the restored data served clients: `restore task retry {task}` unfences the shards still fenced and removes what is left of the old data"
            ));
        let done = lz.run(&format!("restore task {finish} {task}")).ok();
        if finish == "retry" {
            done.stdout_has(&format!("Finished restore task `{task}`"));
            assert_eq!(lz.ccs()["backups"]["restores"][task]["state"], "succeeded");
            lz.run(&format!("restore task retry {task}"))
                .fails(1)
                .stderr_has("already succeeded");
        } else {
            done.stdout_has(&format!("Deleted restore task `{task}`."));
            lz.run(&format!("restore task show {task}")).fails(1);
        }
        assert!(!old.exists(), "{finish}: the old data is left");
        assert_same(&served, &picture(&rt, &lz, "f"), finish);
        lz.run("status shards issues_only")
            .ok()
            .stdout_lacks("RESTORE UNFINISHED");
    }
}

/// A shell killed while its restore unfenced the shards (the restored data loaded,
/// counted and proved) leaves some shards unfenced, serving the restored data and taking
/// writes, and others still fenced, with the old data set aside in every shard
/// directory. `retry` and `delete` then finish the restore forward: the shards still
/// fenced are unfenced, what is left of the old data removed, and every write an
/// unfenced shard took is kept (putting the old data back, as they did, dropped them).
#[test]
fn a_restore_cut_short_while_unfencing_is_finished_and_keeps_the_writes_taken() {
    let World(lz, _guard, rt, _c) = World::with(1)
        .db("f", 2, false, Persistence::Aof)
        .installed();
    let repo = lz.path("repo");
    lz.backup_run("f", &repo);
    let c = Store::new(lz.home().to_path_buf()).load().unwrap().unwrap();
    let db = c.database_by_name("f").unwrap();
    let masters: Vec<(u16, lazarus::ccs::SlotRange)> = db
        .masters()
        .map(|m| (shard_addr(&c, db, m.id).unwrap().port, m.slots.unwrap()))
        .collect();
    let dirs = shard_dirs(&lz, "f");
    // What each shard held before the start: the old data the start sets aside.
    let aside: Vec<std::path::PathBuf> = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let to = lz.path(&format!("aside-{i}"));
            std::fs::create_dir_all(&to).unwrap();
            assert!(Command::new("cp")
                .arg("-a")
                .arg(dir.join("appendonlydir"))
                .arg(&to)
                .status()
                .unwrap()
                .success());
            to
        })
        .collect();

    for (task, finish) in [("u1", "retry"), ("u2", "delete")] {
        lz.run(&format!(
            "restore task create name {task} db f backup latest force no_safety_backup"
        ))
        .ok();
        lz.run(&format!("restore task start {task}")).ok();
        // The first master unfenced takes a write, in its own slots.
        let (port0, slots0) = masters[0];
        let key = rt.block_on(async {
            let mut con = common::data::connect("127.0.0.1", port0, 0).await;
            for i in 0.. {
                let key = format!("after-unfence-{task}-{i}");
                let slot: u16 = redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(&key)
                    .query_async(&mut con)
                    .await
                    .unwrap();
                if slot >= slots0.start && slot <= slots0.end {
                    let _: () = redis::cmd("SET")
                        .arg(&key)
                        .arg("written once unfenced")
                        .query_async(&mut con)
                        .await
                        .unwrap();
                    return key;
                }
            }
            unreachable!()
        });
        let served = picture(&rt, &lz, "f");
        assert!(
            served.keys().any(|(_, k)| k == key.as_bytes()),
            "{key} not written"
        );
        // What the killed shell left: the second master still fenced (its password in
        // its `requirepass` and its fence file), the old data set aside in every shard
        // directory, the task `running` at `unfencing` with its lock free.
        let fence = "fence-of-the-killed-start";
        rt.block_on(async {
            let mut con = common::data::connect("127.0.0.1", masters[1].0, 0).await;
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("requirepass")
                .arg(fence)
                .query_async(&mut con)
                .await
                .unwrap();
        });
        std::fs::write(dirs[1].join(".lazarus-fence"), format!("{fence}\n")).unwrap();
        for (dir, from) in dirs.iter().zip(&aside) {
            let old = dir.join(".lazarus-restore-old");
            std::fs::create_dir_all(&old).unwrap();
            std::fs::write(old.join("lazarus-restore-task"), task).unwrap();
            assert!(Command::new("cp")
                .arg("-a")
                .arg(from.join("appendonlydir"))
                .arg(&old)
                .status()
                .unwrap()
                .success());
        }
        {
            let store = Store::new(lz.home().to_path_buf());
            let lock = store.lock().unwrap();
            let mut c = lock.cluster().unwrap();
            let t = c.backups.restores.get_mut(task).unwrap();
            t.state = lazarus::ccs::RestoreState::Running;
            t.step = Some(lazarus::ccs::RestoreStep::Unfencing);
            lock.save(&mut c).unwrap();
        }

        lz.run(&format!("restore task show {task}"))
            .ok()
            .stdout_has("interrupted")
            .stdout_has(&format!(
                "died while unfencing, after the restored data served clients: `restore task retry {task}` unfences the shards still fenced"
            ));
        let done = lz.run(&format!("restore task {finish} {task}")).ok();
        if finish == "retry" {
            done.stdout_has(&format!("Finished restore task `{task}`"));
            assert_eq!(lz.ccs()["backups"]["restores"][task]["state"], "succeeded");
        } else {
            done.stdout_has(&format!("Deleted restore task `{task}`."));
        }
        for dir in &dirs {
            assert!(
                !dir.join(".lazarus-restore-old").exists(),
                "{finish}: the old data is left in {}",
                dir.display()
            );
            assert!(
                !dir.join(".lazarus-fence").exists(),
                "{finish}: fence file left"
            );
        }
        // Both masters serve again without the fence, the write kept.
        assert_same(&served, &picture(&rt, &lz, "f"), finish);
        lz.run("status shards issues_only")
            .ok()
            .stdout_lacks("FENCED")
            .stdout_lacks("RESTORE UNFINISHED");
    }
}

/// Two clusters keep a database of one name in one repository. For each, that
/// repository's `latest` is the newest run it wrote itself (for `restore task create`
/// and `verify db`), not the other cluster's newer one: that is another database's data,
/// which a restore refuses without `from_other_cluster` (and takes only when asked).
#[test]
fn latest_in_a_shared_repository_is_this_clusters_own_run() {
    let World(a, _guard_a, rt, _ca) = World::with(1)
        .db("f", 1, false, Persistence::Aof)
        .installed();
    let World(b, _guard_b, _rt_b, _cb) = World::with(1)
        .db("f", 1, false, Persistence::Aof)
        .installed();
    let repo = a.path("shared");
    let own = a.backup_run("f", &repo);
    // Run ids name the second they start in.
    std::thread::sleep(Duration::from_millis(1100));
    let theirs = b.backup_run("f", &repo);
    assert_ne!(own, theirs);
    let backed = picture(&rt, &a, "f");
    let latest = format!("{}/latest", repo.display());

    a.run(&format!("verify db f against {latest}"))
        .ok()
        .stdout_has(&format!("against backup run `{own}`"));
    accident(&rt, port_of(&a, "f"), None);
    a.run(&format!(
        "restore task create name t db f backup {latest} force no_safety_backup"
    ))
    .ok()
    .stdout_has(&format!("to backup run `{own}`"));
    a.run("restore task start t").ok();
    assert_same(&backed, &picture(&rt, &a, "f"), "after the restore");
    a.run(&format!(
        "restore task create name other db f backup {latest} force from_other_cluster"
    ))
    .ok()
    .stdout_has(&format!("to backup run `{theirs}`"));
}

/// A restore stages each run file decoded: the database's data in plain, an encrypted
/// run's too. Staged in a `target_path` others may read, it is the owner's only (as the
/// run's own files are), and so is the `dump.rdb` it becomes.
#[test]
fn a_decoded_run_file_is_staged_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let World(lz, _guard, rt, _c) = World::with(1)
        .db("f", 1, false, Persistence::Aof)
        .installed();
    let (key, recipients) = age_pair(&lz.path("keys"));
    let repo = lz.path("repo");
    lz.run(&format!(
        "backup db f path {} encrypt {}",
        repo.display(),
        recipients.display()
    ))
    .ok();
    let backed = picture(&rt, &lz, "f");
    accident(&rt, port_of(&lz, "f"), None);
    let stage = lz.path("stage");
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::set_permissions(&stage, std::fs::Permissions::from_mode(0o755)).unwrap();
    lz.run(&format!(
        "restore task create name t db f backup latest force no_safety_backup identity {} target_path {}",
        key.display(),
        stage.display()
    ))
    .ok();
    lz.run("restore task start t").ok();
    assert_same(&backed, &picture(&rt, &lz, "f"), "after the restore");
    let dump = shard_dirs(&lz, "f")[0].join("dump.rdb");
    let mode = std::fs::metadata(&dump).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", dump.display());
    assert_eq!(std::fs::read_dir(&stage).unwrap().count(), 0);
}

/// A restore into another shard layout writes key by key into an empty database, fenced.
/// Its shell killed while it wrote, the part it wrote is neither served nor kept: `retry`
/// empties the masters again (still fenced) before it unfences them, so verify finds the
/// target empty and the retry restores the whole run; without that the part served
/// clients and every retry failed verify on the keys it held.
#[test]
fn a_key_by_key_restore_cut_short_is_emptied_and_retried() {
    let World(lz, _guard, rt, _c) = World::with(1)
        .db("f", 2, false, Persistence::Aof)
        .installed();
    let repo = lz.path("repo");
    let run = lz.backup_run("f", &repo);
    let backed = picture(&rt, &lz, "f");
    lz.run("create db g persistence aof").ok();
    lz.run(&format!(
        "restore task create name t db g backup {run} from_other_db"
    ))
    .ok();
    // What the killed shell left: g's master fenced (the fence password in its
    // `requirepass` and in the fence file), part of the run written, the task `running`.
    let port = port_of(&lz, "g");
    let fence = "fence-of-the-killed-start";
    rt.block_on(async {
        let mut con = common::data::connect("127.0.0.1", port, 0).await;
        let _: () = redis::cmd("SET")
            .arg("part-of-the-run")
            .arg("1")
            .query_async(&mut con)
            .await
            .unwrap();
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg(fence)
            .query_async(&mut con)
            .await
            .unwrap();
    });
    std::fs::write(
        shard_dirs(&lz, "g")[0].join(".lazarus-fence"),
        format!("{fence}\n"),
    )
    .unwrap();
    {
        let store = Store::new(lz.home().to_path_buf());
        let lock = store.lock().unwrap();
        let mut c = lock.cluster().unwrap();
        let t = c.backups.restores.get_mut("t").unwrap();
        t.state = lazarus::ccs::RestoreState::Running;
        t.step = Some(lazarus::ccs::RestoreStep::RestoringKeys(Some((1, 10))));
        lock.save(&mut c).unwrap();
    }

    // `status` names the fence's task and the way out, not a bare `NOAUTH`, and fails:
    // the shard serves no client.
    lz.run("status shards")
        .fails(1)
        .stdout_has("FENCED")
        .stdout_lacks("DOWN")
        .stderr_has("1 shard(s) down: redis:");
    let doc = lz.cmd(["--json", "status", "shards"]).run().fails(1).json();
    let row = doc[0]["result"]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "g")
        .unwrap()
        .clone();
    assert_eq!(row["status"], "FENCED", "{row}");
    assert!(
        doc[0]["hints"][0]
            .as_str()
            .is_some_and(|h| h.contains("`status shards` names its task")),
        "{}",
        doc[0]
    );
    assert_eq!(
        row["detail"],
        "restore task `t` (running) fenced the shard, so clients get NOAUTH, and did not finish: `restore task retry t` empties it and restores again, `restore task delete t` empties what it wrote, unfences it and drops the task",
        "{row}"
    );

    lz.run("restore task retry t")
        .ok()
        .stdout_has("content verified: ");
    assert_same(&backed, &picture(&rt, &lz, "g"), "after the retry");
}

/// A database that no longer exists is created from the run's manifest at `start`:
/// verify places it first, so a replicated database's run on a cluster of one node fails
/// verify naming why (before, verify passed and `start` failed creating it).
#[test]
fn verify_refuses_a_database_the_cluster_cannot_create() {
    let World(a, _guard_a, _rt, _ca) = World::with(2)
        .db("r", 1, true, Persistence::Aof)
        .installed();
    let repo = a.path("offsite");
    a.backup_run("r", &repo);
    let World(b, _guard_b, _rt_b, _cb) = World::with(1).installed();
    b.run(&format!(
        "restore task create name t db r backup {}/latest from_other_cluster",
        repo.display()
    ))
    .ok();
    b.run("restore task verify t")
        .fails(1)
        .stdout_has("FAILED target: the database does not exist and cannot be created from the manifest (1 shard(s), replication enabled, persistence aof): replication needs at least 2 nodes, the cluster has 1");
    b.run("restore task start t")
        .fails(1)
        .stderr_has("replication needs at least 2 nodes");
    assert!(b.ccs()["databases"]
        .as_object()
        .is_none_or(|d| d.is_empty()));
}
