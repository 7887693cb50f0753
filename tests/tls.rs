//! TLS end to end: `cluster tls set` with certificates made at test time (`rcgen`).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::certs::{write_files, Ca, Files};
use common::Lazarus;

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
