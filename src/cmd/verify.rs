//! `verify db <db> against <file|dir|backup run> [identity <file>]`: proves on demand
//! that a running database holds what persistence files or a backup run hold, key by key
//! (the content digest of [`crate::verify`]). A run is named by its id, `latest`, its
//! directory, or `<repository>/<run|latest>` as `restore task create` takes it; its
//! stored files are read through their compression and encryption where they lie.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::Render;
use super::{
    Command, CommandError, CommandSyntax, Context, Element, Opt, Reply, Table, Text, ValueKind,
};
use crate::backup::{Manifest, Repository, MANIFEST_FILE};
use crate::ccs::{Cluster, Id};
use crate::db::SETTLE_TIMEOUT;
use crate::error::{DomainError, ErrorKind};
use crate::lang::lexer::quote;
use crate::lang::DbRef;
use crate::verify::{self, Comparison, DataSource, VerifyError};

/// Each reply of a shard (a SCAN or a pipelined batch of DUMPs) within this.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyCommand {
    /// `verify db <db> against <path|run> [identity <file>]`
    Db {
        db: DbRef,
        against: PathBuf,
        identity: Option<PathBuf>,
    },
}

pub static SYNTAX: &[CommandSyntax] = &[CommandSyntax {
    elements: &[
        Element::Keyword("verify"),
        Element::Keyword("db"),
        Element::Arg("db", ValueKind::Database),
        Element::Keyword("against"),
        Element::Arg("path", ValueKind::Path),
        Element::Options(&[Opt::optional(
            "identity",
            "age identity file",
            ValueKind::Path,
        )]),
    ],
    summary: "prove a running database holds what an RDB, a directory of shard files or a backup run (id, `latest`, `<repository>/<run|latest>`) holds, key by key",
    examples: &[
        "verify db orders against /var/lib/lazarus/redis/db-2",
        "verify db db:3 against /backups/dump.rdb",
        "verify db orders against /backups/orders/20261204-030012-17",
        "verify db orders against 20261204-030012-17",
        "verify db orders against latest",
        "verify db orders against s3://offsite/lazarus/latest identity /root/.age/lazarus.key",
    ],
    build: |m| {
        Ok(Command::Verify(VerifyCommand::Db {
            db: m.req("db")?,
            against: m.req("path")?,
            identity: m.opt("identity"),
        }))
    },
}];

impl fmt::Display for VerifyCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyCommand::Db {
                db,
                against,
                identity,
            } => {
                write!(
                    f,
                    "verify db {db} against {}",
                    quote(&against.display().to_string())
                )?;
                if let Some(i) = identity {
                    write!(f, " identity {}", quote(&i.display().to_string()))?;
                }
                Ok(())
            }
        }
    }
}

impl DomainError for VerifyError {
    fn kind(&self) -> ErrorKind {
        match self {
            VerifyError::File { path, .. } if !path.exists() => ErrorKind::NotFound,
            VerifyError::NoFiles(_) => ErrorKind::NotFound,
            VerifyError::File { .. } | VerifyError::Key { .. } => ErrorKind::Damaged,
            VerifyError::AofNotReplayed(_) | VerifyError::Server { .. } => ErrorKind::Unavailable,
        }
    }
}

/// What `verify db` found.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyOutcome {
    pub db: String,
    pub against: PathBuf,
    /// The backup run `against` named, and its repository; `null` for files.
    pub run: Option<RunRead>,
    pub files_read: Vec<String>,
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// A backup run read by `verify db`.
#[derive(Clone, Debug, Serialize)]
pub struct RunRead {
    pub id: String,
    pub repository: String,
}

/// What `against` stands for: the files or the run's stored files to digest.
struct Against {
    sources: Vec<DataSource>,
    run: Option<RunRead>,
}

/// A run's stored files as digest sources; an encrypted run needs `identity`.
fn run_sources(
    repo: &Repository,
    run: &str,
    m: &Manifest,
    identity: Option<&PathBuf>,
) -> Result<Against, CommandError> {
    if m.encrypted() && identity.is_none() {
        return Err(CommandError::usage(format!(
            "backup run `{run}` is encrypted: add `identity <age identity file>`"
        )));
    }
    if let Some(i) = identity {
        crate::backup::Identities::load(i).map_err(CommandError::from)?;
    }
    Ok(Against {
        sources: m
            .shards
            .iter()
            .map(|e| DataSource::Stored {
                file: repo.file(run, &e.file),
                entry: Box::new(e.clone()),
                identity: identity.cloned(),
            })
            .collect(),
        run: Some(RunRead {
            id: run.to_string(),
            repository: repo.to_string(),
        }),
    })
}

