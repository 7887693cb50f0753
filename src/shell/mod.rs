//! The sessions: one path from text to output (parse, apply, render) shared by the REPL,
//! one-shot commands and scripts. This is the one module that talks to a terminal; the
//! binary hands it stdout and stderr.

pub mod args;
pub mod progress;
pub mod render;
pub mod repl;

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

pub use args::{usage, Args, Mode, UsageError, FLAGS};

use crate::ccs::Store;
use crate::cmd::{self, CommandError, Context, NoProgress};
use crate::error::ErrorKind;
use crate::lang::{self, complete, quote};

/// Exit statuses. A failed command's is its error's kind's ([`ErrorKind::exit_code`]).
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// How one line went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Exit,
    /// The line did not parse (kind `usage`: nothing ran), or the command ran and failed.
    Failed(ErrorKind),
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Done | Outcome::Exit => EXIT_OK,
            Outcome::Failed(kind) => kind.exit_code(),
        }
    }
}

/// A store, a runtime, and how to print.
pub struct Session {
    pub ctx: Context,
    /// Taken only when the session ends (see the `Drop`).
    runtime: Option<tokio::runtime::Runtime>,
    /// A command of this session was interrupted (Ctrl-C).
    interrupted: std::cell::Cell<bool>,
    pub json: bool,
    /// Colour on stdout (hints in the REPL).
    pub colour: bool,
    /// Colour on stderr (the `lazarus:` of errors).
    pub err_colour: bool,
    /// The last command's offers ([`cmd::Offer`]), for the interactive shell to ask about.
    offers: std::cell::RefCell<Vec<cmd::Offer>>,
}

/// The home: `--home`, else `LAZARUS_HOME`, else the user's data directory; made
/// absolute, as the paths the CCS records under it must be (a shard's server runs in its
/// own directory, where a relative path means another place).
pub fn resolve_home(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let home = home_as_given(flag)?;
    std::path::absolute(&home)
        .with_context(|| format!("cannot resolve the home `{}`", home.display()))
}

fn home_as_given(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(home) = flag {
        return Ok(home);
    }
    if let Some(home) = std::env::var_os("LAZARUS_HOME").filter(|h| !h.is_empty()) {
        // The configuration holds its paths as text: a home that is not (a flag's value
        // is refused by the parser) would make the first save fail half way.
        // A wrong environment is the operator's to fix, as a wrong flag is: exit 2.
        let home = home.into_string().map_err(|h| {
            cmd::CommandError::usage(format!(
                "LAZARUS_HOME `{}` is not valid UTF-8: give `--home <dir>` or another LAZARUS_HOME",
                h.to_string_lossy()
            ))
        })?;
        return Ok(home.into());
    }
    directories::ProjectDirs::from("", "", "lazarus")
        .map(|dirs| dirs.data_dir().to_path_buf())
        .context("cannot find the user's data directory: give `--home <dir>` or set LAZARUS_HOME")
}

