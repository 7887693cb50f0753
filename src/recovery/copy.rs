//! Bringing a chosen source into a new shard directory: the original is only ever read,
//! and what is brought gets its final name only once complete and checked.
//!
//! A file no server writes in place (an RDB, an AOF's base and incr parts) is hard-linked
//! where it can be ([`bring_file`]); anything else is copied. `std::fs::copy` uses
//! `copy_file_range` on Linux, so the kernel copies (or reflinks, on filesystems that can)
//! without the data passing through this process.

use std::fs;
use std::io;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::plan::SourceKind;

#[derive(Debug, Error)]
pub enum CopyError {
    #[error("cannot read `{}`: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write `{}`: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("the copy `{}` differs from `{}`: {what}", to.display(), from.display())]
    Mismatch {
        from: PathBuf,
        to: PathBuf,
        what: String,
    },
    #[error("shard directory `{}` lies inside recovery path `{}`: recovery would rewrite the original files; give the node a persistent path outside its recovery path", dir.display(), recovery.display())]
    InsideRecoveryPath { dir: PathBuf, recovery: PathBuf },
}

impl crate::error::DomainError for CopyError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            CopyError::Read { .. } | CopyError::Write { .. } | CopyError::Mismatch { .. } => {
                ErrorKind::Io
            }
            CopyError::InsideRecoveryPath { .. } => ErrorKind::Conflict,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            CopyError::InsideRecoveryPath { .. } => {
                vec!["give the node a persistent path outside its recovery path".into()]
            }
            _ => Vec::new(),
        }
    }
}

/// What a copy brought over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Copied {
    pub files: usize,
    pub bytes: u64,
    /// Of `files`, those brought as hard links to the originals ([`bring_file`]).
    pub linked: usize,
}

/// Size of each block compared between original and copy.
const SAMPLE: usize = 64 * 1024;
/// Blocks compared per file besides its first and last.
const SAMPLES: u64 = 14;

/// Refuses a shard directory that is, or lies inside, a recovery path: redis-server
/// rewrites its files in place, which would destroy the original.
pub fn ensure_outside(shard_dir: &Path, recovery: &Path) -> Result<(), CopyError> {
    let canon = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    // The shard dir may not exist yet; its nearest existing ancestor decides.
    let mut probe = shard_dir.to_path_buf();
    let mut rest = Vec::new();
    while !probe.exists() {
        match (probe.file_name().map(|n| n.to_os_string()), probe.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                probe = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut dir = canon(&probe);
    dir.extend(rest.iter().rev());
    let recovery = canon(recovery);
    if dir.starts_with(&recovery) {
        return Err(CopyError::InsideRecoveryPath {
            dir: shard_dir.to_path_buf(),
            recovery,
        });
    }
    Ok(())
}

/// Copies `source` (a file or an `appendonlydir/`) into `shard_dir` under the name
/// `kind` takes there, through a temporary name, replacing whatever an interrupted earlier
/// attempt left under that name.
pub fn copy_source(source: &Path, kind: SourceKind, shard_dir: &Path) -> Result<Copied, CopyError> {
    let copied = copy_to_temp(source, kind, shard_dir)?;
    install_copy(kind, shard_dir)?;
    Ok(copied)
}

/// The temporary name a copy is made under, in the shard directory.
pub fn temp_name(kind: SourceKind, shard_dir: &Path) -> PathBuf {
    shard_dir.join(format!(".{}.lazarus-tmp", kind.file_name()))
}

/// The first half of [`copy_source`]: the complete, checked and durable copy under its
/// temporary name.
pub fn copy_to_temp(
    source: &Path,
    kind: SourceKind,
    shard_dir: &Path,
) -> Result<Copied, CopyError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CopyError::Write { path, source }
    };
    fs::create_dir_all(shard_dir).map_err(write_err(shard_dir))?;
    let tmp = temp_name(kind, shard_dir);
    remove_any(&tmp).map_err(write_err(&tmp))?;
    if kind == SourceKind::AofDir {
        fs::create_dir(&tmp).map_err(write_err(&tmp))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).map_err(write_err(&tmp))?;
        let entries = fs::read_dir(source).map_err(read_err(source))?;
        let mut copied = Copied {
            files: 0,
            bytes: 0,
            linked: 0,
        };
        for entry in entries {
            let entry = entry.map_err(read_err(source))?;
            let from = entry.path();
            // The manifest names plain files in this directory; anything else is not ours.
            if !entry.file_type().map_err(read_err(&from))?.is_file() {
                continue;
            }
            // The manifest is the server's to rewrite; the parts it never writes in place.
            let link = entry.file_name() != AOF_MANIFEST;
            let (bytes, linked) = bring_file(&from, &tmp.join(entry.file_name()), link)?;
            copied.bytes += bytes;
            copied.files += 1;
            copied.linked += usize::from(linked);
        }
        sync_dir(&tmp)?;
        Ok(copied)
    } else {
        // The server replaces `dump.rdb` by rename; it appends to `appendonly.aof`.
        let (bytes, linked) = bring_file(source, &tmp, kind == SourceKind::Rdb)?;
        Ok(Copied {
            files: 1,
            bytes,
            linked: usize::from(linked),
        })
    }
}

