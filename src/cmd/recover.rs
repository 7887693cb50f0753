//! `recover ...`: what the old files can bring back (`recover list`), and bringing
//! databases back from them (`recover all`, `recover db`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::error::ErrorKind;

use super::{
    Command, CommandError, CommandSyntax, Context, Element, Opt, Render, Reply, Table, Text,
    ValueKind,
};
use crate::ccs::{Cluster, DbState, Id};
use crate::lang::DbRef;
use crate::recovery::apply::{clear_markers, recover_db, Proof, Recovered, Recovery};
use crate::recovery::live::{self, Adopted};
use crate::recovery::plan::{format_age, DbPlan, Outcome, RecoveryPlan};
use crate::server::Servers;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoverCommand {
    /// `recover list`
    List,
    /// `recover all [only_configuration] [verify counts|content] [replay] [allow_empty]
    /// [allow_stale]`
    All {
        only_configuration: bool,
        counts_only: bool,
        replay: bool,
        allow: Allow,
    },
    /// `recover db <db> [only_configuration] [verify counts|content] [replay] [port <n>]
    /// [allow_empty] [allow_stale]` (also `recover db only_configuration <db>`)
    Db {
        db: DbRef,
        only_configuration: bool,
        counts_only: bool,
        replay: bool,
        /// Moves the endpoint (the first master's port) here first: the stored port is
        /// taken by another program.
        port: Option<u16>,
        allow: Allow,
    },
    /// `recover db <db> from_files [verify counts|content] [allow_stale]`: the files
    /// found since loaded into the masters a recovery brought back EMPTY, while they have
    /// taken no write since.
    FromFiles {
        db: DbRef,
        counts_only: bool,
        allow_stale: bool,
    },
}

/// What the operator accepts that recovery otherwise refuses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allow {
    /// Masters whose files were not found come back EMPTY (`allow_empty`).
    pub empty: bool,
    /// Sources older than data Lazarus knows the database had load anyway
    /// (`allow_stale`).
    pub stale: bool,
    /// A shard whose stored port another program holds moves to a free port of its
    /// node's range, and the reply says so (`free_port`): the script's explicit consent
    /// to what the interactive shell asks for.
    pub free_port: bool,
}

impl Allow {
    fn of(m: &super::Match) -> Allow {
        Allow {
            empty: m.has("allow_empty"),
            stale: m.has("allow_stale"),
            free_port: m.has("free_port"),
        }
    }
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.empty {
            f.write_str(" allow_empty")?;
        }
        if self.stale {
            f.write_str(" allow_stale")?;
        }
        if self.free_port {
            f.write_str(" free_port")?;
        }
        Ok(())
    }
}

/// `verify counts` keeps only the key counts; `verify content` (the default) also proves
/// the content.
const PROOFS: &[&str] = &["content", "counts"];

fn counts_only(m: &super::Match) -> bool {
    m.opt::<String>("verify").is_some_and(|v| v == "counts")
}

