//! Installing checked material into a node's persistent path: `tls/<id>/ca.crt`,
//! `cert.crt`, `key.pem` (files 0600, directories 0700) and `tls/current.json`, the
//! record without contents, so that the node's disk alone brings the material back.
//! `<id>` is derived from the fingerprints, so a rotation writes a new directory and a
//! shard told the new paths (`CONFIG SET tls-cert-file ...`) really reloads.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::TlsConfig;
use super::{check, Material, MaterialPaths, TlsError};

/// The directory under a persistent path that holds TLS material.
pub const TLS_DIR: &str = "tls";
/// The record of the current material in [`TLS_DIR`] (paths and fingerprints only).
pub const CURRENT_FILE: &str = "current.json";

/// Where `record`'s files live under `persistent_path`.
pub fn installed_dir(persistent_path: &Path, record: &TlsConfig) -> PathBuf {
    persistent_path.join(TLS_DIR).join(record.material_id())
}

/// Copies `material` under `persistent_path` and records it as current there. Returns
/// the directory holding the three files. A failure leaves no half-written directory.
pub fn install(persistent_path: &Path, material: &Material) -> Result<PathBuf, TlsError> {
    let root = persistent_path.join(TLS_DIR);
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Install { path, source }
    };
    private_dir(&root).map_err(err(&root))?;
    let dir = installed_dir(persistent_path, &material.record);
    let staging = root.join(format!(".staging-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    let written = (|| {
        private_dir(&staging)?;
        private_file(&staging.join("ca.crt"), &material.cacert_pem)?;
        private_file(&staging.join("cert.crt"), &material.cert_pem)?;
        private_file(&staging.join("key.pem"), &material.key_pem)?;
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::rename(&staging, &dir)?;
        let record = serde_json::to_vec_pretty(&material.record).map_err(std::io::Error::other)?;
        let tmp = root.join(format!(".{CURRENT_FILE}.tmp"));
        private_file(&tmp, &record)?;
        fs::rename(&tmp, root.join(CURRENT_FILE))?;
        fs::File::open(&root)?.sync_all()
    })();
    if let Err(source) = written {
        let _ = fs::remove_dir_all(&staging);
        return Err(TlsError::Install { path: root, source });
    }
    Ok(dir)
}

/// [`install`] on a node's host: the same layout and modes (directories 0700, files 0600,
/// each file written atomically), staged under a temporary name and renamed into place,
/// `current.json` last. For a node on another machine the bytes travel over its host's
/// connection; nothing is written on this machine.
pub async fn install_on(
    host: &dyn crate::host::Host,
    persistent_path: &Path,
    material: &Material,
) -> Result<PathBuf, TlsError> {
    let root = persistent_path.join(TLS_DIR);
    let dir = installed_dir(persistent_path, &material.record);
    let staging = root.join(format!(".staging-{}", std::process::id()));
    let written = async {
        host.create_private_dir(&root).await?;
        host.remove(&staging).await?;
        host.create_private_dir(&staging).await?;
        host.write_private(&staging.join("ca.crt"), &material.cacert_pem)
            .await?;
        host.write_private(&staging.join("cert.crt"), &material.cert_pem)
            .await?;
        host.write_private(&staging.join("key.pem"), &material.key_pem)
            .await?;
        host.remove(&dir).await?;
        host.rename(&staging, &dir).await?;
        let record = serde_json::to_vec_pretty(&material.record).map_err(std::io::Error::other)?;
        host.write_private(&root.join(CURRENT_FILE), &record).await
    }
    .await;
    if let Err(source) = written {
        let _ = host.remove(&staging).await;
        return Err(TlsError::Install { path: root, source });
    }
    Ok(dir)
}

/// The cluster's current material (`record`) as installed under one of `roots` (the
/// persistent paths of this machine's nodes), else at the paths the operator gave it
/// from (which the CCS records), checked again, and the very material the CCS records:
/// what a node added later receives, and a node that lost its copy with its disk.
pub fn material_here(
    record: Option<&TlsConfig>,
    roots: impl IntoIterator<Item = PathBuf>,
    now: i64,
) -> Result<Material, TlsError> {
    let record = record.ok_or_else(|| TlsError::NotInstalled {
        id: "(none)".into(),
        path: PathBuf::from(TLS_DIR),
    })?;
    let mut last = None;
    let installed = roots.into_iter().map(|root| {
        let dir = installed_dir(&root, record);
        MaterialPaths {
            cacert: dir.join("ca.crt"),
            cert: dir.join("cert.crt"),
            key: dir.join("key.pem"),
        }
    });
    let given = MaterialPaths {
        cacert: record.cacert.source.clone(),
        cert: record.cert.source.clone(),
        key: record.key.source.clone(),
    };
    for paths in installed.chain(std::iter::once(given)) {
        match check(&paths, now) {
            Ok(mut material) if material.record.material_id() == record.material_id() => {
                material.record = record.clone();
                return Ok(material);
            }
            Ok(_) => {}
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| TlsError::NotInstalled {
        id: record.material_id(),
        path: PathBuf::from(TLS_DIR),
    }))
}