/// The second half of [`copy_source`]: the copy takes its final name, replacing whatever
/// is there (a stand-in symlink, or what an interrupted attempt left).
pub fn install_copy(kind: SourceKind, shard_dir: &Path) -> Result<(), CopyError> {
    let target = shard_dir.join(kind.file_name());
    let write_err = |source| CopyError::Write {
        path: target.clone(),
        source,
    };
    let tmp = temp_name(kind, shard_dir);
    if kind == SourceKind::AofDir {
        // The server will append to the last incr file (and may cut it short): its own.
        unshare_last_incr(&tmp)?;
        remove_any(&target).map_err(write_err)?;
    }
    // A file (or a symlink) is replaced atomically by the rename itself.
    rename_own(&tmp, &target).map_err(write_err)?;
    sync_dir(shard_dir)
}

/// The manifest name the shards' `appendfilename` (Redis's default) makes.
const AOF_MANIFEST: &str = "appendonly.aof.manifest";

/// A multi-part AOF's stand-in in a shard directory: its `appendonlydir/` holds a symlink
/// to each part the original manifest loads (base, then incrs), a manifest of its own that
/// lists them and, last, a new empty incr file of its own. The server appends only to the
/// last incr, so it can load the originals while their copy is made beside it, as an RDB
/// loads through its symlink; [`adopt_copies`] then puts each part's checked copy in its
/// symlink's place. A server may also cut a damaged part short in place
/// (`aof-load-truncated`): it loads the stand-in with `aof-load-truncated no` and refuses
/// such a part instead; recovery then puts the whole copy in the stand-in's place and
/// goes on as after any refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandIn {
    /// The parts linked, by name: the copies that replace them.
    pub parts: Vec<String>,
}

/// Makes `shard_dir/appendonlydir` the [`StandIn`] of the multi-part AOF in `source`;
/// `None` (and nothing made) when the directory is not a plain one this can stand in for:
/// no manifest under the shards' name, one that does not parse (validation names it),
/// names that would need quoting, a part that is not a regular file.
pub fn stand_in_aof(source: &Path, shard_dir: &Path) -> Result<Option<StandIn>, CopyError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CopyError::Write { path, source }
    };
    let source = fs::canonicalize(source).map_err(read_err(source))?;
    let Ok(text) = fs::read(source.join(AOF_MANIFEST)) else {
        return Ok(None);
    };
    let Ok(manifest) = crate::persist::manifest::parse(&text) else {
        return Ok(None);
    };
    let parts: Vec<&crate::persist::manifest::Entry> =
        manifest.base.iter().chain(&manifest.incrs).collect();
    let plain = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    let next = manifest
        .incrs
        .iter()
        .map(|e| e.seq)
        .max()
        .unwrap_or(0)
        .max(0)
        + 1;
    let incr = format!("appendonly.aof.{next}.incr.aof");
    // The newest of the original files: the stand-in's own files are as old as the data.
    let mut newest = fs::metadata(source.join(AOF_MANIFEST))
        .and_then(|m| m.modified())
        .map_err(read_err(&source))?;
    for part in &parts {
        let meta = match fs::symlink_metadata(source.join(&part.name)) {
            Ok(m) if m.is_file() && plain(&part.name) => m,
            _ => return Ok(None),
        };
        newest = newest.max(meta.modified().map_err(read_err(&source))?);
    }
    if parts.is_empty() || source.join(&incr).exists() {
        return Ok(None);
    }
    let dir = shard_dir.join(SourceKind::AofDir.file_name());
    fs::create_dir_all(shard_dir).map_err(write_err(shard_dir))?;
    remove_any(&dir).map_err(write_err(&dir))?;
    fs::create_dir(&dir).map_err(write_err(&dir))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(write_err(&dir))?;
    let mut listed = String::new();
    for part in &parts {
        let link = dir.join(&part.name);
        std::os::unix::fs::symlink(source.join(&part.name), &link).map_err(write_err(&link))?;
        let kind = if part.kind == crate::persist::manifest::PartType::Base {
            'b'
        } else {
            'i'
        };
        listed.push_str(&format!(
            "file {} seq {} type {kind}\n",
            part.name, part.seq
        ));
    }
    listed.push_str(&format!("file {incr} seq {next} type i\n"));
    for (name, bytes) in [(AOF_MANIFEST, listed.as_bytes()), (incr.as_str(), &[][..])] {
        let path = dir.join(name);
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(write_err(&path))?;
        (&f).write_all(bytes)
            .and_then(|_| f.set_modified(newest))
            .and_then(|_| f.sync_all())
            .map_err(write_err(&path))?;
    }
    sync_dir(&dir)?;
    Ok(Some(StandIn {
        parts: parts.iter().map(|p| p.name.clone()).collect(),
    }))
}

