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
        // Under `--json` stdout holds only documents: the prompt and the line typed go
        // to the terminal itself.
        .behavior(match session.json {
            true => rustyline::config::Behavior::PreferTerm,
            false => rustyline::config::Behavior::Stdio,
        })
        .build();
    if line_editing_unsupported() {
        return run_plain(session);
    }
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
        chatter(session),
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
                    let mut ask = |q: &str| editor.readline(q).ok();
                    if run_offering(session, line, &mut out, &mut err, &mut ask) {
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

/// Runs `line`, then each follow-up it offers ([`cmd::Offer`]: moving a database off a
/// port another program holds) that the operator answers yes to; `ask` shows a question
/// and reads the answer (None: end of input, taken as no). Nothing an offer does runs
/// without that yes. Returns whether the session ends.
fn run_offering(
    session: &Session,
    line: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
    ask: &mut dyn FnMut(&str) -> Option<String>,
) -> bool {
    if session.run_line(line, None, out, err) == Outcome::Exit {
        return true;
    }
    let mut offers = std::collections::VecDeque::from(session.take_offers());
    while let Some(offer) = offers.pop_front() {
        let answer = ask(&format!("{} [y/N] ", offer.question)).unwrap_or_default();
        // Under `--json` stdout holds only the commands' documents.
        let said: &mut dyn Write = if session.json { &mut *err } else { &mut *out };
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            let _ = writeln!(said, "not run: `{}`", offer.command);
            continue;
        }
        let _ = writeln!(said, "running `{}`", offer.command);
        if session.run_line(&offer.command, None, out, err) == Outcome::Exit {
            return true;
        }
        offers.extend(session.take_offers());
    }
    false
}

/// Where the shell's own words go (its banner, prompts, questions): stdout, or stderr
/// under `--json`, whose stdout holds only the commands' documents (README, JSON output).
fn chatter(session: &Session) -> Box<dyn Write> {
    match session.json {
        true => Box::new(io::stderr()),
        false => Box::new(io::stdout()),
    }
}

/// Terminals rustyline cannot drive (it then reads plain lines, and Ctrl-C would kill the
/// shell): rustyline's own list.
fn line_editing_unsupported() -> bool {
    std::env::var("TERM").is_ok_and(|t| matches!(t.as_str(), "dumb" | "cons25" | "emacs"))
}

/// The shell on a terminal without line editing (`TERM=dumb`): plain lines, no completion,
/// and Ctrl-C abandons the line being typed instead of ending the shell.
fn run_plain(session: &Session) -> anyhow::Result<u8> {
    let mut out = io::stdout();
    let mut err = io::stderr();
    let _ = writeln!(
        chatter(session),
        "Lazarus {}: the Redis cluster recovery shell (no line editing on this terminal). `help` lists commands, `exit` leaves.",
        env!("CARGO_PKG_VERSION")
    );
    loop {
        let prompt = match session.ctx.store.load() {
            Ok(Some(c)) => format!("lazarus:{}> ", c.name),
            _ => "lazarus> ".to_string(),
        };
        // Watched from before the prompt shows, so a quick Ctrl-C is never the default
        // (which ends the process); given back before the command runs.
        let watch = SigintWatch::start();
        let mut said = chatter(session);
        let _ = write!(said, "{prompt}");
        let _ = said.flush();
        let read = read_line_interruptible();
        drop(watch);
        match read {
            Ok(Some(line)) => {
                let mut ask = |q: &str| {
                    let mut said = chatter(session);
                    let _ = write!(said, "{q}");
                    let _ = said.flush();
                    read_line_interruptible().ok().flatten()
                };
                if run_offering(session, &line, &mut out, &mut err, &mut ask) {
                    break;
                }
            }
            Ok(None) => break,
            // Ctrl-C: the terminal dropped what was typed; start a fresh line.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                let _ = writeln!(chatter(session));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(EXIT_OK)
}

/// Set by [`SigintWatch`]'s handler.
static SIGINT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// While alive, SIGINT is caught by a handler without `SA_RESTART`, so a blocked `read`
/// returns `EINTR` (std's readers retry on it, which would swallow Ctrl-C). Dropping it
/// puts back the handler that was there: the one a running command watches Ctrl-C with.
struct SigintWatch {
    previous: libc::sigaction,
}

impl SigintWatch {
    fn start() -> SigintWatch {
        extern "C" fn on_sigint(_: libc::c_int) {
            SIGINT.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        SIGINT.store(false, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; both
        // structs are valid for the call.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigint as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = 0;
            let mut previous: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGINT, &action, &mut previous);
            SigintWatch { previous }
        }
    }
}

impl Drop for SigintWatch {
    fn drop(&mut self) {
        // SAFETY: restores the action saved by `start`.
        unsafe {
            libc::sigaction(libc::SIGINT, &self.previous, std::ptr::null_mut());
        }
    }
}

/// One line from stdin (without its newline); `None` at end of input; `Interrupted` when
/// Ctrl-C arrived while reading (under a [`SigintWatch`]).
fn read_line_interruptible() -> io::Result<Option<String>> {
    use std::sync::atomic::Ordering;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        // A signal landing between a check of the flag and a blocking read would be
        // missed: wait in short polls and look at the flag between them.
        if SIGINT.swap(false, Ordering::SeqCst) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let mut fd = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut fd, 1, 100) } {
            0 => continue,
            n if n < 0 => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            _ => {}
        }
        // SAFETY: reads at most one byte into a live one-byte buffer.
        let n = unsafe { libc::read(0, byte.as_mut_ptr().cast(), 1) };
        if SIGINT.swap(false, Ordering::SeqCst) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        match (n, byte[0]) {
            (0, _) if line.is_empty() => return Ok(None),
            (0, _) | (_, b'\n') => return Ok(Some(String::from_utf8_lossy(&line).into_owned())),
            _ => line.push(byte[0]),
        }
    }
}

/// The line as the history keeps it: secrets hidden, and for a line that does not parse
/// the word after a mistyped secret key too (`passwrd` no longer marks its value secret).
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
