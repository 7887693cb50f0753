//! The material check and installation against real certificates made by `rcgen`.

#[path = "../../tests/common/certs.rs"]
mod certs;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;
use certs::{write_files, Ca, Files};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn paths(f: &Files) -> MaterialPaths {
    MaterialPaths {
        cacert: f.cacert.clone(),
        cert: f.cert.clone(),
        key: f.key.clone(),
    }
}

fn refused(f: &Files) -> String {
    check(&paths(f), now()).unwrap_err().to_string()
}

#[test]
fn good_material_passes_and_is_recorded_by_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let f = ca.write(dir.path(), "");
    let m = check(&paths(&f), now()).unwrap();
    assert_eq!(m.record.cert.source, f.cert);
    assert_eq!(m.record.cacert.sha256.len(), 64);
    assert!(m.record.cert_not_after > now());
    assert!(m.record.verify);
    // The record holds no key bytes.
    let json = serde_json::to_string(&m.record).unwrap();
    let key = std::fs::read_to_string(&f.key).unwrap();
    let body: String = key.lines().nth(1).unwrap().into();
    assert!(!json.contains(&body), "{json}");
    assert!(!format!("{m:?}").contains(&body));
}

#[test]
fn expired_certificate_is_named_with_its_date() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.expired_leaf();
    let f = write_files(dir.path(), "", &ca.pem(), &cert, &key);
    let e = refused(&f);
    assert_eq!(
        e,
        format!(
            "`cert` file `{}` expired on 2021-06-30 00:00:00 UTC",
            f.cert.display()
        )
    );
}

#[test]
fn key_of_another_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, _) = ca.leaf();
    let (_, other_key) = ca.leaf();
    let f = write_files(dir.path(), "", &ca.pem(), &cert, &other_key);
    assert_eq!(
        refused(&f),
        format!(
            "`key` file `{}` is not the key of the certificate in `{}`",
            f.key.display(),
            f.cert.display()
        )
    );
}

#[test]
fn world_readable_key_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let f = Ca::new("test CA").write(dir.path(), "");
    std::fs::set_permissions(&f.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = check(&paths(&f), now()).unwrap_err();
    assert!(
        e.to_string().contains("is readable by others (mode 0644)"),
        "{e}"
    );
    assert_eq!(e.hints(), vec![format!("chmod 600 {}", f.key.display())]);
    // Group-readable (a `ssl-cert` group) is allowed.
    std::fs::set_permissions(&f.key, std::fs::Permissions::from_mode(0o640)).unwrap();
    check(&paths(&f), now()).unwrap();
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Ca::new("test CA").write(dir.path(), "");
    f.cacert = dir.path().join("nope.crt");
    let e = check(&paths(&f), now()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        e.to_string(),
        format!("`cacert` file `{}` does not exist", f.cacert.display())
    );
}

#[test]
fn certificate_of_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let other = Ca::new("other CA");
    let (cert, key) = other.leaf();
    let f = write_files(dir.path(), "", &ca.pem(), &cert, &key);
    let e = refused(&f);
    assert!(
        e.starts_with(&format!(
            "`cert` file `{}` is not signed by the CA in `{}`",
            f.cert.display(),
            f.cacert.display()
        )),
        "{e}"
    );
}

#[test]
fn a_forged_issuer_name_does_not_pass_the_signature_check() {
    // Another CA with the very same name: only the signature tells them apart.
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let impostor = Ca::new("test CA");
    let (cert, key) = impostor.leaf();
    let f = write_files(dir.path(), "", &ca.pem(), &cert, &key);
    assert!(refused(&f).contains("is not signed by the CA"));
}

#[test]
fn server_only_certificate_is_refused_for_the_client_side() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.leaf_with(|p| {
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    });
    let f = write_files(dir.path(), "", &ca.pem(), &cert, &key);
    assert!(refused(&f).contains("cannot serve as a client certificate"));
}

