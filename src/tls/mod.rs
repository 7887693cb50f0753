//! TLS material: the cluster's CA certificate, certificate and key. [`check`] reads and
//! judges the operator's files before anything is stored; [`install`] copies them into a
//! node's persistent path, so that a node's disk alone brings them back. The CCS keeps
//! only their paths and fingerprints ([`TlsConfig`]), never their contents.

mod check;
mod client;
mod install;
mod record;
mod server;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use crate::error::{DomainError, ErrorKind};

pub use check::{cert_not_after, check, fingerprint, utc, Material};
pub use client::ClientTls;
pub use install::{
    install, install_from_recovery_path, install_from_recovery_path_on, install_on, installed_dir,
    material_here, remove_other_material, remove_other_material_on, CURRENT_FILE, TLS_DIR,
};
pub use record::{TlsConfig, TlsFile};
pub use server::ShardTls;

/// The operator's three files, as `cluster tls set cacert <path> cert <path> key <path>`
/// names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaterialPaths {
    pub cacert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why TLS material was refused or could not be installed. Each names the file (by the
/// flag that gave it and its path) and what is wrong with it; none carries a key's bytes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("`{what}` file `{}` does not exist", path.display())]
    Missing { what: &'static str, path: PathBuf },
    #[error("`{what}` file `{}` cannot be read: {source}", path.display())]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{what}` file `{}` holds no PEM {expected}{detail}", path.display())]
    NotPem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
        detail: String,
    },
    #[error("`{what}` file `{}` is not a valid X.509 certificate: {detail}", path.display())]
    BadCertificate {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error(
        "`key` file `{}` is readable by others (mode {mode:04o}): make it `chmod 600 {}` first",
        path.display(),
        path.display()
    )]
    KeyReadableByOthers { path: PathBuf, mode: u32 },
    #[error("`key` file `{}` holds a key this build cannot use: {detail}", path.display())]
    UnsupportedKey { path: PathBuf, detail: String },
    #[error("`key` file `{}` holds a key redis-server's OpenSSL 3.0 cannot load: {detail}", path.display())]
    KeyShardsCannotLoad { path: PathBuf, detail: &'static str },
    #[error("`key` file `{}` is not the key of the certificate in `{}`", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("`{what}` file `{}` expired on {not_after}", path.display())]
    Expired {
        what: &'static str,
        path: PathBuf,
        not_after: String,
    },
    #[error("`{what}` file `{}` is not valid before {not_before}", path.display())]
    NotYetValid {
        what: &'static str,
        path: PathBuf,
        not_before: String,
    },
    #[error(
        "`cert` file `{}` is not signed by the CA in `{}` ({detail})",
        cert.display(),
        ca.display()
    )]
    NotSignedByCa {
        cert: PathBuf,
        ca: PathBuf,
        detail: String,
    },
    #[error(
        "`cert` file `{}` cannot serve as a {usage} certificate ({detail}); shards present it to each other and to Lazarus as both",
        path.display()
    )]
    WrongUsage {
        path: PathBuf,
        usage: &'static str,
        detail: String,
    },
    #[error(
        "the cluster's TLS material `{id}` is not in `{}` nor on the node's recovery path: \
         give it again with `cluster tls set cacert <path> cert <path> key <path>`",
        path.display()
    )]
    NotInstalled { id: String, path: PathBuf },
    #[error("cannot install the TLS material into `{}`: {source}", path.display())]
    Install {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl DomainError for TlsError {
    fn kind(&self) -> ErrorKind {
        match self {
            TlsError::Missing { .. } | TlsError::NotInstalled { .. } => ErrorKind::NotFound,
            TlsError::Unreadable { .. } | TlsError::Install { .. } => ErrorKind::Io,
            _ => ErrorKind::Usage,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            TlsError::KeyReadableByOthers { path, .. } => {
                vec![format!("chmod 600 {}", path.display())]
            }
            _ => Vec::new(),
        }
    }
}
