//! The `backup` commands' typed results: each is the `--json` `result` and renders its
//! own text.

use std::path::PathBuf;

use serde::ser::Error as _;
use serde::{Serialize, Serializer};
use serde_json::{json, Value};

use crate::backup::{format_time, Manifest};
use crate::ccs::{BackupRun, BackupTask, RunStatus};
use crate::cmd::{fill_missing, Render, Table, Text};

use super::Interval;

/// A backup task in JSON: its record, with every field the README documents present
/// (`keep`, `every` and `encrypt` `null` when unset, `compress` always named).
fn task_doc<S: Serializer>(task: &BackupTask, serializer: S) -> Result<S::Ok, S::Error> {
    let mut doc = serde_json::to_value(task).map_err(S::Error::custom)?;
    fill_missing(
        &mut doc,
        &[
            ("keep", Value::Null),
            ("every", Value::Null),
            ("compress", json!(task.compress)),
            ("encrypt", Value::Null),
        ],
    );
    doc.serialize(serializer)
}

/// `backup task create`.
pub struct TaskCreated {
    pub task: BackupTask,
    pub db_name: String,
}

impl Serialize for TaskCreated {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        task_doc(&self.task, serializer)
    }
}

impl Render for TaskCreated {
    fn render(&self, text: &mut Text) {
        text.line(format!(
            "Created backup task `{}`: db:{} `{}` to `{}`.",
            self.task.name,
            self.task.db,
            self.db_name,
            self.task.path.display()
        ));
    }
}

/// A run, with where its files are.
#[derive(Clone)]
pub struct RunView {
    pub run: BackupRun,
    pub run_dir: PathBuf,
}

/// The run's record and `run_dir`, with every field the README documents present (`null`
/// when the record has none: a run of no task, a failed run's figures, a succeeded one's
/// `reason`).
impl Serialize for RunView {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut doc = serde_json::to_value(&self.run).map_err(S::Error::custom)?;
        fill_missing(
            &mut doc,
            &[
                ("task", Value::Null),
                ("run_dir", json!(self.run_dir)),
                ("took_ms", Value::Null),
                ("reason", Value::Null),
                ("server_version", Value::Null),
                ("pause_us", Value::Null),
            ],
        );
        doc.serialize(serializer)
    }
}

impl RunView {
    pub fn new(run: BackupRun) -> RunView {
        RunView {
            run_dir: run.path.join(&run.id),
            run,
        }
    }
}

/// `backup task run`, `backup db`: the run that succeeded.
impl Render for RunView {
    fn render(&self, text: &mut Text) {
        let r = &self.run;
        let pause = r
            .pause_us
            .map(|us| format!(", write pause {:.1} ms", us as f64 / 1000.0))
            .unwrap_or_default();
        text.line(format!(
            "Backup run `{}` of db:{} `{}` succeeded: {} key{}, {} bytes in {:.1}s{pause}, in `{}`.",
            r.id,
            r.db,
            r.db_name,
            r.keys,
            if r.keys == 1 { "" } else { "s" },
            r.bytes,
            r.took_ms.unwrap_or(0) as f64 / 1000.0,
            self.run_dir.display()
        ));
    }
}

#[derive(Serialize)]
pub struct TaskRow {
    #[serde(serialize_with = "task_doc")]
    pub task: BackupTask,
    /// `db:<id> <name>`, or `(deleted)`.
    pub db: String,
    pub last_run: Option<RunView>,
    pub due: bool,
}

/// `backup task list`.
#[derive(Serialize)]
#[serde(transparent)]
pub struct TaskList(pub Vec<TaskRow>);

impl Render for TaskList {
    fn render(&self, text: &mut Text) {
        if self.0.is_empty() {
            text.line("No backup tasks (make one with `backup task create`).");
            return;
        }
        let mut table = Table::new([
            "TASK", "DB", "PATH", "KEEP", "EVERY", "LAST RUN", "STATUS", "DUE",
        ]);
        for row in &self.0 {
            let t = &row.task;
            let last = row.last_run.as_ref().map(|v| &v.run);
            table.row([
                t.name.clone(),
                row.db.clone(),
                t.path.display().to_string(),
                t.keep.map_or("all".into(), |k| k.to_string()),
                t.every
                    .map_or("-".into(), |s| Interval { ms: s * 1000 }.to_string()),
                last.map_or("-".into(), |r| {
                    format!("{} {}", r.id, format_time(r.started))
                }),
                last.map_or("-".into(), |r| r.status.to_string()),
                match (t.every, row.due) {
                    (None, _) => "-".into(),
                    (_, true) => "now".into(),
                    _ => "no".into(),
                },
            ]);
        }
        text.table(table);
    }
}

