//! `restore task ...`: restore tasks: a database (or one to recreate) and a backup run,
//! verified before anything changes, started, retried after a failure, never run again
//! after success.

mod view;

use super::{CommandError, Context, Reply};
use crate::restore::{CreateFlags, Created, RestoredDb, Safety, Shown, Started, Tasks};
use view::{Deleted, GroupView, TaskList, TaskView};

use std::fmt;

use super::{Command, CommandSyntax, Element, Match, Opt, ParseError, ValueKind};
use crate::lang::{quote, DbSet};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreCommand {
    /// `restore task create name <task> db <db>[,<db>...]|all backup <run|latest>
    /// [target_path <dir>] [force] [allow_newer_server] [replay]`; several databases make
    /// one task of a task per database (`<task>.<db>`), verified together.
    Create {
        name: String,
        db: DbSet,
        backup: String,
        flags: CreateFlags,
    },
    Verify {
        task: String,
    },
    /// `restore task start <task> [verify counts|content]`
    Start {
        task: String,
        counts_only: bool,
    },
    /// `restore task retry <task> [verify counts|content]`
    Retry {
        task: String,
        counts_only: bool,
    },
    List,
    Show {
        task: String,
    },
    Delete {
        task: String,
    },
}

fn task_name(m: &Match, key: &str) -> Result<String, ParseError> {
    let name: String = m.req(key)?;
    crate::ccs::rules::check_cluster_name(&name).map_err(|e| ParseError::new(m.span_of(key), e))?;
    Ok(name)
}

macro_rules! task_form {
    ($word:literal, $variant:ident, $summary:literal, $example:literal) => {
        CommandSyntax {
            elements: &[
                Element::Keyword("restore"),
                Element::Keyword("task"),
                Element::Keyword($word),
                Element::Arg("task", ValueKind::RestoreTask),
            ],
            summary: $summary,
            examples: &[$example],
            build: |m| {
                Ok(Command::Restore(RestoreCommand::$variant {
                    task: task_name(m, "task")?,
                }))
            },
        }
    };
}

/// `start` and `retry`: a task, and the proof (`verify content`, the default, or
/// `verify counts`).
macro_rules! start_form {
    ($word:literal, $variant:ident, $summary:literal, $example:literal, $example2:literal) => {
        CommandSyntax {
            elements: &[
                Element::Keyword("restore"),
                Element::Keyword("task"),
                Element::Keyword($word),
                Element::Arg("task", ValueKind::RestoreTask),
                Element::Options(&[Opt::optional("verify", "proof", ValueKind::Choice(PROOFS))]),
            ],
            summary: $summary,
            examples: &[$example, $example2],
            build: |m| {
                Ok(Command::Restore(RestoreCommand::$variant {
                    task: task_name(m, "task")?,
                    counts_only: m.opt::<String>("verify").is_some_and(|v| v == "counts"),
                }))
            },
        }
    };
}

const PROOFS: &[&str] = &["content", "counts"];

