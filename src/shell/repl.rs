//! The interactive shell: rustyline with completion and hints from the registry, history
//! (secrets redacted, mode 0600) under the home, and a prompt naming the cluster.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Editor, Helper};

use super::{Outcome, Session, EXIT_OK};
use crate::ccs::Cluster;
use crate::cmd;
use crate::lang;

/// Name of the history file under the home.
pub const HISTORY_FILE: &str = "history";

/// Completion and hints for rustyline, from the registry and the last loaded cluster.
pub struct ShellHelper {
    cluster: RefCell<Option<Cluster>>,
    colour: bool,
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let cluster = self.cluster.borrow();
        let found = lang::complete(cmd::registry(), cluster.as_ref(), line, pos);
        let pairs = found
            .candidates
            .into_iter()
            .map(|c| {
                // A finished word gets its space; a directory stays open for more.
                let replacement = if c.ends_with('/') {
                    c.clone()
                } else {
                    format!("{c} ")
                };
                Pair {
                    display: c,
                    replacement,
                }
            })
            .collect();
        Ok((found.start, pairs))
    }
}

/// A grey hint. Only the rest of a keyword may be accepted (right arrow); placeholders
/// such as `<ip>` are shown, never inserted.
pub struct ShellHint {
    text: String,
    accept: bool,
}

impl rustyline::hint::Hint for ShellHint {
    fn display(&self) -> &str {
        &self.text
    }

    fn completion(&self) -> Option<&str> {
        self.accept.then_some(self.text.as_str())
    }
}

impl Hinter for ShellHelper {
    type Hint = ShellHint;

    fn hint(&self, line: &str, pos: usize, _ctx: &rustyline::Context<'_>) -> Option<ShellHint> {
        lang::hint(cmd::registry(), line, pos).map(|text| ShellHint {
            accept: !text.contains([' ', '<', '[', '|']),
            text,
        })
    }
}

impl Highlighter for ShellHelper {
    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        if self.colour {
            Cow::Owned(format!("\x1b[90m{hint}\x1b[0m"))
        } else {
            Cow::Borrowed(hint)
        }
    }
}

impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

/// Runs the REPL until `exit`, `quit` or end of input. Errors never end it.
pub fn run(session: &Session) -> anyhow::Result<u8> {
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .history_ignore_dups(true)?
        .max_history_size(10_000)?
        .build();
    let mut editor: Editor<ShellHelper, FileHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(ShellHelper {
        cluster: RefCell::new(None),
        colour: session.colour,
    }));
    let history = session.ctx.store.home().join(HISTORY_FILE);
    let history_ok = prepare_history(&history).is_ok();
    if history_ok {
        let _ = editor.load_history(&history);
    }
    let mut out = io::stdout();
    let mut err = io::stderr();
    let _ = writeln!(
        out,
        "Lazarus {}: the Redis cluster recovery shell. `help` lists commands, Tab completes, Ctrl-R searches history, `exit` leaves.",
        env!("CARGO_PKG_VERSION")
    );
    loop {
        let cluster = session.ctx.store.load();
        let prompt = match &cluster {
            Ok(Some(c)) => format!("lazarus:{}> ", c.name),
            _ => "lazarus> ".to_string(),
        };
        if let Some(helper) = editor.helper_mut() {
            *helper.cluster.borrow_mut() = cluster.ok().flatten();
        }
        match editor.readline(&prompt) {
            Ok(text) => {
                // A paste of several lines arrives as one text (bracketed paste): each
                // line is its own command, in order.
                let mut exit = false;
                for line in text.split(['\n', '\r']) {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(history_entry(line));
                        if history_ok {
                            let _ = editor.append_history(&history);
                            let _ =
                                fs::set_permissions(&history, fs::Permissions::from_mode(0o600));
                        }
                    }
                    if session.run_line(line, None, &mut out, &mut err) == Outcome::Exit {
                        exit = true;
                        break;
                    }
                }
                if exit {
                    break;
                }
            }
            // Ctrl-C abandons the line, as in a shell.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(EXIT_OK)
}

/// The line as the history keeps it: secrets hidden, and for a line that does not parse
/// every word after the fault too (a mistyped `passwrd` no longer marks its value secret).
fn history_entry(line: &str) -> String {
    let fault = cmd::parse(line).err().map(|e| e.span);
    lang::hide(cmd::registry(), line, fault).text
}

/// Creates the history file with mode 0600 before anything is written to it.
fn prepare_history(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}
