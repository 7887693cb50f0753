//! What the CCS records of the cluster's TLS material: where each file came from and its
//! fingerprint. Defined here, beside the code that checks and installs the material, so
//! that the TLS pieces need nothing of the CCS; the CCS re-exports it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The cluster's TLS material as the CCS records it: where each file came from and its
/// fingerprint, never its contents. The files themselves live in every node's persistent
/// path (`tls/<material_id>/`), copied there by `cluster tls set`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    pub cacert: TlsFile,
    pub cert: TlsFile,
    pub key: TlsFile,
    /// The certificate's `notAfter`, unix seconds.
    pub cert_not_after: i64,
    /// `false` only when the operator wrote `tls_verify off`; `status` flags it.
    #[serde(default = "yes")]
    pub verify: bool,
}

fn yes() -> bool {
    true
}

impl TlsConfig {
    /// Names the material's directory on every node: changes when any file changes, so
    /// a rotation gives shards new paths to load.
    pub fn material_id(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for file in [&self.cacert, &self.cert, &self.key] {
            hash.update(file.sha256.as_bytes());
        }
        hash.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// One TLS file: the path the operator gave, and the sha256 of its DER contents.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TlsFile {
    pub source: PathBuf,
    pub sha256: String,
}

impl TlsFile {
    pub fn of(source: &Path, sha256: String) -> TlsFile {
        TlsFile {
            source: source.to_path_buf(),
            sha256,
        }
    }
}
