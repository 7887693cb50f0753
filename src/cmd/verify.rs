//! `verify db <db> against <file|dir>`: proves on demand that a running database holds
//! what persistence files hold, key by key (the content digest of [`crate::verify`]).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::Render;
use super::{
    Command, CommandError, CommandSyntax, Context, Element, Reply, Table, Text, ValueKind,
};
use crate::error::{DomainError, ErrorKind};
use crate::lang::lexer::quote;
use crate::lang::DbRef;
use crate::verify::{self, Comparison, VerifyError};

/// Each reply of a shard (a SCAN or a pipelined batch of DUMPs) within this.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyCommand {
    /// `verify db <db> against <path>`
    Db { db: DbRef, against: PathBuf },
}

pub static SYNTAX: &[CommandSyntax] = &[CommandSyntax {
    elements: &[
        Element::Keyword("verify"),
        Element::Keyword("db"),
        Element::Arg("db", ValueKind::Database),
        Element::Keyword("against"),
        Element::Arg("path", ValueKind::Path),
    ],
    summary: "prove a running database holds what an RDB, a directory of shard files or a backup run holds, key by key",
    examples: &[
        "verify db orders against /var/lib/lazarus/redis/db-2",
        "verify db db:3 against /backups/dump.rdb",
        "verify db orders against /backups/orders/20261204T0300Z",
    ],
    build: |m| {
        Ok(Command::Verify(VerifyCommand::Db {
            db: m.req("db")?,
            against: m.req("path")?,
        }))
    },
}];

impl fmt::Display for VerifyCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyCommand::Db { db, against } => write!(
                f,
                "verify db {db} against {}",
                quote(&against.display().to_string())
            ),
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
    pub files_read: Vec<PathBuf>,
    #[serde(flatten)]
    pub comparison: Comparison,
}

impl VerifyCommand {
    pub async fn apply(self, ctx: &Context) -> Result<Reply, CommandError> {
        let VerifyCommand::Db { db, against } = self;
        let cluster = ctx.cluster()?;
        let database = super::resolve_db(&cluster, &db)?;
        let masters: Vec<_> = database
            .masters()
            .filter_map(|s| crate::db::shard_addr(&cluster, database, s.id))
            .collect();
        if masters.is_empty() {
            return Err(CommandError::conflict(format!(
                "database `{}` has no master shard to verify",
                database.config.name
            )));
        }
        let path = against.clone();
        let files = tokio::task::spawn_blocking(move || verify::data_files(&path))
            .await
            .map_err(|e| CommandError::internal(format!("verify failed: {e}")))??;
        let task = ctx.progress.task(
            &format!(
                "verify db {} against {}",
                database.config.name,
                against.display()
            ),
            0,
        );
        let comparison =
            verify::verify_content(&files, &masters, &Default::default(), REPLY_TIMEOUT).await;
        let comparison = match comparison {
            Ok(c) => c,
            Err(e) => {
                task.finish("failed");
                return Err(e.into());
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
            files_read: files,
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
        text.line(format!(
            "db `{}` against {} file(s) under `{}`",
            self.db,
            self.files_read.len(),
            self.against.display()
        ));
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