/// Puts the complete copy [`copy_to_temp`] made of each part of a [`StandIn`] in its
/// symlink's place (each rename atomic; the server closed the parts once loaded), then
/// drops the rest of the copy (the original manifest, history files).
pub fn adopt_copies(stand_in: &StandIn, shard_dir: &Path) -> Result<(), CopyError> {
    let tmp = temp_name(SourceKind::AofDir, shard_dir);
    let dir = shard_dir.join(SourceKind::AofDir.file_name());
    for part in &stand_in.parts {
        let to = dir.join(part);
        rename_own(&tmp.join(part), &to).map_err(|source| CopyError::Write { path: to, source })?;
    }
    sync_dir(&dir)?;
    remove_any(&tmp).map_err(|source| CopyError::Write { path: tmp, source })
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> CopyError {
    let path = path.to_path_buf();
    move |source| CopyError::Read { path, source }
}

/// Brings one file into a shard directory: a hard link to the original when `link` (a
/// file no server writes in place) and the link can be made, else a checked copy
/// ([`copy_file`]). Returns its length, and whether it is a link.
///
/// A link costs no time and no space, where a copy of a big file took as long as the
/// server's load beside it and slowed that load. It is safe because nothing writes such a
/// file in place: redis-server and valkey-server replace `dump.rdb` by rename when they
/// save, never write an AOF base again, and append only to the last incr file, which is
/// either a new one of the shard's own ([`StandIn`]) or unshared before the server gets
/// it ([`install_copy`]); removing the shard directory (or the server deleting history
/// files after a rewrite) only removes a name. The original keeps its bytes, mode and
/// times; the linked file keeps the original's mode and owner, inside the shard
/// directory that only the owner can enter. Any failure to link (another filesystem,
/// `fs.protected_hardlinks` for a file of another user) falls back to the copy.
fn bring_file(from: &Path, to: &Path, link: bool) -> Result<(u64, bool), CopyError> {
    if link {
        if let Some(bytes) = link_file(from, to)? {
            return Ok((bytes, true));
        }
    }
    Ok((copy_file(from, to)?, false))
}

/// [`bring_file`]'s link: `None` when it cannot be made (nothing left behind).
fn link_file(from: &Path, to: &Path) -> Result<Option<u64>, CopyError> {
    use std::os::unix::fs::MetadataExt;
    // A symlink is copied through: a link to it would be a symlink in the shard directory.
    let before = fs::symlink_metadata(from).map_err(read_err(from))?;
    if !before.is_file() || fs::hard_link(from, to).is_err() {
        return Ok(None);
    }
    let after = fs::symlink_metadata(to).map_err(read_err(to))?;
    if (after.dev(), after.ino(), after.len()) != (before.dev(), before.ino(), before.len()) {
        // The original was replaced or written meanwhile: copy what is there now.
        fs::remove_file(to).map_err(|source| CopyError::Write {
            path: to.to_path_buf(),
            source,
        })?;
        return Ok(None);
    }
    crate::persist::note_own_link(&before, &after);
    // Durable like a copy: the data (the original's, maybe never synced) and the name
    // (the directory is synced by the caller).
    fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|source| CopyError::Write {
            path: to.to_path_buf(),
            source,
        })?;
    Ok(Some(after.len()))
}

/// `fs::rename`, for a file [`bring_file`] may have linked: the rename moves the
/// original's change time too, which the validation memo is told of.
fn rename_own(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let before = fs::symlink_metadata(from)?;
    fs::rename(from, to)?;
    if before.is_file() && before.nlink() > 1 {
        if let Ok(after) = fs::symlink_metadata(to) {
            crate::persist::note_own_link(&before, &after);
        }
    }
    Ok(())
}

/// Makes the last incr file the manifest in `aof_dir` names a file of its own (a copy)
/// where [`bring_file`] linked it: the server appends to that one. A manifest that does
/// not parse unshares every linked file.
fn unshare_last_incr(aof_dir: &Path) -> Result<(), CopyError> {
    use std::os::unix::fs::MetadataExt;
    let names: Vec<String> = match fs::read(aof_dir.join(AOF_MANIFEST))
        .ok()
        .and_then(|text| crate::persist::manifest::parse(&text).ok())
    {
        Some(m) => m.incrs.last().map(|e| e.name.clone()).into_iter().collect(),
        None => fs::read_dir(aof_dir)
            .map_err(read_err(aof_dir))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect(),
    };
    for name in names {
        let path = aof_dir.join(&name);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() && m.nlink() > 1 => {}
            _ => continue,
        }
        let own = aof_dir.join(format!(".{name}.lazarus-own"));
        copy_file(&path, &own)?;
        fs::rename(&own, &path).map_err(|source| CopyError::Write { path, source })?;
    }
    sync_dir(aof_dir)
}

