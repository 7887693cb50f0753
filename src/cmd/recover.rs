//! `recover ...`: what the old files can bring back (`recover list`), and bringing
//! databases back from them (`recover all`, `recover db`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::error::ErrorKind;

use super::{
    Command, CommandError, CommandSyntax, Context, Element, Opt, Render, Reply, Table, Text,
    ValueKind,
};
use crate::ccs::Id;
use crate::lang::DbRef;
use crate::recovery::apply::{Proof, Recovered};
use crate::recovery::from_files::{self, Filled};
use crate::recovery::live::Adopted;
use crate::recovery::plan::{format_age, DbPlan, Outcome, RecoveryPlan};
use crate::recovery::ports::PortMove;
pub use crate::recovery::run::ClearedPath;
use crate::recovery::run::{self, RecoverOutcome, RecoverRequest};

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
            } => from_files(ctx, db, counts_only, allow_stale).await,
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

async fn from_files(
    ctx: &Context,
    given: DbRef,
    counts_only: bool,
    allow_stale: bool,
) -> Result<Reply, CommandError> {
    let (lock, cluster) = ctx.lock_cluster()?;
    let id = given.resolve(&cluster)?.id;
    let server = ctx.redis_server.as_deref();
    let progress = &*ctx.progress;
    Reply::of(
        &from_files::from_files(
            &lock,
            &cluster,
            id,
            server,
            counts_only,
            allow_stale,
            progress,
        )
        .await?,
    )
}

impl Render for Filled {
    fn render(&self, text: &mut Text) {
        for m in &self.masters {
            text.line(format!(
                "db:{} `{}`: redis:{} filled from {} `{}`: {} keys",
                self.id,
                self.name,
                m.shard,
                m.source.kind,
                m.source.path.display(),
                m.keys
            ));
        }
        for p in &self.proofs {
            text.line(p.clone());
        }
    }
}

