//! Turns replies and errors into text: comfy-table tables and plain lines, or one JSON
//! document per command.

use comfy_table::{presets, ContentArrangement, Table as Grid};
use serde_json::{json, Value};

use std::ops::Range;

use crate::cmd::{Block, CommandError, Reply, Table};

/// A reply as people read it.
pub fn text(reply: &Reply) -> String {
    let mut out = String::new();
    for block in reply.blocks() {
        match block {
            Block::Line(line) => {
                out.push_str(line);
                out.push('\n');
            }
            Block::Table(table) => {
                out.push_str(&grid(table));
                out.push('\n');
            }
        }
    }
    out
}

fn grid(table: &Table) -> String {
    let mut grid = Grid::new();
    grid.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(table.header.iter().map(|h| h.to_uppercase()));
    for row in &table.rows {
        grid.add_row(row);
    }
    let body: String = grid
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    match &table.title {
        Some(title) => format!("{title}:\n{body}"),
        None => body,
    }
}

/// An error as people read it on stderr: `shown` (its message, or a parse error's line
/// with the caret under the fault), then each of its hints `shown` does not already say,
/// one `hint: ` line each: the hints a `--json` document lists, never only there.
pub fn error_text(shown: &str, error: &CommandError) -> String {
    let mut text = shown.to_string();
    for hint in error.hints().iter().filter(|h| !shown.contains(h.as_str())) {
        text.push_str("\nhint: ");
        text.push_str(hint);
    }
    text
}

/// `{"command": "...", "ok": true, "result": ..., "messages": [...]}`; a reply marked
/// failed adds its error as [`json_error`] does.
pub fn json_ok(command: &str, reply: &Reply) -> Value {
    let mut doc = json!({
        "command": command,
        "ok": reply.failure().is_none(),
        "result": reply.data(),
        "messages": reply.lines(),
    });
    if let Some(error) = reply.failure() {
        add_error(&mut doc, error);
    }
    doc
}

/// `{"command": "...", "ok": false, "error": "...", "kind": "not_found", "hints": [...]}`;
/// parse errors add `"span": [s, e]`.
pub fn json_error(command: &str, error: &CommandError, span: Option<Range<usize>>) -> Value {
    let mut doc = json!({ "command": command, "ok": false });
    add_error(&mut doc, error);
    if let Some(span) = span {
        doc["span"] = json!([span.start, span.end]);
    }
    doc
}

fn add_error(doc: &mut Value, error: &CommandError) {
    doc["error"] = json!(error.message());
    doc["kind"] = json!(error.kind());
    doc["hints"] = json!(error.hints());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_errors_hints_follow_it_unless_it_says_them() {
        let said = CommandError::conflict("a cluster exists; use another `--home`")
            .hinted("use another `--home`");
        assert_eq!(
            error_text(&said.to_string(), &said),
            "a cluster exists; use another `--home`"
        );
        let down = CommandError::unavailable("1 shard(s) down: redis:3 of `cache`")
            .hinted("start them again with `restart db <db>`")
            .hinted("`status shards` says why");
        assert_eq!(
            error_text(&down.to_string(), &down),
            "1 shard(s) down: redis:3 of `cache`\nhint: start them again with `restart db <db>`\nhint: `status shards` says why"
        );
    }

    #[test]
    fn tables_and_lines() {
        let mut table = Table::new(["node", "addr"]).titled("NODES");
        table.row(["node:1", "127.0.0.1"]);
        #[derive(serde::Serialize)]
        struct Shown {
            #[serde(skip)]
            table: Table,
        }
        impl crate::cmd::Render for Shown {
            fn render(&self, text: &mut crate::cmd::Text) {
                text.table(self.table.clone()).line("Done.");
            }
        }
        let reply = Reply::of(&Shown { table }).unwrap();
        insta::assert_snapshot!(text(&reply), @r"
        NODES:
         NODE    ADDR
         node:1  127.0.0.1
        Done.
        ");
    }

    /// `messages` are lines: a line of the reply that holds a line break is two.
    #[test]
    fn messages_are_one_line_each() {
        let reply = Reply::message("Restored db:3 `a`.\ncontent verified: 0 keys").line("next");
        let doc = json_ok("restore task start r", &reply);
        assert_eq!(
            doc["messages"],
            json!(["Restored db:3 `a`.", "content verified: 0 keys", "next"])
        );
    }

    /// The two kinds no end-to-end test can cause on purpose.
    #[test]
    fn interrupted_and_internal_errors_in_json() {
        let interrupted = CommandError::from(crate::db::DbError::Interrupted("c".into()));
        let doc = json_error("create db c", &interrupted, None);
        assert_eq!(doc["kind"], "interrupted");
        assert_eq!(doc["hints"], json!([]));
        let internal = CommandError::internal("internal error while running `status`: panic");
        let doc = json_error("status", &internal, None);
        assert_eq!(doc["kind"], "internal");
        assert!(doc.get("span").is_none());
    }
}