/// Copies one file, checks the copy, and makes it durable.
fn copy_file(from: &Path, to: &Path) -> Result<u64, CopyError> {
    let write_err = |source| CopyError::Write {
        path: to.to_path_buf(),
        source,
    };
    let expected = fs::metadata(from).map_err(read_err(from))?.len();
    let bytes = fs::copy(from, to).map_err(|e| {
        // `fs::copy` does not say which side failed; the original is the likelier culprit
        // only when it cannot be opened.
        match fs::File::open(from) {
            Err(source) => CopyError::Read {
                path: from.to_path_buf(),
                source,
            },
            Ok(_) => write_err(e),
        }
    })?;
    // The original may be read-only; the copy is the server's, and holds the keys: owner only.
    fs::set_permissions(to, fs::Permissions::from_mode(0o600)).map_err(write_err)?;
    verify_copy(from, to, expected, bytes)?;
    // The copy is as old as its data: the next recovery compares these times with the
    // source this one loaded, and a copy stamped with the moment of copying would make
    // that very source look older than data the database had.
    let modified = fs::metadata(from)
        .and_then(|m| m.modified())
        .map_err(read_err(from))?;
    fs::OpenOptions::new()
        .write(true)
        .open(to)
        .and_then(|f| {
            f.set_modified(modified)?;
            f.sync_all()
        })
        .map_err(write_err)?;
    Ok(bytes)
}

/// Same length, and the same bytes at the start, the end and evenly spaced blocks
/// between: catches a short or misplaced copy without reading everything twice (the
/// server checks the RDB's CRC-64 as it loads anyway).
fn verify_copy(from: &Path, to: &Path, expected: u64, copied: u64) -> Result<(), CopyError> {
    let mismatch = |what: String| CopyError::Mismatch {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        what,
    };
    let actual = fs::metadata(to).map_err(read_err(to))?.len();
    if copied != expected || actual != expected {
        return Err(mismatch(format!("{actual} bytes instead of {expected}")));
    }
    let a = fs::File::open(from).map_err(read_err(from))?;
    let b = fs::File::open(to).map_err(read_err(to))?;
    let block = SAMPLE as u64;
    let mut offsets = vec![0, expected.saturating_sub(block)];
    if expected > 2 * block {
        let span = expected - block;
        offsets.extend((1..=SAMPLES).map(|i| span * i / (SAMPLES + 1)));
    }
    let (mut x, mut y) = (vec![0u8; SAMPLE], vec![0u8; SAMPLE]);
    for offset in offsets {
        let len = block.min(expected - offset) as usize;
        a.read_exact_at(&mut x[..len], offset)
            .map_err(read_err(from))?;
        b.read_exact_at(&mut y[..len], offset)
            .map_err(read_err(to))?;
        if x[..len] != y[..len] {
            return Err(mismatch(format!("bytes differ near offset {offset}")));
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), CopyError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| CopyError::Write {
            path: dir.to_path_buf(),
            source,
        })
}

/// Removes a file or directory tree in a shard directory we own; absent is fine.
fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The same steps on any host: this machine's through `std::fs` (the kernel copies, and
/// sampled blocks are compared), another host's with one `sh` script there, so the data
/// never leaves that machine (linked when it can be, as here, else copied; lengths
/// compared, files and directory synced).
pub mod on_host {
    use std::path::{Path, PathBuf};

    use super::{Copied, CopyError, SourceKind};
    use crate::host::Host;

    fn arg(p: &Path) -> String {
        p.to_string_lossy().into_owned()
    }