pub static SYNTAX: &[CommandSyntax] = &[
    CommandSyntax {
        elements: &[
            Element::Keyword("restore"),
            Element::Keyword("task"),
            Element::Keyword("create"),
            Element::Options(&[
                Opt::required("name", "task", ValueKind::Word),
                Opt::required("db", "db[,db...]|all", ValueKind::Databases),
                Opt::required("backup", "run|latest|repository/run", ValueKind::Run),
                Opt::optional("target_path", "dir", ValueKind::Path),
                Opt::flag("force"),
                Opt::flag("allow_newer_server"),
                Opt::flag("replay"),
                Opt::optional("identity", "age identity file", ValueKind::Path),
                Opt::flag("from_other_cluster"),
                Opt::flag("from_other_db"),
                Opt::optional("safety_path", "dir|url", ValueKind::Path),
                Opt::flag("no_safety_backup"),
            ]),
        ],
        summary: "a restore task: a database (or one to recreate, or several: `db a,b`, `db all`) and the backup run to bring back",
        examples: &[
            "restore task create name undo db orders backup latest",
            "restore task create name r1 db db:3 backup 20261204-035012-17 force",
            "restore task create name r2 db orders backup latest identity /root/.age/lazarus.key",
            "restore task create name down db orders backup latest replay",
            "restore task create name move db orders backup s3://offsite/lazarus/latest from_other_cluster",
            "restore task create name r3 db orders backup /mnt/offsite/20261204-035012-17",
            "restore task create name r4 db orders backup latest force safety_path s3://offsite/safety",
            "restore task create name r5 db orders backup latest target_path /mnt/staging",
            "restore task create name clone db orders_copy backup 20261204-035012-17 from_other_db",
            "restore task create name both db orders,sessions backup latest force",
            "restore task create name moveall db all backup s3://offsite/lazarus/latest from_other_cluster",
        ],
        build: |m| {
            Ok(Command::Restore(RestoreCommand::Create {
                name: task_name(m, "name")?,
                db: m.req("db")?,
                backup: m.req("backup")?,
                flags: CreateFlags {
                    target_path: m.opt("target_path"),
                    force: m.has("force"),
                    allow_newer_server: m.has("allow_newer_server"),
                    replay: m.has("replay"),
                    identity: m.opt("identity"),
                    from_other_cluster: m.has("from_other_cluster"),
                    from_other_db: m.has("from_other_db"),
                    safety_path: m.opt("safety_path"),
                    no_safety_backup: m.has("no_safety_backup"),
                },
            }))
        },
    },
    task_form!(
        "verify",
        Verify,
        "check a restore task before anything changes: files, versions, target, memory, paths",
        "restore task verify undo"
    ),
    start_form!(
        "start",
        Start,
        "verify, then replace the database's data with the backup's (clients fenced meanwhile) and prove its content (`verify counts`: key counts only)",
        "restore task start undo",
        "restore task start undo verify counts"
    ),
    start_form!(
        "retry",
        Retry,
        "after a failed or interrupted start: put things back as they were and start again",
        "restore task retry undo",
        "restore task retry undo verify content"
    ),
    CommandSyntax {
        elements: &[
            Element::Keyword("restore"),
            Element::Keyword("task"),
            Element::Keyword("list"),
        ],
        summary: "every restore task and its state",
        examples: &["restore task list"],
        build: |_| Ok(Command::Restore(RestoreCommand::List)),
    },
    task_form!(
        "show",
        Show,
        "a restore task: its state, the step it is at, its last verify",
        "restore task show undo"
    ),
    task_form!(
        "delete",
        Delete,
        "remove a restore task (not while it runs)",
        "restore task delete undo"
    ),
];

impl fmt::Display for RestoreCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreCommand::Create {
                name,
                db,
                backup,
                flags,
            } => {
                write!(
                    f,
                    "restore task create name {} db {db} backup {}",
                    quote(name),
                    quote(backup)
                )?;
                write_flags(f, flags)
            }
            RestoreCommand::Verify { task } => write!(f, "restore task verify {}", quote(task)),
            RestoreCommand::Start { task, counts_only } => write!(
                f,
                "restore task start {}{}",
                quote(task),
                if *counts_only { " verify counts" } else { "" }
            ),
            RestoreCommand::Retry { task, counts_only } => write!(
                f,
                "restore task retry {}{}",
                quote(task),
                if *counts_only { " verify counts" } else { "" }
            ),
            RestoreCommand::List => f.write_str("restore task list"),
            RestoreCommand::Show { task } => write!(f, "restore task show {}", quote(task)),
            RestoreCommand::Delete { task } => write!(f, "restore task delete {}", quote(task)),
        }
    }
}

/// The options of `restore task create`, in canonical order.
fn write_flags(f: &mut fmt::Formatter<'_>, flags: &CreateFlags) -> fmt::Result {
    let path = |p: &std::path::Path| quote(&p.to_string_lossy());
    if let Some(p) = &flags.target_path {
        write!(f, " target_path {}", path(p))?;
    }
    for (on, word) in [
        (flags.force, " force"),
        (flags.allow_newer_server, " allow_newer_server"),
        (flags.replay, " replay"),
    ] {
        if on {
            f.write_str(word)?;
        }
    }
    if let Some(p) = &flags.identity {
        write!(f, " identity {}", path(p))?;
    }
    if flags.from_other_cluster {
        f.write_str(" from_other_cluster")?;
    }
    if flags.from_other_db {
        f.write_str(" from_other_db")?;
    }
    if let Some(p) = &flags.safety_path {
        write!(f, " safety_path {}", path(p))?;
    }
    if flags.no_safety_backup {
        f.write_str(" no_safety_backup")?;
    }
    Ok(())
}