/// `backup task history`.
#[derive(Serialize)]
#[serde(transparent)]
pub struct History {
    pub runs: Vec<RunView>,
    #[serde(skip)]
    pub task: String,
}

impl Render for History {
    fn render(&self, text: &mut Text) {
        if self.runs.is_empty() {
            text.line(format!("Backup task `{}` has no runs yet.", self.task));
            return;
        }
        let mut table = Table::new([
            "RUN", "STARTED", "TOOK", "STATUS", "KEYS", "BYTES", "SERVER", "PATH",
        ]);
        for v in &self.runs {
            let r = &v.run;
            let status = match &r.reason {
                Some(why) if r.status != RunStatus::Succeeded => format!("{}: {why}", r.status),
                _ => r.status.to_string(),
            };
            table.row([
                r.id.clone(),
                format_time(r.started),
                r.took_ms
                    .map_or("-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
                status,
                r.keys.to_string(),
                r.bytes.to_string(),
                r.server_version.clone().unwrap_or_else(|| "-".into()),
                v.run_dir.display().to_string(),
            ]);
        }
        text.table(table.titled(format!("backup task `{}`", self.task)));
    }
}

/// `backup show`: the manifest as stored, but for its `cluster_id`, a string as in every
/// other document (a bare 64-bit number is rounded by `jq`; the stored manifest keeps
/// the number its checksum covers), with every documented field present.
pub struct ManifestView(pub Manifest);

impl Serialize for ManifestView {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut doc = serde_json::to_value(&self.0).map_err(S::Error::custom)?;
        if let Some(id) = doc.get_mut("cluster_id") {
            *id = Value::String(self.0.cluster_id.to_string());
        }
        // Every documented field, as for every other result: the stored form leaves
        // empty ones out (and must stay as its checksum covers it).
        fill_missing(&mut doc, &[("task", Value::Null)]);
        fill_missing(
            &mut doc["db"],
            &[("memory", Value::Null), ("sync_source", Value::Null)],
        );
        if let Some(shards) = doc["shards"].as_array_mut() {
            for shard in shards {
                // A file stored as it is: its stored bytes are the plain RDB's.
                let (bytes, sha256) = (shard["bytes"].clone(), shard["sha256"].clone());
                fill_missing(
                    shard,
                    &[
                        ("slots", Value::Null),
                        ("compression", json!(crate::ccs::Compression::None)),
                        ("encrypted", json!(false)),
                        ("stored_bytes", bytes),
                        ("stored_sha256", sha256),
                    ],
                );
            }
        }
        doc.serialize(serializer)
    }
}

impl Render for ManifestView {
    fn render(&self, text: &mut Text) {
        let m = &self.0;
        text.table(Table::fields([
            ("run", m.run.clone()),
            ("task", m.task.clone().unwrap_or_else(|| "-".into())),
            ("cluster", format!("{} ({})", m.cluster_name, m.cluster_id)),
            ("database", format!("db:{} `{}`", m.db_id, m.db.name)),
            ("configuration", m.db.shape()),
            ("started", format_time(m.started)),
            ("finished", format_time(m.finished)),
            (
                "write pause",
                format!("{:.2} ms (bound {} ms)", m.pause_ms, m.max_pause_ms),
            ),
            ("keys", m.keys().to_string()),
            ("bytes", m.bytes().to_string()),
            ("manifest checksum", m.checksum.clone()),
        ]));
        let mut shards = Table::new([
            "SHARD", "FROM", "SLOTS", "FILE", "BYTES", "SHA256", "RDB", "SERVER", "KEYS", "EXPIRES",
        ]);
        for s in &m.shards {
            shards.row([
                format!("redis:{}", s.shard),
                format!("redis:{}", s.taken_from),
                s.slots.map_or("all".into(), |r| r.to_string()),
                s.file.clone(),
                s.bytes.to_string(),
                s.sha256.clone(),
                s.rdb_version.to_string(),
                format!("{} {}", s.engine, s.server_version),
                s.keys.to_string(),
                s.expires.to_string(),
            ]);
        }
        text.table(shards);
    }
}

#[derive(Serialize)]
pub struct PrunedRun {
    pub id: String,
    pub run_dir: PathBuf,
    pub status: RunStatus,
    pub started: i64,
}

/// `backup task prune`.
#[derive(Serialize)]
pub struct Pruned {
    pub task: String,
    pub dry_run: bool,
    pub runs: Vec<PrunedRun>,
    /// What `keep` says, for the text when nothing goes.
    #[serde(skip)]
    pub keep: Option<u32>,
}

