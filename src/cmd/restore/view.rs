//! How restore tasks are shown: one task with its last verify's checks, the list, a task
//! of several databases.

use serde::ser::Error as _;
use serde::{Serialize, Serializer};
use serde_json::{json, Value};

use crate::ccs::{RestoreState, RestoreTask};
use crate::cmd::{fill_missing, Render, Table, Text};

/// A restore task in JSON: its record, with every field the README documents present
/// (`null` or `[]` where the record has none).
struct TaskDoc<'a>(&'a RestoreTask);

impl Serialize for TaskDoc<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut doc = serde_json::to_value(self.0).map_err(S::Error::custom)?;
        fill_missing(
            &mut doc,
            &[
                ("reason", Value::Null),
                ("checks", json!([])),
                ("step", Value::Null),
                ("finished", Value::Null),
                ("identity", Value::Null),
            ],
        );
        doc.serialize(serializer)
    }
}

fn task_docs<S: Serializer>(tasks: &[RestoreTask], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(tasks.iter().map(TaskDoc))
}

/// A restore task as shown, with its last verify's checks.
pub struct TaskView {
    pub task: RestoreTask,
    pub headline: Option<String>,
}

impl Serialize for TaskView {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TaskDoc(&self.task).serialize(serializer)
    }
}

impl Render for TaskView {
    fn render(&self, text: &mut Text) {
        let t = &self.task;
        if let Some(h) = &self.headline {
            text.line(h.clone());
        }
        let mut fields = vec![
            ("task", t.name.clone()),
            ("database", t.db.clone()),
            ("backup", format!("{} in `{}`", t.run, t.path.display())),
            (
                "target path",
                t.target_path.as_ref().map_or_else(
                    || "the shard directories".to_string(),
                    |p| format!("`{}` (staging)", p.display()),
                ),
            ),
            ("force", t.force.to_string()),
            ("state", t.state.to_string()),
        ];
        if let Some(step) = &t.step {
            fields.push(("step", step.to_string()));
        }
        if let Some(at) = &t.safety_backup {
            fields.push(("safety backup", at.clone()));
        }
        if let Some(r) = &t.reason {
            fields.push(("reason", r.clone()));
        }
        text.table(Table::fields(fields));
        for c in &t.checks {
            text.line(c.clone());
        }
    }
}

pub struct TaskList(pub Vec<RestoreTask>);

impl Serialize for TaskList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        task_docs(&self.0, serializer)
    }
}

impl Render for TaskList {
    fn render(&self, text: &mut Text) {
        if self.0.is_empty() {
            text.line("No restore tasks (make one with `restore task create`).");
            return;
        }
        let mut t = Table::new(["TASK", "DB", "BACKUP", "STATE", "REASON"]);
        for r in &self.0 {
            t.row([
                r.name.clone(),
                r.db.clone(),
                r.run.clone(),
                r.state.to_string(),
                r.reason.clone().unwrap_or_default(),
            ]);
        }
        text.table(t);
    }
}

#[derive(Serialize)]
pub struct Deleted {
    pub deleted: String,
    /// The databases whose old data the task had set aside or fenced, put back first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub put_back: Vec<String>,
}

impl Render for Deleted {
    fn render(&self, text: &mut Text) {
        let line = match self.put_back.is_empty() {
            true => format!("Deleted restore task `{}`.", self.deleted),
            false => format!(
                "Deleted restore task `{}`, cut short: first put the old data of db `{}` back in place and serving.",
                self.deleted,
                self.put_back.join("`, `")
            ),
        };
        text.line(line);
    }
}

/// A task of several databases as shown: each database's task, with its state and its
/// last verify's checks.
#[derive(Serialize)]
pub struct GroupView {
    pub task: String,
    #[serde(serialize_with = "task_docs")]
    pub tasks: Vec<RestoreTask>,
    #[serde(skip)]
    pub headline: Option<String>,
}

impl Render for GroupView {
    fn render(&self, text: &mut Text) {
        if let Some(h) = &self.headline {
            text.line(h.clone());
        }
        let mut table = Table::new(["TASK", "DB", "BACKUP", "STATE", "DETAIL"]);
        for t in &self.tasks {
            let detail = match (&t.reason, &t.content, &t.step) {
                (Some(reason), _, _) => reason.clone(),
                (None, Some(c), _) if t.state == RestoreState::Succeeded => c.line.clone(),
                (None, _, Some(step)) => step.to_string(),
                _ => String::new(),
            };
            table.row([
                t.name.clone(),
                t.db.clone(),
                format!("{} in `{}`", t.run, t.path.display()),
                t.state.to_string(),
                detail,
            ]);
        }
        text.table(table);
        for t in &self.tasks {
            for c in &t.checks {
                text.line(format!("{}: {c}", t.name));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cmd::render_tests::both;

    #[test]
    fn restore_results() {
        let task = RestoreTask {
            name: "undo".into(),
            db: "orders".into(),
            run: "20261204-035012-17".into(),
            path: "/backups/orders".into(),
            target_path: None,
            force: false,
            allow_newer_server: false,
            replay: false,
            state: RestoreState::VerifyFailed,
            reason: Some("target: db:3 `orders` holds 12 keys: `force` would replace them".into()),
            checks: vec![
                "ok     manifest: `/backups/orders/20261204-035012-17` is complete and matches its checksum".into(),
                "FAILED target: db:3 `orders` holds 12 keys: `force` would replace them".into(),
            ],
            created_db: false,
            step: None,
            identity: None,
            from_other_cluster: false,
            from_other_db: false,
            safety_path: None,
            no_safety_backup: false,
            safety_backup: None,
            group: None,
            created: 1_796_356_212,
            finished: None,
            content: None,
        };
        insta::assert_snapshot!(
            "task",
            both(&TaskView {
                task: task.clone(),
                headline: None
            })
        );
        insta::assert_snapshot!("list", both(&TaskList(vec![task])));
    }
}
