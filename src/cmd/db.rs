//! `create db`, `delete db`, `restart db`: databases as live redis-server shards.

use std::fmt;

use serde::Serialize;

use super::{
    Command, CommandError, CommandSyntax, Context, Element, Match, Opt, ParseError, Render, Reply,
    Text, ValueKind,
};
use crate::ccs::{Cluster, DbConfig, Id, Persistence};
use crate::db::{self, CreateDb, DeleteOutcome, MAX_SHARDS};
use crate::lang::{quote, DbRef, HostPort};

pub use super::db_view::{DbView, ShardView};
use crate::secret::Secret;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbCommand {
    Create(CreateDbArgs),
    /// `delete db <db> [purge]`
    Delete {
        db: DbRef,
        purge: bool,
    },
    /// `restart db <db>...`
    Restart {
        dbs: Vec<DbRef>,
    },
    /// `restart all`: every active database with a shard not running.
    RestartAll,
}

/// `create db <name> [shards <n>] [replication enabled|disabled] [persistence ...]
/// [memory <size>] [port <n>] [password <pw>] [sync_source <host:port>]
/// [tls enabled|disabled] [tls_auth_clients required|optional]`: `None` for what the
/// line left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateDbArgs {
    pub name: String,
    pub shards: Option<u32>,
    pub replication: Option<bool>,
    pub persistence: Option<Persistence>,
    pub memory: Option<u64>,
    pub port: Option<u16>,
    pub password: Option<Secret>,
    pub sync_source: Option<HostPort>,
    pub tls: Option<bool>,
    /// `tls_auth_clients optional`: `Some(true)`; `required`: `Some(false)`.
    pub tls_auth_clients_optional: Option<bool>,
}

impl CreateDbArgs {
    /// The database's configuration, defaults filled in: TLS when the cluster has TLS
    /// material (`cluster_tls`) and the line does not say otherwise.
    fn config(&self, cluster_tls: bool) -> DbConfig {
        DbConfig {
            name: self.name.clone(),
            shards: self.shards.unwrap_or(1),
            replication: self.replication.unwrap_or(false),
            persistence: self.persistence.unwrap_or(Persistence::Aof),
            memory: self.memory,
            password: self.password.as_ref().map(|pw| pw.expose().to_string()),
            sync_source: self.sync_source.clone(),
            tls: self.tls.unwrap_or(cluster_tls),
            tls_auth_clients_optional: self.tls_auth_clients_optional.unwrap_or(false),
        }
    }
}

const ENABLED: &[&str] = &["enabled", "disabled"];
const AUTH_CLIENTS: &[&str] = &["required", "optional"];
const PERSISTENCE: &[&str] = &["aof", "snapshot", "disabled"];

pub static SYNTAX: &[CommandSyntax] = &[
    CommandSyntax {
        elements: &[
            Element::Keyword("create"),
            Element::Keyword("db"),
            Element::Arg("name", ValueKind::DbName),
            Element::Options(&[
                Opt::optional("shards", "n", ValueKind::Integer),
                Opt::optional("replication", "mode", ValueKind::Choice(ENABLED)),
                Opt::optional("persistence", "policy", ValueKind::Choice(PERSISTENCE)),
                Opt::optional("memory", "size", ValueKind::Size),
                Opt::optional("port", "n", ValueKind::Port),
                Opt::optional("password", "pw", ValueKind::Secret),
                Opt::optional("sync_source", "host:port", ValueKind::HostPort),
                Opt::optional("tls", "mode", ValueKind::Choice(ENABLED)),
                Opt::optional("tls_auth_clients", "mode", ValueKind::Choice(AUTH_CLIENTS)),
            ]),
        ],
        summary: "create a database: start its shards and print its endpoint",
        examples: &[
            "create db cache",
            "create db orders shards 3 persistence snapshot memory 1gb",
            "create db sessions replication enabled persistence aof port 31000",
            "create db mirror sync_source 127.0.0.1:30000 persistence disabled",
            "create db secure shards 3 tls enabled",
            "create db public tls enabled tls_auth_clients optional",
        ],
        build: build_create,
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("delete"),
            Element::Keyword("db"),
            Element::Arg("db", ValueKind::Database),
            Element::Options(&[Opt::flag("purge")]),
        ],
        summary: "stop a database's shards and remove it; `purge` also deletes its data",
        examples: &["delete db cache", "delete db db:3 purge"],
        build: |m| {
            Ok(Command::Db(DbCommand::Delete {
                db: m.req("db")?,
                purge: m.has("purge"),
            }))
        },
    },
    CommandSyntax {
        elements: &[
            Element::Keyword("restart"),
            Element::Keyword("db"),
            Element::Args("db", ValueKind::Database),
        ],
        summary: "restart databases' shards with the data their persistence kept",
        examples: &["restart db cache", "restart db db:3", "restart db cache orders db:7"],
        build: |m| Ok(Command::Db(DbCommand::Restart { dbs: m.all("db") })),
    },
    CommandSyntax {
        elements: &[Element::Keyword("restart"), Element::Keyword("all")],
        summary: "start every database with a shard down (after a power loss), from the data its persistence kept; running ones are left alone",
        examples: &["restart all"],
        build: |_| Ok(Command::Db(DbCommand::RestartAll)),
    },
];