    /// Runs `script` with `sh` on `host`, `args` as `$1`...; its stdout.
    async fn sh(host: &dyn Host, script: &str, args: &[String]) -> Result<String, String> {
        let mut all = vec!["-c".to_string(), script.to_string(), "sh".to_string()];
        all.extend_from_slice(args);
        match host.run(Path::new("sh"), &all).await {
            Ok(out) if out.success => Ok(out.stdout),
            Ok(out) => Err(out.stderr.trim().to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// [`super::ensure_outside`] on the shard directory's host.
    pub async fn ensure_outside(
        host: &dyn Host,
        shard_dir: &Path,
        recovery: &Path,
    ) -> Result<(), CopyError> {
        if host.is_local() {
            return super::ensure_outside(shard_dir, recovery);
        }
        // `readlink -m` resolves what exists and keeps the rest as written.
        let out = sh(
            host,
            "exec readlink -m -- \"$1\" \"$2\"",
            &[arg(shard_dir), arg(recovery)],
        )
        .await
        .unwrap_or_default();
        let mut lines = out.lines().map(PathBuf::from);
        let (dir, recovery) = match (lines.next(), lines.next()) {
            (Some(d), Some(r)) => (d, r),
            _ => (shard_dir.to_path_buf(), recovery.to_path_buf()),
        };
        if dir.starts_with(&recovery) {
            return Err(CopyError::InsideRecoveryPath {
                dir: shard_dir.to_path_buf(),
                recovery,
            });
        }
        Ok(())
    }

    /// [`super::copy_to_temp`] on `host`.
    pub async fn copy_to_temp(
        host: &dyn Host,
        source: &Path,
        kind: SourceKind,
        shard_dir: &Path,
    ) -> Result<Copied, CopyError> {
        if host.is_local() {
            let (source, dir) = (source.to_path_buf(), shard_dir.to_path_buf());
            // Beside the servers' load, lowered (the kernel's copy counts as this thread's).
            return super::super::beside::beside(move || super::copy_to_temp(&source, kind, &dir))
                .join()
                .await
                .map_err(|e| CopyError::Write {
                    path: shard_dir.to_path_buf(),
                    source: std::io::Error::other(e),
                })?;
        }
        let tmp = super::temp_name(kind, shard_dir);
        // Plain files only (an appendonlydir's manifest names plain files); each copy
        // owner-only, its length compared with the original's, then synced.
        let script = r#"set -e
umask 077
src=$1 tmp=$2 dir=$3 kind=$4
[ -e "$src" ] || { echo "cannot read $src: no such file or directory" >&2; exit 1; }
mkdir -p -- "$dir"
rm -rf -- "$tmp"
one() {
  how=linked
  if [ "$3" = link ] && [ ! -L "$1" ] && ln -- "$1" "$2" 2>/dev/null; then :; else
    how=copied
    cp -- "$1" "$2"
    chmod 600 -- "$2"
    touch -r "$1" -- "$2"
  fi
  a=$(stat -c %s -- "$1"); b=$(stat -c %s -- "$2")
  [ "$a" = "$b" ] || { echo "the copy $2 has $b bytes, not $a" >&2; exit 1; }
  echo "$a $how"
}
if [ "$kind" = dir ]; then
  mkdir -m 755 -- "$tmp"
  for f in "$src"/* "$src"/.[!.]*; do
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    name=${f##*/} how=link
    [ "$name" = appendonly.aof.manifest ] && how=copy
    one "$f" "$tmp/$name" "$how"
  done
  sync -- "$tmp"/* "$tmp" 2>/dev/null || sync
elif [ "$kind" = rdb ]; then
  one "$src" "$tmp" link
  sync -- "$tmp"
else
  one "$src" "$tmp" copy
  sync -- "$tmp"
fi"#;
        // What is linked where it can be, as here ([`super::bring_file`]): an RDB, an
        // AOF directory's parts; a single-file AOF is copied.
        let kind_arg = match kind {
            SourceKind::AofDir => "dir",
            SourceKind::AofFile => "file",
            SourceKind::Rdb => "rdb",
        };
        let out = sh(
            host,
            script,
            &[arg(source), arg(&tmp), arg(shard_dir), kind_arg.into()],
        )
        .await
        .map_err(|why| CopyError::Write {
            path: tmp.clone(),
            source: std::io::Error::other(format!("on {}: {why}", host.name())),
        })?;
        // A line a file: its size, and whether it was linked or copied.
        let files: Vec<(u64, bool)> = out
            .lines()
            .filter_map(|l| {
                let (size, how) = l.trim().split_once(' ')?;
                Some((size.parse().ok()?, how == "linked"))
            })
            .collect();
        Ok(Copied {
            files: files.len(),
            bytes: files.iter().map(|f| f.0).sum(),
            linked: files.iter().filter(|f| f.1).count(),
        })
    }

    /// [`super::install_copy`] on `host`.
    pub async fn install_copy(
        host: &dyn Host,
        kind: SourceKind,
        shard_dir: &Path,
    ) -> Result<(), CopyError> {
        if host.is_local() {
            return super::install_copy(kind, shard_dir);
        }
        let (tmp, target) = (
            super::temp_name(kind, shard_dir),
            shard_dir.join(kind.file_name()),
        );
        // An AOF directory's last incr file (the one its server appends to) is made its
        // own, as `unshare_last_incr` does here; without a manifest, every linked file.
        let script = r#"set -e
umask 077
tmp=$1 target=$2 dir=$3
if [ -d "$tmp" ] && [ ! -L "$tmp" ]; then
  m="$tmp/appendonly.aof.manifest"
  if [ -f "$m" ]; then
    names=$(awk '{f=""; t=""; for (i = 1; i < NF; i++) { if ($i == "file") f = $(i+1); if ($i == "type") t = $(i+1) } if (t == "i") l = f } END { print l }' "$m")
  else
    names=$(cd -- "$tmp" && ls -A)
  fi
  for n in $names; do
    f="$tmp/$n"
    [ -f "$f" ] && [ ! -L "$f" ] && [ "$(stat -c %h -- "$f")" -gt 1 ] || continue
    cp -- "$f" "$tmp/.$n.lazarus-own"
    touch -r "$f" -- "$tmp/.$n.lazarus-own"
    mv -f -- "$tmp/.$n.lazarus-own" "$f"
  done
  sync -- "$tmp"/* "$tmp" 2>/dev/null || sync
  rm -rf -- "$target"
fi
mv -f -T -- "$tmp" "$target"
sync -- "$dir""#;
        sh(host, script, &[arg(&tmp), arg(&target), arg(shard_dir)])
            .await
            .map(|_| ())
            .map_err(|why| CopyError::Write {
                path: target,
                source: std::io::Error::other(format!("on {}: {why}", host.name())),
            })
    }

    /// [`super::copy_source`] on `host`.
    pub async fn copy_source(
        host: &dyn Host,
        source: &Path,
        kind: SourceKind,
        shard_dir: &Path,
    ) -> Result<Copied, CopyError> {
        let copied = copy_to_temp(host, source, kind, shard_dir).await?;
        install_copy(host, kind, shard_dir).await?;
        Ok(copied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, bytes: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    /// Writes each `(name, bytes)` into `dir`.
    fn write_files(dir: &Path, files: &[(&str, &[u8])]) {
        for (name, bytes) in files {
            write(&dir.join(name), bytes);
        }
    }

    fn inode(p: &Path) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let m = fs::symlink_metadata(p).unwrap();
        (m.ino(), m.nlink())
    }

    #[test]
    fn an_rdb_is_linked_a_symlinked_or_single_file_aof_is_copied() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("old/dump.rdb");
        write(&src, b"REDIS0010 the bytes");
        fs::set_permissions(&src, fs::Permissions::from_mode(0o644)).unwrap();
        let dst = t.path().join("new/shard-1");
        copy_source(&src, SourceKind::Rdb, &dst).unwrap();
        let (ino, links) = inode(&dst.join("dump.rdb"));
        assert_eq!((ino, links), (inode(&src).0, 2));
        // The original's mode is left alone (a copy would be the owner's only).
        assert_eq!(
            fs::metadata(&src).unwrap().permissions().mode() & 0o777,
            0o644
        );

        // Reached through a symlink: copied, never a link to the symlink.
        let via = t.path().join("old/via.rdb");
        std::os::unix::fs::symlink(&src, &via).unwrap();
        let dst = t.path().join("new/shard-2");
        copy_source(&via, SourceKind::Rdb, &dst).unwrap();
        let meta = fs::symlink_metadata(dst.join("dump.rdb")).unwrap();
        assert!(meta.is_file());
        assert_ne!(inode(&dst.join("dump.rdb")).0, inode(&src).0);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);

        // A single-file AOF is appended to in place: always copied.
        let aof = t.path().join("old/appendonly.aof");
        write(&aof, b"*1\r\n$4\r\nPING\r\n");
        let dst = t.path().join("new/shard-3");
        copy_source(&aof, SourceKind::AofFile, &dst).unwrap();
        assert_eq!(inode(&aof).1, 1);
        assert_eq!(
            fs::read(dst.join("appendonly.aof")).unwrap(),
            fs::read(&aof).unwrap()
        );
    }

    /// On another filesystem (tmpfs under /dev/shm, when there is one) the link cannot be
    /// made: the file is copied.
    #[test]
    fn a_file_on_another_filesystem_is_copied() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("no /dev/shm here: the other filesystem's case is not run");
            return;
        };
        if fs::metadata(shm.path()).unwrap().dev() == fs::metadata(t.path()).unwrap().dev() {
            eprintln!("/dev/shm is on the same filesystem here: the case is not run");
            return;
        }
        let src = shm.path().join("dump.rdb");
        write(&src, b"REDIS0010 elsewhere");
        let dst = t.path().join("shard-1");
        copy_source(&src, SourceKind::Rdb, &dst).unwrap();
        assert_eq!(inode(&dst.join("dump.rdb")).1, 1);
        assert_eq!(
            fs::read(dst.join("dump.rdb")).unwrap(),
            b"REDIS0010 elsewhere"
        );
    }

    /// A validation remembered before the link is still remembered after it (the link
    /// moved the file's change time, nothing else); a write after it is read again.
    #[test]
    fn a_link_keeps_the_validation_remembered() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("old/dump.rdb");
        let mut rdb = b"REDIS0010\xff".to_vec();
        let crc = crate::persist::crc64(&rdb);
        rdb.extend(crc.to_le_bytes());
        write(&src, &rdb);
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(&src)
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let opts = crate::persist::CheckOptions::default();
        let first = crate::persist::check_path(&src, &opts);
        assert_eq!(
            first.verdict,
            crate::persist::Verdict::Ok,
            "{:?}",
            first.fault
        );
        assert!(crate::persist::check_path(&src, &opts).from_cache);
        copy_source(&src, SourceKind::Rdb, &t.path().join("shard-1")).unwrap();
        assert_eq!(inode(&src).1, 2);
        assert!(crate::persist::check_path(&src, &opts).from_cache);
        // Written (same bytes): its change time moves again, not by a link of ours.
        fs::write(&src, &rdb).unwrap();
        assert!(!crate::persist::check_path(&src, &opts).from_cache);
    }

    #[test]
    fn copies_a_file_and_leaves_the_original() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("old/dump.rdb");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        write(&src, &data);
        fs::set_permissions(&src, fs::Permissions::from_mode(0o400)).unwrap();
        let dst = t.path().join("new/shard-3");
        let copied = copy_source(&src, SourceKind::Rdb, &dst).unwrap();
        assert_eq!(
            copied,
            Copied {
                files: 1,
                bytes: data.len() as u64,
                linked: 1,
            }
        );
        assert_eq!(fs::read(dst.join("dump.rdb")).unwrap(), data);
        assert_eq!(fs::read(&src).unwrap(), data);
        // As old as its data, to the nanosecond.
        let modified = |p: &Path| fs::metadata(p).unwrap().modified().unwrap();
        assert_eq!(modified(&dst.join("dump.rdb")), modified(&src));
        assert_eq!(
            fs::metadata(&src).unwrap().permissions().mode() & 0o777,
            0o400
        );
        assert!(!dst.join(".dump.rdb.lazarus-tmp").exists());
    }

    #[test]
    fn copies_an_aof_dir_over_a_half_finished_attempt() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("old/appendonlydir");
        write_files(
            &src,
            &[
                ("appendonly.aof.1.base.rdb", b"REDIS0010base"),
                ("appendonly.aof.1.incr.aof", b"*1\r\n$4\r\nPING\r\n"),
                (
                    "appendonly.aof.manifest",
                    b"file appendonly.aof.1.base.rdb seq 1 type b\n",
                ),
            ],
        );
        let dst = t.path().join("new");
        write(
            &dst.join(".appendonlydir.lazarus-tmp/junk"),
            b"left by a killed shell",
        );
        write(
            &dst.join("appendonlydir/appendonly.aof.1.incr.aof"),
            b"half",
        );
        let copied = copy_source(&src, SourceKind::AofDir, &dst).unwrap();
        assert_eq!(copied.files, 3);
        let mut names: Vec<_> = fs::read_dir(dst.join("appendonlydir"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "appendonly.aof.1.base.rdb",
                "appendonly.aof.1.incr.aof",
                "appendonly.aof.manifest"
            ]
        );
        assert_eq!(
            fs::read(dst.join("appendonlydir/appendonly.aof.1.incr.aof")).unwrap(),
            b"*1\r\n$4\r\nPING\r\n"
        );
        assert!(!dst.join(".appendonlydir.lazarus-tmp").exists());
        assert_eq!(fs::read_dir(&src).unwrap().count(), 3);
        // The parts are links; the manifest is the shard's own.
        for name in ["appendonly.aof.1.base.rdb", "appendonly.aof.1.incr.aof"] {
            assert_eq!(
                inode(&dst.join("appendonlydir").join(name)),
                (inode(&src.join(name)).0, 2)
            );
        }
        assert_eq!(inode(&src.join("appendonly.aof.manifest")).1, 1);
    }

    /// Installed whole, an AOF directory's last incr file (the one its server appends to,
    /// and may cut short) is a copy of its own; the other parts stay links.
    #[test]
    fn an_aof_dir_installed_whole_owns_its_last_incr() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("old/appendonlydir");
        write_files(
            &src,
            &[
                ("appendonly.aof.1.base.rdb", b"REDIS0010base"),
                ("appendonly.aof.1.incr.aof", b"*1\r\n$4\r\nPING\r\n"),
                ("appendonly.aof.2.incr.aof", b"*1\r\n$4\r\nECHO\r\n"),
                (
                    "appendonly.aof.manifest",
                    b"file appendonly.aof.1.base.rdb seq 1 type b\n\
                      file appendonly.aof.1.incr.aof seq 1 type i\n\
                      file appendonly.aof.2.incr.aof seq 2 type i\n",
                ),
            ],
        );
        let last = src.join("appendonly.aof.2.incr.aof");
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        fs::File::options()
            .write(true)
            .open(&last)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let dst = t.path().join("new");
        copy_source(&src, SourceKind::AofDir, &dst).unwrap();
        let aof = dst.join("appendonlydir");
        for name in ["appendonly.aof.1.base.rdb", "appendonly.aof.1.incr.aof"] {
            assert_eq!(inode(&aof.join(name)).1, 2, "{name}");
        }
        let own = aof.join("appendonly.aof.2.incr.aof");
        assert_eq!(inode(&own).1, 1);
        assert_eq!(inode(&last).1, 1);
        assert_eq!(fs::read(&own).unwrap(), fs::read(&last).unwrap());
        assert_eq!(fs::metadata(&own).unwrap().modified().unwrap(), old);
        assert_eq!(fs::read_dir(&aof).unwrap().count(), 4);
    }

    #[test]
    fn a_multi_part_aof_stands_in_through_links_then_adopts_its_copies() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("old/appendonlydir");
        write_files(
            &src,
            &[
                ("appendonly.aof.3.base.rdb", b"REDIS0010base"),
                ("appendonly.aof.1.base.rdb", b"an old base"),
                ("appendonly.aof.4.incr.aof", b"*1\r\n$4\r\nPING\r\n"),
                ("appendonly.aof.5.incr.aof", b"*1\r\n$4\r\nECHO\r\n"),
            ],
        );
        let manifest = "file appendonly.aof.1.base.rdb seq 1 type h\n\
                        file appendonly.aof.3.base.rdb seq 3 type b\n\
                        file appendonly.aof.4.incr.aof seq 4 type i\n\
                        file appendonly.aof.5.incr.aof seq 5 type i\n";
        write(&src.join("appendonly.aof.manifest"), manifest.as_bytes());
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        for e in fs::read_dir(&src).unwrap() {
            let f = fs::File::options()
                .write(true)
                .open(e.unwrap().path())
                .unwrap();
            f.set_modified(old).unwrap();
        }
        let dst = t.path().join("new/shard-3");
        write(
            &dst.join("appendonlydir/appendonly.aof.9.incr.aof"),
            b"left over",
        );

        let s = stand_in_aof(&src, &dst).unwrap().expect("a stand-in");
        assert_eq!(
            s.parts,
            [
                "appendonly.aof.3.base.rdb",
                "appendonly.aof.4.incr.aof",
                "appendonly.aof.5.incr.aof"
            ]
        );
        let aof = dst.join("appendonlydir");
        // The parts it loads are links; the history file and the leftover are not there.
        for part in &s.parts {
            let link = fs::read_link(aof.join(part)).unwrap();
            assert_eq!(link, fs::canonicalize(&src).unwrap().join(part));
        }
        assert_eq!(fs::read_dir(&aof).unwrap().count(), 5);
        // Its own manifest ends with its own empty incr, both as old as the data.
        assert_eq!(
            fs::read_to_string(aof.join("appendonly.aof.manifest")).unwrap(),
            "file appendonly.aof.3.base.rdb seq 3 type b\n\
             file appendonly.aof.4.incr.aof seq 4 type i\n\
             file appendonly.aof.5.incr.aof seq 5 type i\n\
             file appendonly.aof.6.incr.aof seq 6 type i\n"
        );
        let own = aof.join("appendonly.aof.6.incr.aof");
        assert_eq!(fs::read(&own).unwrap(), b"");
        assert_eq!(fs::metadata(&own).unwrap().modified().unwrap(), old);

        copy_to_temp(&src, SourceKind::AofDir, &dst).unwrap();
        adopt_copies(&s, &dst).unwrap();
        for part in &s.parts {
            let meta = fs::symlink_metadata(aof.join(part)).unwrap();
            assert!(meta.is_file(), "{part} is still a link");
            assert_eq!(
                fs::read(aof.join(part)).unwrap(),
                fs::read(src.join(part)).unwrap()
            );
        }
        assert_eq!(fs::read(&own).unwrap(), b"");
        assert!(!temp_name(SourceKind::AofDir, &dst).exists());
        assert_eq!(
            fs::read_to_string(src.join("appendonly.aof.manifest")).unwrap(),
            manifest
        );
    }

    #[test]
    fn an_aof_dir_it_cannot_stand_in_for_is_left_to_the_copy() {
        let t = tempfile::tempdir().unwrap();
        let dst = t.path().join("new/shard-3");
        let case = |name: &str, files: &[(&str, &str)]| {
            let src = t.path().join(name);
            for (f, body) in files {
                write(&src.join(f), body.as_bytes());
            }
            assert_eq!(stand_in_aof(&src, &dst).unwrap(), None, "{name}");
            assert!(!dst.join("appendonlydir").exists(), "{name}");
        };
        // Another `appendfilename`, a damaged manifest, a part missing, a name to quote.
        case(
            "other",
            &[
                (
                    "other.aof.manifest",
                    "file other.aof.1.base.rdb seq 1 type b\n",
                ),
                ("other.aof.1.base.rdb", "x"),
            ],
        );
        case("damaged", &[("appendonly.aof.manifest", "file\n")]);
        case(
            "missing",
            &[(
                "appendonly.aof.manifest",
                "file appendonly.aof.1.base.rdb seq 1 type b\n",
            )],
        );
        case(
            "quoted",
            &[
                ("appendonly.aof.manifest", "file \"a b\" seq 1 type b\n"),
                ("a b", "x"),
            ],
        );
    }

    #[test]
    fn a_differing_copy_is_caught() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        let data = vec![1u8; 1_000_000];
        write(&a, &data);
        let mut other = data.clone();
        other[500_000 - 1000] = 2;
        write(&b, &other);
        // The sampled blocks cover offsets near the middle of this size.
        let len = data.len() as u64;
        let err = verify_copy(&a, &b, len, len);
        let hit = (0..=SAMPLES + 1).any(|i| {
            let o = (len - SAMPLE as u64) * i / (SAMPLES + 1);
            (o..o + SAMPLE as u64).contains(&(499_000))
        });
        assert_eq!(err.is_err(), hit);
        write(&b, &data[..999_999]);
        assert!(matches!(
            verify_copy(&a, &b, len, len),
            Err(CopyError::Mismatch { .. })
        ));
    }

    #[test]
    fn shard_dirs_inside_a_recovery_path_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let rec = t.path().join("old");
        fs::create_dir_all(&rec).unwrap();
        assert!(ensure_outside(&rec.join("redis/db-1/shard-2"), &rec).is_err());
        assert!(ensure_outside(&rec, &rec).is_err());
        assert!(ensure_outside(&t.path().join("new/redis/db-1/shard-2"), &rec).is_ok());
        assert!(ensure_outside(&t.path().join("old2/redis"), &rec).is_ok());
    }
}