#[test]
fn not_pem_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let f = Ca::new("test CA").write(dir.path(), "");
    std::fs::write(&f.cert, "hello").unwrap();
    assert_eq!(
        refused(&f),
        format!(
            "`cert` file `{}` holds no PEM certificate",
            f.cert.display()
        )
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn install_writes_private_files_and_a_rotation_gets_a_new_directory() {
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node1");
    let ca = Ca::new("test CA");
    let f = ca.write(&dir.path().join("in"), "");
    let m = check(&paths(&f), now()).unwrap();
    let at = install(&node, &m).unwrap();
    assert_eq!(at, installed_dir(&node, &m.record));
    assert_eq!(mode(&node.join(TLS_DIR)), 0o700);
    assert_eq!(mode(&at), 0o700);
    for file in ["ca.crt", "cert.crt", "key.pem"] {
        assert_eq!(mode(&at.join(file)), 0o600, "{file}");
    }
    assert_eq!(
        std::fs::read(at.join("key.pem")).unwrap(),
        std::fs::read(&f.key).unwrap()
    );
    let current: crate::ccs::TlsConfig =
        serde_json::from_slice(&std::fs::read(node.join("tls/current.json")).unwrap()).unwrap();
    assert_eq!(current, m.record);

    let f2 = ca.write(&dir.path().join("in2"), "");
    let m2 = check(&paths(&f2), now()).unwrap();
    let at2 = install(&node, &m2).unwrap();
    assert_ne!(at, at2);
    remove_other_material(&node, &m2.record).unwrap();
    assert!(!at.exists() && at2.exists());
}

#[test]
fn utc_dates() {
    assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    assert_eq!(utc(1_625_011_199), "2021-06-29 23:59:59 UTC");
}

/// A real TLS-only redis-server (`port 0`, `tls-port`, mutual TLS), stopped on drop.
struct TlsServer {
    child: std::process::Child,
    port: u16,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_server(dir: &Path, f: &Files) -> TlsServer {
    tls_server_with(dir, f, &[])
}

fn tls_server_with(dir: &Path, f: &Files, extra: &[&str]) -> TlsServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let shard = ShardTls::new(f.cert.parent().unwrap());
    let mut cmd = std::process::Command::new("redis-server");
    cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
    cmd.arg("--dir").arg(dir);
    for (key, value) in shard.conf_settings(port, false) {
        cmd.arg(format!("--{key}")).arg(value);
    }
    cmd.args(extra);
    let child = cmd
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server runs");
    let server = TlsServer { child, port };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    server
}

fn client_of(f: &Files, verify: bool) -> ClientTls {
    let read = |p: &Path| std::fs::read(p).unwrap();
    ClientTls::from_pem(read(&f.cacert), read(&f.cert), read(&f.key), verify).unwrap()
}

async fn ping(addr: redis::ConnectionAddr) -> Result<String, String> {
    let info = redis::ConnectionInfo {
        addr,
        redis: Default::default(),
    };
    let client = redis::Client::open(info).map_err(|e| e.to_string())?;
    let t = std::time::Duration::from_secs(3);
    let mut con = client
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new()
                .set_connection_timeout(t)
                .set_response_timeout(t),
        )
        .await
        .map_err(|e| e.to_string())?;
    redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async::<()>(&mut con)
        .await
        .map_err(|e| e.to_string())?;
    redis::cmd("GET")
        .arg("k")
        .query_async(&mut con)
        .await
        .map_err(|e| e.to_string())
}