pub static SYNTAX: &[CommandSyntax] = &[
    CommandSyntax {
        elements: &[Element::Keyword("recover"), Element::Keyword("list")],
        summary: "show what each database in recovery state can be brought back from, or why not",
        examples: &["recover list"],
        build: |_| Ok(Command::Recover(RecoverCommand::List)),
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("recover"),
            Element::Keyword("all"),
            Element::Options(&[
                Opt::flag("only_configuration"),
                Opt::optional("verify", "proof", ValueKind::Choice(PROOFS)),
                Opt::flag("replay"),
                Opt::flag("allow_empty"),
                Opt::flag("allow_stale"),
                Opt::flag("free_port"),
            ]),
        ],
        summary: "bring every database in recovery state back, in parallel, and prove the content; `free_port` moves a shard off a port another program holds",
        examples: &[
            "recover all",
            "recover all only_configuration",
            "recover all verify counts",
            "recover all replay",
            "recover all allow_empty",
            "recover all free_port",
        ],
        build: |m| {
            Ok(Command::Recover(RecoverCommand::All {
                only_configuration: m.has("only_configuration"),
                counts_only: counts_only(m),
                replay: m.has("replay"),
                allow: Allow::of(m),
            }))
        },
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("recover"),
            Element::Keyword("db"),
            Element::Keyword("only_configuration"),
            Element::Arg("db", ValueKind::Database),
        ],
        summary: "bring a database's configuration back without its data",
        examples: &["recover db only_configuration orders"],
        build: |m| {
            Ok(Command::Recover(RecoverCommand::Db {
                db: m.req("db")?,
                only_configuration: true,
                counts_only: false,
                replay: false,
                port: None,
                allow: Allow::default(),
            }))
        },
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("recover"),
            Element::Keyword("db"),
            Element::Arg("db", ValueKind::Database),
            Element::Keyword("from_files"),
            Element::Options(&[
                Opt::optional("verify", "proof", ValueKind::Choice(PROOFS)),
                Opt::flag("allow_stale"),
            ]),
        ],
        summary: "load the files found since into the masters a recovery brought back EMPTY (`allow_empty`), while they have taken no write since, and prove the content",
        examples: &[
            "recover db orders from_files",
            "recover db orders from_files verify counts allow_stale",
        ],
        build: |m| {
            Ok(Command::Recover(RecoverCommand::FromFiles {
                db: m.req("db")?,
                counts_only: counts_only(m),
                allow_stale: m.has("allow_stale"),
            }))
        },
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("recover"),
            Element::Keyword("db"),
            Element::Arg("db", ValueKind::Database),
            Element::Options(&[
                Opt::flag("only_configuration"),
                Opt::optional("verify", "proof", ValueKind::Choice(PROOFS)),
                Opt::flag("replay"),
                Opt::optional("port", "n", ValueKind::Port),
                Opt::flag("allow_empty"),
                Opt::flag("allow_stale"),
                Opt::flag("free_port"),
            ]),
        ],
        summary: "bring one database back from its files (or only its configuration) and prove the content; `replay` writes files too new for the server as commands; `port` moves its endpoint off a port another program holds, `free_port` moves each such shard to a free port of its node",
        examples: &[
            "recover db db:3",
            "recover db orders only_configuration",
            "recover db orders verify counts",
            "recover db orders replay",
            "recover db orders port 31007",
            "recover db orders allow_stale",
            "recover db orders allow_empty allow_stale",
            "recover db orders free_port",
        ],
        build: |m| {
            Ok(Command::Recover(RecoverCommand::Db {
                db: m.req("db")?,
                only_configuration: m.has("only_configuration"),
                counts_only: counts_only(m),
                replay: m.has("replay"),
                port: m.opt("port"),
                allow: Allow::of(m),
            }))
        },
    },
];

impl fmt::Display for RecoverCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flag = |on: bool| if on { " only_configuration" } else { "" };
        let counts = |on: bool| if on { " verify counts" } else { "" };
        let replayed = |on: bool| if on { " replay" } else { "" };
        match self {
            RecoverCommand::List => f.write_str("recover list"),
            RecoverCommand::FromFiles {
                db,
                counts_only,
                allow_stale,
            } => write!(
                f,
                "recover db {db} from_files{}{}",
                counts(*counts_only),
                if *allow_stale { " allow_stale" } else { "" }
            ),
            RecoverCommand::All {
                only_configuration,
                counts_only,
                replay,
                allow,
            } => {
                write!(
                    f,
                    "recover all{}{}{}{allow}",
                    flag(*only_configuration),
                    counts(*counts_only),
                    replayed(*replay)
                )
            }
            RecoverCommand::Db {
                db,
                only_configuration,
                counts_only,
                replay,
                port,
                allow,
            } => {
                write!(
                    f,
                    "recover db {db}{}{}{}{allow}",
                    flag(*only_configuration),
                    counts(*counts_only),
                    replayed(*replay)
                )?;
                if let Some(p) = port {
                    write!(f, " port {p}")?;
                }
                Ok(())
            }
        }
    }
}

const NOTHING_PENDING: &str = "No recoverable databases found";

impl RecoverCommand {
    pub async fn apply(self, ctx: &Context) -> Result<Reply, CommandError> {
        match self {
            RecoverCommand::List => list(ctx).await,
            RecoverCommand::FromFiles {
                db,
                counts_only,
                allow_stale,
            } => super::recover_files::from_files(ctx, db, counts_only, allow_stale).await,
            RecoverCommand::All {
                only_configuration,
                counts_only,
                replay,
                allow,
            } => recover(ctx, None, only_configuration, counts_only, replay, allow).await,
            RecoverCommand::Db {
                db,
                only_configuration,
                counts_only,
                replay,
                port,
                allow,
            } => {
                recover(
                    ctx,
                    Some((db, port)),
                    only_configuration,
                    counts_only,
                    replay,
                    allow,
                )
                .await
            }
        }
    }
}

pub(super) fn locate_server(ctx: &Context, cluster: &Cluster) -> Result<Servers, CommandError> {
    Ok(Servers::locate(ctx.redis_server.as_deref(), cluster)?)
}

