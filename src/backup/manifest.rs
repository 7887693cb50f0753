//! A run's manifest: everything a restore needs to trust and use the run's files, sealed
//! with a SHA-256 of itself. Written last; a run without a valid one is no restore point.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ccs::{DbConfig, Id, SlotRange};

use super::codec::Compression;
use super::snapshot::hex;

fn stored_plain() -> Compression {
    Compression::None
}

pub const MANIFEST_FILE: &str = "manifest.json";
/// Bumped when the manifest's shape changes incompatibly.
pub const MANIFEST_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub run: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The restore task whose forced start took this run of the data it was about to
    /// replace: a safety backup, never the `latest` restore point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_for: Option<String>,
    pub cluster_id: u64,
    pub cluster_name: String,
    pub db_id: Id,
    /// The database's configuration, its password left out.
    pub db: DbConfig,
    /// Whether the database had a password (needed to recreate it; never the password).
    pub password_set: bool,
    /// Unix milliseconds.
    pub started: i64,
    pub finished: i64,
    /// How long writes were paused for the cut, and the bound it had to stay within.
    pub pause_ms: f64,
    pub max_pause_ms: u64,
    pub shards: Vec<ShardEntry>,
    /// SHA-256 (hex) of this document serialised with `checksum` empty.
    #[serde(default)]
    pub checksum: String,
}

/// One master shard's snapshot.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ShardEntry {
    /// The master shard whose data this is.
    pub shard: Id,
    /// The shard the snapshot was taken from: the master, or its replica.
    pub taken_from: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<SlotRange>,
    /// File name inside the run's directory (as stored: `.zst`, `.age` when so).
    pub file: String,
    /// The plain RDB's size and SHA-256.
    pub bytes: u64,
    pub sha256: String,
    /// How the file is stored; absent in runs written before compression existed.
    #[serde(default = "stored_plain", skip_serializing_if = "Compression::is_none")]
    pub compression: Compression,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// The stored file's size and SHA-256 when it differs from the plain RDB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_sha256: Option<String>,
    pub rdb_version: u32,
    /// `redis` or `valkey`.
    pub engine: String,
    /// The engine's version (`7.0.15`; Valkey's own version for Valkey).
    pub server_version: String,
    pub keys_per_db: BTreeMap<u32, u64>,
    pub keys: u64,
    pub expires: u64,
    pub started: i64,
    pub finished: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("no manifest (`{0}` is missing): the run did not finish")]
    Missing(String),
    /// Not even the run's directory is there: no run of that name.
    #[error("`{0}` does not exist")]
    NoRun(String),
    #[error("cannot read the manifest `{path}`: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("the manifest `{0}` does not match its checksum: it was changed or damaged")]
    Checksum(String),
    #[error(
        "the manifest `{path}` has format {found}, this lazarus reads up to {MANIFEST_FORMAT}"
    )]
    Format { path: String, found: u32 },
}

impl crate::error::DomainError for ManifestError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            ManifestError::Missing(_) | ManifestError::NoRun(_) => ErrorKind::NotFound,
            ManifestError::Unreadable { .. } | ManifestError::Checksum(_) => ErrorKind::Damaged,
            ManifestError::Format { .. } => ErrorKind::Conflict,
        }
    }
}

impl Manifest {
    /// SHA-256 of the document with `checksum` empty.
    pub fn digest(&self) -> String {
        let mut copy = self.clone();
        copy.checksum.clear();
        let bytes = serde_json::to_vec(&copy).expect("a manifest always serialises");
        hex(&Sha256::digest(&bytes))
    }

    pub fn keys(&self) -> u64 {
        self.shards.iter().map(|s| s.keys).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.bytes).sum()
    }

    /// What the run's files take in the repository.
    pub fn stored_bytes(&self) -> u64 {
        self.shards.iter().map(ShardEntry::stored_size).sum()
    }

    pub fn encrypted(&self) -> bool {
        self.shards.iter().any(|s| s.encrypted)
    }

    /// The sealed document (`checksum` set), as written.
    pub fn sealed_bytes(&self) -> Vec<u8> {
        let mut sealed = self.clone();
        sealed.checksum = self.digest();
        let mut text = serde_json::to_vec_pretty(&sealed).expect("a manifest always serialises");
        text.push(b'\n');
        text
    }

    /// Seals (sets `checksum`) and writes atomically.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        crate::ccs::store::write_atomic(path, &self.sealed_bytes())
    }

    pub fn read(path: &Path) -> Result<Manifest, ManifestError> {
        let shown = path.display().to_string();
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(match path.parent().filter(|run| !run.exists()) {
                    Some(run) => ManifestError::NoRun(run.display().to_string()),
                    None => ManifestError::Missing(shown),
                });
            }
            Err(e) => {
                return Err(ManifestError::Unreadable {
                    path: shown,
                    reason: e.to_string(),
                })
            }
        };
        Manifest::parse(&text, shown)
    }

    /// A manifest's bytes, checked; `shown` names where they came from.
    pub fn parse(text: &[u8], shown: String) -> Result<Manifest, ManifestError> {
        #[derive(Deserialize)]
        struct Header {
            format: u32,
        }
        if let Ok(h) = serde_json::from_slice::<Header>(text) {
            if h.format > MANIFEST_FORMAT {
                return Err(ManifestError::Format {
                    path: shown,
                    found: h.format,
                });
            }
        }
        let m: Manifest = serde_json::from_slice(text).map_err(|e| ManifestError::Unreadable {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        if m.checksum != m.digest() {
            return Err(ManifestError::Checksum(shown));
        }
        Ok(m)
    }
}

impl ShardEntry {
    /// Whether the stored file is the plain RDB itself.
    pub fn is_plain(&self) -> bool {
        self.compression.is_none() && !self.encrypted
    }

    pub fn stored_size(&self) -> u64 {
        self.stored_bytes.unwrap_or(self.bytes)
    }

    pub fn stored_digest(&self) -> &str {
        self.stored_sha256.as_deref().unwrap_or(&self.sha256)
    }
}
