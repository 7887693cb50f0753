//! TLS end to end: `cluster tls set` with certificates made at test time (`rcgen`).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::certs::{write_files, Ca, Files};
use common::data::{connect_at, contents_at, write_sample, Contents};
use common::procs::ProcessGuard;
use common::world::{slot_tag, test_cluster};
use common::{runtime, Lazarus};
use lazarus::ccs::{Cluster, Store};
use lazarus::db::shard_addr;
use lazarus::server::{probe, ClusterAsk, ShardAddr};

fn set_line(f: &Files) -> String {
    format!(
        "cluster tls set cacert {} cert {} key {}",
        f.cacert.display(),
        f.cert.display(),
        f.key.display()
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Issue 12, evidence 3 (material): each bad file is a clear error and nothing is
/// stored; good files land on every node, 0600/0700, recorded by fingerprint only.
#[test]
fn bad_material_is_refused_and_nothing_is_stored() {
    let lz = Lazarus::new();
    lz.run("cluster create name t").ok();
    let n2 = lz.path("n2");
    lz.run(&format!(
        "node add addr 127.0.0.1 persistent_path {}",
        n2.display()
    ))
    .ok();
    let dir = lz.path("in");
    let ca = Ca::new("lazarus test CA");
    let other = Ca::new("other CA");

    let (cert, key) = ca.expired_leaf();
    let expired = write_files(&dir, "expired-", &ca.pem(), &cert, &key);
    let (cert, _) = ca.leaf();
    let (_, wrong_key) = ca.leaf();
    let mismatched = write_files(&dir, "mismatch-", &ca.pem(), &cert, &wrong_key);
    let readable = ca.write(&dir, "readable-");
    std::fs::set_permissions(&readable.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut missing = ca.write(&dir, "missing-");
    missing.cert = dir.join("no-such.crt");
    let (cert, key) = other.leaf();
    let foreign = write_files(&dir, "foreign-", &ca.pem(), &cert, &key);

    let cases = [
        (
            &expired,
            2,
            format!(
                "`cert` file `{}` expired on 2021-06-30 00:00:00 UTC",
                expired.cert.display()
            ),
        ),
        (
            &mismatched,
            2,
            format!(
                "`key` file `{}` is not the key of the certificate",
                mismatched.key.display()
            ),
        ),
        (
            &readable,
            2,
            format!(
                "`key` file `{}` is readable by others (mode 0644)",
                readable.key.display()
            ),
        ),
        (
            &missing,
            1,
            format!("`cert` file `{}` does not exist", missing.cert.display()),
        ),
        (
            &foreign,
            2,
            format!(
                "`cert` file `{}` is not signed by the CA in `{}`",
                foreign.cert.display(),
                foreign.cacert.display()
            ),
        ),
    ];
    let before = lz.ccs();
    for (files, code, message) in cases {
        lz.run(&set_line(files)).fails(code).stderr_has(&message);
        assert_eq!(lz.ccs(), before, "nothing stored after: {message}");
        assert!(!lz.path("nodes/1/tls").exists() && !n2.join("tls").exists());
    }

    let good = ca.write(&dir, "good-");
    let out = lz.run(&set_line(&good)).ok().stdout_has("Set TLS material");
    let key_pem = std::fs::read_to_string(&good.key).unwrap();
    let key_body = key_pem.lines().nth(1).unwrap();
    let ccs_text = std::fs::read_to_string(lz.path("ccs.json")).unwrap();
    assert!(!ccs_text.contains(key_body) && !out.stdout.contains(key_body));
    let tls = &lz.ccs()["tls"];
    assert_eq!(tls["key"]["source"], good.key.display().to_string());
    assert_eq!(tls["verify"], true);
    let id = {
        let json = lz
            .cmd(["--json"])
            .arg("cluster")
            .arg("tls")
            .arg("set")
            .arg("cacert")
            .arg(good.cacert.to_str().unwrap())
            .arg("cert")
            .arg(good.cert.to_str().unwrap())
            .arg("key")
            .arg(good.key.to_str().unwrap())
            .run()
            .ok()
            .json();
        json[0]["result"]["material_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let info = lz.cmd(["--json", "info", "cluster"]).run().ok().json();
    let view = &info[0]["result"]["tls"];
    assert_eq!(view["material_id"], id.as_str());
    assert_eq!(view["cert_sha256"], tls["cert"]["sha256"]);
    assert_eq!(view["verify"], true);
    assert_eq!(view["expires_soon"], false);
    for node in [lz.path("nodes/1"), n2.clone()] {
        let at = node.join("tls").join(&id);
        assert_eq!(mode(&node.join("tls")), 0o700);
        assert_eq!(mode(&at), 0o700);
        assert_eq!(mode(&at.join("key.pem")), 0o600);
        assert_eq!(
            std::fs::read_to_string(at.join("key.pem")).unwrap(),
            key_pem
        );
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn stored(lz: &Lazarus) -> Cluster {
    Store::new(lz.home().to_path_buf()).load().unwrap().unwrap()
}

/// Every master's content, read over the database's own transport (TLS for a TLS one).
fn picture(rt: &tokio::runtime::Runtime, lz: &Lazarus, name: &str) -> Contents {
    let c = stored(lz);
    let db = c.database_by_name(name).unwrap();
    let mut all = Contents::new();
    for m in db.masters() {
        let a = shard_addr(&c, db, m.id).unwrap();
        assert!(a.is_tls(), "redis:{} is reached over TLS", m.id);
        all.extend(rt.block_on(contents_at(&a)));
    }
    all
}

/// Each master of the TLS database `name` refuses plain text and a certificate of
/// another CA, and answers `redis-cli --tls` with the cluster's files.
fn tls_only(rt: &tokio::runtime::Runtime, lz: &Lazarus, name: &str, good: &Files, foreign: &Files) {
    let c = stored(lz);
    let db = c.database_by_name(name).unwrap();
    for s in &db.shards {
        let a = shard_addr(&c, db, s.id).unwrap();
        let plain = ShardAddr::plain(a.host.clone(), a.port, None);
        let p = rt.block_on(probe(&plain, ClusterAsk::Nothing, Duration::from_secs(2)));
        assert!(!p.up, "redis:{} answered plain text", s.id);
        let cli = |f: &Files| {
            let out = std::process::Command::new("redis-cli")
                .args(["--tls", "--cacert"])
                .arg(&f.cacert)
                .arg("--cert")
                .arg(&f.cert)
                .arg("--key")
                .arg(&f.key)
                .args(["-h", "127.0.0.1", "-p", &a.port.to_string(), "PING"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        assert_eq!(cli(good), "PONG", "redis:{}", s.id);
        assert_ne!(
            cli(foreign),
            "PONG",
            "redis:{} took another CA's client",
            s.id
        );
    }
}

/// Issue 12, evidence 1, 2 and 4, and rotation: a 3-shard TLS-only database (Redis
/// Cluster over TLS) is written and read over TLS, refuses plain text and foreign
/// certificates, is backed up, loses every process and the home, comes back with
/// `cluster recover` + `recover all` TLS-only with the same data, is restored from its
/// backup, and takes rotated material while running.
#[test]
fn a_tls_database_survives_the_drill_over_tls() {
    let lz = Lazarus::new();
    let guard = ProcessGuard::new(lz.home());
    let rt = runtime();
    lz.install(&test_cluster(lz.home(), 2));
    let ca = Ca::new("lazarus test CA");
    let good = ca.write(&lz.path("in"), "");
    let foreign = Ca::new("other CA").write(&lz.path("in"), "foreign-");
    lz.run(&set_line(&good)).ok();
    let out = lz.run("create db sec shards 3").ok();
    assert!(
        out.stdout.contains("Endpoint: rediss://127.0.0.1:"),
        "{}",
        out.stdout
    );

    // A replicated one: the replica follows its master over TLS.
    lz.run("create db rep replication enabled persistence snapshot")
        .ok();

    // Data in through Lazarus's own TLS client, a slot tag per master.
    let c = stored(&lz);
    let db = c.database_by_name("sec").unwrap();
    assert!(db.config.tls);
    for m in db.masters() {
        let a = shard_addr(&c, db, m.id).unwrap();
        let tag = format!("{{{}}}", slot_tag(m.slots.unwrap().start));
        rt.block_on(async {
            let mut con = connect_at(&a, 0).await;
            write_sample(&mut con, &tag, 10).await;
        });
    }
    {
        let db = c.database_by_name("rep").unwrap();
        let m = db.masters().next().unwrap();
        let a = shard_addr(&c, db, m.id).unwrap();
        rt.block_on(async {
            let mut con = connect_at(&a, 0).await;
            write_sample(&mut con, "rep", 10).await;
        });
    }
    let before = picture(&rt, &lz, "sec");
    let rep_before = picture(&rt, &lz, "rep");
    assert!(!before.is_empty() && !rep_before.is_empty());
    tls_only(&rt, &lz, "sec", &good, &foreign);
    tls_only(&rt, &lz, "rep", &good, &foreign);
    // The replica's copy, read over TLS, is the master's.
    {
        let c = stored(&lz);
        let db = c.database_by_name("rep").unwrap();
        let r = db.shards.iter().find(|s| s.master.is_some()).unwrap();
        let a = shard_addr(&c, db, r.id).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while rt.block_on(contents_at(&a)) != rep_before {
            assert!(
                std::time::Instant::now() < deadline,
                "the replica never caught up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        rt.block_on(async {
            for s in &db.shards {
                let a = shard_addr(&c, db, s.id).unwrap();
                let mut con = connect_at(&a, 0).await;
                let _: () = redis::cmd("SAVE").query_async(&mut con).await.unwrap();
            }
        });
    }
    let status = lz.cmd(["--json", "status"]).run().ok().json();
    let endpoint = &status[0]["result"]["endpoints"][0];
    assert_eq!(endpoint["ssl"], true, "{endpoint}");
    assert!(endpoint["cert_expires"].as_str().is_some(), "{endpoint}");
    for s in status[0]["result"]["shards"].as_array().unwrap() {
        assert_eq!(s["status"], "OK", "{s}");
    }
    lz.run("status issues_only")
        .ok()
        .stdout_lacks("redis:")
        .stdout_lacks("endpoint:");
    lz.run("status endpoints").ok().stdout_has("Yes");

    // A script's `status` lines ask over the connections its first one made: three of
    // them are one new connection (one TLS handshake) to each shard, plus the one each
    // count below makes for itself.
    let accepted = || -> Vec<u64> {
        let db = c.database_by_name("sec").unwrap();
        db.shards
            .iter()
            .map(|s| {
                let a = shard_addr(&c, db, s.id).unwrap();
                let stats: String = rt.block_on(async {
                    let mut con = connect_at(&a, 0).await;
                    redis::cmd("INFO")
                        .arg("stats")
                        .query_async(&mut con)
                        .await
                        .unwrap()
                });
                stats
                    .lines()
                    .find_map(|l| l.strip_prefix("total_connections_received:"))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap()
            })
            .collect()
    };
    let first = accepted();
    lz.script("status\nstatus\nstatus\n").ok();
    let then = accepted();
    for (f, t) in first.iter().zip(&then) {
        assert_eq!(t - f, 2, "connections before {first:?}, after {then:?}");
    }

    // A backup over TLS (the snapshot stream is TLS too).
    let repo = lz.path("repo");
    lz.run(&format!("backup db sec path {}", repo.display()))
        .ok();

    // The disaster: every process killed, the home lost; the old disk mounted elsewhere.
    guard.kill_all();
    std::fs::remove_file(lz.path("ccs.json")).unwrap();
    std::fs::rename(lz.path("old/node1"), lz.path("disk1")).unwrap();
    let script = format!(
        "cluster recover filename {d}/ccs/ccs.json node_uid 1 persistent_path {n}\n\
         node 1 recovery_path set {d}\n\
         recover all\n",
        d = lz.path("disk1").display(),
        n = lz.path("new1").display()
    );
    let out = lz.script(&script).ok();
    assert!(
        out.stdout.contains("Completed successfully"),
        "{}",
        out.stdout
    );
    assert_eq!(picture(&rt, &lz, "sec"), before, "recovered over TLS");
    tls_only(&rt, &lz, "sec", &good, &foreign);
    lz.run("status").ok();

    // The backup restores over TLS, after an accident.
    {
        let c = stored(&lz);
        let db = c.database_by_name("sec").unwrap();
        let m = db.masters().next().unwrap();
        let a = shard_addr(&c, db, m.id).unwrap();
        rt.block_on(async {
            let mut con = connect_at(&a, 0).await;
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("*")
                .query_async(&mut con)
                .await
                .unwrap();
            for k in keys {
                let _: () = redis::cmd("DEL")
                    .arg(k)
                    .query_async(&mut con)
                    .await
                    .unwrap();
            }
        });
    }
    assert_ne!(picture(&rt, &lz, "sec"), before);
    lz.run("restore task create name undo db sec backup latest force")
        .ok();
    lz.run("restore task start undo").ok();
    assert_eq!(picture(&rt, &lz, "sec"), before, "restored over TLS");
    tls_only(&rt, &lz, "sec", &good, &foreign);

    // Rotation while running: a new CA and a certificate expiring in 10 days, taken by
    // every shard without a restart (the same pids answer); the old material is then
    // refused, and the near expiry is an issue.
    let live_pids = || -> Vec<serde_json::Value> {
        let json = lz.cmd(["--json", "status", "shards"]).run().ok().json();
        json[0]["result"]["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["pid"].clone())
            .collect()
    };
    let pids = live_pids();
    let next_ca = Ca::new("next CA");
    let soon = lazarus::tls::utc(now() + 10 * 86_400);
    let ymd: Vec<i32> = soon[..10].split('-').map(|n| n.parse().unwrap()).collect();
    let (cert, key) = next_ca.leaf_with(|p| {
        p.not_after = rcgen::date_time_ymd(ymd[0], ymd[1] as u8, ymd[2] as u8);
    });
    let next = write_files(&lz.path("in"), "next-", &next_ca.pem(), &cert, &key);
    let out = lz.run(&set_line(&next)).ok();
    assert!(out.stdout.contains("Rotated"), "{}", out.stdout);
    let took = out
        .stdout
        .lines()
        .find(|l| l.ends_with("took the new material without a restart."))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert_eq!(took.matches("redis:").count(), 5, "every shard: {took}");
    assert_eq!(live_pids(), pids, "no shard restarted");
    tls_only(&rt, &lz, "sec", &next, &good);
    tls_only(&rt, &lz, "rep", &next, &good);
    assert_eq!(
        picture(&rt, &lz, "sec"),
        before,
        "read with the rotated material"
    );
    let issues = lz.run("status issues_only").ok();
    assert!(!issues.stdout.contains("redis:"), "{}", issues.stdout);
    assert_eq!(
        issues.stdout.matches("certificate expires on").count(),
        2,
        "{}",
        issues.stdout
    );

    // A shard that refuses Lazarus's certificate (told another CA) is an issue, and
    // `status` fails; `restart db` brings it back on the cluster's material.
    let c = stored(&lz);
    let db = c.database_by_name("sec").unwrap();
    let victim = db.masters().next().unwrap().id;
    let a = shard_addr(&c, db, victim).unwrap();
    rt.block_on(async {
        let mut con = connect_at(&a, 0).await;
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("tls-ca-cert-file")
            .arg(foreign.cacert.to_str().unwrap())
            .query_async(&mut con)
            .await
            .unwrap();
    });
    let out = lz.run("status shards extra all issues_only").fails(1);
    assert!(
        out.stdout.contains("TLS REFUSED") && out.stdout.contains(&format!("redis:{victim}")),
        "{}",
        out.stdout
    );
    lz.run("restart db sec").ok();
    lz.run("status").ok();
    assert_eq!(picture(&rt, &lz, "sec"), before, "after the restart");
}

/// `cluster create` takes the material as `cluster tls set` does; `tls enabled` without
/// material is refused before any shard starts.
#[test]
fn cluster_create_takes_material_and_tls_needs_it() {
    let lz = Lazarus::new();
    lz.run("cluster create name t").ok();
    lz.run("create db x tls enabled")
        .fails(1)
        .stderr_has("`tls enabled` needs the cluster's TLS material");
    lz.run("create db x tls_auth_clients optional")
        .fails(1)
        .stderr_has("`tls_auth_clients optional` is for a TLS database");
    assert!(lz.ccs()["databases"]
        .as_object()
        .is_none_or(|d| d.is_empty()));

    let lz = Lazarus::new();
    let _guard = ProcessGuard::new(lz.home());
    let f = Ca::new("lazarus test CA").write(&lz.path("in"), "");
    lz.run(&format!(
        "cluster create name t cacert {} cert {} key {}",
        f.cacert.display(),
        f.cert.display(),
        f.key.display()
    ))
    .ok()
    .stdout_has("TLS material");
    assert_eq!(
        lz.ccs()["tls"]["cert"]["source"],
        f.cert.display().to_string()
    );

    // Clients need a certificate signed by the CA, unless `tls_auth_clients optional`.
    lz.run("create db strict persistence disabled").ok();
    lz.run("create db public persistence disabled tls_auth_clients optional")
        .ok();
    let c = stored(&lz);
    assert!(
        c.database_by_name("public")
            .unwrap()
            .config
            .tls_auth_clients_optional
    );
    let ping_without_certificate = |name: &str| {
        let port = c.database_by_name(name).unwrap().port;
        let out = std::process::Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(&f.cacert)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "PING"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(ping_without_certificate("public"), "PONG");
    assert_ne!(ping_without_certificate("strict"), "PONG");
    lz.run("status").ok();
}

/// No CCS backup left, only the nodes' disks: the configuration rebuilt from the identity
/// files takes the TLS material `cluster tls set` left there (`tls/current.json`), and a
/// TLS database comes back over it, where it came back with none and failed to start.
#[test]
fn a_rebuild_from_identity_files_keeps_the_tls_material() {
    let lz = Lazarus::new();
    let guard = ProcessGuard::new(lz.home());
    let f = Ca::new("lazarus test CA").write(&lz.path("in"), "");
    let n1 = lz.path("n1");
    lz.run(&format!(
        "cluster create name t persistent_path {} cacert {} cert {} key {}",
        n1.display(),
        f.cacert.display(),
        f.cert.display(),
        f.key.display()
    ))
    .ok();
    lz.run("create db sec persistence snapshot tls enabled")
        .ok();
    let before = lz.ccs();
    let cluster_id = before["cluster_id"].as_str().unwrap().to_string();
    guard.kill_all();
    std::fs::remove_dir_all(n1.join("ccs")).unwrap();

    let second = Lazarus::new();
    let _guard2 = ProcessGuard::new(second.home());
    second
        .run(&format!(
            "cluster recover cluster_id {cluster_id} recovery_path {}",
            n1.display()
        ))
        .ok()
        .stdout_has("TLS material `");
    assert_eq!(second.ccs()["tls"], before["tls"]);
    // Its shard never saved (nothing written): it comes back EMPTY, over TLS.
    second
        .run("recover all allow_empty verify counts")
        .ok()
        .stdout_has("`sec`: Completed successfully");
    second.run("status").ok();
}

/// A server binary built without TLS: the embedded valkey-server the tests use, when it
/// is one (`None`, said so, when there is none).
fn server_without_tls() -> Option<std::path::PathBuf> {
    let Some(valkey) = common::engine::Engine::valkey() else {
        eprintln!("engine valkey: not tested (no valkey-server)");
        return None;
    };
    let bin = valkey.path.clone().unwrap();
    let said = std::process::Command::new(&bin)
        .args(["--port", "0", "--tls-port", "0", "--tls-replication", "yes"])
        .args(["--save", "", "--dir", "/tmp"])
        .output()
        .unwrap();
    if !String::from_utf8_lossy(&said.stdout).contains("Failed finding TLS support") {
        eprintln!("{} is built with TLS: not tested", bin.display());
        return None;
    }
    Some(bin)
}

/// `cluster create` and `cluster recover` given material turn TLS on as `cluster tls
/// set` does, and ask the same probe: a node binary built without TLS is refused, named,
/// before anything is written (no home document, no persistent path, no material).
#[test]
fn cluster_create_and_recover_with_material_refuse_a_server_without_tls() {
    let Some(bin) = server_without_tls() else {
        return;
    };
    let lz = Lazarus::new();
    let files = Ca::new("lazarus test CA").write(&lz.path("in"), "");
    let material = format!(
        "cacert {} cert {} key {}",
        files.cacert.display(),
        files.cert.display(),
        files.key.display()
    );
    let refused = format!(
        "TLS shards need a server built with TLS: node:1 runs `{}` (valkey ",
        bin.display()
    );
    let n1 = lz.path("n1");
    lz.run(&format!(
        "cluster create name t persistent_path {} redis_server {} {material}",
        n1.display(),
        bin.display()
    ))
    .fails(1)
    .stderr_has(&refused)
    .stderr_has("; nothing was changed");
    assert!(!lz.path("ccs.json").exists() && !n1.exists());

    // A cluster made without material, its CCS backup recovered into a new home with it.
    lz.create_cluster("t");
    let second = Lazarus::new();
    let m1 = second.path("m1");
    let recover = format!(
        "cluster recover filename {}/ccs/ccs.json persistent_path {} {material}",
        n1.display(),
        m1.display()
    );
    second
        .run(&format!("{recover} redis_server {}", bin.display()))
        .fails(1)
        .stderr_has(&refused)
        .stderr_has("; nothing was changed");
    assert!(!second.path("ccs.json").exists() && !m1.exists());
    // The redis-server on PATH is a TLS build: the same recovery goes through.
    second
        .run(&recover)
        .ok()
        .stdout_has("installed on every node");
    assert!(second.ccs()["tls"].is_object());
}

/// `cluster recover` given material stored the configuration first and installed the
/// material after: a node that could not take it left the configuration stored without
/// TLS (and the command failed). The material now goes in first: a node that cannot
/// take it leaves nothing stored, no home document, no node backup, no material.
#[test]
fn cluster_recover_with_material_a_node_cannot_take_stores_nothing() {
    let lz = Lazarus::new();
    let n1 = lz.create_cluster("t");
    let files = Ca::new("lazarus test CA").write(&lz.path("in"), "");
    let second = Lazarus::new();
    let m1 = second.path("m1");
    std::fs::create_dir_all(&m1).unwrap();
    // A file where the node's `tls/` directory goes: the install fails there.
    std::fs::write(m1.join("tls"), b"in the way").unwrap();
    let recover = format!(
        "cluster recover filename {}/ccs/ccs.json persistent_path {} cacert {} cert {} key {}",
        n1.display(),
        m1.display(),
        files.cacert.display(),
        files.cert.display(),
        files.key.display()
    );
    second
        .run(&recover)
        .fails(1)
        .stderr_has("node:1")
        .stderr_has(&m1.join("tls").display().to_string());
    assert!(!second.path("ccs.json").exists(), "nothing stored");
    assert!(!m1.join("ccs").exists(), "no node backup");
    assert_eq!(std::fs::read(m1.join("tls")).unwrap(), b"in the way");

    // Out of the way, the same command stores the configuration with the material.
    std::fs::remove_file(m1.join("tls")).unwrap();
    second
        .run(&recover)
        .ok()
        .stdout_has("installed on every node");
    let record = second.ccs()["tls"].clone();
    assert_eq!(record["cert"]["source"], files.cert.display().to_string());
    let stored = std::fs::read_to_string(m1.join("ccs/ccs.json")).unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["tls"], record, "the node backup names it too");
    assert!(m1.join("tls/current.json").exists());
}

/// A node whose server binary is built without TLS: `cluster tls set` asks each binary
/// first and refuses, naming the node, the binary and what it said, before anything is
/// installed (its TLS shards could never start). The embedded valkey-server the tests
/// use is such a build; without one the case is said to be untested.
#[test]
fn a_server_built_without_tls_is_refused_before_anything_is_installed() {
    let Some(bin) = server_without_tls() else {
        return;
    };
    let lz = Lazarus::new();
    lz.run("cluster create name t").ok();
    let n2 = lz.path("n2");
    lz.run(&format!(
        "node add addr 127.0.0.1 persistent_path {} redis_server {}",
        n2.display(),
        bin.display()
    ))
    .ok();
    let files = Ca::new("lazarus test CA").write(&lz.path("in"), "");
    let before = lz.ccs();
    lz.run(&set_line(&files))
        .fails(1)
        .stderr_has(&format!(
            "TLS shards need a server built with TLS: node:2 runs `{}` (valkey ",
            bin.display()
        ))
        .stderr_has(
            "built without TLS: `Missing implement of connection type tls`; nothing was changed",
        )
        .stderr_lacks("node:1");
    assert_eq!(lz.ccs(), before);
    assert!(!lz.path("nodes/1/tls").exists() && !n2.join("tls").exists());
    // The node gone, the redis-server left is a TLS build: the material goes in.
    lz.run("node 2 remove").ok();
    lz.run(&set_line(&files))
        .ok()
        .stdout_has("Set TLS material");
    // Once the cluster has material, no node may take a build without TLS.
    let before = lz.ccs();
    lz.run(&format!(
        "node add addr 127.0.0.1 persistent_path {} redis_server {}",
        lz.path("n3").display(),
        bin.display()
    ))
    .fails(1)
    .stderr_has("built without TLS");
    lz.run(&format!("node 1 redis_server set {}", bin.display()))
        .fails(1)
        .stderr_has(&format!("node:1 runs `{}` (valkey ", bin.display()));
    assert_eq!(lz.ccs(), before);
}

/// A TLS database's binary is probed wherever it is chosen, not only where TLS is
/// turned on: `--redis-server` with a build without TLS was taken by `create db ... tls
/// enabled` (its shard failed to start and rolled back), by `restart db` (which stopped
/// the running shard first, leaving it down) and by `recover` (which copied files and
/// failed to start). Each is now refused by the same probe before anything changes.
#[test]
fn a_tls_database_refuses_a_binary_without_tls_wherever_it_is_chosen() {
    let Some(bin) = server_without_tls() else {
        return;
    };
    let rt = runtime();
    let lz = Lazarus::new();
    let guard = ProcessGuard::new(lz.home());
    let f = Ca::new("lazarus test CA").write(&lz.path("in"), "");
    let n1 = lz.path("n1");
    lz.run(&format!(
        "cluster create name t persistent_path {} cacert {} cert {} key {}",
        n1.display(),
        f.cacert.display(),
        f.cert.display(),
        f.key.display()
    ))
    .ok();
    let refused = format!(
        "TLS shards need a server built with TLS: node:1 runs `{}` (valkey ",
        bin.display()
    );
    let other = format!("--redis-server {}", bin.display());

    let before = lz.ccs();
    lz.run(&format!(
        "{other} create db sec persistence snapshot tls enabled"
    ))
    .fails(1)
    .stderr_has(&refused)
    .stderr_has("; nothing was changed")
    .stderr_has("give `--redis-server` a TLS build");
    assert_eq!(lz.ccs(), before);
    assert!(guard.pids().is_empty());
    assert!(std::fs::read_dir(n1.join("redis")).map_or(true, |mut d| d.next().is_none()));

    lz.run("create db sec persistence snapshot tls enabled")
        .ok();
    let c = stored(&lz);
    let db = c.database_by_name("sec").unwrap();
    let a = shard_addr(&c, db, db.shards[0].id).unwrap();
    rt.block_on(async {
        let mut con = connect_at(&a, 0).await;
        let _: () = redis::cmd("SET")
            .arg("kept")
            .arg("1")
            .query_async(&mut con)
            .await
            .unwrap();
        let _: () = redis::cmd("SAVE").query_async(&mut con).await.unwrap();
    });
    let data = picture(&rt, &lz, "sec");
    let before = lz.ccs();
    lz.run(&format!("{other} restart db sec"))
        .fails(1)
        .stderr_has(&refused);
    assert_eq!(lz.ccs(), before);
    // Never stopped: it serves its data over TLS as before.
    assert_eq!(picture(&rt, &lz, "sec"), data);
    // A restore restarts the shards with the binary chosen: its verify says so first.
    let run = lz.backup_run("sec", &lz.path("repo"));
    lz.run(&format!(
        "restore task create name back db sec backup {run} force"
    ))
    .ok();
    lz.run(&format!("{other} restore task start back"))
        .fails(1)
        .stdout_has("tls server")
        .stdout_has(&refused);
    assert_eq!(picture(&rt, &lz, "sec"), data);
    lz.run("restore task delete back").ok();
    let before = lz.ccs();

    // The home lost, the configuration rebuilt from the disk: `recover` chooses the
    // binary too.
    let cluster_id = before["cluster_id"].as_str().unwrap().to_string();
    guard.kill_all();
    std::fs::remove_dir_all(n1.join("ccs")).unwrap();
    let second = Lazarus::new();
    let _guard2 = ProcessGuard::new(second.home());
    second
        .run(&format!(
            "cluster recover cluster_id {cluster_id} recovery_path {}",
            n1.display()
        ))
        .ok();
    let pending = second.ccs();
    second
        .run(&format!("{other} recover db sec"))
        .fails(1)
        .stderr_has(&refused);
    assert_eq!(second.ccs(), pending);
    second
        .run("recover db sec")
        .ok()
        .stdout_has("`sec`: Completed successfully");
    assert_eq!(picture(&rt, &second, "sec"), data);
}

/// A node whose disk lost the cluster's TLS material (`tls/<material id>/`): its TLS
/// shards could not start ("Failed to load certificate"), and `restart db` failed until
/// the operator ran `cluster tls set` again, which also failed for the shards that were
/// down. `restart db` now installs the material there again (this machine's copy, else
/// the files the operator gave, checked again: the very material the CCS records) and
/// the database comes back over TLS with its data.
#[test]
fn restart_reinstalls_material_a_node_lost() {
    let rt = runtime();
    let lz = Lazarus::new();
    let guard = ProcessGuard::new(lz.home());
    let f = Ca::new("lazarus test CA").write(&lz.path("in"), "");
    let n1 = lz.path("n1");
    lz.run(&format!(
        "cluster create name t persistent_path {} cacert {} cert {} key {}",
        n1.display(),
        f.cacert.display(),
        f.cert.display(),
        f.key.display()
    ))
    .ok();
    lz.run("create db sec persistence snapshot tls enabled")
        .ok();
    let c = stored(&lz);
    let db = c.database_by_name("sec").unwrap();
    let a = shard_addr(&c, db, db.shards[0].id).unwrap();
    rt.block_on(async {
        let mut con = connect_at(&a, 0).await;
        let _: () = redis::cmd("SET")
            .arg("kept")
            .arg("1")
            .query_async(&mut con)
            .await
            .unwrap();
        let _: () = redis::cmd("SAVE").query_async(&mut con).await.unwrap();
    });
    let before = picture(&rt, &lz, "sec");
    guard.kill_all();
    std::fs::remove_dir_all(n1.join("tls")).unwrap();

    lz.run("restart db sec").ok();
    let record = &stored(&lz).tls.unwrap();
    let dir = lazarus::tls::installed_dir(&n1, record);
    for file in ["ca.crt", "cert.crt", "key.pem"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    assert_eq!(picture(&rt, &lz, "sec"), before);
    lz.run("status").ok();

    // Neither a copy here nor the files given: named, and nothing started.
    guard.kill_all();
    std::fs::remove_dir_all(n1.join("tls")).unwrap();
    std::fs::remove_file(&f.cert).unwrap();
    lz.run("restart db sec")
        .fails(1)
        .stderr_has("node:1 has no copy of the cluster's TLS material")
        .stderr_has("`cluster tls set");
    assert!(guard.pids().is_empty());
}
