//! Commands: one file per family, each owning its AST, its registry entries, its builder
//! and its `apply`; [`Command`] dispatches with one exhaustive match.
//!
//! # Adding a command
//! 1. In the family's file (`src/cmd/<family>.rs`, new or existing), add the AST: an enum
//!    variant or struct with `Display` printing canonical command text (what the parser
//!    accepts back), and `PartialEq` for the round-trip tests.
//! 2. Add a [`Syntax`] to the family's `pub static SYNTAX: &[CommandSyntax]`: its
//!    `elements` (keywords, `Arg`s with a [`ValueKind`], `Choice`s, `Options` of
//!    `key value` pairs and flags), a one-line `summary`, `examples` (each is parsed and
//!    round-tripped by `tests/grammar.rs`), and `build`, a `fn(&Match) -> Result<Command,
//!    ParseError>` reading values with `m.req::<T>("key")`, `m.opt`, `m.all`, `m.has`.
//!    Within the registry the first syntax that takes a whole line wins, so put a more
//!    specific form before a general one.
//! 3. New family: add its variant to [`Command`], its arms to `apply` and `Display` below,
//!    and its `SYNTAX` to [`registry`]. Nothing else: `help`, hints, REPL and shell
//!    completion read the registry.
//! 4. `apply(self, ctx: &Context) -> Result<Reply, CommandError>` (async) does the work:
//!    read with `ctx.cluster()`, change with `ctx.lock_cluster()` /
//!    `ctx.lock_or_default_cluster()` then `lock.save(&mut cluster)`; validate everything
//!    before the first change. Return `Reply::of(&result)`: `result` is the command's
//!    own `#[derive(Serialize)]` type (the `--json` `result`) implementing [`Render`] (the
//!    lines and tables people read), so text and JSON come from one value; add its
//!    snapshot to `render_tests.rs`. Never print, never put a secret in a reply (a
//!    password is a [`crate::secret::Secret`] in the AST: it prints as `***`). Long work
//!    reports through `ctx.progress`; errors are [`CommandError`]s of a kind.
//! 5. Add the new lines to `grammar/examples.txt` (valid and invalid) and the form to
//!    `grammar/lazarus.ebnf`.

pub mod backup;
pub mod check;
pub mod cluster;
mod context;
pub mod db;
pub mod db_view;
pub mod help;
pub mod info;
pub mod node;
pub mod recover;
#[cfg(test)]
pub(crate) mod render_tests;
mod reply;
pub mod restart;
pub mod restore;
pub mod status;
pub mod verify;

use std::fmt;
use std::sync::OnceLock;

pub use crate::progress::{NoProgress, Progress, ProgressTask};
pub use context::Context;
pub(crate) use reply::fill_missing;
pub use reply::{Block, Offer, Render, Reply, Table, Text};

use crate::error::{DomainError, ErrorKind};
pub use crate::lang::matcher::Match;
pub use crate::lang::syntax::{Element, Opt};
use crate::lang::Syntax;
pub use crate::lang::{ParseError, ValueKind};

/// A registry entry producing a [`Command`].
pub type CommandSyntax = Syntax<Command>;

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Cluster(cluster::ClusterCommand),
    Node(node::NodeCommand),
    Recover(recover::RecoverCommand),
    Info(info::InfoCommand),
    Db(db::DbCommand),
    Status(status::StatusCommand),
    Check(check::CheckCommand),
    Verify(verify::VerifyCommand),
    Backup(backup::BackupCommand),
    Restore(restore::RestoreCommand),
    Help(help::HelpCommand),
    Exit,
}

/// Why a command failed: its [`ErrorKind`] (which decides the exit status and the JSON
/// `kind`), the message (what was wrong, naming the wrong thing), and hints (next steps
/// the message suggests). One `From` per layer's error chooses the kind; a command's own
/// refusals use the kind constructors ([`CommandError::conflict`], ...), with
/// [`CommandError::hinted`] for a next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandError {
    kind: ErrorKind,
    message: String,
    hints: Vec<String>,
}