impl Render for Pruned {
    fn render(&self, text: &mut Text) {
        if self.runs.is_empty() {
            text.line(format!(
                "Nothing to prune: backup task `{}` keeps {}.",
                self.task,
                self.keep
                    .map_or("every run".into(), |k| format!("{k} succeeded run(s)"))
            ));
        }
        for r in &self.runs {
            text.line(format!(
                "{} `{}` ({}, {})",
                if self.dry_run {
                    "Would remove"
                } else {
                    "Removed"
                },
                r.run_dir.display(),
                r.status,
                format_time(r.started)
            ));
        }
    }
}

/// One run found in a repository.
#[derive(Serialize)]
pub struct RepoRun {
    pub run: String,
    pub restorable: bool,
    /// Why not restorable; `null` when it is.
    pub why: Option<String>,
    pub cluster_name: Option<String>,
    #[serde(serialize_with = "crate::ccs::model::cluster_id_text::serialize_opt")]
    pub cluster_id: Option<u64>,
    pub db: Option<String>,
    pub taken_at: Option<i64>,
    pub keys: Option<u64>,
    pub bytes: Option<u64>,
    pub stored_bytes: Option<u64>,
    pub engine: Option<String>,
    pub encrypted: Option<bool>,
    pub compression: Option<String>,
    /// The restore task whose forced start took this run (a safety backup); `null` for
    /// a run of its own.
    pub safety_for: Option<String>,
}

impl RepoRun {
    pub fn of(run: String, m: Option<&Manifest>, why: Option<String>) -> RepoRun {
        RepoRun {
            run,
            restorable: why.is_none(),
            why,
            cluster_name: m.map(|m| m.cluster_name.clone()),
            cluster_id: m.map(|m| m.cluster_id),
            db: m.map(|m| m.db.name.clone()),
            taken_at: m.map(|m| m.started),
            keys: m.map(Manifest::keys),
            bytes: m.map(Manifest::bytes),
            stored_bytes: m.map(Manifest::stored_bytes),
            engine: m.and_then(|m| {
                m.shards
                    .first()
                    .map(|s| format!("{} {}", s.engine, s.server_version))
            }),
            encrypted: m.map(Manifest::encrypted),
            compression: m.and_then(|m| m.shards.first().map(|s| s.compression.to_string())),
            safety_for: m.and_then(|m| m.safety_for.clone()),
        }
    }
}

/// `backup list path <repository>`.
#[derive(Serialize)]
pub struct RepoList {
    pub path: PathBuf,
    pub runs: Vec<RepoRun>,
    /// Repositories of their own found among the runs' directories (not runs).
    pub repositories: Vec<NestedRepo>,
}

/// A repository nested in the one listed: a directory of runs, not a run.
#[derive(Serialize)]
pub struct NestedRepo {
    pub path: PathBuf,
    /// Its entries (runs, finished or not).
    pub entries: usize,
}

impl Render for RepoList {
    fn render(&self, text: &mut Text) {
        for r in &self.repositories {
            text.line(format!(
                "`{}` is a repository of its own ({} {}), not a run: `backup list path {}` lists it.",
                r.path.display(),
                r.entries,
                if r.entries == 1 { "entry" } else { "entries" },
                crate::lang::quote(&r.path.to_string_lossy())
            ));
        }
        if self.runs.is_empty() {
            text.line(format!("No backup runs in `{}`.", self.path.display()));
            return;
        }
        let mut table = Table::new([
            "RUN",
            "CLUSTER",
            "DB",
            "TAKEN AT",
            "KEYS",
            "BYTES",
            "ENGINE",
            "ENCRYPTED",
            "RESTORABLE",
        ]);
        let dash = || "-".to_string();
        for r in &self.runs {
            table.row([
                r.run.clone(),
                match (&r.cluster_name, r.cluster_id) {
                    (Some(n), Some(id)) => format!("{n} ({id})"),
                    _ => dash(),
                },
                r.db.clone().unwrap_or_else(dash),
                r.taken_at.map_or_else(dash, format_time),
                r.keys.map_or_else(dash, |k| k.to_string()),
                r.bytes.map_or_else(dash, |b| b.to_string()),
                r.engine.clone().unwrap_or_else(dash),
                r.encrypted
                    .map_or_else(dash, |e| if e { "yes" } else { "no" }.to_string()),
                match (&r.why, &r.safety_for) {
                    (None, None) => "yes".to_string(),
                    // Restorable by its id, never picked as `latest`.
                    (None, Some(t)) => format!("yes (safety backup of restore task `{t}`)"),
                    (Some(w), _) => format!("no: {w}"),
                },
            ]);
        }
        text.table(table);
    }
}

/// `backup task delete`.
#[derive(Serialize)]
pub struct Deleted {
    pub deleted: String,
    pub purged: bool,
    pub runs: Vec<String>,
}

