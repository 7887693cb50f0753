//! `check file ...`: the persistence reader for operators — a replacement for
//! redis-check-rdb and redis-check-aof that never changes the file it reads.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{
    Command, CommandError, CommandSyntax, Context, Element, Opt, Render, Reply, Table, Text,
    ValueKind,
};
use crate::ccs::SlotRange;
use crate::lang::lexer::quote;
use crate::persist::{self, CheckOptions, FileKind, FileReport, FixOutcome, Verdict};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckCommand {
    /// Validate a file (RDB or AOF) or an `appendonlydir/`.
    File {
        path: PathBuf,
        slots: Option<SlotRange>,
    },
    /// Write a truncated AOF's good prefix to `dest`.
    Fix { path: PathBuf, dest: PathBuf },
}

pub static SYNTAX: &[CommandSyntax] = &[
    CommandSyntax {
        elements: &[
            Element::Keyword("check"),
            Element::Keyword("file"),
            Element::Arg("path", ValueKind::Path),
            Element::Keyword("fix"),
            Element::Arg("dest", ValueKind::Path),
        ],
        summary: "copy a truncated AOF, cut at its last complete record, to a new path",
        examples: &[
            "check file /var/lib/redis/appendonly.aof fix /tmp/appendonly.aof",
            "check file /data/appendonlydir fix /data/appendonlydir.fixed",
        ],
        build: |m| {
            Ok(Command::Check(CheckCommand::Fix {
                path: m.req("path")?,
                dest: m.req("dest")?,
            }))
        },
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("check"),
            Element::Keyword("file"),
            Element::Arg("path", ValueKind::Path),
            Element::Options(&[Opt::optional("slots", "lo-hi", ValueKind::SlotRange)]),
        ],
        summary: "validate an RDB, an AOF or an appendonlydir byte by byte (never changes it)",
        examples: &[
            "check file /var/lib/redis/dump.rdb",
            "check file /data/appendonlydir",
            "check file /data/dump.rdb slots 0-8191",
        ],
        build: |m| {
            Ok(Command::Check(CheckCommand::File {
                path: m.req("path")?,
                slots: m.opt("slots"),
            }))
        },
    },
];

impl CheckCommand {
    pub async fn apply(self, ctx: &Context) -> Result<Reply, CommandError> {
        match self {
            CheckCommand::File { path, slots } => {
                is_persistence_path(&path)?;
                let task = ctx.progress.task(&format!("check {}", path.display()), 0);
                let mut report = run_check(path, slots).await?;
                if report.verdict == Verdict::Ok && report.keys_outside_slots > 0 {
                    report.verdict = Verdict::KeysOutsideSlots;
                }
                task.finish(&report.verdict.to_string());
                reply(&report)
            }
            CheckCommand::Fix { path, dest } => {
                let report = run_check(path.clone(), None).await?;
                if report.verdict == Verdict::Ok {
                    return Err(CommandError::conflict(format!(
                        "`{}` is ok: nothing to fix",
                        path.display()
                    )));
                }
                let outcome =
                    tokio::task::spawn_blocking(move || persist::fix_truncated(&report, &dest))
                        .await
                        .map_err(|e| CommandError::internal(format!("check failed: {e}")))??;
                Reply::of(&outcome)
            }
        }
    }
}

