//! `check file <path> fix <dest>`: a copy of a truncated AOF cut at its last complete
//! record. The original is only ever read; the copy holds the operator's data, so it is
//! written as Lazarus writes every data copy: owner only (files 0600, a directory 0700),
//! or with the original's own mode where that is stricter.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::host::local;

use serde::Serialize;

use super::report::{FileKind, FileReport, Verdict};

#[derive(Debug, thiserror::Error)]
pub enum FixError {
    #[error("only a truncated AOF can be fixed; `{path}` is {what}")]
    NotFixable { path: PathBuf, what: String },
    #[error("destination `{0}` already exists; choose a new path")]
    DestExists(PathBuf),
    #[error("destination `{0}` is the file being fixed; choose a new path")]
    DestIsSource(PathBuf),
    #[error("cannot write `{path}`: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl crate::error::DomainError for FixError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            FixError::NotFixable { .. } | FixError::DestExists(_) | FixError::DestIsSource(_) => {
                ErrorKind::Conflict
            }
            FixError::Io { .. } => ErrorKind::Io,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            FixError::DestExists(_) | FixError::DestIsSource(_) => {
                vec!["choose a new path".into()]
            }
            _ => Vec::new(),
        }
    }
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct FixOutcome {
    /// What was fixed: the AOF file, or a multi-part AOF's directory.
    pub source: PathBuf,
    /// What was written (a file, or a directory for a multi-part AOF).
    pub dest: PathBuf,
    /// The part that was cut, its original length and the length kept.
    pub truncated_file: PathBuf,
    pub original_len: u64,
    pub kept_len: u64,
}

/// How a fixed copy `dest` of the truncated AOF `source` (a recovery path's file or
/// `appendonlydir`) is loaded: recovery reads the file at `source`, and the original
/// keeps the bytes the copy cut, so it is moved aside, never deleted.
pub fn way_to_load(source: &Path, dest: &str, db: &str) -> String {
    format!(
        "move `{src}` aside (never delete it: it keeps the bytes the copy cuts), put {dest} at `{src}`, then `recover db {db}`",
        src = source.display()
    )
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FixError + '_ {
    move |source| FixError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes to `dest` a copy of the truncated AOF `report` describes, cut at `valid_len`.
/// Refuses when `dest` exists or is the source; never touches the source.
pub fn fix_truncated(report: &FileReport, dest: &Path) -> Result<FixOutcome, FixError> {
    let (Verdict::Truncated, Some(keep), Some(fault), FileKind::AofSingle | FileKind::AofMultiPart) =
        (report.verdict, report.valid_len, &report.fault, report.kind)
    else {
        let what = if report.verdict == Verdict::Truncated {
            format!("a truncated {}", report.kind)
        } else {
            format!("{} ({})", report.verdict, report.kind)
        };
        return Err(FixError::NotFixable {
            path: report.path.clone(),
            what,
        });
    };
    if dest.exists() || dest.symlink_metadata().is_ok() {
        return Err(FixError::DestExists(dest.to_path_buf()));
    }
    // Writing into the source (or inside an AOF directory) would change what is checked.
    let dest_abs = absolute(dest);
    let inside = |p: &Path| {
        fs::canonicalize(p).is_ok_and(|p| dest_abs.as_ref().is_some_and(|d| d.starts_with(&p)))
    };
    if dest_abs.is_none() || inside(&report.path) || inside(&fault.file) {
        return Err(FixError::DestIsSource(dest.to_path_buf()));
    }
    let cut = &fault.file;
    let original_len = fs::metadata(cut).map_err(io_err(cut))?.len();
    match report.kind {
        FileKind::AofMultiPart => {
            local::create_private_dir(dest).map_err(io_err(dest))?;
            // A directory this call made is its own to remove: a copy cut short is no copy.
            copy_parts(&report.path, dest, cut, keep)
                .and_then(|()| restrict_to(&report.path, dest))
                .inspect_err(|_| {
                    let _ = local::remove(dest);
                })?;
        }
        _ => copy_prefix(cut, dest, keep)?,
    }
    Ok(FixOutcome {
        source: report.path.clone(),
        dest: dest.to_path_buf(),
        truncated_file: cut.clone(),
        original_len,
        kept_len: keep.min(original_len),
    })
}

/// Every file of the multi-part AOF `dir` copied into `dest`, `cut` kept to `keep` bytes.
fn copy_parts(dir: &Path, dest: &Path, cut: &Path, keep: u64) -> Result<(), FixError> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let from = entry.map_err(io_err(dir))?.path();
        if !from.is_file() {
            continue;
        }
        let to = dest.join(from.file_name().unwrap_or_default());
        let limit = if from == cut { keep } else { u64::MAX };
        copy_prefix(&from, &to, limit)?;
    }
    Ok(())
}

/// The first `limit` bytes of `from` written to `to` as a private file
/// ([`local::create_private_stream`]: 0600, in place only once complete).
fn copy_prefix(from: &Path, to: &Path, limit: u64) -> Result<(), FixError> {
    let src = File::open(from).map_err(io_err(from))?;
    let mut out = local::create_private_stream(to).map_err(io_err(to))?;
    io::copy(&mut src.take(limit), &mut out).map_err(io_err(to))?;
    out.finish().map_err(io_err(to))?;
    restrict_to(from, to)
}

/// Gives `to` the mode of `from` where that grants less than owner only (a 0400 original
/// stays 0400); an original open to others does not open the copy.
fn restrict_to(from: &Path, to: &Path) -> Result<(), FixError> {
    let original = fs::metadata(from)
        .map_err(io_err(from))?
        .permissions()
        .mode()
        & 0o777;
    let own = fs::metadata(to).map_err(io_err(to))?.permissions().mode() & 0o777;
    let mode = own & original;
    if mode != own {
        fs::set_permissions(to, fs::Permissions::from_mode(mode)).map_err(io_err(to))?;
    }
    Ok(())
}

/// `dest` made absolute through its (existing) parent directory.
fn absolute(dest: &Path) -> Option<PathBuf> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some(fs::canonicalize(parent).ok()?.join(dest.file_name()?))
}
