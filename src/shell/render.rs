//! Turns replies and errors into text: comfy-table tables and plain lines, or one JSON
//! document per command.

use comfy_table::{presets, ContentArrangement, Table as Grid};
use serde_json::{json, Value};

use crate::cmd::{Block, Reply, Table};

/// A reply as people read it.
pub fn text(reply: &Reply) -> String {
    let mut out = String::new();
    for block in &reply.blocks {
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

/// `{"command": "...", "ok": true, "result": ..., "messages": [...]}`.
pub fn json_ok(command: &str, reply: &Reply) -> Value {
    let mut doc = json!({
        "command": command,
        "ok": reply.failure.is_none(),
        "result": reply.data,
        "messages": reply.lines(),
    });
    if let Some(error) = &reply.failure {
        doc["error"] = json!(error);
    }
    doc
}

/// `{"command": "...", "ok": false, "error": "..."}`; parse errors add `"span": [s, e]`.
pub fn json_error(command: &str, error: &str, span: Option<(usize, usize)>) -> Value {
    let mut doc = json!({ "command": command, "ok": false, "error": error });
    if let Some((s, e)) = span {
        doc["span"] = json!([s, e]);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_lines() {
        let mut table = Table::new(["node", "addr"]).titled("NODES");
        table.row(["node:1", "127.0.0.1"]);
        let reply = Reply::new().table(table).line("Done.");
        insta::assert_snapshot!(text(&reply), @r"
        NODES:
         NODE    ADDR
         node:1  127.0.0.1
        Done.
        ");
    }
}