impl RestoreCommand {
    pub async fn apply(self, ctx: &Context) -> Result<Reply, CommandError> {
        let tasks = Tasks {
            store: &ctx.store,
            redis_server: ctx.redis_server.as_deref(),
            progress: ctx.progress.as_ref(),
            cancel: &ctx.cancel,
        };
        match self {
            RestoreCommand::Create {
                name,
                db,
                backup,
                flags,
            } => {
                let created = match db.single() {
                    Some(one) => tasks.create(name, one, &backup, flags).await?,
                    None => tasks.create_group(name, &db, &backup, flags).await?,
                };
                created_reply(created)
            }
            RestoreCommand::Verify { task } => {
                let (shown, failure) = tasks.verify(&task).await?;
                Ok(with_failure(reply(shown, None)?, failure))
            }
            RestoreCommand::Start { task, counts_only } => {
                started_reply(tasks.start(&task, false, counts_only).await?)
            }
            RestoreCommand::Retry { task, counts_only } => {
                started_reply(tasks.start(&task, true, counts_only).await?)
            }
            RestoreCommand::List => Reply::of(&TaskList(tasks.list().await?)),
            RestoreCommand::Show { task } => reply(tasks.show(&task).await?, None),
            RestoreCommand::Delete { task } => {
                let put_back = tasks.delete(&task).await?;
                Reply::of(&Deleted {
                    deleted: task,
                    put_back,
                })
            }
        }
    }
}

/// A task, or a task of several databases, under `headline`.
fn reply(shown: Shown, headline: Option<String>) -> Result<Reply, CommandError> {
    match shown {
        Shown::One(task) => Reply::of(&TaskView {
            task: *task,
            headline,
        }),
        Shown::Group { group, tasks } => Reply::of(&GroupView {
            task: group,
            tasks,
            headline,
        }),
    }
}

fn with_failure(reply: Reply, failure: Option<crate::restore::RestoreTaskError>) -> Reply {
    match failure {
        Some(e) => reply.failed(e.into()),
        None => reply,
    }
}

fn created_reply(created: Created) -> Result<Reply, CommandError> {
    let headline = match (&created.shown, created.tasks.as_slice()) {
        (Shown::One(t), _) => format!(
            "Created restore task `{}`: db `{}` to backup run `{}`{}.",
            t.name,
            t.db,
            t.run,
            if created.recreates {
                " (the database does not exist: `start` recreates it)"
            } else {
                ""
            }
        ),
        (Shown::Group { group, .. }, tasks) => {
            let parts: Vec<String> = tasks
                .iter()
                .map(|t| format!("`{}` (db `{}` to run `{}`)", t.name, t.db, t.run))
                .collect();
            format!(
                "Created restore task `{group}` of {} databases, all verified before any starts: {}.",
                parts.len(),
                parts.join(", ")
            )
        }
    };
    Ok(reply(created.shown, Some(headline))?.note(created.made))
}

fn started_reply(started: Started) -> Result<Reply, CommandError> {
    let headline = match (&started.shown, &started.restored, &started.failure) {
        (_, _, Some(_)) => None,
        (Shown::One(t), None, None) if started.finished => Some(format!(
            "Finished restore task `{}`: db `{}` was restored to backup run `{}` and served clients before its start was cut short; the shards it left fenced are unfenced and what it left of the old data is removed.",
            t.name, t.db, t.run
        )),
        (Shown::One(t), Some(r), None) => Some(restored_line(t, r)),
        (Shown::Group { group, tasks }, _, None) => Some(format!(
            "Restored the {} databases of restore task `{group}`; clients can connect again.",
            tasks.len()
        )),
        (Shown::One(_), None, None) => None,
    };
    Ok(with_failure(
        reply(started.shown, headline)?,
        started.failure,
    ))
}

/// What one database's restore brought back: keys, the proof, the safety backup.
fn restored_line(t: &crate::ccs::RestoreTask, r: &RestoredDb) -> String {
    let proof = match &t.content {
        Some(c) => c.line.clone(),
        None => "content not verified: `verify counts` checked the key counts only".into(),
    };
    let safety = match &r.safety {
        Safety::None => String::new(),
        Safety::Skipped(keys) => {
            format!("\nno safety backup of the {keys} keys replaced (`no_safety_backup`)")
        }
        Safety::Earlier(at) => format!(
            "\nsafety backup (taken by an earlier start, cut short while the data was fenced): {at}"
        ),
        Safety::Taken(at) => format!("\nsafety backup of the data replaced: {at}"),
        Safety::Retaken { at, earlier } => format!(
            "\nsafety backup of the data replaced: {at} (taken again: the data has served clients since the earlier start that took {earlier})"
        ),
    };
    format!(
        "Restored db:{} `{}` to backup run `{}`: {} keys; clients can connect again.\n{proof}{safety}",
        r.db, r.db_name, t.run, r.keys
    )
}
