//! `backup ...`: named backup tasks, runs of them (now, or when due), their history and
//! manifests, `keep` and `prune`, and one-off runs of a database.

mod apply;

mod view;

use std::fmt;
use std::path::PathBuf;

use super::{Command, CommandSyntax, Element, Match, Opt, ParseError, ValueKind};
use crate::backup::Compression;
use crate::lang::{quote, DbRef};

const COMPRESS: &[&str] = &["zstd", "none"];

fn compress(m: &Match) -> Compression {
    match m.opt::<String>("compress").as_deref() {
        Some("none") => Compression::None,
        _ => Compression::Zstd,
    }
}

/// ` compress none` / ` encrypt <file>` as the command is printed back.
fn codec_words(compress: Compression, encrypt: &Option<PathBuf>) -> String {
    let mut out = String::new();
    if compress.is_none() {
        out.push_str(" compress none");
    }
    if let Some(e) = encrypt {
        out.push_str(&format!(" encrypt {}", quote(&e.to_string_lossy())));
    }
    out
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupCommand {
    /// `backup task create name <task> db <db> path <dir> [keep <n>] [every <interval>]
    /// [max_pause <interval>]`
    TaskCreate {
        name: String,
        db: DbRef,
        path: PathBuf,
        keep: Option<u32>,
        every: Option<Interval>,
        max_pause: Option<Interval>,
        compress: Compression,
        encrypt: Option<PathBuf>,
    },
    /// `backup task run <task>`
    TaskRun { task: String },
    /// `backup task list`
    TaskList,
    /// `backup task history <task>`
    TaskHistory { task: String },
    /// `backup task prune <task> [dry_run]`
    TaskPrune { task: String, dry_run: bool },
    /// `backup task delete <task> [purge]`
    TaskDelete { task: String, purge: bool },
    /// `backup db <db> path <dir> [max_pause <interval>] [compress zstd|none]
    /// [encrypt <recipients file>]`
    Db {
        db: DbRef,
        path: PathBuf,
        max_pause: Option<Interval>,
        compress: Compression,
        encrypt: Option<PathBuf>,
    },
    /// `backup show <run>`
    Show { run: String },
    /// `backup list path <repository> [db <name>]`
    List { path: PathBuf, db: Option<String> },
    /// `backup due`
    Due,
}

/// A length of time as the operator writes it: `500ms`, `30s`, `30m`, `6h`, `1d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub ms: u64,
}

impl Interval {
    pub fn parse(text: &str) -> Result<Interval, String> {
        let bad =
            || format!("`{text}` is not an interval such as `500ms`, `30s`, `30m`, `6h` or `1d`");
        let lower = text.to_ascii_lowercase();
        let digits = lower.bytes().take_while(u8::is_ascii_digit).count();
        let (n, unit) = lower.split_at(digits);
        let n: u64 = n.parse().map_err(|_| bad())?;
        let scale = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        match n.checked_mul(scale) {
            Some(ms) if ms > 0 => Ok(Interval { ms }),
            _ => Err(bad()),
        }
    }

    pub fn secs(self) -> u64 {
        self.ms / 1000
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, scale) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if self.ms.is_multiple_of(scale) {
                return write!(f, "{}{unit}", self.ms / scale);
            }
        }
        write!(f, "{}ms", self.ms)
    }
}

fn interval(
    m: &Match,
    key: &str,
    min_ms: u64,
    max_ms: u64,
) -> Result<Option<Interval>, ParseError> {
    let Some(text) = m.opt::<String>(key) else {
        return Ok(None);
    };
    let span = m.span_of(key);
    let i = Interval::parse(&text).map_err(|e| ParseError::new(span.clone(), e))?;
    if i.ms < min_ms || i.ms > max_ms {
        return Err(ParseError::new(
            span,
            format!(
                "`{key}` must be between {} and {}",
                Interval { ms: min_ms },
                Interval { ms: max_ms }
            ),
        ));
    }
    Ok(Some(i))
}

fn task_name(m: &Match, key: &str) -> Result<String, ParseError> {
    let name: String = m.req(key)?;
    crate::ccs::rules::check_cluster_name(&name).map_err(|e| ParseError::new(m.span_of(key), e))?;
    Ok(name)
}

/// The write pause: from 10 ms to 60 s.
const PAUSE_MIN_MS: u64 = 10;
const PAUSE_MAX_MS: u64 = 60_000;