impl CommandError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> CommandError {
        CommandError {
            kind,
            message: message.into(),
            hints: Vec::new(),
        }
    }

    pub fn usage(message: impl Into<String>) -> CommandError {
        CommandError::new(ErrorKind::Usage, message)
    }

    pub fn not_found(message: impl Into<String>) -> CommandError {
        CommandError::new(ErrorKind::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> CommandError {
        CommandError::new(ErrorKind::Conflict, message)
    }

    pub fn unavailable(message: impl Into<String>) -> CommandError {
        CommandError::new(ErrorKind::Unavailable, message)
    }

    pub fn damaged(message: impl Into<String>) -> CommandError {
        CommandError::new(ErrorKind::Damaged, message)
    }

    pub fn io(message: impl Into<String>) -> CommandError {
        CommandError::new(ErrorKind::Io, message)
    }

    pub fn internal(message: impl Into<String>) -> CommandError {
        CommandError::new(ErrorKind::Internal, message)
    }

    /// `this home has no cluster yet: make one with ...`.
    pub fn no_cluster() -> CommandError {
        crate::ccs::StoreError::NoCluster.into()
    }

    /// Adds a next step. The message should already say it in its own words; the hint is
    /// that step alone, for scripts.
    pub fn hinted(mut self, hint: impl Into<String>) -> CommandError {
        self.hints.push(hint.into());
        self
    }

    /// The same error with `context: ` before its message (kind and hints kept).
    pub fn context(mut self, context: impl fmt::Display) -> CommandError {
        self.message = format!("{context}: {}", self.message);
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn hints(&self) -> &[String] {
        &self.hints
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CommandError {}

/// Every layer's error becomes a command error of its own kind, with its hints.
impl<E: DomainError> From<E> for CommandError {
    fn from(e: E) -> CommandError {
        CommandError {
            kind: e.kind(),
            message: e.to_string(),
            hints: e.hints(),
        }
    }
}

/// Every command form, in matching order.
pub fn registry() -> &'static [&'static CommandSyntax] {
    static REGISTRY: OnceLock<Vec<&'static CommandSyntax>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        [
            cluster::SYNTAX,
            node::SYNTAX,
            recover::SYNTAX,
            info::SYNTAX,
            db::SYNTAX,
            status::SYNTAX,
            check::SYNTAX,
            verify::SYNTAX,
            backup::SYNTAX,
            restore::SYNTAX,
            help::SYNTAX,
        ]
        .into_iter()
        .flatten()
        .collect()
    })
}

/// Parses one line; `Ok(None)` for a blank one.
pub fn parse(line: &str) -> Result<Option<Command>, ParseError> {
    crate::lang::parse(registry(), line)
}

impl Command {
    pub async fn apply(self, ctx: &Context) -> Result<Reply, CommandError> {
        match self {
            Command::Cluster(c) => c.apply(ctx).await,
            Command::Node(c) => c.apply(ctx).await,
            Command::Recover(c) => c.apply(ctx).await,
            Command::Info(c) => c.apply(ctx).await,
            Command::Db(c) => c.apply(ctx).await,
            Command::Status(c) => c.apply(ctx).await,
            Command::Check(c) => c.apply(ctx).await,
            Command::Verify(c) => c.apply(ctx).await,
            Command::Backup(c) => c.apply(ctx).await,
            Command::Restore(c) => c.apply(ctx).await,
            Command::Help(c) => c.apply(ctx).await,
            Command::Exit => Ok(Reply::exit()),
        }
    }
}