/// Refuses, before any report, a path that is missing or is plainly not persistence:
/// a directory with no AOF in it, a file that starts with neither the RDB magic nor an
/// AOF record (`redis.conf`). A file named `*.rdb` or `*.aof`, or an `appendonlydir`, is
/// judged by the reader, so a damaged one is called corrupt with its fault.
fn is_persistence_path(path: &Path) -> Result<(), CommandError> {
    let shown = format!("`{}`", path.display());
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CommandError::not_found(format!("no such file {shown}")))
        }
        // Permission and other faults: the reader reports them with the file.
        Err(_) => return Ok(()),
    };
    let not_persistence = |why: &str| {
        Err(
            CommandError::conflict(format!("{shown} is not a persistence file: {why}"))
                .hinted("check an RDB (`dump.rdb`), an AOF or an `appendonlydir`"),
        )
    };
    if meta.is_dir() {
        let named_aof_dir = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("appendonly"));
        let holds_aof = std::fs::read_dir(path).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.ends_with(".manifest") || name.ends_with(".aof") || name.ends_with(".rdb")
            })
        });
        if named_aof_dir || holds_aof {
            return Ok(());
        }
        return not_persistence("a directory with no AOF manifest or AOF files in it");
    }
    if !meta.is_file() {
        // A FIFO or a device: opening it could block forever; the reader refuses it by
        // what it is (`not a regular file: a FIFO`) without opening it.
        return Ok(());
    }
    let named = path
        .extension()
        .is_some_and(|e| e == "rdb" || e == "aof" || e == "manifest");
    let mut head = [0u8; 8];
    let n = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    let head = &head[..n];
    let looks = head.is_empty()
        || head.starts_with(b"REDIS")
        || head.starts_with(b"VALKEY")
        || (head.first() == Some(&b'*') && head.get(1).is_some_and(u8::is_ascii_digit))
        || head.starts_with(b"#TS:");
    if named || looks {
        Ok(())
    } else {
        not_persistence(
            "it starts with neither the RDB magic (`REDIS`, `VALKEY`) nor an AOF record",
        )
    }
}

async fn run_check(path: PathBuf, slots: Option<SlotRange>) -> Result<FileReport, CommandError> {
    tokio::task::spawn_blocking(move || persist::check_path(&path, &CheckOptions { slots }))
        .await
        .map_err(|e| CommandError::internal(format!("check failed: {e}")))
}