async fn list(ctx: &Context) -> Result<Reply, CommandError> {
    // Probed without the lock; locked only to record what answered.
    let adopted = match run::live_answers(&ctx.cluster()?).await? {
        Some(answers) => {
            let (lock, mut cluster) = ctx.lock_cluster()?;
            run::adopt(&lock, &mut cluster, &answers)?
        }
        None => Vec::new(),
    };
    let cluster = ctx.cluster()?;
    let ids = run::pending(&cluster);
    if ids.is_empty() {
        let mut report = PlanReport::new(RecoveryPlan::default());
        report.adopted = adopted;
        report.down = run::down(&cluster);
        return Reply::of(&report);
    }
    let plan = run::plan(&cluster, &ids, ctx.redis_server.as_deref(), &*ctx.progress).await?;
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
            db.kind.clone(),
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
                let damaged = if source.damaged_values.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; WARNING: it holds damaged values, which load (UNLINK each before \
                         clients read it): {}",
                        source.damaged_values.join(", ")
                    )
                };
                lines.push(format!(
                    "{head}: ready: {}{} `{}`{copy}, {keys} keys, {} old{}{damaged}",
                    source.kind,
                    if source.replay { " to replay" } else { "" },
                    source.path.display(),
                    format_age(source.age_secs(now)),
                    if source.loaded_before {
                        " (the very files the last recovery or restore loaded)"
                    } else {
                        ""
                    }
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
        for note in &s.notes {
            lines.push(format!("    note: {note}"));
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
    let (db, port) = match &which {
        Some((r, port)) => (Some(r.resolve(&cluster)?.id), *port),
        None => (None, None),
    };
    let req = RecoverRequest {
        db,
        port,
        free_port: allow.free_port,
        only_configuration,
        proof: if counts_only {
            Proof::Counts
        } else {
            Proof::Content
        },
        replay,
        allow_empty: allow.empty,
        allow_stale: allow.stale,
        redis_server: ctx.redis_server.clone(),
    };
    let outcome = run::recover(&lock, &mut cluster, req, &*ctx.progress, &ctx.cancel).await?;
    let (adopted, moved, run) = match outcome {
        RecoverOutcome::Adopted(a) => {
            let lines = vec![a.line()];
            return Reply::of(&NothingRecovered::new(vec![a], lines));
        }
        RecoverOutcome::AlreadyActive { id, name } => {
            let line = format!("db:{id} `{name}` is already active: nothing to recover");
            return Reply::of(&NothingRecovered::new(Vec::new(), vec![line]));
        }
        RecoverOutcome::NothingPending { adopted, down } => {
            let mut lines: Vec<String> = adopted.iter().map(Adopted::line).collect();
            lines.push(NOTHING_PENDING.to_string());
            lines.extend(down_hint(&down));
            return Reply::of(&NothingRecovered::new(adopted, lines));
        }
        RecoverOutcome::Ran {
            adopted,
            moved,
            run,
        } => (adopted, moved, run),
    };
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
    let (mut report, offers) = report_of(adopted, moved, run, &retry);
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

/// `recover all`, `recover db` when nothing was recovered (nothing pending, the database
/// already active, or found running and adopted): the report's shape with its lists
/// empty, so a script reads one shape whatever happened; the lines say why.
#[derive(Serialize)]
struct NothingRecovered {
    moved: Vec<String>,
    adopted: Vec<Adopted>,
    recovered: Vec<Recovered>,
    failed: Vec<FailedDb>,
    cleared: Vec<ClearedPath>,
    #[serde(skip)]
    lines: Vec<String>,
}

impl NothingRecovered {
    fn new(adopted: Vec<Adopted>, lines: Vec<String>) -> NothingRecovered {
        NothingRecovered {
            moved: Vec::new(),
            adopted,
            recovered: Vec::new(),
            failed: Vec::new(),
            cleared: Vec::new(),
            lines,
        }
    }
}

impl Render for NothingRecovered {
    fn render(&self, text: &mut Text) {
        for line in &self.lines {
            text.line(line.clone());
        }
    }
}

/// The report of a run, and the offers to move a database off ports another program
/// holds (the command `retry` with `free_port` for it).
fn report_of(
    adopted: Vec<Adopted>,
    moved: Vec<String>,
    run: run::RecoverRun,
    retry: &RecoverCommand,
) -> (RecoverReport, Vec<(String, String)>) {
    let mut report = RecoverReport {
        adopted,
        moved,
        recovered: Vec::new(),
        failed: Vec::new(),
        names: run
            .outcomes
            .iter()
            .map(|o| (o.id, o.name.clone()))
            .collect(),
        elapsed: run.elapsed,
        cleared: run.cleared,
    };
    let mut offers = Vec::new();
    for o in run.outcomes {
        let e = match o.result {
            Ok(r) => {
                report.recovered.push(r);
                continue;
            }
            Err(e) => CommandError::from(e),
        };
        let mut reason = e.message().to_string();
        if !o.taken.is_empty() {
            // Another program holds a stored port: recovery never touches it, and
            // moves the database only when the operator says so.
            let quoted = crate::lang::quote(&o.name);
            // The port probe says so, not the error's words.
            let held: Vec<String> = o
                .taken
                .iter()
                .map(|m| format!("{} of redis:{}", m.held_text(), m.shard))
                .collect();
            reason.push_str(&format!("; another program holds {}", held.join(", ")));
            // `port <n>` moves the endpoint shard alone: offered only when it is the one.
            if o.taken.iter().all(|m| m.endpoint) {
                reason.push_str(&format!(
                    "; move the database with `recover db {quoted} port <free port>`, or let Lazarus pick a free one: `recover db {quoted} free_port`"
                ));
            } else {
                reason.push_str(&format!(
                    "; move {} to a free port of its node: `recover db {quoted} free_port`",
                    if o.taken.len() == 1 {
                        "that shard"
                    } else {
                        "each such shard"
                    },
                ));
            }
            if let Some(offer) = port_offer(o.id, &o.name, &o.taken, retry) {
                offers.push(offer);
            }
        }
        report.failed.push(FailedDb {
            id: o.id,
            name: o.name,
            reason,
            kind: e.kind(),
        })
    }
    (report, offers)
}

/// `recover all`, `recover db`: what came back and what did not.
#[derive(Serialize)]
pub struct RecoverReport {
    /// Endpoints moved before the recovery (`port`), each as a line.
    pub moved: Vec<String>,
    /// Databases found live and adopted instead of recovered.
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
    // A master that took its replica's copy (its own files set aside, or older): said
    // here as `recover list` said it.
    let copies: Vec<String> = r
        .sources
        .iter()
        .filter(|(master, s)| s.from_shard != *master)
        .map(|(master, s)| format!("redis:{master} from replica redis:{}'s copy", s.from_shard))
        .collect();
    if !copies.is_empty() {
        text.push_str(&format!("; {}", copies.join(", ")));
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
    if !r.damaged_values.is_empty() {
        text.push_str(&format!(
            "; WARNING: loaded with damaged values (the server does not look inside values \
             while loading; a client read of one stops it): UNLINK each before clients \
             read them, then write each again from another source: {}",
            r.damaged_values.join("; ")
        ));
    }
    if !r.empty.is_empty() {
        let shards: Vec<String> = r.empty.iter().map(|s| format!("redis:{s}")).collect();
        text.push_str(&format!(
            "; WARNING: came back EMPTY for {}: no files were found for it",
            shards.join(", ")
        ));
    }
    if r.linked {
        text.push_str(
            "; its files are hard links to the recovery path's (no copy) until its next \
             save or AOF rewrite: change the originals only by deleting them",
        );
    }
    if let Some(src) = &r.sync_source {
        text.push_str(&format!("; follows `{}` again", src.endpoint));
        if !src.answers {
            text.push_str(" (it does not answer yet)");
        }
    }
    text
}

/// The question the interactive shell asks before moving db `id` off ports another
/// program holds, and the command it runs on `yes`: `template` with `free_port`, for
/// this database. None when no free port is left to offer.
fn port_offer(
    id: Id,
    name: &str,
    taken: &[PortMove],
    template: &RecoverCommand,
) -> Option<(String, String)> {
    let moves = taken
        .iter()
        .map(|m| {
            m.to.map(|to| format!("redis:{} from port {} to port {to}", m.shard, m.from))
        })
        .collect::<Option<Vec<String>>>()?;
    let mut command = template.clone();
    if let RecoverCommand::Db { db: which, .. } = &mut command {
        *which = DbRef::Name(name.to_string());
    }
    Some((
        format!(
            "db:{id} `{name}`: another program holds {}; move {} and recover it again?",
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
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