fn build_create(m: &Match) -> Result<Command, ParseError> {
    let name: String = m.req("name")?;
    if let Some(given) = m.opt::<u64>("memory").filter(|m| *m < db::MIN_MEMORY) {
        return Err(ParseError::new(
            m.span_of("memory"),
            db::memory_too_small(given),
        ));
    }
    let shards = match m.opt::<u64>("shards") {
        Some(n) if n == 0 || n > u64::from(MAX_SHARDS) => {
            return Err(ParseError::new(
                m.span_of("shards"),
                format!("`shards` must be between 1 and {MAX_SHARDS}"),
            ))
        }
        n => n.map(|n| n as u32),
    };
    let tls = m.opt::<&str>("tls").map(|t| t == "enabled");
    let tls_auth_clients_optional = m.opt::<&str>("tls_auth_clients").map(|a| a == "optional");
    if tls == Some(false) && tls_auth_clients_optional.is_some() {
        return Err(ParseError::new(
            m.span_of("tls_auth_clients"),
            "`tls_auth_clients` is for a TLS database, and this one has `tls disabled`".into(),
        ));
    }
    let persistence = m.opt::<&str>("persistence").map(|p| match p {
        "aof" => Persistence::Aof,
        "snapshot" => Persistence::Snapshot,
        _ => Persistence::Disabled,
    });
    Ok(Command::Db(DbCommand::Create(CreateDbArgs {
        name,
        shards,
        replication: m.opt::<&str>("replication").map(|r| r == "enabled"),
        persistence,
        memory: m.opt("memory"),
        port: m.opt("port"),
        password: m.opt("password"),
        sync_source: m.opt("sync_source"),
        tls,
        tls_auth_clients_optional,
    })))
}

/// `create db`: the database made.
#[derive(Serialize)]
#[serde(transparent)]
pub struct DbCreated(pub DbView);

impl Render for DbCreated {
    fn render(&self, text: &mut Text) {
        let d = &self.0;
        text.line(format!(
            "Created db:{} `{}`: {} shard{}{}, persistence {}. Endpoint: {}",
            d.id,
            d.name,
            d.shard_count,
            plural(d.shard_count as usize),
            if d.replication { " with replicas" } else { "" },
            d.persistence,
            d.endpoint
        ));
    }
}

/// `restart db`: the database running again.
#[derive(Serialize)]
#[serde(transparent)]
pub struct DbRestarted(pub DbView);

impl Render for DbRestarted {
    fn render(&self, text: &mut Text) {
        let d = &self.0;
        text.line(format!(
            "Restarted db:{} `{}`: {} shard{} running. Endpoint: {}",
            d.id,
            d.name,
            d.shards.len(),
            plural(d.shards.len()),
            d.endpoint
        ));
    }
}

/// `delete db`.
impl Render for DeleteOutcome {
    fn render(&self, text: &mut Text) {
        text.line(format!(
            "Deleted db:{} `{}`: stopped {} shard{}.",
            self.id,
            self.name,
            self.stopped,
            plural(self.stopped)
        ));
        for dir in &self.purged {
            text.line(format!("Removed `{}`.", dir.display()));
        }
        for dir in &self.kept {
            text.line(format!(
                "Kept its data in `{}` (use `purge` to delete it).",
                dir.display()
            ));
        }
    }
}

/// `""` for one, `"s"` for any other count.
fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