/// Lazarus's client against a real TLS-only, mutual-TLS redis-server: the cluster's
/// material reads and writes; a client certificate of another CA and a plain connection
/// are refused.
#[test]
fn client_speaks_mutual_tls_to_a_tls_only_server() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let f = ca.write(&dir.path().join("m"), "");
    let server = tls_server(dir.path(), &f);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let good = client_of(&f, true);
    assert!(good.verifies());
    assert_eq!(
        rt.block_on(ping(good.addr("127.0.0.1", server.port)))
            .unwrap(),
        "v"
    );

    // A client certificate from another CA (trusting the right CA): the server refuses.
    let other = Ca::new("other CA");
    let (cert, key) = other.leaf();
    let foreign = write_files(&dir.path().join("o"), "", &ca.pem(), &cert, &key);
    let refused = rt.block_on(ping(
        client_of(&foreign, true).addr("127.0.0.1", server.port),
    ));
    assert!(refused.is_err(), "{refused:?}");
    // `status`'s probe says so by type, apart from a port where nothing listens.
    let probe_with = |port: u16, f: &Files| {
        let addr = crate::server::ShardAddr {
            host: "127.0.0.1".into(),
            port,
            password: None,
            transport: crate::server::Transport::Tls(client_of(f, true)),
        };
        rt.block_on(crate::server::probe(
            &addr,
            crate::server::ClusterAsk::Nothing,
            std::time::Duration::from_secs(3),
        ))
    };
    let p = probe_with(server.port, &foreign);
    assert!(!p.up && p.tls_refused, "{p:?}");
    let p = probe_with(server.port, &f);
    assert!(p.up && !p.tls_refused, "{p:?}");
    // The same client again (the shell's next `status`): the session resumes, and no
    // handshake waits for a HelloRetryRequest (the first key exchange group offered is
    // one the server takes).
    let same = crate::server::ShardAddr {
        host: "127.0.0.1".into(),
        port: server.port,
        password: None,
        transport: crate::server::Transport::Tls(good.clone()),
    };
    let t = std::time::Duration::from_secs(3);
    let before = crate::server::tls_handshakes();
    assert!(
        rt.block_on(crate::server::probe(
            &same,
            crate::server::ClusterAsk::Nothing,
            t
        ))
        .up
    );
    assert!(
        rt.block_on(crate::server::probe(
            &same,
            crate::server::ClusterAsk::Nothing,
            t
        ))
        .up
    );
    let after = crate::server::tls_handshakes();
    assert!(after.resumed > before.resumed, "{before:?} {after:?}");
    assert_eq!(after.retried, 0, "{after:?}");

    // A shell's probes keep their connection: the second makes none, and one the shard
    // closed meanwhile is replaced without the probe failing.
    let accepted = || {
        let stats = rt.block_on(crate::server::info(&same, "stats", t)).unwrap();
        stats.get_u64("total_connections_received").unwrap()
    };
    let kept = crate::server::KeptConnections::default();
    let before = accepted();
    assert!(
        rt.block_on(crate::server::probe_kept(
            &same,
            crate::server::ClusterAsk::Nothing,
            t,
            &kept
        ))
        .up
    );
    assert!(
        rt.block_on(crate::server::probe_kept(
            &same,
            crate::server::ClusterAsk::Nothing,
            t,
            &kept
        ))
        .up
    );
    // One kept connection, and the two `INFO` connections of `accepted`.
    assert_eq!(accepted() - before, 2);
    assert_eq!(kept.len(), 1);
    let killed: i64 = rt
        .block_on(async {
            let mut con = crate::server::connect(&same, t).await.unwrap();
            // Every normal client but this one (`SKIPME yes`).
            redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("normal")
                .query_async(&mut con)
                .await
        })
        .unwrap();
    assert!(killed >= 1, "{killed}");
    let p = rt.block_on(crate::server::probe_kept(
        &same,
        crate::server::ClusterAsk::Nothing,
        t,
        &kept,
    ));
    assert!(p.up, "{p:?}");
    assert_eq!(kept.len(), 1);
    // Another material (or password) for the same shard is another connection.
    let with_password = crate::server::ShardAddr {
        password: Some("x".into()),
        ..same.clone()
    };
    let p = rt.block_on(crate::server::probe_kept(
        &with_password,
        crate::server::ClusterAsk::Nothing,
        t,
        &kept,
    ));
    assert!(!p.up, "a password the shard does not have: {p:?}");
    let nothing = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = nothing.local_addr().unwrap().port();
    drop(nothing);
    let p = probe_with(port, &f);
    assert!(!p.up && !p.tls_refused, "{p:?}");

    // Lazarus trusting only another CA refuses the server's certificate.
    let wrong_root = write_files(
        &dir.path().join("r"),
        "",
        &other.pem(),
        &std::fs::read_to_string(&f.cert).unwrap(),
        &std::fs::read_to_string(&f.key).unwrap(),
    );
    let refused = rt.block_on(ping(
        client_of(&wrong_root, true).addr("127.0.0.1", server.port),
    ));
    assert!(refused.is_err(), "{refused:?}");

    // Plain text on the TLS port is no conversation.
    let plain = rt.block_on(ping(redis::ConnectionAddr::Tcp(
        "127.0.0.1".into(),
        server.port,
    )));
    assert!(plain.is_err(), "{plain:?}");
}