/// Resolves `against`: a local run directory (it holds a manifest), a file or directory
/// of persistence files, a run of this cluster's tasks (its id or `latest`), or
/// `<repository>/<run|latest>` of any repository.
fn resolve_against(
    cluster: &Cluster,
    database: &crate::ccs::Database,
    against: &Path,
    identity: Option<&PathBuf>,
) -> Result<Against, CommandError> {
    let shown = against.to_string_lossy().into_owned();
    let local = !crate::backup::is_url(against);
    if local && against.is_dir() && against.join(MANIFEST_FILE).is_file() {
        let dir = std::path::absolute(against)
            .map_err(|e| CommandError::io(format!("cannot resolve `{shown}`: {e}")))?;
        let (Some(root), Some(run)) = (dir.parent(), dir.file_name().and_then(|n| n.to_str()))
        else {
            return Err(CommandError::usage(format!(
                "`{shown}` is not a run directory"
            )));
        };
        let repo = Repository::local(root);
        let m = repo.manifest(run).map_err(|e| {
            CommandError::new(e.kind(), format!("`{shown}` is not a restore point: {e}"))
        })?;
        return run_sources(&repo, run, &m, identity);
    }
    if local && against.exists() {
        let files = verify::data_files(against)?;
        return Ok(Against {
            sources: files.into_iter().map(DataSource::Path).collect(),
            run: None,
        });
    }
    let name = &database.config.name;
    if !shown.contains('/') {
        let run = crate::restore::own_run(cluster, &shown, name, Some(database.id)).map_err(
            |e| match shown.as_str() {
                "latest" => e.into(),
                _ => CommandError::not_found(format!(
                    "`{shown}` is no file, no directory and no backup run of this cluster (see `backup task history <task>`)"
                )),
            },
        )?;
        let repo = Repository::open(&run.path).map_err(CommandError::usage)?;
        let m = repo.manifest(&run.id).map_err(|e| {
            CommandError::new(
                e.kind(),
                format!("`{}` is not a restore point: {e}", repo.run_shown(&run.id)),
            )
        })?;
        return run_sources(&repo, &run.id, &m, identity);
    }
    let (location, run) = shown.rsplit_once('/').expect("a path with a `/` splits");
    if local && !Path::new(location).is_dir() {
        return Err(CommandError::not_found(format!(
            "`{shown}` is no file, no directory and no run of a repository (`{location}` is not a directory)"
        )));
    }
    let own = Some(cluster.cluster_id);
    let (run, path, m) = crate::restore::run_in_repository(location, run, name, own)?;
    let repo = Repository::open(&path).map_err(CommandError::usage)?;
    run_sources(&repo, &run, &m, identity)
}

impl VerifyCommand {
    pub async fn apply(self, ctx: &Context) -> Result<Reply, CommandError> {
        let VerifyCommand::Db {
            db,
            against,
            identity,
        } = self;
        let cluster = ctx.cluster()?;
        let database = db.resolve(&cluster)?;
        let (c, d, path) = (cluster.clone(), database.clone(), against.clone());
        let resolved =
            tokio::task::spawn_blocking(move || resolve_against(&c, &d, &path, identity.as_ref()))
                .await
                .map_err(|e| CommandError::internal(format!("verify failed: {e}")))??;
        // A replica a failover promoted serves its master's data: it is what is proved.
        // A failover under way (a master down, shards saying the cluster is down, so
        // reads answer `CLUSTERDOWN`) is waited for, within bounds, once what to verify
        // against is known to be there.
        let settled = || crate::db::settled_masters(&cluster, database, SETTLE_TIMEOUT);
        let mut masters = settled().await.map_err(CommandError::unavailable)?;
        if masters.is_empty() {
            return Err(CommandError::conflict(format!(
                "database `{}` has no master shard to verify",
                database.config.name
            )));
        }
        let task = ctx.progress.task(
            &format!(
                "verify db {} against {}",
                database.config.name,
                against.display()
            ),
            0,
        );
        let prove = |masters: &[(Id, crate::server::ShardAddr)]| {
            let addrs: Vec<_> = masters.iter().map(|(_, a)| a.clone()).collect();
            let sources = &resolved.sources;
            async move {
                verify::verify_sources(sources, &addrs, &Default::default(), REPLY_TIMEOUT).await
            }
        };
        let mut comparison = prove(&masters).await;
        // The cluster went down while it was read (a master failing just then): once it
        // serves again, read once more.
        if comparison
            .as_ref()
            .is_err_and(verify::VerifyError::is_cluster_down)
        {
            masters = match settled().await {
                Ok(m) => m,
                Err(e) => {
                    task.finish("failed");
                    return Err(CommandError::unavailable(e));
                }
            };
            comparison = prove(&masters).await;
        }
        let comparison = match comparison {
            Ok(c) => c,
            Err(e) => {
                task.finish("failed");
                return Err(e.naming(&masters).into());
            }
        };
        task.finish(if comparison.equal {
            "verified"
        } else {
            "differs"
        });
        let outcome = VerifyOutcome {
            db: database.config.name.clone(),
            against,
            run: resolved.run,
            files_read: resolved.sources.iter().map(|s| s.to_string()).collect(),
            comparison,
        };
        let reply = Reply::of(&outcome)?;
        Ok(if outcome.comparison.equal {
            reply
        } else {
            let n = outcome.comparison.differences.len();
            reply.failed(CommandError::damaged(format!(
                "database `{}` differs from `{}`{}",
                outcome.db,
                outcome.against.display(),
                match n {
                    0 => String::new(),
                    _ => format!(
                        ": first differing key `{}` ({})",
                        outcome.comparison.differences[0].key,
                        outcome.comparison.differences[0].difference
                    ),
                }
            )))
        })
    }
}

impl Render for VerifyOutcome {
    fn render(&self, text: &mut Text) {
        text.line(match &self.run {
            Some(run) => format!(
                "db `{}` against backup run `{}` in `{}` ({} shard file(s))",
                self.db,
                run.id,
                run.repository,
                self.files_read.len()
            ),
            None => format!(
                "db `{}` against {} file(s) under `{}`",
                self.db,
                self.files_read.len(),
                self.against.display()
            ),
        });
        text.line(self.comparison.verdict());
        let c = &self.comparison;
        if !c.differences.is_empty() {
            let mut t = Table::new(["KEY", "DB", "DIFFERENCE", "DETAIL"]).titled("DIFFERING KEYS");
            for d in &c.differences {
                t.row([
                    d.key.clone(),
                    d.db.to_string(),
                    d.difference.to_string(),
                    d.detail.clone(),
                ]);
            }
            text.table(t);
        }
        for m in c.slot_count_mismatches.iter().take(10) {
            text.line(format!(
                "slot {}: {} keys in the files, {} on the server",
                m.slot, m.files, m.server
            ));
        }
    }
}