impl Render for Deleted {
    fn render(&self, text: &mut Text) {
        text.line(format!("Deleted backup task `{}`.", self.deleted));
        if self.purged {
            text.line(format!("Removed its {} run(s).", self.runs.len()));
        } else if !self.runs.is_empty() {
            text.line(format!(
                "Kept its {} run(s) (`backup show <run>`; `purge` removes them).",
                self.runs.len()
            ));
        }
    }
}

#[derive(Serialize)]
pub struct DueRow {
    pub task: String,
    pub outcome: String,
    pub ok: bool,
    pub run: Option<RunView>,
}

/// `backup due`.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Due(pub Vec<DueRow>);

impl Render for Due {
    fn render(&self, text: &mut Text) {
        if self.0.is_empty() {
            text.line("No backup tasks.");
            return;
        }
        let mut table = Table::new(["TASK", "OUTCOME", "RUN"]);
        for r in &self.0 {
            table.row([
                r.task.clone(),
                r.outcome.clone(),
                r.run.as_ref().map_or("-".into(), |v| v.run.id.clone()),
            ]);
        }
        text.table(table);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::backup::ShardEntry;
    use crate::ccs::SlotRange;

    use crate::cmd::render_tests::both;

    fn task() -> BackupTask {
        BackupTask {
            name: "nightly".into(),
            db: 3,
            path: "/backups/orders".into(),
            keep: Some(7),
            every: Some(86_400),
            max_pause_ms: 1000,
            created: 1_796_356_212,
            compress: Default::default(),
            encrypt: None,
        }
    }

    fn run(id: &str, status: RunStatus, reason: Option<&str>) -> RunView {
        RunView::new(BackupRun {
            id: id.into(),
            task: Some("nightly".into()),
            db: 3,
            db_name: "orders".into(),
            path: "/backups/orders".into(),
            started: 1_796_356_212_000,
            took_ms: Some(2150),
            status,
            reason: reason.map(str::to_string),
            keys: 1200,
            bytes: 48_213,
            server_version: Some("redis 7.0.15".into()),
            pause_us: Some(4200),
            safety_for: None,
        })
    }

    #[test]
    fn backup_results() {
        insta::assert_snapshot!(
            "task_created",
            both(&TaskCreated {
                task: task(),
                db_name: "orders".into()
            })
        );
        insta::assert_snapshot!(
            "run",
            both(&run("20261204-035012-17", RunStatus::Succeeded, None))
        );
        insta::assert_snapshot!(
            "history",
            both(&History {
                runs: vec![
                    run("20261204-035012-17", RunStatus::Succeeded, None),
                    run(
                        "20261205-035012-20",
                        RunStatus::Failed,
                        Some("redis:4 does not answer")
                    ),
                ],
                task: "nightly".into(),
            })
        );
        insta::assert_snapshot!(
            "task_list",
            both(&TaskList(vec![TaskRow {
                task: task(),
                db: "db:3 orders".into(),
                last_run: Some(run("20261204-035012-17", RunStatus::Succeeded, None)),
                due: false,
            }]))
        );
        let m = Manifest {
            format: 1,
            run: "20261204-035012-17".into(),
            task: Some("nightly".into()),
            safety_for: None,
            cluster_id: 42,
            cluster_name: "prod".into(),
            db_id: 3,
            db: crate::ccs::fixtures::db_config("orders", 2, true),
            password_set: true,
            started: 1_796_356_212_000,
            finished: 1_796_356_214_150,
            pause_ms: 4.2,
            max_pause_ms: 1000,
            shards: vec![ShardEntry {
                shard: 4,
                taken_from: 6,
                slots: Some(SlotRange {
                    start: 0,
                    end: 8191,
                }),
                file: "shard-4.rdb".into(),
                bytes: 24_000,
                sha256: "ab".repeat(32),
                compression: crate::backup::Compression::None,
                encrypted: false,
                stored_bytes: None,
                stored_sha256: None,
                rdb_version: 10,
                engine: "redis".into(),
                server_version: "7.0.15".into(),
                keys_per_db: BTreeMap::from([(0, 600)]),
                keys: 600,
                expires: 2,
                started: 1_796_356_212_000,
                finished: 1_796_356_214_000,
            }],
            checksum: "cd".repeat(32),
        };
        insta::assert_snapshot!("manifest", both(&ManifestView(m)));
        insta::assert_snapshot!(
            "due",
            both(&Due(vec![
                DueRow {
                    task: "hourly".into(),
                    outcome: "not due".into(),
                    ok: true,
                    run: None
                },
                DueRow {
                    task: "nightly".into(),
                    outcome: "succeeded".into(),
                    ok: true,
                    run: Some(run("20261204-035012-17", RunStatus::Succeeded, None)),
                },
            ]))
        );
    }
}