/// An Ed25519 key as ring and rcgen write it (PKCS#8 v2) is refused before anything is
/// stored, naming the file: the shards' OpenSSL 3.0 cannot load it, so none would start.
#[test]
fn pkcs8_v2_key_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = Ca::of_type("test CA", &rcgen::PKCS_ED25519).write(dir.path(), "");
    check(&paths(&f), now()).unwrap();
    let v2 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    std::fs::write(&f.key, v2.serialize_pem()).unwrap();
    let e = refused(&f);
    assert!(e.contains(&f.key.display().to_string()), "{e}");
    assert!(e.contains("PKCS#8 v2"), "{e}");
}

/// A server with `tls-session-caching no` issues tickets but refuses every offer to
/// resume one with an alert: Lazarus's client then connects again without resuming, so
/// probe after probe finds the server up.
#[test]
fn a_server_that_refuses_resumption_is_still_reached() {
    let dir = tempfile::tempdir().unwrap();
    let f = Ca::new("test CA").write(&dir.path().join("m"), "");
    let server = tls_server_with(dir.path(), &f, &["--tls-session-caching", "no"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = crate::server::ShardAddr {
        host: "127.0.0.1".into(),
        port: server.port,
        password: None,
        transport: crate::server::Transport::Tls(client_of(&f, true)),
    };
    let t = std::time::Duration::from_secs(3);
    for i in 0..4 {
        let p = rt.block_on(crate::server::probe(
            &addr,
            crate::server::ClusterAsk::Nothing,
            t,
        ));
        assert!(p.up && !p.tls_refused, "probe {i}: {p:?}");
    }
    // So is the blocking connection of backups and proofs (their `SYNC` and DUMP rounds).
    for i in 0..3 {
        use std::io::{Read, Write};
        let mut s = crate::server::connect_stream(&addr, t)
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        s.write_all(b"PING\r\n").unwrap();
        let mut got = [0u8; 7];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"+PONG\r\n", "connection {i}");
    }
}

/// Every key type an operator may choose for the cluster's material (the README compares
/// what each costs a shard per handshake): the check passes it, and Lazarus's client
/// speaks mutual TLS with it to a TLS-only shard (signs with the key, checks the shard's
/// signature), and resumes its session on the next probe.
#[test]
fn every_key_type_speaks_mutual_tls() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for alg in [
        &rcgen::PKCS_ED25519,
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let f = Ca::of_type("test CA", alg).write(&dir.path().join("m"), "");
        check(&paths(&f), now()).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        let server = tls_server(dir.path(), &f);
        let client = client_of(&f, true);
        let got = rt.block_on(ping(client.addr("127.0.0.1", server.port)));
        assert_eq!(got.as_deref(), Ok("v"), "{alg:?}");
        let addr = crate::server::ShardAddr {
            host: "127.0.0.1".into(),
            port: server.port,
            password: None,
            transport: crate::server::Transport::Tls(client),
        };
        let t = std::time::Duration::from_secs(3);
        let before = crate::server::tls_handshakes();
        assert!(
            rt.block_on(crate::server::probe(
                &addr,
                crate::server::ClusterAsk::Nothing,
                t
            ))
            .up,
            "{alg:?}"
        );
        assert!(
            rt.block_on(crate::server::probe(
                &addr,
                crate::server::ClusterAsk::Nothing,
                t
            ))
            .up,
            "{alg:?}"
        );
        let after = crate::server::tls_handshakes();
        assert!(
            after.resumed > before.resumed,
            "{alg:?} {before:?} {after:?}"
        );
    }
}

