//! TLS material made at test time with `rcgen`: real certificates, written as PEM files
//! (keys 0600) into a directory. Shared by the unit tests of `src/tls` (through `#[path]`)
//! and the end-to-end tests.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority that can sign leaf certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// The key type of the CA and of every leaf it makes.
    alg: &'static rcgen::SignatureAlgorithm,
}

/// A leaf's three files.
#[derive(Clone, Debug)]
pub struct Files {
    pub cacert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        Ca::of_type(name, &rcgen::PKCS_ECDSA_P256_SHA256)
    }

    /// A CA whose key, and its leaves' keys, are of type `alg` (ECDSA P-256 or P-384,
    /// Ed25519: the types `rcgen` can generate with ring).
    /// Ed25519 keys are written as OpenSSL writes them (PKCS#8 v1, see [`pkcs8_v1`]).
    pub fn of_type(name: &str, alg: &'static rcgen::SignatureAlgorithm) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = new_key(alg);
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key, alg }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for 127.0.0.1 usable as server and client, valid now, with its key.
    pub fn leaf(&self) -> (String, String) {
        self.leaf_with(|_| {})
    }

    /// Like [`Ca::leaf`], expired a year ago.
    pub fn expired_leaf(&self) -> (String, String) {
        self.leaf_with(|p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 6, 30);
        })
    }

    pub fn leaf_with(&self, edit: impl FnOnce(&mut CertificateParams)) -> (String, String) {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "lazarus shard");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        edit(&mut params);
        let key = new_key(self.alg);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes this CA and a fresh leaf as `<prefix>ca.crt`, `<prefix>cert.crt`,
    /// `<prefix>key.pem` under `dir`.
    pub fn write(&self, dir: &Path, prefix: &str) -> Files {
        let (cert, key) = self.leaf();
        write_files(dir, prefix, &self.pem(), &cert, &key)
    }
}

/// A fresh key of type `alg`.
fn new_key(alg: &'static rcgen::SignatureAlgorithm) -> KeyPair {
    let key = KeyPair::generate_for(alg).unwrap();
    if alg != &rcgen::PKCS_ED25519 {
        return key;
    }
    let v1 = pkcs8_v1(&key.serialize_der());
    KeyPair::from_pkcs8_der_and_sign_algo(&v1.into(), alg).unwrap()
}

/// An Ed25519 key in PKCS#8 v1 (`version 0`, the seed alone), as `openssl genpkey
/// -algorithm ed25519` writes it, from ring's PKCS#8 v2 (`version 1`, the public key
/// appended), which redis-server 7.0's OpenSSL 3.0 cannot read ("unsupported").
pub fn pkcs8_v1(v2: &[u8]) -> Vec<u8> {
    const HEAD: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    assert_eq!(&v2[..5], [0x30, 0x51, 0x02, 0x01, 0x01], "ring's PKCS#8 v2");
    let seed = &v2[16..48];
    [&HEAD[..], seed].concat()
}

pub fn write_files(dir: &Path, prefix: &str, ca: &str, cert: &str, key: &str) -> Files {
    std::fs::create_dir_all(dir).unwrap();
    let files = Files {
        cacert: dir.join(format!("{prefix}ca.crt")),
        cert: dir.join(format!("{prefix}cert.crt")),
        key: dir.join(format!("{prefix}key.pem")),
    };
    std::fs::write(&files.cacert, ca).unwrap();
    std::fs::write(&files.cert, cert).unwrap();
    std::fs::write(&files.key, key).unwrap();
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    files
}