pub static SYNTAX: &[CommandSyntax] = &[
    CommandSyntax {
        elements: &[
            Element::Keyword("backup"),
            Element::Keyword("task"),
            Element::Keyword("create"),
            Element::Options(&[
                Opt::required("name", "task", ValueKind::Word),
                Opt::required("db", "db", ValueKind::Database),
                Opt::required("path", "dir|url", ValueKind::Path),
                Opt::optional("keep", "n", ValueKind::Integer),
                Opt::optional("every", "interval", ValueKind::Word),
                Opt::optional("max_pause", "interval", ValueKind::Word),
                Opt::optional("compress", "zstd|none", ValueKind::Choice(COMPRESS)),
                Opt::optional("encrypt", "recipients file", ValueKind::Path),
            ]),
        ],
        summary:
            "a named backup task: which database, where its runs go, how many to keep, how often",
        examples: &[
            "backup task create name nightly db orders path /backups/orders keep 7 every 1d",
            "backup task create name hourly db db:3 path /backups/db3 every 1h max_pause 500ms",
            "backup task create name offsite db orders path /backups/o encrypt /etc/lazarus/recipients.txt",
        ],
        build: |m| {
            let keep = match m.opt::<u64>("keep") {
                Some(0) => {
                    return Err(ParseError::new(
                        m.span_of("keep"),
                        "`keep` must be at least 1".into(),
                    ))
                }
                Some(n) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
                None => None,
            };
            Ok(Command::Backup(BackupCommand::TaskCreate {
                name: task_name(m, "name")?,
                db: m.req("db")?,
                path: m.req("path")?,
                keep,
                every: interval(m, "every", 60_000, 366 * 86_400_000)?,
                max_pause: interval(m, "max_pause", PAUSE_MIN_MS, PAUSE_MAX_MS)?,
                compress: compress(m),
                encrypt: m.opt("encrypt"),
            }))
        },
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("backup"),
            Element::Keyword("task"),
            Element::Keyword("run"),
            Element::Arg("task", ValueKind::BackupTask),
        ],
        summary: "run a backup task now",
        examples: &["backup task run nightly"],
        build: |m| {
            Ok(Command::Backup(BackupCommand::TaskRun {
                task: task_name(m, "task")?,
            }))
        },
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("backup"),
            Element::Keyword("task"),
            Element::Keyword("list"),
        ],
        summary: "every backup task with its last run and when it is next due",
        examples: &["backup task list"],
        build: |_| Ok(Command::Backup(BackupCommand::TaskList)),
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("backup"),
            Element::Keyword("task"),
            Element::Keyword("history"),
            Element::Arg("task", ValueKind::BackupTask),
        ],
        summary: "every run of a backup task: started, took, status, keys, bytes, version, path",
        examples: &["backup task history nightly"],
        build: |m| {
            Ok(Command::Backup(BackupCommand::TaskHistory {
                task: task_name(m, "task")?,
            }))
        },
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("backup"),
            Element::Keyword("task"),
            Element::Keyword("prune"),
            Element::Arg("task", ValueKind::BackupTask),
            Element::Options(&[Opt::flag("dry_run")]),
        ],
        summary: "remove the runs the task's `keep` lets go (never the newest succeeded one)",
        examples: &[
            "backup task prune nightly",
            "backup task prune nightly dry_run",
        ],
        build: |m| {
            Ok(Command::Backup(BackupCommand::TaskPrune {
                task: task_name(m, "task")?,
                dry_run: m.has("dry_run"),
            }))
        },
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("backup"),
            Element::Keyword("task"),
            Element::Keyword("delete"),
            Element::Arg("task", ValueKind::BackupTask),
            Element::Options(&[Opt::flag("purge")]),
        ],
        summary: "remove a backup task; its runs stay unless `purge`",
        examples: &[
            "backup task delete nightly",
            "backup task delete nightly purge",
        ],
        build: |m| {
            Ok(Command::Backup(BackupCommand::TaskDelete {
                task: task_name(m, "task")?,
                purge: m.has("purge"),
            }))
        },
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("backup"),
            Element::Keyword("db"),
            Element::Arg("db", ValueKind::Database),
            Element::Options(&[
                Opt::required("path", "dir|url", ValueKind::Path),
                Opt::optional("max_pause", "interval", ValueKind::Word),
                Opt::optional("compress", "zstd|none", ValueKind::Choice(COMPRESS)),
                Opt::optional("encrypt", "recipients file", ValueKind::Path),
            ]),
        ],
        summary: "one backup run of a database now, without a task",
        examples: &[
            "backup db orders path /backups/once",
            "backup db db:3 path /b max_pause 2s",
            "backup db orders path /b compress none",
            "backup db orders path /b encrypt /etc/lazarus/recipients.txt",
            "backup db orders path ssh://backup@vault:2222/srv/lazarus",
        ],
        build: |m| {
            Ok(Command::Backup(BackupCommand::Db {
                db: m.req("db")?,
                path: m.req("path")?,
                max_pause: interval(m, "max_pause", PAUSE_MIN_MS, PAUSE_MAX_MS)?,
                compress: compress(m),
                encrypt: m.opt("encrypt"),
            }))
        },
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("backup"),
            Element::Keyword("show"),
            Element::Arg("run", ValueKind::Run),
        ],
        summary: "a backup run's manifest (`latest`: the newest restore point): shards, files, sha256, versions, keys, pause",
        examples: &["backup show 20261204-035012-17", "backup show latest"],
        build: |m| Ok(Command::Backup(BackupCommand::Show { run: m.req("run")? })),
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("backup"),
            Element::Keyword("list"),
            Element::Options(&[
                Opt::required("path", "dir|url", ValueKind::Path),
                Opt::optional("db", "name", ValueKind::Word),
            ]),
        ],
        summary: "every run found in a repository, whichever cluster wrote it (no cluster needed)",
        examples: &[
            "backup list path /backups/orders",
            "backup list path /mnt/offsite db orders",
            "backup list path ssh://backup@vault/srv/lazarus",
        ],
        build: |m| {
            Ok(Command::Backup(BackupCommand::List {
                path: m.req("path")?,
                db: m.opt("db"),
            }))
        },
    },
    CommandSyntax {
        elements: &[Element::Keyword("backup"), Element::Keyword("due")],
        summary: "run every backup task whose interval has passed (for cron or a systemd timer)",
        examples: &["backup due"],
        build: |_| Ok(Command::Backup(BackupCommand::Due)),
    },
];