/// [`install_from_recovery_path`] for a node on another machine: the old disk's copy is
/// read there, checked here (in a private temporary directory) as `cluster tls set`
/// checks it, must be the very material the CCS records, and is installed there.
pub async fn install_from_recovery_path_on(
    host: &dyn crate::host::Host,
    persistent_path: &Path,
    recovery_path: Option<&Path>,
    record: &TlsConfig,
    now: i64,
) -> Result<bool, TlsError> {
    let not_installed = || TlsError::NotInstalled {
        id: record.material_id(),
        path: persistent_path.join(TLS_DIR),
    };
    if host
        .metadata(&installed_dir(persistent_path, record).join("key.pem"))
        .await
        .is_ok()
    {
        return Ok(false);
    }
    let old = recovery_path
        .map(|r| installed_dir(r, record))
        .ok_or_else(not_installed)?;
    // The key is checked from a directory only this user can enter, removed after.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let here = std::env::temp_dir().join(format!(
        "lazarus-tls-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let checked = async {
        let local_err = |source| TlsError::Install {
            path: here.clone(),
            source,
        };
        private_dir(&here).map_err(local_err)?;
        for name in ["ca.crt", "cert.crt", "key.pem"] {
            let bytes = host
                .read(&old.join(name))
                .await
                .map_err(|_| not_installed())?;
            private_file(&here.join(name), &bytes).map_err(local_err)?;
        }
        let paths = MaterialPaths {
            cacert: here.join("ca.crt"),
            cert: here.join("cert.crt"),
            key: here.join("key.pem"),
        };
        check(&paths, now)
    }
    .await;
    let _ = fs::remove_dir_all(&here);
    let mut material = checked?;
    material.record.verify = record.verify;
    if material.record.material_id() != record.material_id() {
        return Err(not_installed());
    }
    material.record = record.clone();
    install_on(host, persistent_path, &material).await?;
    Ok(true)
}

/// Makes sure `record`'s material is under `persistent_path`. A node replaced after a
/// disaster has a fresh persistent path: the material comes from its old disk (the
/// `recovery_path`'s `tls/<material_id>/`), checked again as `cluster tls set` checks
/// it, and must be the very material the CCS records. Returns whether it was installed.
pub fn install_from_recovery_path(
    persistent_path: &Path,
    recovery_path: Option<&Path>,
    record: &TlsConfig,
    now: i64,
) -> Result<bool, TlsError> {
    // Databases recover in parallel, and `install` stages in one directory per process.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if installed_dir(persistent_path, record)
        .join("key.pem")
        .is_file()
    {
        return Ok(false);
    }
    let old = recovery_path.map(|r| installed_dir(r, record));
    let Some(old) = old.filter(|d| d.is_dir()) else {
        return Err(TlsError::NotInstalled {
            id: record.material_id(),
            path: persistent_path.join(TLS_DIR),
        });
    };
    let paths = MaterialPaths {
        cacert: old.join("ca.crt"),
        cert: old.join("cert.crt"),
        key: old.join("key.pem"),
    };
    let mut material = check(&paths, now)?;
    material.record.verify = record.verify;
    if material.record.material_id() != record.material_id() {
        return Err(TlsError::NotInstalled {
            id: record.material_id(),
            path: persistent_path.join(TLS_DIR),
        });
    }
    // Keep the operator's source paths in the record written beside the files.
    material.record = record.clone();
    install(persistent_path, &material)?;
    Ok(true)
}

/// Removes material directories under `persistent_path` other than `keep`'s: after a
/// rotation every running shard has been told the new paths.
pub fn remove_other_material(persistent_path: &Path, keep: &TlsConfig) -> std::io::Result<()> {
    let root = persistent_path.join(TLS_DIR);
    let keep = keep.material_id();
    for entry in fs::read_dir(&root)? {
        let entry = entry?;
        let name = entry.file_name();
        if entry.file_type()?.is_dir() && name.to_str() != Some(keep.as_str()) {
            fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

/// [`remove_other_material`] on a node's host.
pub async fn remove_other_material_on(
    host: &dyn crate::host::Host,
    persistent_path: &Path,
    keep: &TlsConfig,
) -> std::io::Result<()> {
    let root = persistent_path.join(TLS_DIR);
    let keep = keep.material_id();
    for entry in host.list(&root).await? {
        if entry.kind == crate::host::FileKind::Dir && entry.name != keep {
            host.remove(&root.join(&entry.name)).await?;
        }
    }
    Ok(())
}

fn private_dir(path: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(path)?;
    // An existing directory keeps its mode through `create`: narrow it.
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}

fn private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}
