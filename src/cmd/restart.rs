//! `restart db <db>...` of several databases and `restart all`: each database restarted
//! in turn from the data its persistence kept, the configuration saved after each, one
//! failure not keeping the others down.

use std::collections::BTreeMap;

use serde::Serialize;

use super::db_view::DbView;
use super::{CommandError, Context, Render, Reply, Text};
use crate::ccs::{Cluster, Id};
use crate::db;
use crate::error::ErrorKind;
use crate::lang::DbRef;

/// `restart db a b`, `restart all`: what runs again, what was left alone and what failed.
#[derive(Serialize)]
pub struct RestartReport {
    pub restarted: Vec<DbView>,
    /// `restart all`: active databases whose every shard already runs.
    pub running: Vec<String>,
    /// `restart all`: databases pending recovery, which `recover` brings back.
    pub pending_recovery: Vec<String>,
    pub failed: Vec<RestartFailed>,
}

#[derive(Serialize)]
pub struct RestartFailed {
    pub id: Id,
    pub name: String,
    pub reason: String,
    pub kind: ErrorKind,
    /// What to do about it, as a command's own failure gives them.
    pub hints: Vec<String>,
}

impl Render for RestartReport {
    fn render(&self, text: &mut Text) {
        for d in &self.restarted {
            text.line(format!(
                "Restarted db:{} `{}`: {} shard{} running. Endpoint: {}",
                d.id,
                d.name,
                d.shards.len(),
                if d.shards.len() == 1 { "" } else { "s" },
                d.endpoint
            ));
        }
        for f in &self.failed {
            text.line(format!("db:{} `{}`: failed: {}", f.id, f.name, f.reason));
            for h in &f.hints {
                text.line(format!("  hint: {h}"));
            }
        }
        if !self.running.is_empty() {
            text.line(format!(
                "Already running, left alone: {}",
                names(&self.running)
            ));
        }
        if !self.pending_recovery.is_empty() {
            text.line(format!(
                "Pending recovery, not restarted (see `recover list`): {}",
                names(&self.pending_recovery)
            ));
        }
        text.line(format!(
            "{} restarted, {} failed",
            self.restarted.len(),
            self.failed.len()
        ));
    }
}

fn names(list: &[String]) -> String {
    let quoted: Vec<String> = list.iter().map(|n| format!("`{n}`")).collect();
    quoted.join(", ")
}

/// Restarts `which` (every named database, all resolved before the first restart), or
/// with `None` every active database with a shard not running.
pub(super) async fn several(ctx: &Context, which: Option<&[DbRef]>) -> Result<Reply, CommandError> {
    let (lock, mut cluster) = ctx.lock_cluster()?;
    let which = match which {
        Some(refs) => {
            let mut ids = Vec::new();
            for r in refs {
                let id = r.resolve(&cluster)?.id;
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            Some(ids)
        }
        None => None,
    };
    let server = ctx.redis_server.as_deref();
    let busy = busy(ctx, &cluster);
    let run =
        db::service::restart_several(&lock, &mut cluster, server, which, &busy, &*ctx.progress)
            .await?;
    let report = RestartReport {
        restarted: run
            .restarted
            .iter()
            .map(|id| DbView::new(&cluster, &cluster.databases[id]))
            .collect(),
        running: run.running,
        pending_recovery: run.pending_recovery,
        failed: run
            .failed
            .into_iter()
            .map(|(id, name, e)| {
                let e = CommandError::from(e);
                RestartFailed {
                    id,
                    name,
                    reason: e.message().to_string(),
                    kind: e.kind(),
                    hints: e.hints().to_vec(),
                }
            })
            .collect(),
    };
    let reply = Reply::of(&report)?;
    match report.failed.first() {
        Some(first) => Ok(reply.failed(CommandError::new(
            first.kind,
            format!(
                "{} of {} databases failed to restart",
                report.failed.len(),
                run.tried.len()
            ),
        ))),
        None => Ok(reply),
    }
}

/// What other shells are doing with the databases that a restart or a delete must leave
/// alone (asked under the CCS lock the caller holds), by id: a restore task claimed, else
/// a backup run streaming.
pub(super) fn busy(ctx: &Context, cluster: &Cluster) -> BTreeMap<Id, db::Busy> {
    let home = ctx.store.home();
    cluster
        .databases
        .values()
        .filter_map(|d| {
            let busy = match crate::restore::claimed_task_of(home, cluster, &d.config.name, &[]) {
                Some(task) => db::Busy::Restoring { task },
                None => {
                    let run = crate::backup::streaming_run_of(home, cluster, d.id)?;
                    db::Busy::BackingUp {
                        run: run.id,
                        task: run.task,
                    }
                }
            };
            Some((d.id, busy))
        })
        .collect()
}