fn pending(cluster: &Cluster) -> Vec<Id> {
    cluster
        .databases
        .values()
        .filter(|db| db.state == DbState::PendingRecovery)
        .map(|db| db.id)
        .collect()
}

/// Adopts the databases pending recovery whose shards answer as themselves (see
/// [`crate::recovery::live`]), saving the configuration when any is. Under `lock` when
/// the caller holds it.
async fn adopt_live(
    ctx: &Context,
    held: Option<(&crate::ccs::StoreLock, &mut Cluster)>,
) -> Result<Vec<Adopted>, CommandError> {
    let probe_of = |c: &Cluster| (c.clone(), pending(c));
    let (snapshot, ids) = match &held {
        Some((_, c)) => probe_of(c),
        None => probe_of(&ctx.cluster()?),
    };
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let hosts = snapshot
        .hosts()
        .map_err(|e| CommandError::io(format!("cannot reach the nodes' hosts: {e}")))?;
    let answers = live::probe(&hosts, &snapshot, &ids).await;
    if !answers.values().any(|a| a.live()) {
        return Ok(Vec::new());
    }
    let save = |lock: &crate::ccs::StoreLock, cluster: &mut Cluster| {
        let mut next = cluster.clone();
        let adopted = live::adopt(&mut next, &answers, &mut Vec::new());
        if !adopted.is_empty() {
            lock.save(&mut next)?;
            *cluster = next;
        }
        Ok::<_, CommandError>(adopted)
    };
    match held {
        Some((lock, cluster)) => save(lock, cluster),
        None => {
            let (lock, mut cluster) = ctx.lock_cluster()?;
            save(&lock, &mut cluster)
        }
    }
}

async fn list(ctx: &Context) -> Result<Reply, CommandError> {
    let adopted = adopt_live(ctx, None).await?;
    let cluster = ctx.cluster()?;
    let ids = pending(&cluster);
    if ids.is_empty() {
        let mut report = PlanReport::new(RecoveryPlan::default());
        report.adopted = adopted;
        report.down = down_names(&cluster);
        return Reply::of(&report);
    }
    let rec = Arc::new(Recovery::new(locate_server(ctx, &cluster)?, false));
    let task = ctx.progress.task("validating files", ids.len() as u64);
    let shared = Arc::new(cluster);
    // Databases are validated in parallel: each is a full read of its files.
    let mut set = tokio::task::JoinSet::new();
    for id in ids {
        let (rec, cluster) = (rec.clone(), shared.clone());
        set.spawn_blocking(move || rec.plan(&cluster, &cluster.databases[&id]));
    }
    let mut plan = RecoveryPlan::default();
    while let Some(joined) = set.join_next().await {
        plan.databases
            .push(joined.map_err(|e| CommandError::internal(e.to_string()))?);
        task.set_position(plan.databases.len() as u64);
    }
    task.finish("done");
    plan.databases.sort_by_key(|d| d.id);
    let mut report = PlanReport::new(plan);
    report.adopted = adopted;
    Reply::of(&report)
}

/// `recover list`: the plan of every database pending recovery.
#[derive(Serialize)]
pub struct PlanReport {
    #[serde(flatten)]
    pub plan: RecoveryPlan,
    /// Databases that were pending recovery but whose shards answer: adopted, not
    /// recovered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub adopted: Vec<Adopted>,
    /// Active databases with a shard not running: down, not lost (`restart all`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub down: Vec<String>,
    /// When the plan was made: the files' ages are shown from it.
    #[serde(skip)]
    pub now: i64,
}

impl PlanReport {
    pub fn new(plan: RecoveryPlan) -> PlanReport {
        PlanReport {
            plan,
            adopted: Vec::new(),
            down: Vec::new(),
            now: unix_now(),
        }
    }
}

impl Render for PlanReport {
    fn render(&self, text: &mut Text) {
        for a in &self.adopted {
            text.line(a.line());
        }
        if self.plan.databases.is_empty() {
            text.line(NOTHING_PENDING);
            if let Some(hint) = down_hint(&self.down) {
                text.line(hint);
            }
            return;
        }
        render_plan(&self.plan, self.now, text);
    }
}