impl Session {
    pub fn new(args: &Args) -> anyhow::Result<Session> {
        let home = resolve_home(args.home.clone())?;
        let mut ctx = Context::new(Store::new(home));
        ctx.json = args.json;
        ctx.redis_server = args.redis_server.clone();
        if let Some(n) = args.max_concurrency {
            crate::host::set_max_concurrency(n);
        }
        ctx.progress = if args.json {
            Arc::new(NoProgress)
        } else if io::stderr().is_terminal() {
            Arc::new(progress::Bars::new())
        } else {
            Arc::new(progress::Lines)
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        // no-color.org: set and not empty.
        let no_colour = args.json || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Ok(Session {
            ctx,
            runtime: Some(runtime),
            interrupted: Default::default(),
            json: args.json,
            colour: !no_colour && io::stdout().is_terminal(),
            err_colour: !no_colour && io::stderr().is_terminal(),
            offers: Default::default(),
        })
    }

    /// Parses, runs and prints one line. `line_no` prefixes errors in scripts.
    pub fn run_line(
        &self,
        line: &str,
        line_no: Option<usize>,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Outcome {
        let at = line_no.map(|n| format!("line {n}: ")).unwrap_or_default();
        let lazarus = self.error_prefix();
        let command = match cmd::parse(line) {
            Ok(Some(command)) => command,
            Ok(None) => return Outcome::Done,
            Err(e) => return self.refuse_parse(line, e, line_no, out, err),
        };
        // Secrets print as `***` ([`crate::secret::Secret`]): this text can be shown.
        let text = command.to_string();
        let on_interrupt = command.on_interrupt();
        // A task of its own, so that even a panicking command leaves the session alive.
        let mut ctx = self.ctx.clone();
        ctx.store = ctx.store.for_command(&text);
        ctx.cancel = Default::default();
        let cancel = ctx.cancel.clone();
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the session");
        let task = runtime.spawn(async move { command.apply(&ctx).await });
        let result = runtime.block_on(interruptible(task, cancel.clone(), &on_interrupt, err));
        if cancel.is_tripped() {
            self.interrupted.set(true);
        }
        let result = result.unwrap_or_else(|e| {
            Err(CommandError::internal(format!(
                "internal error while running `{text}`: {e}"
            )))
        });
        match result {
            Ok(reply) => {
                *self.offers.borrow_mut() = reply.offers().to_vec();
                if self.json {
                    // `exit` too: every line a script runs answers with one document.
                    print_doc(out, render::json_ok(&text, &reply), line_no);
                } else {
                    let _ = write!(out, "{}", render::text(&reply));
                }
                let _ = out.flush();
                if let Some(error) = reply.failure() {
                    let _ = writeln!(
                        err,
                        "{lazarus} {at}{}",
                        render::error_text(&error.to_string(), error)
                    );
                    Outcome::Failed(error.kind())
                } else if reply.ends_session() {
                    Outcome::Exit
                } else {
                    Outcome::Done
                }
            }
            Err(e) => {
                if self.json {
                    print_doc(out, render::json_error(&text, &e, None), line_no);
                }
                let _ = writeln!(
                    err,
                    "{lazarus} {at}{}",
                    render::error_text(&e.to_string(), &e)
                );
                Outcome::Failed(e.kind())
            }
        }
    }

    /// Reports a line the parser refused (kind `usage`: nothing of it ran).
    fn refuse_parse(
        &self,
        line: &str,
        e: lang::ParseError,
        line_no: Option<usize>,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Outcome {
        let at = line_no.map(|n| format!("line {n}: ")).unwrap_or_default();
        // Secrets never reach the output, not even inside an error (the parser quotes
        // words with their secrets hidden), nor does the word after a mistyped secret
        // key (`passwrd hunter5`).
        let shown = lang::hide(cmd::registry(), line, Some(e.span.clone()));
        let mut at_shown = e.clone();
        at_shown.span = shown.span.clone();
        let error = CommandError::from(e);
        if self.json {
            let doc = render::json_error(&shown.text, &error, Some(shown.span));
            print_doc(out, doc, line_no);
        }
        let _ = writeln!(
            err,
            "{} {at}{}",
            self.error_prefix(),
            render::error_text(&at_shown.render(&shown.text), &error)
        );
        Outcome::Failed(error.kind())
    }

    /// `lazarus:` before an error on stderr, in red on a terminal.
    fn error_prefix(&self) -> &'static str {
        if self.err_colour {
            "\x1b[1;31mlazarus:\x1b[0m"
        } else {
            "lazarus:"
        }
    }

    /// Reports a script line that cannot even be parsed as text, as a parse error is.
    fn refuse_line(
        &self,
        line: &str,
        error: CommandError,
        line_no: usize,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Outcome {
        let shown = lang::redact(cmd::registry(), line.trim_end_matches('\r'));
        if self.json {
            print_doc(out, render::json_error(&shown, &error, None), Some(line_no));
        }
        let lazarus = self.error_prefix();
        let _ = writeln!(
            err,
            "{lazarus} line {line_no}: {}",
            render::error_text(&error.to_string(), &error)
        );
        Outcome::Failed(error.kind())
    }

    /// Reports a script line that is not UTF-8.
    fn refuse_not_utf8(
        &self,
        line: &std::string::FromUtf8Error,
        line_no: usize,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Outcome {
        self.refuse_line(
            &String::from_utf8_lossy(line.as_bytes()),
            CommandError::usage("the line is not valid UTF-8: save the script as UTF-8")
                .hinted("save the script as UTF-8"),
            line_no,
            out,
            err,
        )
    }

    /// The follow-ups the last command offered (taken: asked about once). Only the
    /// interactive shell asks; scripts and one-shot commands never run them.
    pub fn take_offers(&self) -> Vec<cmd::Offer> {
        std::mem::take(&mut *self.offers.borrow_mut())
    }

    /// Runs a script: comment lines (`#` first) and blank lines skipped; stops at the first failure
    /// unless `keep_going`. Returns the exit status: the first failure's, or with
    /// `keep_going` the worst one. Without `keep_going` the whole script is read and
    /// parsed first: a line that does not parse (or is not UTF-8) is reported, each such
    /// line, and no line runs (status 2, `usage`: nothing ran), so a typo on line 20
    /// never leaves a runbook's first 19 lines done and the rest not.
    pub fn run_script(
        &self,
        script: &mut dyn BufRead,
        keep_going: bool,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> anyhow::Result<u8> {
        let mut lines = Vec::new();
        for (i, line) in script.split(b'\n').enumerate() {
            let line = line.context("cannot read the script")?;
            let line = String::from_utf8(line).map(|mut line| {
                if line.ends_with('\r') {
                    line.pop();
                }
                // A script saved by an editor that marks UTF-8 (a byte order mark).
                if i == 0 && line.starts_with('\u{feff}') {
                    line.drain(..'\u{feff}'.len_utf8());
                }
                line
            });
            if let Ok(text) = &line {
                if text.trim().is_empty() || lang::is_comment(text) {
                    continue;
                }
            }
            lines.push((i + 1, line));
        }
        if !keep_going {
            let mut refused = 0;
            for (n, line) in &lines {
                match line {
                    Ok(text) => match cmd::parse(text) {
                        // Lines after `exit` never run: a fault there stops nothing.
                        Ok(Some(cmd::Command::Exit)) => break,
                        Ok(_) => continue,
                        Err(e) => self.refuse_parse(text, e, Some(*n), out, err),
                    },
                    Err(e) => self.refuse_not_utf8(e, *n, out, err),
                };
                refused += 1;
            }
            if refused > 0 {
                let lines = if refused == 1 { "line" } else { "lines" };
                let _ = writeln!(
                    err,
                    "{} nothing ran: the script has {refused} {lines} that cannot run as written (above); fix {} and run it again",
                    self.error_prefix(),
                    if refused == 1 { "it" } else { "them" },
                );
                return Ok(EXIT_USAGE);
            }
        }
        let mut status = EXIT_OK;
        for (n, line) in lines {
            let outcome = match line {
                Ok(line) => self.run_line(&line, Some(n), out, err),
                // A line of another encoding is that line's fault: the script goes on
                // as it would after any failing line.
                Err(e) => self.refuse_not_utf8(&e, n, out, err),
            };
            match outcome {
                Outcome::Done => {}
                Outcome::Exit => break,
                failed => {
                    status = status.max(failed.exit_code());
                    if !keep_going {
                        break;
                    }
                }
            }
        }
        Ok(status)
    }
}

/// One `--json` document on its own line; a script's adds `line`, its line number in
/// the script (comments and blank lines count), so each document names the line it
/// answers.
fn print_doc(out: &mut dyn Write, mut doc: serde_json::Value, line_no: Option<usize>) {
    if let Some(n) = line_no {
        doc["line"] = n.into();
    }
    let _ = writeln!(out, "{doc}");
}

impl Drop for Session {
    /// After a Ctrl-C, what the interrupted command left running on blocking threads (a
    /// file being validated or copied by a recovery) must not hold the exit: the runtime
    /// is let go without waiting for it. That work is the command's own and a re-run
    /// redoes it (a recovery's temporary copies are data files its re-run clears). Without
    /// an interruption, the runtime ends as usual.
    fn drop(&mut self) {
        if let (true, Some(runtime)) = (self.interrupted.get(), self.runtime.take()) {
            runtime.shutdown_background();
        }
    }
}

/// Waits for a command. The first Ctrl-C trips its cancel signal (`create db` rolls
/// back) and says what that does to this command (`on_interrupt`, from
/// [`cmd::Command::on_interrupt`]); a second one quits at once, for commands that do not
/// stop.
async fn interruptible<T>(
    mut task: tokio::task::JoinHandle<T>,
    cancel: crate::db::Cancel,
    on_interrupt: &str,
    err: &mut dyn Write,
) -> Result<T, tokio::task::JoinError> {
    tokio::select! {
        res = &mut task => return res,
        Ok(()) = tokio::signal::ctrl_c() => cancel.trip(),
    }
    let _ = writeln!(err, "interrupting: {on_interrupt}");
    tokio::select! {
        res = &mut task => res,
        Ok(()) = tokio::signal::ctrl_c() => std::process::exit(130),
    }
}

/// Candidates for the last of `words` (the word being typed, possibly empty), one a line,
/// for the shell completion scripts. Leading flags are skipped (`--home` is honoured);
/// a partial flag completes to the flags, a path-taking flag's value to paths.
pub fn complete_words(home: Option<PathBuf>, words: &[String]) -> Vec<String> {
    // A flag's value (`--file s`, `--home /tmp/h`): a path, as the shell completes one;
    // after it, commands complete again.
    let value_candidates = |flag: &args::Flag, partial: &str| -> Vec<String> {
        let candidates = match flag.completes {
            args::Completes::Nothing => Vec::new(),
            args::Completes::Paths => lang::path_candidates(partial, false),
            args::Completes::Directories => lang::path_candidates(partial, true),
        };
        candidates.iter().map(|c| unquote_candidate(c)).collect()
    };
    let skipped = args::skip_flags(words);
    if let (Some(flag), Some(partial)) = (skipped.value_of, words.last()) {
        return value_candidates(flag, partial);
    }
    let home = skipped.home.or(home);
    let words = &words[skipped.words..];
    if let [partial] = words {
        // `--file=s`: the value completes as after `--file s`, each candidate the whole
        // word (the bash script keeps what follows the `=` when its words break there).
        if let Some((flag, name, value)) = args::inline_value(partial) {
            return value_candidates(flag, value)
                .into_iter()
                .map(|c| format!("{name}={c}"))
                .collect();
        }
        if partial.starts_with('-') {
            return args::flag_candidates(partial);
        }
    }
    let cluster = resolve_home(home)
        .ok()
        .and_then(|h| Store::new(h).load().ok().flatten());
    let (partial, done) = match words.split_last() {
        Some((last, done)) => (last.as_str(), done),
        None => ("", &[][..]),
    };
    // The shells hand over words already unquoted: quote them the language's way (the
    // word being completed as an open quote, so the completer sees one unfinished word),
    // and hand the candidates back unquoted, for each shell to escape its own way.
    let mut line: String = done.iter().map(|w| quote(w) + " ").collect();
    let quoted = quote(partial);
    match quoted.strip_suffix('"').filter(|_| quoted != partial) {
        Some(open) => line.push_str(open),
        None => line.push_str(partial),
    }
    complete(cmd::registry(), cluster.as_ref(), &line, line.len())
        .candidates
        .into_iter()
        .map(|c| unquote_candidate(&c))
        .collect()
}

/// A candidate as plain text: the language's `"..."` quoting (closed or not) removed.
fn unquote_candidate(candidate: &str) -> String {
    let Some(body) = candidate.strip_prefix('"') else {
        return candidate.to_string();
    };
    let body = body.strip_suffix('"').unwrap_or(body);
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// The binary's whole run, from its arguments (after the program's name) to the exit
/// status. A failure no command reported itself (a wrong flag, a script that cannot be
/// opened, an unusable home) is reported here the way a command's error is: `lazarus:
/// message` on stderr and, with `--json`, one document of the same shape (`ok`, `error`,
/// `kind`, `hints`) whose `command` is the arguments as typed, secrets hidden.
pub fn main(args: Vec<std::ffi::OsString>) -> u8 {
    let typed = args
        .iter()
        .map(|a| quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    let (json, result) = match Args::parse(args) {
        Ok(args) => (args.json, run(args)),
        Err(e) => (e.json, Err(CommandError::from(e).into())),
    };
    let e = match result {
        Ok(code) => return code,
        Err(e) => e,
    };
    // The kind of the command error inside, with the context around it in the message;
    // what is left is the operating system refusing something (a terminal, a thread).
    let error = match e.downcast_ref::<CommandError>() {
        Some(inner) => {
            let mut error = CommandError::new(inner.kind(), format!("{e:#}"));
            for hint in inner.hints() {
                error = error.hinted(hint.clone());
            }
            error
        }
        None => CommandError::io(format!("{e:#}")),
    };
    if json {
        let command = lang::redact(cmd::registry(), &typed);
        println!("{}", render::json_error(&command, &error, None));
    }
    eprintln!(
        "lazarus: {}",
        render::error_text(&error.to_string(), &error)
    );
    error.kind().exit_code()
}

/// `--help`: the usage text (with `--json`, `{"usage": ...}` and its lines).
#[derive(serde::Serialize)]
struct UsageText {
    usage: String,
}

impl cmd::Render for UsageText {
    fn render(&self, text: &mut cmd::Text) {
        text.line(self.usage.clone());
    }
}

/// `--version`: `lazarus 0.1.0` (with `--json`, `{"version": "0.1.0"}`).
#[derive(serde::Serialize)]
struct VersionText {
    version: &'static str,
}

impl cmd::Render for VersionText {
    fn render(&self, text: &mut cmd::Text) {
        text.line(format!("lazarus {}", self.version));
    }
}

/// `complete -- <words>` (what the shell completion scripts ask): one candidate a line
/// (with `--json`, one document whose `result` is the list).
#[derive(serde::Serialize)]
#[serde(transparent)]
struct Candidates(Vec<String>);

impl cmd::Render for Candidates {
    fn render(&self, text: &mut cmd::Text) {
        for c in &self.0 {
            text.line(c.clone());
        }
    }
}

/// Runs the binary's chosen mode; returns the exit status.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut out = io::stdout().lock();
    match &args.mode {
        Mode::Usage | Mode::Version => {
            let (flag, reply) = match args.mode {
                Mode::Usage => ("--help", cmd::Reply::of(&UsageText { usage: usage() })?),
                _ => (
                    "--version",
                    cmd::Reply::of(&VersionText {
                        version: env!("CARGO_PKG_VERSION"),
                    })?,
                ),
            };
            match args.json {
                true => writeln!(out, "{}", render::json_ok(flag, &reply))?,
                false => write!(out, "{}", render::text(&reply))?,
            }
            return Ok(EXIT_OK);
        }
        Mode::Complete(words) => {
            let candidates = Candidates(complete_words(args.home.clone(), words));
            match args.json {
                true => {
                    let mut command = vec!["complete".to_string(), "--".to_string()];
                    command.extend(words.iter().map(|w| quote(w)));
                    let reply = cmd::Reply::of(&candidates)?;
                    writeln!(out, "{}", render::json_ok(&command.join(" "), &reply))?
                }
                false => {
                    for c in &candidates.0 {
                        writeln!(out, "{c}")?;
                    }
                }
            }
            return Ok(EXIT_OK);
        }
        _ => {}
    }
    let session = Session::new(&args)?;
    let mut err = io::stderr();
    match &args.mode {
        Mode::OneShot(words) => {
            let line: Vec<String> = words.iter().map(|w| quote(w)).collect();
            Ok(session
                .run_line(&line.join(" "), None, &mut out, &mut err)
                .exit_code())
        }
        _ => {
            // `--file -`: the script is stdin, as for other tools (even on a terminal).
            let stdin_script = args.file.as_deref() == Some(std::path::Path::new("-"));
            if let Some(file) = args.file.as_ref().filter(|_| !stdin_script) {
                let script = std::fs::File::open(file).map_err(|e| {
                    let message = format!("cannot open script `{}`: {e}", file.display());
                    match e.kind() {
                        io::ErrorKind::NotFound => CommandError::not_found(message),
                        _ => CommandError::io(message),
                    }
                })?;
                session.run_script(
                    &mut io::BufReader::new(script),
                    args.continue_on_error,
                    &mut out,
                    &mut err,
                )
            } else if io::stdin().is_terminal() && !stdin_script {
                drop(out);
                repl::run(&session)
            } else {
                session.run_script(
                    &mut io::stdin().lock(),
                    args.continue_on_error,
                    &mut out,
                    &mut err,
                )
            }
        }
    }
}
