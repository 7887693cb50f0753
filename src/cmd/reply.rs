//! What a command returns: a typed result ([`Render`]) that is both the JSON value for
//! scripts and, rendered, the lines and tables for people.

use serde::Serialize;

use super::CommandError;

/// A command's typed result: `Serialize` gives the `result` of `--json`, [`Render::render`]
/// the text people read, both from the one value, so they cannot disagree. Snapshot
/// tests pin both for every command.
pub trait Render: Serialize {
    fn render(&self, text: &mut Text);
}

/// Adds to the JSON object `doc` each of `fields` it lacks, with its value (`null`, `[]`,
/// a default). For results that are stored types (a CCS record, a manifest), whose
/// stored form leaves empty fields out: every field the README documents for a result is
/// in its JSON, `null` when there is none, so a script can tell "none" from a mistake.
pub(crate) fn fill_missing(doc: &mut serde_json::Value, fields: &[(&str, serde_json::Value)]) {
    if let Some(object) = doc.as_object_mut() {
        for (name, value) in fields {
            object
                .entry(name.to_string())
                .or_insert_with(|| value.clone());
        }
    }
}

/// The lines and tables a [`Render`] result renders into.
#[derive(Default)]
pub struct Text {
    blocks: Vec<Block>,
}

impl Text {
    pub fn line(&mut self, text: impl Into<String>) -> &mut Text {
        self.blocks.push(Block::Line(text.into()));
        self
    }

    pub fn table(&mut self, table: Table) -> &mut Text {
        self.blocks.push(Block::Table(table));
        self
    }
}

/// A command's result. The library builds it; the renderer prints it. Its fields are
/// private: text and data come from one [`Render`] value ([`Reply::of`]), or a reply is
/// only a message ([`Reply::message`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reply {
    blocks: Vec<Block>,
    /// The machine-readable result (`result` in `--json` output); `Null` when the
    /// command's lines say everything.
    data: serde_json::Value,
    /// The session should end (`exit`, `quit`).
    exit: bool,
    /// The command ran, but what it found is a failure (a bad file under `check file`):
    /// the reply is still printed in full, then this error, and the line fails.
    failure: Option<CommandError>,
    /// Follow-up commands the interactive shell offers, each after a yes to its question
    /// (a script or `--json` never runs them: it must say so in its own command).
    offers: Vec<Offer>,
}

/// A follow-up the interactive shell asks about after a command: `question` (ends with
/// `?`), and the canonical `command` it runs on a yes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub question: String,
    pub command: String,
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

    /// The reply of a typed result: its JSON and its text from the one value. A result
    /// that cannot be serialised is an internal error, never a silent `null`.
    pub fn of(outcome: &impl Render) -> Result<Reply, CommandError> {
        let data = serde_json::to_value(outcome).map_err(|e| {
            CommandError::internal(format!("the command's result cannot be serialised: {e}"))
        })?;
        let mut text = Text::default();
        outcome.render(&mut text);
        Ok(Reply {
            blocks: text.blocks,
            data,
            ..Reply::default()
        })
    }

    pub fn line(mut self, text: impl Into<String>) -> Reply {
        self.blocks.push(Block::Line(text.into()));
        self
    }

    /// A line shown before the result's own (such as the default cluster being made).
    pub fn note(mut self, note: Option<String>) -> Reply {
        if let Some(note) = note {
            self.blocks.insert(0, Block::Line(note));
        }
        self
    }

    /// Marks the reply as a failure: the command ran, but what it found is one (a bad
    /// file under `check file`); the reply is still printed in full, then this error, and
    /// the line fails.
    pub fn failed(mut self, error: CommandError) -> Reply {
        self.failure = Some(error);
        self
    }

    /// Offers `command` to the interactive shell, which asks `question` first (see
    /// [`Offer`]).
    pub fn offer(mut self, question: impl Into<String>, command: impl Into<String>) -> Reply {
        self.offers.push(Offer {
            question: question.into(),
            command: command.into(),
        });
        self
    }

    /// See [`Reply::offer`].
    pub fn offers(&self) -> &[Offer] {
        &self.offers
    }

    /// The reply of `exit`: no text (with `--json`, a document whose `result` is null),
    /// and the session ends.
    pub fn exit() -> Reply {
        Reply {
            exit: true,
            ..Reply::default()
        }
    }

    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The `result` of `--json`.
    pub fn data(&self) -> &serde_json::Value {
        &self.data
    }

    pub fn ends_session(&self) -> bool {
        self.exit
    }

    /// See [`Reply::failed`].
    pub fn failure(&self) -> Option<&CommandError> {
        self.failure.as_ref()
    }

    /// The plain lines, in order (the `messages` of the JSON output).
    /// A line that holds line breaks (a headline and its proof) is as many lines.
    pub fn lines(&self) -> Vec<&str> {
        self.blocks
            .iter()
            .filter_map(|b| match b {
                Block::Line(l) => Some(l.split('\n')),
                Block::Table(_) => None,
            })
            .flatten()
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