fn render_plan(plan: &RecoveryPlan, now: i64, text: &mut Text) {
    let mut table = Table::new([
        "DB:ID",
        "NAME",
        "TYPE",
        "SHARDS",
        "REPLICATION",
        "PERSISTENCE",
        "STATUS",
    ]);
    let mut lines = Vec::new();
    for db in &plan.databases {
        table.row([
            format!("db:{}", db.id),
            db.name.clone(),
            "redis".to_string(),
            db.shards.to_string(),
            if db.replication {
                "enabled"
            } else {
                "disabled"
            }
            .to_string(),
            db.persistence.to_string(),
            db.status.to_string(),
        ]);
        lines.extend(shard_lines(db, now));
    }
    text.table(table);
    for line in lines {
        text.line(line);
    }
}

fn shard_lines(db: &DbPlan, now: i64) -> Vec<String> {
    let mut lines = Vec::new();
    for s in &db.shard_plans {
        let head = format!(
            "db:{} redis:{} (node:{}, {})",
            db.id, s.shard, s.node, s.role
        );
        match &s.outcome {
            Outcome::Ready { source } => {
                let copy = if source.from_shard != s.shard {
                    format!(" (replica redis:{}'s copy)", source.from_shard)
                } else {
                    String::new()
                };
                let keys = if source.keys_exact {
                    source.keys.to_string()
                } else {
                    format!("~{}", source.keys)
                };
                lines.push(format!(
                    "{head}: ready: {}{} `{}`{copy}, {keys} keys, {} old",
                    source.kind,
                    if source.replay { " to replay" } else { "" },
                    source.path.display(),
                    format_age(source.age_secs(now))
                ));
            }
            Outcome::Missing { reason } => lines.push(format!("{head}: missing files: {reason}")),
            Outcome::Replica => {
                let master = s
                    .master
                    .map(|m| format!("redis:{m}"))
                    .unwrap_or_else(|| "its master".into());
                lines.push(format!("{head}: syncs from {master}"));
            }
        }
        for aside in &s.set_aside {
            lines.push(format!("    not used: {aside}"));
        }
    }
    lines
}