impl fmt::Display for BackupCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = |p: &PathBuf| quote(&p.to_string_lossy());
        match self {
            BackupCommand::TaskCreate {
                name,
                db,
                path: dir,
                keep,
                every,
                max_pause,
                compress,
                encrypt,
            } => {
                write!(
                    f,
                    "backup task create name {} db {db} path {}",
                    quote(name),
                    path(dir)
                )?;
                if let Some(k) = keep {
                    write!(f, " keep {k}")?;
                }
                if let Some(e) = every {
                    write!(f, " every {e}")?;
                }
                if let Some(p) = max_pause {
                    write!(f, " max_pause {p}")?;
                }
                f.write_str(&codec_words(*compress, encrypt))
            }
            BackupCommand::TaskRun { task } => write!(f, "backup task run {}", quote(task)),
            BackupCommand::TaskList => f.write_str("backup task list"),
            BackupCommand::TaskHistory { task } => {
                write!(f, "backup task history {}", quote(task))
            }
            BackupCommand::TaskPrune { task, dry_run } => {
                write!(f, "backup task prune {}", quote(task))?;
                if *dry_run {
                    f.write_str(" dry_run")?;
                }
                Ok(())
            }
            BackupCommand::TaskDelete { task, purge } => {
                write!(f, "backup task delete {}", quote(task))?;
                if *purge {
                    f.write_str(" purge")?;
                }
                Ok(())
            }
            BackupCommand::Db {
                db,
                path: dir,
                max_pause,
                compress,
                encrypt,
            } => {
                write!(f, "backup db {db} path {}", path(dir))?;
                if let Some(p) = max_pause {
                    write!(f, " max_pause {p}")?;
                }
                f.write_str(&codec_words(*compress, encrypt))
            }
            BackupCommand::Show { run } => write!(f, "backup show {}", quote(run)),
            BackupCommand::List { path: dir, db } => {
                write!(f, "backup list path {}", path(dir))?;
                if let Some(d) = db {
                    write!(f, " db {}", quote(d))?;
                }
                Ok(())
            }
            BackupCommand::Due => f.write_str("backup due"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Interval;

    #[test]
    fn intervals_parse_and_print_canonically() {
        for (text, ms, canon) in [
            ("30m", 1_800_000, "30m"),
            ("6h", 21_600_000, "6h"),
            ("1d", 86_400_000, "1d"),
            ("90s", 90_000, "90s"),
            ("1500ms", 1500, "1500ms"),
            ("1000ms", 1000, "1s"),
            ("60M", 3_600_000, "1h"),
        ] {
            let i = Interval::parse(text).unwrap();
            assert_eq!(i.ms, ms, "{text}");
            assert_eq!(i.to_string(), canon);
        }
        for bad in ["", "m", "5", "5x", "0s", "-1s", "1.5h"] {
            assert!(Interval::parse(bad).is_err(), "{bad}");
        }
    }
}
