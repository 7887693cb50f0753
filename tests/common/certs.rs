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
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
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
        let key = KeyPair::generate().unwrap();
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