async fn recover(
    ctx: &Context,
    which: Option<(DbRef, Option<u16>)>,
    only_configuration: bool,
    counts_only: bool,
    replay: bool,
    allow: Allow,
) -> Result<Reply, CommandError> {
    let (lock, mut cluster) = ctx.lock_cluster()?;
    let adopted = adopt_live(ctx, Some((&lock, &mut cluster))).await?;
    let mut moved = Vec::new();
    let targets = match &which {
        None => pending(&cluster),
        Some((r, port)) => {
            let db = r.resolve(&cluster)?;
            if let Some(a) = adopted.iter().find(|a| a.id == db.id) {
                return Ok(Reply::message(a.line()));
            }
            if db.state == DbState::Active {
                return Ok(Reply::message(format!(
                    "db:{} `{}` is already active: nothing to recover",
                    db.id, db.config.name
                )));
            }
            let id = db.id;
            if let Some(port) = port {
                moved.push(move_endpoint(&lock, &mut cluster, id, *port)?);
            }
            vec![id]
        }
    };
    if allow.free_port {
        for &id in &targets {
            for m in taken_ports(&cluster, id) {
                let to = m.to.ok_or_else(|| {
                    CommandError::conflict(format!(
                        "db:{id}: port {} of redis:{} is held by another program and node:{} has no free port left in its range: widen the range or give `port <n>`",
                        m.from, m.shard, m.node
                    ))
                })?;
                moved.push(move_shard(&lock, &mut cluster, id, m.shard, to)?);
            }
        }
    }
    if targets.is_empty() {
        let mut reply = Reply::new();
        for a in &adopted {
            reply = reply.line(a.line());
        }
        reply = reply.line(NOTHING_PENDING);
        if let Some(hint) = down_hint(&down_names(&cluster)) {
            reply = reply.line(hint);
        }
        return Ok(reply);
    }
    // The command an offer to move a database off a taken port runs: this one's flags.
    let retry = RecoverCommand::Db {
        db: DbRef::Id(0),
        only_configuration,
        counts_only,
        replay,
        port: None,
        allow: Allow {
            free_port: true,
            ..allow
        },
    };
    let mut rec = Recovery::new(locate_server(ctx, &cluster)?, only_configuration);
    if counts_only {
        rec.proof = Proof::Counts;
    }
    rec.replay = replay;
    rec.allow_empty = allow.empty;
    rec.allow_stale = allow.stale;
    let rec = Arc::new(rec);
    let shared = Arc::new(cluster.clone());
    let started = Instant::now();
    let overall = ctx.progress.task("recovering", targets.len() as u64);
    overall.set_message(&tally(0, 0));

    let mut set = tokio::task::JoinSet::new();
    for id in &targets {
        let task = ctx
            .progress
            .task(&format!("db:{id} {}", cluster.databases[id].config.name), 0);
        let (rec, shared, id) = (rec.clone(), shared.clone(), *id);
        set.spawn(async move {
            let result = recover_db(rec, shared, id, &|stage| task.set_message(stage)).await;
            (id, result.map_err(CommandError::from), task)
        });
    }

    let mut outcomes: Vec<(Id, Result<Recovered, CommandError>)> = Vec::new();
    let mut cleared = Vec::new();
    let (mut ok, mut failed) = (0, 0);
    let mut remaining: std::collections::BTreeSet<Id> = targets.iter().copied().collect();
    loop {
        // Ctrl-C: every database not yet back is stopped where it is (its own servers
        // stopped, its shard directories keeping recovery's marker) and stays pending, so
        // running `recover` again resumes it; those already back stay recorded.
        let joined = tokio::select! {
            joined = set.join_next() => match joined {
                Some(joined) => joined,
                None => break,
            },
            _ = ctx.cancel.tripped() => {
                set.abort_all();
                while set.join_next().await.is_some() {}
                break;
            }
        };
        let (id, result, task) = joined.map_err(|e| CommandError::internal(e.to_string()))?;
        remaining.remove(&id);
        // Each success is recorded at once, so a shell killed later keeps it.
        let result = result.and_then(|r| {
            cleared.extend(activate(&lock, &mut cluster, &r)?);
            Ok(r)
        });
        if let Ok(r) = &result {
            clear_markers(rec.server.hosts(), &cluster, &cluster.databases[&r.id]).await;
        }
        match &result {
            Ok(_) => {
                ok += 1;
                task.finish("recovered");
            }
            Err(e) => {
                failed += 1;
                task.finish(&format!("failed: {e}"));
            }
        }
        overall.set_position((ok + failed) as u64);
        overall.set_message(&tally(ok, failed));
        outcomes.push((id, result));
    }
    for id in &remaining {
        crate::recovery::apply::stop_leftovers(rec.server.hosts(), &shared, *id).await;
        outcomes.push((
            *id,
            Err(CommandError::new(
                ErrorKind::Interrupted,
                "interrupted before it finished: it stays pending recovery; run `recover` again to resume",
            )),
        ));
    }
    overall.finish(&tally(ok, failed));
    let mut report = RecoverReport {
        adopted,
        moved,
        recovered: Vec::new(),
        failed: Vec::new(),
        names: outcomes
            .iter()
            .map(|(id, _)| (*id, cluster.databases[id].config.name.clone()))
            .collect(),
        elapsed: started.elapsed(),
        cleared,
    };
    let mut offers = Vec::new();
    for (id, result) in outcomes {
        match result {
            Ok(r) => report.recovered.push(r),
            Err(e) => {
                let name = report.names[&id].clone();
                let mut reason = e.message().to_string();
                let taken = taken_ports(&cluster, id);
                if !taken.is_empty() {
                    // Another program holds a stored port: recovery never touches it,
                    // and moves the database only when the operator says so.
                    let quoted = crate::lang::quote(&name);
                    if reason.contains("is already in use") {
                        reason.push_str(": another program holds it");
                    }
                    reason.push_str(&format!(
                        "; move the database with `recover db {quoted} port <free port>`, or let Lazarus pick a free one: `recover db {quoted} free_port`"
                    ));
                    if let Some(offer) = port_offer(&cluster, id, &taken, &retry) {
                        offers.push(offer);
                    }
                }
                report.failed.push(FailedDb {
                    id,
                    name,
                    reason,
                    kind: e.kind(),
                })
            }
        }
    }
    report.recovered.sort_by_key(|r| r.id);
    report.failed.sort_by_key(|f| f.id);
    let mut reply = Reply::of(&report)?;
    for (question, command) in offers {
        reply = reply.offer(question, command);
    }
    if let Some(first) = report.failed.first() {
        // The whole report, then a failed line: exit status 1, a script stops here. The
        // first failure's kind stands for the command's.
        let total = report.recovered.len() + report.failed.len();
        return Ok(reply.failed(
            CommandError::new(first.kind, format!("{} of {total} databases failed to recover; fix what the lines above name and run it again", report.failed.len()))
                .hinted("fix what the lines above name and run it again"),
        ));
    }
    Ok(reply)
}

