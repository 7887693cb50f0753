//! What a command returns: lines and tables for people, a JSON value for scripts.

use serde::Serialize;

use super::CommandError;

/// A command's result. The library builds it; the renderer prints it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reply {
    pub blocks: Vec<Block>,
    /// The machine-readable result (`result` in `--json` output); `Null` when the
    /// command's lines say everything.
    pub data: serde_json::Value,
    /// The session should end (`exit`, `quit`).
    pub exit: bool,
    /// The command ran, but what it found is a failure (a bad file under `check file`):
    /// the reply is still printed in full, then this error, and the line fails.
    pub failure: Option<CommandError>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Block {
    Line(String),
    Table(Table),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub title: Option<String>,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Reply {
    pub fn new() -> Reply {
        Reply::default()
    }

    /// A reply that is one line, such as `Updated successfully.`.
    pub fn message(text: impl Into<String>) -> Reply {
        Reply::new().line(text)
    }

    pub fn line(mut self, text: impl Into<String>) -> Reply {
        self.blocks.push(Block::Line(text.into()));
        self
    }

    pub fn table(mut self, table: Table) -> Reply {
        self.blocks.push(Block::Table(table));
        self
    }

    /// Sets the JSON result; `value` must not contain secrets.
    pub fn data(mut self, value: impl Serialize) -> Reply {
        self.data = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self
    }

    /// Marks the reply as a failure (see [`Reply::failure`]).
    pub fn failed(mut self, error: CommandError) -> Reply {
        self.failure = Some(error);
        self
    }

    /// The plain lines, in order (the `messages` of the JSON output).
    pub fn lines(&self) -> Vec<&str> {
        self.blocks
            .iter()
            .filter_map(|b| match b {
                Block::Line(l) => Some(l.as_str()),
                Block::Table(_) => None,
            })
            .collect()
    }
}

impl Table {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            title: None,
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn titled(mut self, title: impl Into<String>) -> Table {
        self.title = Some(title.into());
        self
    }

    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// A two-column `field | value` table.
    pub fn fields<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Table {
        let mut table = Table::new(["field", "value"]);
        for (k, v) in pairs {
            table.row([k.into(), v.into()]);
        }
        table
    }
}
