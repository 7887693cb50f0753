//! `restore task ...`: restore tasks: a database (or one to recreate) and a backup run,
//! verified before anything changes, started, retried after a failure, never run again
//! after success.

mod apply;
mod group;

pub(crate) use apply::{own_run, run_in_repository};

use super::{CommandError, Context, Reply};
use apply::{create, find, lock_task, locked, running, start, verify, Deleted, TaskList, TaskView};

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
        identity: Option<std::path::PathBuf>,
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

/// The options of `restore task create` that the task keeps as given: held by the AST
/// and handed to the task's creation as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateFlags {
    pub target_path: Option<std::path::PathBuf>,
    pub force: bool,
    pub allow_newer_server: bool,
    pub replay: bool,
    pub from_other_cluster: bool,
    pub safety_path: Option<std::path::PathBuf>,
    pub no_safety_backup: bool,
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
                Element::Arg("task", ValueKind::Word),
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
                Element::Arg("task", ValueKind::Word),
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
                Opt::required("backup", "run|latest|repository/run", ValueKind::Word),
                Opt::optional("target_path", "dir", ValueKind::Path),
                Opt::flag("force"),
                Opt::flag("allow_newer_server"),
                Opt::flag("replay"),
                Opt::optional("identity", "age identity file", ValueKind::Path),
                Opt::flag("from_other_cluster"),
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
            "restore task create name both db orders,sessions backup latest force",
            "restore task create name moveall db all backup s3://offsite/lazarus/latest from_other_cluster",
        ],
        build: |m| {
            Ok(Command::Restore(RestoreCommand::Create {
                name: task_name(m, "name")?,
                db: m.req("db")?,
                backup: m.req("backup")?,
                identity: m.opt("identity"),
                flags: CreateFlags {
                    target_path: m.opt("target_path"),
                    force: m.has("force"),
                    allow_newer_server: m.has("allow_newer_server"),
                    replay: m.has("replay"),
                    from_other_cluster: m.has("from_other_cluster"),
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
                identity,
                flags:
                    CreateFlags {
                        target_path,
                        force,
                        allow_newer_server,
                        replay,
                        from_other_cluster,
                        safety_path,
                        no_safety_backup,
                    },
            } => {
                write!(
                    f,
                    "restore task create name {} db {db} backup {}",
                    quote(name),
                    quote(backup)
                )?;
                if let Some(p) = target_path {
                    write!(f, " target_path {}", quote(&p.to_string_lossy()))?;
                }
                if *force {
                    f.write_str(" force")?;
                }
                if *allow_newer_server {
                    f.write_str(" allow_newer_server")?;
                }
                if *replay {
                    f.write_str(" replay")?;
                }
                if let Some(i) = identity {
                    write!(f, " identity {}", quote(&i.to_string_lossy()))?;
                }
                if *from_other_cluster {
                    f.write_str(" from_other_cluster")?;
                }
                if let Some(p) = safety_path {
                    write!(f, " safety_path {}", quote(&p.to_string_lossy()))?;
                }
                if *no_safety_backup {
                    f.write_str(" no_safety_backup")?;
                }
                Ok(())
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

impl RestoreCommand {
    pub async fn apply(self, ctx: &Context) -> Result<Reply, CommandError> {
        match self {
            RestoreCommand::Create {
                name,
                db,
                backup,
                identity,
                flags,
            } => match db.single() {
                Some(one) => create(ctx, name, one, backup, flags, identity).await,
                None => group::create(ctx, name, &db, &backup, flags, identity).await,
            },
            RestoreCommand::Verify { task } if is_group(ctx, &task)? => {
                group::verify(ctx, &task).await
            }
            RestoreCommand::Verify { task } => verify(ctx, &task).await,
            RestoreCommand::Start { task, counts_only } if is_group(ctx, &task)? => {
                group::start(ctx, &task, false, counts_only).await
            }
            RestoreCommand::Start { task, counts_only } => {
                start(ctx, &task, false, counts_only).await
            }
            RestoreCommand::Retry { task, counts_only } if is_group(ctx, &task)? => {
                group::start(ctx, &task, true, counts_only).await
            }
            RestoreCommand::Retry { task, counts_only } => {
                start(ctx, &task, true, counts_only).await
            }
            RestoreCommand::Show { task } if is_group(ctx, &task)? => {
                let (_, cluster) = locked(ctx).await?;
                Reply::of(&group::GroupView::of(&cluster, &task, None))
            }
            RestoreCommand::Delete { task } if is_group(ctx, &task)? => {
                group::delete(ctx, &task).await
            }
            RestoreCommand::List => {
                let (_, cluster) = locked(ctx).await?;
                Reply::of(&TaskList(
                    cluster.backups.restores.values().cloned().collect(),
                ))
            }
            RestoreCommand::Show { task } => {
                let (_, cluster) = locked(ctx).await?;
                let t = find(&cluster, &task)?.clone();
                Reply::of(&TaskView {
                    task: t,
                    headline: None,
                })
            }
            RestoreCommand::Delete { task } => {
                let Some(_l) = lock_task(ctx, &task)? else {
                    return Err(running(&task));
                };
                let (lock, mut cluster) = locked(ctx).await?;
                if let Some(group) = &find(&cluster, &task)?.group {
                    return Err(CommandError::conflict(format!(
                        "restore task `{task}` is part of `{group}`: delete `{group}`"
                    )));
                }
                cluster.backups.restores.remove(&task);
                lock.save(&mut cluster)?;
                Reply::of(&Deleted { deleted: task })
            }
        }
    }
}

/// Whether `task` names a task of several databases (a group of tasks `<task>.<db>`).
fn is_group(ctx: &Context, task: &str) -> Result<bool, CommandError> {
    Ok(ctx.store.load()?.is_some_and(|c| {
        !c.backups.restores.contains_key(task) && !c.backups.restore_group(task).is_empty()
    }))
}