/// `recover all`, `recover db`: what came back and what did not.
#[derive(Serialize)]
pub struct RecoverReport {
    /// Endpoints moved before the recovery (`port`), each as a line.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub moved: Vec<String>,
    /// Databases found live and adopted instead of recovered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub adopted: Vec<Adopted>,
    pub recovered: Vec<Recovered>,
    pub failed: Vec<FailedDb>,
    /// Every database tried, by id: the lines name them.
    #[serde(skip)]
    pub names: BTreeMap<Id, String>,
    #[serde(skip)]
    pub elapsed: Duration,
    /// Recovery paths forgotten because every database that read from them is back.
    pub cleared: Vec<ClearedPath>,
}

/// A node's recovery path, cleared once the recovery that used it completed: a later
/// incident must not bring its old files back.
#[derive(Serialize, Clone, Debug)]
pub struct ClearedPath {
    pub node: Id,
    pub recovery_path: std::path::PathBuf,
}

/// A database that did not come back, and why.
#[derive(Serialize)]
pub struct FailedDb {
    pub id: Id,
    pub name: String,
    pub reason: String,
    pub kind: ErrorKind,
}

impl Render for RecoverReport {
    fn render(&self, text: &mut Text) {
        for line in &self.moved {
            text.line(line);
        }
        for a in &self.adopted {
            text.line(a.line());
        }
        for (id, name) in &self.names {
            if let Some(r) = self.recovered.iter().find(|r| r.id == *id) {
                text.line(format!("db:{id} `{name}`: {}", success_text(r)));
            } else if let Some(f) = self.failed.iter().find(|f| f.id == *id) {
                text.line(format!("db:{id} `{name}`: failed: {}", f.reason));
            }
        }
        text.line(format!(
            "{} recovered, {} failed, in {:.1}s",
            self.recovered.len(),
            self.failed.len(),
            self.elapsed.as_secs_f64()
        ));
        for c in &self.cleared {
            text.line(format!(
                "node:{} recovery path `{}` cleared: every database recovered from it is back",
                c.node,
                c.recovery_path.display()
            ));
        }
        // The proof comes last: `content verified: N keys, digest <hex>`.
        let proved: Vec<&Recovered> = self
            .recovered
            .iter()
            .filter(|r| r.content.is_some())
            .collect();
        for r in &proved {
            let line = r.content.as_ref().map_or("", |c| c.line());
            if proved.len() == 1 && self.names.len() == 1 {
                text.line(line);
            } else {
                text.line(format!("db:{} `{}`: {line}", r.id, self.names[&r.id]));
            }
        }
    }
}

fn tally(ok: usize, failed: usize) -> String {
    format!("[ {ok} recovered | {failed} failed ]")
}