fn age(created: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let secs = (now - created).max(0);
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        7200..=172_799 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// The report, failed when the file is not ok.
fn reply(r: &FileReport) -> Result<Reply, CommandError> {
    let reply = Reply::of(r)?;
    Ok(match r.verdict {
        Verdict::Ok => reply,
        // A bad file fails the command (exit status 1, a script stops), as
        // redis-check-rdb does, after the whole report.
        bad => {
            let message = format!("`{}` is {bad}", r.path.display());
            reply.failed(match bad {
                Verdict::Unreadable if std::fs::symlink_metadata(&r.path).is_err() => {
                    CommandError::not_found(message)
                }
                Verdict::Unreadable => CommandError::io(message),
                // What `fix` keeps, as the report's `valid up to` line says: the next
                // step, for a script too.
                Verdict::Truncated
                    if r.valid_len.is_some()
                        && matches!(r.kind, FileKind::AofSingle | FileKind::AofMultiPart) =>
                {
                    let fix = format!("check file {} fix <dest>", quote(&r.path.to_string_lossy()));
                    CommandError::damaged(format!("{message}: `{fix}` keeps its complete records"))
                        .hinted(fix)
                }
                Verdict::KeysOutsideSlots => CommandError::conflict(format!(
                    "`{}` holds {} key(s) outside the slots checked",
                    r.path.display(),
                    r.keys_outside_slots
                )),
                _ => CommandError::damaged(message),
            })
        }
    })
}

/// `check file`: the report as a table of fields, the verdict first.
impl Render for FileReport {
    fn render(&self, text: &mut Text) {
        text.table(report_table(self));
    }
}

/// `check file ... fix`.
impl Render for FixOutcome {
    fn render(&self, text: &mut Text) {
        text.line(format!(
            "wrote `{}`: kept {} of {} bytes of `{}` (cut at its last complete record); the original is unchanged",
            self.dest.display(),
            self.kept_len,
            self.original_len,
            self.truncated_file.display()
        ));
        let dest = format!("`{}`", self.dest.display());
        text.line(format!(
            "to recover from it: {}",
            crate::persist::way_to_load(&self.source, &dest, "<db>")
        ));
    }
}

/// A report for the snapshot tests: an RDB, or with another verdict a truncated AOF.
#[cfg(test)]
pub(crate) fn report_fixture(verdict: Verdict) -> FileReport {
    use crate::persist::{Fault, FileKind};
    let kind = if verdict == Verdict::Ok {
        FileKind::Rdb
    } else {
        FileKind::AofSingle
    };
    let mut r = FileReport::new(PathBuf::from("/data/dump.rdb"), kind);
    r.verdict = verdict;
    r.rdb_version = Some(11);
    r.server_version = Some("7.0.15".into());
    r.engine = Some("redis");
    r.keys_per_db = [(0, 1000), (3, 2)].into();
    r.keys = 1002;
    r.expires = 10;
    r.expired = 1;
    r.bytes = 65536;
    if verdict != Verdict::Ok {
        r.path = PathBuf::from("/data/appendonly.aof");
        r.fault = Some(Fault {
            file: r.path.clone(),
            offset: 960,
            expected: "`*<count>\\r\\n` (a RESP array), found the end of the file".into(),
        });
        r.valid_len = Some(960);
        r.keys_exact = false;
        r.rdb_version = None;
    }
    r
}

fn report_table(r: &FileReport) -> Table {
    let na = || "N/A".to_string();
    let mut fields = vec![
        ("path", r.path.display().to_string()),
        ("kind", r.kind.to_string()),
        ("verdict", r.verdict.to_string()),
    ];
    if let Some(f) = &r.fault {
        fields.push((
            "fault",
            format!("`{}` at byte {}", f.file.display(), f.offset),
        ));
        fields.push(("expected", f.expected.clone()));
    }
    if let Some(v) = r.valid_len {
        fields.push((
            "valid up to",
            format!("{v} bytes (`check file ... fix <dest>` keeps them)"),
        ));
    }
    fields.extend([
        (
            "rdb version",
            r.rdb_version.map_or_else(na, |v| v.to_string()),
        ),
        (
            "written by",
            r.writer()
                .unwrap_or_else(|| "unknown (no `redis-ver` or `valkey-ver` field)".into()),
        ),
        (
            // An RDB's `ctime` is when it was saved; a file's mtime (an AOF's newest part)
            // only when it was last written.
            match r.created_from.as_deref() {
                Some("ctime") | None => "created",
                Some(_) => "last written",
            },
            // As every other time a person reads here; `--json` keeps unix seconds.
            r.created.map_or_else(na, |t| {
                let at = crate::backup::format_time(t.saturating_mul(1000));
                match &r.created_from {
                    Some(from) => format!("{at} ({}, {from})", age(t)),
                    None => format!("{at} ({})", age(t)),
                }
            }),
        ),
        ("bytes", r.bytes.to_string()),
        (
            "keys",
            match (&r.keys_estimate_why, r.keys_exact) {
                (Some(why), false) => format!("{} (estimate: {why})", r.keys),
                (None, false) => format!("{} (estimate)", r.keys),
                _ => r.keys.to_string(),
            },
        ),
    ]);
    let dbs: Vec<String> = r
        .keys_per_db
        .iter()
        .map(|(db, n)| format!("db{db}={n}"))
        .collect();
    if !dbs.is_empty() {
        fields.push(("keys per db", dbs.join(" ")));
    }
    fields.push((
        "expires",
        format!("{} ({} already expired)", r.expires, r.expired),
    ));
    if r.keys_outside_slots > 0 || !r.outside_examples.is_empty() {
        fields.push((
            "keys outside slots",
            format!(
                "{} (e.g. {})",
                r.keys_outside_slots,
                r.outside_examples.join(", ")
            ),
        ));
    }
    if !r.damaged_values.is_empty() {
        fields.push((
            "damaged values",
            format!(
                "{} (a load does not look inside them; UNLINK each before a client reads it: see the warnings)",
                r.damaged_values.join(", ")
            ),
        ));
    }
    for w in &r.warnings {
        fields.push(("warning", w.clone()));
    }
    if r.from_cache {
        fields.push((
            "validated",
            "earlier in this run; unchanged since (device, inode, size, mtime, ctime)".into(),
        ));
    }
    Table::fields(fields).titled("FILE")
}

impl fmt::Display for CheckCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckCommand::File { path, slots } => {
                write!(f, "check file {}", quote(&path.to_string_lossy()))?;
                if let Some(s) = slots {
                    write!(f, " slots {s}")?;
                }
                Ok(())
            }
            CheckCommand::Fix { path, dest } => write!(
                f,
                "check file {} fix {}",
                quote(&path.to_string_lossy()),
                quote(&dest.to_string_lossy())
            ),
        }
    }
}