impl Command {
    /// What the first Ctrl-C does to this command, in the words the shell tells the
    /// operator. It trips the command's cancel signal ([`Context::cancel`]), which only
    /// `create db` (rolled back), a recovery (stopped database by database) and a restore
    /// recreating its database look at; every other command runs to its end by design,
    /// and saying it stops would be untrue.
    pub fn on_interrupt(&self) -> String {
        let text = self.to_string();
        match self {
            Command::Db(db::DbCommand::Create(_)) => format!(
                "`{text}` stops at its next step and removes what it started (Ctrl-C again quits at once)"
            ),
            Command::Recover(recover::RecoverCommand::All { .. } | recover::RecoverCommand::Db { .. }) => format!(
                "`{text}` stops each database where it is: those not back stay pending recovery, and running it again resumes (Ctrl-C again quits at once)"
            ),
            Command::Restore(
                restore::RestoreCommand::Start { .. } | restore::RestoreCommand::Retry { .. },
            ) => format!(
                "`{text}` stops only while it creates a database that no longer exists; once it replaces data it does not stop part-way and runs to its end, putting the old data back if a step fails (Ctrl-C again quits at once: `restore task retry` then resumes)"
            ),
            _ => format!(
                "`{text}` does not stop part-way: it runs to its end (Ctrl-C again quits at once, leaving it where it is)"
            ),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Cluster(c) => c.fmt(f),
            Command::Node(c) => c.fmt(f),
            Command::Recover(c) => c.fmt(f),
            Command::Info(c) => c.fmt(f),
            Command::Db(c) => c.fmt(f),
            Command::Status(c) => c.fmt(f),
            Command::Check(c) => c.fmt(f),
            Command::Verify(c) => c.fmt(f),
            Command::Backup(c) => c.fmt(f),
            Command::Restore(c) => c.fmt(f),
            Command::Help(c) => c.fmt(f),
            Command::Exit => f.write_str("exit"),
        }
    }
}