/// Rotation without a restart: the running shard takes new material (a new CA too) by
/// `CONFIG SET`; clients of the new CA are then served, clients of the old refused.
#[test]
fn a_running_shard_takes_rotated_material() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = Ca::new("old CA");
    let old = write_files(
        &dir.path().join("old"),
        "",
        &old_ca.pem(),
        &old_ca.leaf().0,
        "",
    );
    // write_files wrote an empty key: write a matching leaf instead.
    let (cert, key) = old_ca.leaf();
    let old = write_files(old.cert.parent().unwrap(), "", &old_ca.pem(), &cert, &key);
    let server = tls_server(dir.path(), &old);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let old_client = client_of(&old, true);
    assert_eq!(
        rt.block_on(ping(old_client.addr("127.0.0.1", server.port)))
            .unwrap(),
        "v"
    );

    let new_ca = Ca::new("new CA");
    let new = new_ca.write(&dir.path().join("new"), "");
    let rotation = ShardTls::new(new.cert.parent().unwrap()).rotation();
    rt.block_on(async {
        let mut con = redis::Client::open(redis::ConnectionInfo {
            addr: old_client.addr("127.0.0.1", server.port),
            redis: Default::default(),
        })
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
        rotation.query_async::<()>(&mut con).await.unwrap();
    });
    let new_client = client_of(&new, true);
    assert_eq!(
        rt.block_on(ping(new_client.addr("127.0.0.1", server.port)))
            .unwrap(),
        "v"
    );
    let refused = rt.block_on(ping(old_client.addr("127.0.0.1", server.port)));
    assert!(refused.is_err(), "{refused:?}");
}

/// The synchronous redis-rs writer of replay (N→M restore, `recover ... replay`) builds
/// its TLS through redis-rs, apart from the async connections: it writes every key of
/// an RDB into a TLS-only, mutual-TLS server with the cluster's material, and reads the
/// same back.
#[test]
fn replay_writes_into_a_tls_only_server() {
    let dir = tempfile::tempdir().unwrap();
    let f = Ca::new("test CA").write(&dir.path().join("m"), "");
    let server = tls_server(dir.path(), &f);
    let addr = crate::server::ShardAddr {
        host: "127.0.0.1".into(),
        port: server.port,
        password: None,
        transport: crate::server::Transport::Tls(client_of(&f, true)),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = std::time::Duration::from_secs(3);
    let run = |cmd: &redis::Cmd| -> redis::Value {
        rt.block_on(async {
            let mut con = crate::server::connect(&addr, t).await.unwrap();
            cmd.query_async(&mut con).await.unwrap()
        })
    };
    // The RDB the server itself writes, then an empty server to replay it into.
    for i in 0..50 {
        run(redis::cmd("SET").arg(format!("k{i}")).arg(i));
    }
    run(redis::cmd("RPUSH").arg("list").arg("a").arg("b"));
    run(&redis::cmd("SAVE"));
    let rdb = dir.path().join("saved.rdb");
    std::fs::rename(dir.path().join("dump.rdb"), &rdb).unwrap();
    run(&redis::cmd("FLUSHALL"));

    let target = crate::replay::Target {
        slots: crate::ccs::SlotRange::ALL,
        addr: addr.clone(),
    };
    let written = crate::replay::write_all(&[rdb], &[target], false, &|_| {}).unwrap();
    assert_eq!(written, 51);
    let get = |k: &str| run(redis::cmd("GET").arg(k));
    assert_eq!(get("k7"), redis::Value::BulkString(b"7".to_vec()));
    assert_eq!(
        run(redis::cmd("LRANGE").arg("list").arg(0).arg(-1)),
        redis::Value::Array(vec![
            redis::Value::BulkString(b"a".to_vec()),
            redis::Value::BulkString(b"b".to_vec())
        ])
    );
    assert_eq!(run(&redis::cmd("DBSIZE")), redis::Value::Int(51));
}