fn success_text(r: &Recovered) -> String {
    if r.only_configuration {
        return match &r.sync_source {
            Some(src) if src.synced => format!(
                "Completed successfully (configuration only; full sync from `{}`)",
                src.endpoint
            ),
            Some(src) => format!(
                "Completed successfully (configuration only); WARNING: the database is EMPTY until its sync source `{}` answers",
                src.endpoint
            ),
            None => {
                "Completed successfully (configuration only: the database is EMPTY)".to_string()
            }
        };
    }
    let mut text = String::from("Completed successfully");
    let mut kinds: Vec<String> = r
        .sources
        .iter()
        .map(|(_, s)| match s.replay {
            true => format!("{} replayed as commands", s.kind),
            false => s.kind.to_string(),
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    if !kinds.is_empty() {
        text.push_str(&format!(" ({} keys from {})", r.keys, kinds.join(" and ")));
    }
    for fallback in &r.fallbacks {
        text.push_str(&format!("; {fallback}"));
    }
    if !r.unverified.is_empty() {
        text.push_str(&format!(
            "; key count not verified for {}",
            r.unverified.join("; ")
        ));
    }
    if !r.empty.is_empty() {
        let shards: Vec<String> = r.empty.iter().map(|s| format!("redis:{s}")).collect();
        text.push_str(&format!(
            "; WARNING: came back EMPTY for {}: no files were found for it",
            shards.join(", ")
        ));
    }
    if let Some(src) = &r.sync_source {
        text.push_str(&format!("; follows `{}` again", src.endpoint));
        if !src.answers {
            text.push_str(" (it does not answer yet)");
        }
    }
    text
}

/// Marks a recovered database active, with its shards' pids, and clears the recovery
/// path of every node no database pending recovery still has shards on; saves the CCS.
/// Left unchanged when saving fails. Returns the recovery paths cleared.
fn activate(
    lock: &crate::ccs::StoreLock,
    cluster: &mut Cluster,
    r: &Recovered,
) -> Result<Vec<ClearedPath>, CommandError> {
    let mut next = cluster.clone();
    let db = next.databases.get_mut(&r.id).ok_or_else(|| {
        CommandError::internal(format!("db:{} vanished from the configuration", r.id))
    })?;
    db.state = DbState::Active;
    // Masters that came back EMPTY are marked, so that the files found later can still
    // be loaded into them (`recover db <db> from_files`) while they take no write.
    let empty_all = r.only_configuration && r.sync_source.is_none();
    for shard in &mut db.shards {
        if let Some((_, pid)) = r.pids.iter().find(|(id, _)| *id == shard.id) {
            shard.pid = Some(*pid);
        }
        let empty =
            shard.role == crate::ccs::Role::Master && (empty_all || r.empty.contains(&shard.id));
        shard.empty_since = empty.then(unix_now);
    }
    let waiting: std::collections::BTreeSet<Id> = next
        .databases
        .values()
        .filter(|d| d.state == DbState::PendingRecovery)
        .flat_map(|d| d.shards.iter().map(|s| s.node))
        .collect();
    let mut cleared = Vec::new();
    for node in next.nodes.values_mut() {
        if waiting.contains(&node.id) {
            continue;
        }
        if let Some(path) = node.recovery_path.take() {
            cleared.push(ClearedPath {
                node: node.id,
                recovery_path: path,
            });
        }
    }
    lock.save(&mut next).map_err(|e| {
        CommandError::from(e).context("recovered, but the configuration could not be saved")
    })?;
    *cluster = next;
    Ok(cleared)
}

/// `recover db <db> port <n>`: the database's endpoint (the shard listening on its port,
/// else its first master) moves to `port` (see [`move_shard`]).
fn move_endpoint(
    lock: &crate::ccs::StoreLock,
    cluster: &mut Cluster,
    id: Id,
    port: u16,
) -> Result<String, CommandError> {
    let db = &cluster.databases[&id];
    let shard = db
        .shards
        .iter()
        .find(|s| s.port == db.port)
        .or_else(|| db.masters().next())
        .ok_or_else(|| CommandError::internal(format!("db:{id} has no shard")))?
        .id;
    move_shard(lock, cluster, id, shard, port)
}

/// The ports a shard of `db` holds on its address: its client port, and its bus port in
/// a cluster.
fn need_of(db: &crate::ccs::Database) -> crate::server::PortNeed {
    if db.config.shards > 1 {
        crate::server::PortNeed::WithBus
    } else {
        crate::server::PortNeed::Plain
    }
}

/// Shard `shard` of db `id` moves to `port` (the database's endpoint with it when it is
/// the endpoint shard), which must be free on its node and held by no other shard of the
/// configuration (nor its bus port); saved before the recovery starts. Whatever holds the
/// old port is never touched.
fn move_shard(
    lock: &crate::ccs::StoreLock,
    cluster: &mut Cluster,
    id: Id,
    shard: Id,
    port: u16,
) -> Result<String, CommandError> {
    use crate::server::port_is_free;
    let db = &cluster.databases[&id];
    let need = need_of(db);
    let shard = db
        .shards
        .iter()
        .find(|s| s.id == shard)
        .ok_or_else(|| CommandError::internal(format!("db:{id} has no redis:{shard}")))?
        .clone();
    let addr = cluster
        .nodes
        .get(&shard.node)
        .map(|n| n.addr.clone())
        .ok_or_else(|| CommandError::internal(format!("redis:{} has no node", shard.id)))?;
    let old = shard.port;
    let endpoint = old == db.port;
    let name = db.config.name.clone();
    if port == old {
        return Err(CommandError::usage(format!(
            "`port {port}` is db:{id} `{name}`'s port already: give another one"
        )));
    }
    let wanted: Vec<u16> = need.ports(port).collect();
    for other in cluster.databases.values() {
        let other_need = need_of(other);
        for s in &other.shards {
            let same_addr = cluster.nodes.get(&s.node).is_some_and(|n| n.addr == addr);
            if s.id != shard.id
                && same_addr
                && other_need.ports(s.port).any(|p| wanted.contains(&p))
            {
                return Err(CommandError::conflict(format!(
                    "`port {port}` is held by redis:{} of db:{} `{}` in the configuration: give another one",
                    s.id, other.id, other.config.name
                )));
            }
        }
    }
    if !port_is_free(&addr, port, need) {
        return Err(CommandError::conflict(format!(
            "`port {port}` on `{addr}` is in use: give a free one"
        )));
    }
    let held = if port_is_free(&addr, old, need) {
        ""
    } else {
        " (held by another program, left alone)"
    };
    let mut next = cluster.clone();
    let db = next
        .databases
        .get_mut(&id)
        .ok_or_else(|| CommandError::internal(format!("db:{id} vanished")))?;
    if endpoint {
        db.port = port;
    }
    if let Some(s) = db.shards.iter_mut().find(|s| s.id == shard.id) {
        s.port = port;
    }
    lock.save(&mut next)?;
    *cluster = next;
    Ok(if endpoint {
        format!(
            "db:{id} `{name}`: endpoint moved from port {old}{held} to port {port} (redis:{})",
            shard.id
        )
    } else {
        format!(
            "db:{id} `{name}`: redis:{} moved from port {old}{held} to port {port}",
            shard.id
        )
    })
}

/// A shard whose stored port another program holds, and the port `free_port` would move
/// it to (none: its node's range has no free port left).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PortMove {
    shard: Id,
    node: Id,
    from: u16,
    to: Option<u16>,
}

/// The shards of db `id` on this machine whose stored port (or bus port) cannot be bound
/// now, each with the lowest port of its node's range that is free and that no shard of
/// the configuration holds (nor a move before it). Shards on other hosts are probed
/// there when they start, not here.
fn taken_ports(cluster: &Cluster, id: Id) -> Vec<PortMove> {
    use crate::server::{pick_port, port_is_free};
    let Some(db) = cluster.databases.get(&id) else {
        return Vec::new();
    };
    let need = need_of(db);
    let mut reserved: BTreeMap<String, std::collections::BTreeSet<u16>> = BTreeMap::new();
    for other in cluster.databases.values() {
        for s in &other.shards {
            if let Some(n) = cluster.nodes.get(&s.node) {
                reserved
                    .entry(n.addr.clone())
                    .or_default()
                    .extend(need_of(other).ports(s.port));
            }
        }
    }
    let mut moves = Vec::new();
    for s in &db.shards {
        let Some(node) = cluster.nodes.get(&s.node).filter(|n| n.ssh.is_none()) else {
            continue;
        };
        if port_is_free(&node.addr, s.port, need) {
            continue;
        }
        let held = reserved.entry(node.addr.clone()).or_default();
        let to = pick_port(node, held, need).ok();
        if let Some(p) = to {
            held.extend(need.ports(p));
        }
        moves.push(PortMove {
            shard: s.id,
            node: node.id,
            from: s.port,
            to,
        });
    }
    moves
}

/// The question the interactive shell asks before moving db `id` off ports another
/// program holds, and the command it runs on `yes`: `template` with `free_port`, for
/// this database. None when no free port is left to offer.
fn port_offer(
    cluster: &Cluster,
    id: Id,
    taken: &[PortMove],
    template: &RecoverCommand,
) -> Option<(String, String)> {
    let db = cluster.databases.get(&id)?;
    let moves = taken
        .iter()
        .map(|m| {
            m.to.map(|to| format!("redis:{} from port {} to port {to}", m.shard, m.from))
        })
        .collect::<Option<Vec<String>>>()?;
    let mut command = template.clone();
    if let RecoverCommand::Db { db: which, .. } = &mut command {
        *which = DbRef::Name(db.config.name.clone());
    }
    Some((
        format!(
            "db:{id} `{}`: another program holds {}; move {} and recover it again?",
            db.config.name,
            if taken.len() == 1 {
                "a stored port"
            } else {
                "stored ports"
            },
            moves.join(", ")
        ),
        command.to_string(),
    ))
}

/// Names of the active databases with a shard not running.
fn down_names(cluster: &Cluster) -> Vec<String> {
    crate::db::not_running(cluster)
        .iter()
        .map(|id| cluster.databases[id].config.name.clone())
        .collect()
}

/// Where to go when nothing is pending but databases are down (a power loss with the
/// home intact): their data is in place, `restart all` brings them back.
fn down_hint(down: &[String]) -> Option<String> {
    if down.is_empty() {
        return None;
    }
    let names: Vec<String> = down.iter().map(|n| format!("`{n}`")).collect();
    Some(format!(
        "{} database{} down but not pending recovery ({}): {} data is in place; bring {} back with `restart all`",
        down.len(),
        if down.len() == 1 { " is" } else { "s are" },
        names.join(", "),
        if down.len() == 1 { "its" } else { "their" },
        if down.len() == 1 { "it" } else { "them" },
    ))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