/// `there is no node:7 (nodes: 1, 2)`.
pub(crate) fn no_such_node(cluster: &crate::ccs::Cluster, id: crate::ccs::Id) -> CommandError {
    let ids: Vec<String> = cluster.nodes.keys().map(|id| id.to_string()).collect();
    CommandError::not_found(format!("there is no node:{id} (nodes: {})", ids.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::registry;
    use crate::lang::{complete, hint, ParseError};

    /// Comments are whole lines; after a command a `#` word is a value (a password
    /// included, hidden as any) or an error naming it.
    #[test]
    fn comments_are_whole_lines_and_hash_words_are_values() {
        for line in [
            "# note",
            "   # indented",
            "#",
            "# don't: an odd quote is fine",
        ] {
            assert_eq!(super::parse(line).unwrap(), None, "{line}");
        }
        let db = super::parse("create db vault password #s3cr#t")
            .unwrap()
            .unwrap();
        let super::Command::Db(super::db::DbCommand::Create(args)) = &db else {
            panic!("{db:?}")
        };
        assert_eq!(args.password.as_ref().unwrap().expose(), "#s3cr#t");
        assert_eq!(db.to_string(), "create db vault password ***");
        let e = super::parse("status # all good").unwrap_err();
        assert_eq!(e.span, 7..8);
        assert!(
            e.message.contains("a comment takes a whole line"),
            "{}",
            e.message
        );
    }

    /// Ctrl-C's message says what is true of each command: only those that look at
    /// the cancel signal say they stop.
    #[test]
    fn the_interrupt_message_says_whether_the_command_stops() {
        let on = |line: &str| super::parse(line).unwrap().unwrap().on_interrupt();
        assert_eq!(
            on("restart db orders"),
            "`restart db orders` does not stop part-way: it runs to its end (Ctrl-C again quits at once, leaving it where it is)"
        );
        for line in [
            "restart all",
            "delete db orders",
            "status",
            "backup db orders path /b",
        ] {
            assert!(on(line).contains("does not stop part-way"), "{line}");
        }
        assert!(on("create db x password hunter2").starts_with(
            "`create db x password ***` stops at its next step and removes what it started"
        ));
        for line in ["recover all", "recover db orders"] {
            assert!(
                on(line).contains("stops each database where it is"),
                "{line}"
            );
        }
        assert!(on("recover db orders from_files").contains("does not stop part-way"));
        assert!(on("restore task start t").contains("stops only while it creates a database"));
    }

    #[test]
    fn hints_say_what_the_command_still_needs() {
        let h = |line: &str| hint(registry(), line, line.len());
        assert_eq!(
            h("node add ").as_deref(),
            Some("addr <ip> persistent_path <path> [...]")
        );
        assert_eq!(h("node ad").as_deref(), Some("d"));
        assert_eq!(h("info cluster"), None);
        assert_eq!(
            h("node 2").as_deref(),
            Some(" redis_server | port_range | remove | recovery_path")
        );
        // `recover db orders` runs as typed: `from_files` is one way on, not a need.
        assert_eq!(
            h("recover db orders ").as_deref(),
            Some("from_files | [...]")
        );
        assert_eq!(
            h("recover db ").as_deref(),
            Some("only_configuration | <db>")
        );
    }

    #[test]
    fn completion_offers_node_ids_from_the_cluster() {
        let cluster = crate::ccs::default_local_cluster(std::path::Path::new("/h"));
        let c = |line: &str| complete(registry(), Some(&cluster), line, line.len()).candidates;
        assert!(c("info node ").contains(&"1".to_string()));
        assert_eq!(c("info node n"), ["node:1"]);
        // In the middle of a line: only what is before the cursor counts.
        let line = "info clu node";
        assert_eq!(complete(registry(), None, line, 8).candidates, ["cluster"]);
    }

    #[test]
    fn completion_offers_databases_from_the_cluster() {
        use crate::ccs::fixtures::{database, db_config};
        let mut cluster = crate::ccs::default_local_cluster(std::path::Path::new("/h"));
        for (id, name) in [(7, "orders"), (9, "cache")] {
            let db = database(id, db_config(name, 1, false), 30000, Vec::new());
            cluster.databases.insert(id, db);
        }
        let c = |line: &str| complete(registry(), Some(&cluster), line, line.len()).candidates;
        assert_eq!(c("delete db o"), ["orders"]);
        assert_eq!(c("restart db db:"), ["db:7", "db:9"]);
        assert!(c("delete db ").contains(&"cache".to_string()));
        // Several at once: one already named is not offered again.
        let line = "restore task create name t backup latest db orders,";
        assert_eq!(c(line), ["orders,cache"]);
    }

    #[test]
    fn completion_offers_the_clusters_backup_and_restore_tasks() {
        let mut cluster = crate::ccs::default_local_cluster(std::path::Path::new("/h"));
        for name in ["nightly", "hourly"] {
            let task = serde_json::from_value(serde_json::json!({
                "name": name, "db": 3, "path": "/repo", "max_pause_ms": 1000, "created": 0,
            }))
            .unwrap();
            cluster.backups.tasks.insert(name.into(), task);
        }
        for (name, group) in [
            ("back", None),
            ("all-orders", Some("all")),
            ("all-cache", Some("all")),
        ] {
            let task = serde_json::from_value(serde_json::json!({
                "name": name, "db": "orders", "run": "r1", "path": "/repo",
                "state": "created", "created": 0, "group": group,
            }))
            .unwrap();
            cluster.backups.restores.insert(name.into(), task);
        }
        let c = |line: &str| complete(registry(), Some(&cluster), line, line.len()).candidates;
        assert_eq!(c("backup task run "), ["hourly", "nightly"]);
        assert_eq!(c("backup task delete n"), ["nightly"]);
        // A group is named as its tasks are.
        assert_eq!(
            c("restore task start "),
            ["all", "all-cache", "all-orders", "back"]
        );
        assert_eq!(c("restore task delete b"), ["back"]);
        // A new task's name is the operator's: nothing offered.
        assert!(c("backup task create name ").is_empty());
    }

    #[test]
    fn completion_offers_latest_and_the_clusters_runs() {
        use crate::ccs::RunStatus;
        let mut cluster = crate::ccs::default_local_cluster(std::path::Path::new("/h"));
        let run = crate::ccs::fixtures::backup_run;
        cluster.backups.runs = vec![
            run("20261204-035012-17", 1, RunStatus::Succeeded),
            run("20261205-035012-18", 2, RunStatus::Failed),
            run("20261206-035012-19", 3, RunStatus::Succeeded),
        ];
        let c = |line: &str| complete(registry(), Some(&cluster), line, line.len()).candidates;
        // Newest first; a failed run is no restore point.
        assert_eq!(
            c("backup show "),
            ["latest", "20261206-035012-19", "20261204-035012-17"]
        );
        assert_eq!(
            c("restore task create name t db d backup 20261204"),
            ["20261204-035012-17"]
        );
        assert_eq!(
            c("restore task create name t db orders backup la"),
            ["latest"]
        );
    }

    #[test]
    fn a_restore_task_offers_the_databases_own_runs_as_the_create_accepts_them() {
        use crate::ccs::fixtures::{backup_run, database, db_config};
        use crate::ccs::RunStatus;
        let mut cluster = crate::ccs::default_local_cluster(std::path::Path::new("/h"));
        cluster.databases.insert(
            7,
            database(7, db_config("orders", 1, false), 30000, Vec::new()),
        );
        let run = |id: &str, started, db, name: &str| crate::ccs::BackupRun {
            db,
            db_name: name.into(),
            ..backup_run(id, started, RunStatus::Succeeded)
        };
        cluster.backups.runs = vec![
            run("20261204-010000-1", 1, 7, "orders"),
            run("20261204-020000-2", 2, 9, "cache"),
            // The same database under its old name (ids are never reused).
            run("20261204-030000-3", 3, 7, "orders_old"),
            run("20261204-040000-4", 4, 9, "cache"),
        ];
        let c = |line: &str| complete(registry(), Some(&cluster), line, line.len()).candidates;
        let own = ["latest", "20261204-030000-3", "20261204-010000-1"];
        assert_eq!(c("restore task create name t db orders backup "), own);
        assert_eq!(c("restore task create name t db db:7 backup "), own);
        assert_eq!(
            c("restore task create name t db cache backup "),
            ["latest", "20261204-040000-4", "20261204-020000-2"]
        );
        // Another database's runs only as a clone, after its own.
        assert_eq!(
            c("restore task create name t db orders from_other_db backup "),
            [
                "latest",
                "20261204-030000-3",
                "20261204-010000-1",
                "20261204-040000-4",
                "20261204-020000-2"
            ]
        );
        // No single database named yet: every run.
        assert_eq!(c("restore task create name t backup ").len(), 5);
        assert_eq!(c("restore task create name t db all backup ").len(), 5);
    }

    #[test]
    fn canonical_text_never_holds_a_password() {
        let command = super::parse("create db x password \"hunter 2\"")
            .unwrap()
            .unwrap();
        assert_eq!(command.to_string(), "create db x password ***");
        assert!(!format!("{command:?}").contains("hunter"));
        let super::Command::Db(super::db::DbCommand::Create(args)) = command else {
            panic!("not create db")
        };
        assert_eq!(args.password.unwrap().expose(), "hunter 2");
    }

    #[test]
    fn no_such_database_is_worded_once() {
        use crate::lang::DbRef;
        let mut cluster = crate::ccs::default_local_cluster(std::path::Path::new("/h"));
        let err = |c: &crate::ccs::Cluster, r: DbRef| {
            super::CommandError::from(r.resolve(c).unwrap_err())
        };
        assert_eq!(
            err(&cluster, DbRef::Id(9)).to_string(),
            "there is no database `db:9`: the cluster has none"
        );
        use crate::ccs::fixtures::{database, db_config};
        let db = database(3, db_config("orders", 1, false), 30000, Vec::new());
        cluster.databases.insert(3, db);
        let near = err(&cluster, DbRef::Name("ordres".into()));
        assert_eq!(
            near.to_string(),
            "there is no database `ordres`, did you mean `orders`?"
        );
        assert_eq!(near.kind(), crate::error::ErrorKind::NotFound);
        assert_eq!(near.hints(), ["did you mean `orders`?"]);
        assert_eq!(
            err(&cluster, DbRef::Id(9)).to_string(),
            "there is no database `db:9` (databases: db:3 `orders`)"
        );
        assert_eq!(
            DbRef::Id(3).resolve(&cluster).unwrap().config.name,
            "orders"
        );
    }

    #[test]
    fn error_rendering() {
        let line = "node 2 recovery_path sett /x";
        let err: ParseError = super::parse(line).unwrap_err();
        insta::assert_snapshot!(err.render(line), @r"
        unexpected `sett`, expected `set` or `clear`, did you mean `set`?
          node 2 recovery_path sett /x
                               ^^^^
        ");
    }
}