impl DbCommand {
    pub async fn apply(self, ctx: &Context) -> Result<Reply, CommandError> {
        match self {
            DbCommand::Create(args) => create(ctx, args).await,
            DbCommand::Delete { db, purge } => delete(ctx, &db, purge).await,
            DbCommand::Restart { dbs } if dbs.len() == 1 => restart(ctx, &dbs[0]).await,
            DbCommand::Restart { dbs } => super::restart::several(ctx, Some(&dbs)).await,
            DbCommand::RestartAll => super::restart::several(ctx, None).await,
        }
    }
}

async fn create(ctx: &Context, args: CreateDbArgs) -> Result<Reply, CommandError> {
    let (lock, mut cluster, created) = ctx.lock_or_default_cluster()?;
    let req = CreateDb {
        config: args.config(cluster.tls.is_some()),
        port: args.port,
    };
    let id = db::service::create(
        &lock,
        &mut cluster,
        ctx.redis_server.as_deref(),
        req,
        &*ctx.progress,
        &ctx.cancel,
    )
    .await?;
    let d = &cluster.databases[&id];
    Ok(Reply::of(&DbCreated(DbView::new(&cluster, d)))?.note(created))
}

async fn delete(ctx: &Context, r: &DbRef, purge: bool) -> Result<Reply, CommandError> {
    let (lock, mut cluster) = ctx.lock_cluster()?;
    let id = r.resolve(&cluster)?.id;
    refuse_busy(ctx, &cluster, id)?;
    Reply::of(&db::service::delete(&lock, &mut cluster, id, purge).await?)
}

async fn restart(ctx: &Context, r: &DbRef) -> Result<Reply, CommandError> {
    let (lock, mut cluster) = ctx.lock_cluster()?;
    let id = r.resolve(&cluster)?.id;
    refuse_busy(ctx, &cluster, id)?;
    let server = ctx.redis_server.as_deref();
    let id = db::service::restart(&lock, &mut cluster, server, id, &*ctx.progress).await?;
    Reply::of(&DbRestarted(DbView::new(&cluster, &cluster.databases[&id])))
}

/// The refusal of db `id` when another shell is busy with it ([`super::restart::busy`]): stopping its
/// shards would pull them from under a restore, or break a backup run off (`broken
/// pipe`, naming no delete or restart).
fn refuse_busy(ctx: &Context, cluster: &Cluster, id: Id) -> Result<(), db::DbError> {
    match super::restart::busy(ctx, cluster).remove(&id) {
        Some(busy) => Err(busy.refusal(id, cluster.databases[&id].config.name.clone())),
        None => Ok(()),
    }
}

impl fmt::Display for DbCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbCommand::Create(args) => args.fmt(f),
            DbCommand::Delete { db, purge } => {
                write!(f, "delete db {db}")?;
                if *purge {
                    f.write_str(" purge")?;
                }
                Ok(())
            }
            DbCommand::Restart { dbs } => {
                f.write_str("restart db")?;
                for db in dbs {
                    write!(f, " {db}")?;
                }
                Ok(())
            }
            DbCommand::RestartAll => f.write_str("restart all"),
        }
    }
}

impl fmt::Display for CreateDbArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "create db {}", quote(&self.name))?;
        if let Some(n) = self.shards {
            write!(f, " shards {n}")?;
        }
        if let Some(r) = self.replication {
            let mode = if r { "enabled" } else { "disabled" };
            write!(f, " replication {mode}")?;
        }
        if let Some(p) = self.persistence {
            write!(f, " persistence {p}")?;
        }
        if let Some(m) = self.memory {
            write!(f, " memory {m}")?;
        }
        if let Some(p) = self.port {
            write!(f, " port {p}")?;
        }
        // Prints `***`: canonical text is shown and stored, never the password.
        if let Some(pw) = &self.password {
            write!(f, " password {pw}")?;
        }
        if let Some(s) = &self.sync_source {
            write!(f, " sync_source {s}")?;
        }
        if let Some(t) = self.tls {
            write!(f, " tls {}", if t { "enabled" } else { "disabled" })?;
        }
        if let Some(o) = self.tls_auth_clients_optional {
            let mode = if o { "optional" } else { "required" };
            write!(f, " tls_auth_clients {mode}")?;
        }
        Ok(())
    }
}
