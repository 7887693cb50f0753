//! The binary's flags. Flags come first; the first other word starts the command.

use std::ffi::OsString;
use std::path::PathBuf;

use thiserror::Error;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    pub json: bool,
    pub home: Option<PathBuf>,
    pub continue_on_error: bool,
    pub redis_server: Option<PathBuf>,
    /// `--max-concurrency <n>`: operations in flight at once on each other host.
    pub max_concurrency: Option<usize>,
    /// Its text until it is checked.
    max_concurrency_text: Option<String>,
    pub file: Option<PathBuf>,
    pub mode: Mode,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// The REPL on a terminal, else a script on stdin (or `--file`).
    #[default]
    Session,
    /// `lazarus <words...>`: one command.
    OneShot(Vec<String>),
    /// `lazarus complete -- <words...>` (hidden): completion candidates for the last word,
    /// one a line, for the shell completion scripts.
    Complete(Vec<String>),
    Usage,
    Version,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UsageError {
    #[error("`{0}` needs a value")]
    MissingValue(String),
    #[error("unknown flag `{0}` (see `lazarus --help`)")]
    UnknownFlag(String),
    #[error("argument `{0}` is not valid UTF-8")]
    NotUtf8(String),
    #[error("`--file` runs a script: give it without a command")]
    FileAndCommand,
    #[error("`--max-concurrency` takes a number from 1 to 1024, not `{0}`")]
    BadConcurrency(String),
}

/// Flags that cannot be parsed: the fault, and whether `--json` was among the leading
/// flags, so that even this error is reported as a JSON document.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{error}")]
pub struct BadArgs {
    pub error: UsageError,
    pub json: bool,
}

impl crate::error::DomainError for BadArgs {
    fn kind(&self) -> crate::error::ErrorKind {
        self.error.kind()
    }

    fn hints(&self) -> Vec<String> {
        self.error.hints()
    }
}

impl crate::error::DomainError for UsageError {
    fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::Usage
    }

    fn hints(&self) -> Vec<String> {
        match self {
            UsageError::UnknownFlag(_) => vec!["see `lazarus --help`".into()],
            _ => Vec::new(),
        }
    }
}

/// One of the binary's flags. [`FLAGS`] drives parsing ([`Args::parse`]), the usage text
/// ([`usage`]) and completion ([`flag_candidates`], [`skip_flags`]), so they never
/// disagree.
pub struct Flag {
    pub long: &'static str,
    pub short: Option<&'static str>,
    /// The value's placeholder (`dir`), for a flag that takes one.
    pub value: Option<&'static str>,
    /// Lines of help text.
    pub help: &'static [&'static str],
    /// What completes the flag's value.
    pub completes: Completes,
    /// Records the flag (and its value) in the arguments.
    set: fn(&mut Args, Option<String>),
}

impl Flag {
    /// `-f, --file <script>`.
    fn spelling(&self) -> String {
        let mut text = String::new();
        if let Some(short) = self.short {
            text.push_str(short);
            text.push_str(", ");
        }
        text.push_str(self.long);
        if let Some(value) = self.value {
            text.push_str(&format!(" <{value}>"));
        }
        text
    }

    fn is(&self, word: &str) -> bool {
        word == self.long || self.short == Some(word)
    }
}

/// How completion offers a flag's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completes {
    /// Nothing (a flag without a value, or a number).
    Nothing,
    /// Files and directories, as the shell's path completion.
    Paths,
    /// Directories only.
    Directories,
}

fn value(v: Option<String>) -> PathBuf {
    v.unwrap_or_default().into()
}

/// The binary's flags, in the order the usage text lists them.
pub static FLAGS: &[Flag] = &[
    Flag {
        long: "--json",
        short: None,
        value: None,
        help: &["print each command's result as one JSON document"],
        completes: Completes::Nothing,
        set: |a, _| a.json = true,
    },
    Flag {
        long: "--home",
        short: None,
        value: Some("dir"),
        help: &[
            "where the cluster configuration lives (env LAZARUS_HOME;",
            "default: the user's data directory)",
        ],
        completes: Completes::Directories,
        set: |a, v| a.home = Some(value(v)),
    },
    Flag {
        long: "--file",
        short: Some("-f"),
        value: Some("script"),
        help: &["run a script: one command a line, `#` comment lines (`-`: stdin)"],
        completes: Completes::Paths,
        set: |a, v| a.file = Some(value(v)),
    },
    Flag {
        long: "--continue-on-error",
        short: None,
        value: None,
        help: &["in a script, run the remaining lines after a failure"],
        completes: Completes::Nothing,
        set: |a, _| a.continue_on_error = true,
    },
    Flag {
        long: "--redis-server",
        short: None,
        value: Some("path"),
        help: &["the redis-server binary to run shards with"],
        completes: Completes::Paths,
        set: |a, v| a.redis_server = Some(value(v)),
    },
    Flag {
        long: "--max-concurrency",
        short: None,
        value: Some("n"),
        help: &[
            "operations in flight at once on each node's host over ssh",
            "(default: twice this machine's cores)",
        ],
        completes: Completes::Nothing,
        set: |a, v| a.max_concurrency_text = v,
    },
    Flag {
        long: "--help",
        short: Some("-h"),
        value: None,
        help: &["this text; `lazarus help` lists the commands"],
        completes: Completes::Nothing,
        set: |a, _| a.mode = Mode::Usage,
    },
    Flag {
        long: "--version",
        short: Some("-V"),
        value: None,
        help: &["the version"],
        completes: Completes::Nothing,
        set: |a, _| a.mode = Mode::Version,
    },
];

/// The flag `word` names (`--home`, `-f`, or `--home=/x` with its inline value).
fn find_flag(word: &str) -> Option<(&'static Flag, Option<String>)> {
    let (name, inline) = match word.split_once('=') {
        Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
        _ => (word, None),
    };
    FLAGS.iter().find(|f| f.is(name)).map(|f| (f, inline))
}

/// `--flag=value` for a flag that takes a value: the flag, its name as typed and the
/// value (being completed).
pub fn inline_value(word: &str) -> Option<(&'static Flag, &str, &str)> {
    let (name, value) = word.split_once('=')?;
    match find_flag(word)? {
        (flag, Some(_)) if flag.value.is_some() => Some((flag, name, value)),
        _ => None,
    }
}

/// `lazarus --help`.
pub fn usage() -> String {
    const WIDTH: usize = 23;
    let mut text = String::from(
        "\
lazarus: an rladmin-style admin and recovery shell for Redis OSS / Valkey clusters

usage:
  lazarus [flags]                  the shell (a script when stdin is not a terminal)
  lazarus [flags] <command...>     run one command, such as `lazarus info cluster`
  lazarus [flags] --file <script>  run a script: one command a line, `#` comment lines

flags:
",
    );
    for flag in FLAGS {
        let spelling = flag.spelling();
        for (i, line) in flag.help.iter().enumerate() {
            let left = if i == 0 { spelling.as_str() } else { "" };
            text.push_str(&format!("  {left:WIDTH$}{line}\n"));
        }
    }
    text.push_str(
        "\nexit status: 0 all commands succeeded, 1 a command failed, 2 usage or parse error",
    );
    text
}

/// Every spelling of every flag that starts with `partial`, for completion.
pub fn flag_candidates(partial: &str) -> Vec<String> {
    FLAGS
        .iter()
        .flat_map(|f| f.short.into_iter().chain([f.long]))
        .filter(|s| s.starts_with(partial))
        .map(str::to_string)
        .collect()
}

/// The leading flags of a line being completed.
pub struct Skipped {
    /// How many words are leading flags (with their values).
    pub words: usize,
    /// The `--home` they give.
    pub home: Option<PathBuf>,
    /// The flag whose value is the last word, being typed (`--file s`).
    pub value_of: Option<&'static Flag>,
}

/// How many of `words` are leading flags (with their values), and the `--home` they
/// give: completion skips them to reach the command. The last word is never skipped as
/// a flag: it is the one being completed, a command word or (`value_of`) a flag's value.
pub fn skip_flags(words: &[String]) -> Skipped {
    let mut home = None;
    let mut i = 0;
    while i + 1 < words.len() && words[i].starts_with('-') {
        let Some((flag, inline)) = find_flag(&words[i]) else {
            i += 1;
            continue;
        };
        let takes_next = flag.value.is_some() && inline.is_none();
        if takes_next && i + 2 == words.len() {
            return Skipped {
                words: words.len(),
                home,
                value_of: Some(flag),
            };
        }
        let value = if takes_next {
            words.get(i + 1).cloned()
        } else {
            inline
        };
        if flag.long == "--home" {
            home = value.map(PathBuf::from);
        }
        i += if takes_next { 2 } else { 1 };
    }
    Skipped {
        words: i.min(words.len()),
        home,
        value_of: None,
    }
}

/// Whether `--json` is one of the leading flags (their values skipped), whatever else
/// is wrong with them.
fn json_among_flags(args: &[OsString]) -> bool {
    let mut words = args.iter().map(|a| a.to_string_lossy());
    while let Some(word) = words.next() {
        if word == "--json" {
            return true;
        }
        if !word.starts_with('-') || word == "--" {
            return false;
        }
        if let Some((flag, None)) = find_flag(&word) {
            if flag.value.is_some() {
                words.next();
            }
        }
    }
    false
}

impl Args {
    /// The flags and the mode. On a fault, [`BadArgs::json`] says whether `--json` was
    /// among the leading flags (before the fault or after it).
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Args, BadArgs> {
        let args: Vec<OsString> = args.into_iter().collect();
        Args::parse_words(&args).map_err(|error| BadArgs {
            error,
            json: json_among_flags(&args),
        })
    }

    fn parse_words(args: &[OsString]) -> Result<Args, UsageError> {
        let mut words = Vec::new();
        for arg in args {
            words.push(
                arg.clone()
                    .into_string()
                    .map_err(|a| UsageError::NotUtf8(a.to_string_lossy().into_owned()))?,
            );
        }
        let mut parsed = Args::default();
        let mut rest = words.into_iter();
        while let Some(word) = rest.next() {
            if let Some((flag, inline)) = find_flag(&word) {
                let value = match (flag.value, inline) {
                    (None, _) => None,
                    (Some(_), Some(v)) => Some(v),
                    (Some(_), None) => rest.next(),
                };
                // An empty value (`--home ""`, `--file=`) names no path: the current
                // directory would silently stand for it.
                if flag.value.is_some() && value.as_deref().is_none_or(str::is_empty) {
                    return Err(UsageError::MissingValue(flag.long.to_string()));
                }
                (flag.set)(&mut parsed, value);
                if let Some(text) = parsed.max_concurrency_text.take() {
                    parsed.max_concurrency = Some(
                        text.parse::<usize>()
                            .ok()
                            .filter(|n| (1..=1024).contains(n))
                            .ok_or(UsageError::BadConcurrency(text))?,
                    );
                }
                continue;
            }
            match word.as_str() {
                "--" => {
                    // Nothing after it: no command, as without `--` (a script on stdin,
                    // or the shell), never an empty command that runs nothing.
                    let command: Vec<String> = rest.collect();
                    if !command.is_empty() {
                        parsed.mode = Mode::OneShot(command);
                    }
                    break;
                }
                "complete" => {
                    let mut words: Vec<String> = rest.collect();
                    if words.first().is_some_and(|w| w == "--") {
                        words.remove(0);
                    }
                    parsed.mode = Mode::Complete(words);
                    break;
                }
                f if f.starts_with('-') && f.len() > 1 && !f.starts_with("-1") => {
                    let name = f.split_once('=').map_or(f, |(name, _)| name);
                    return Err(UsageError::UnknownFlag(name.to_string()));
                }
                _ => {
                    let mut command = vec![word];
                    command.extend(rest);
                    parsed.mode = Mode::OneShot(command);
                    break;
                }
            }
        }
        if parsed.file.is_some() && matches!(parsed.mode, Mode::OneShot(_)) {
            return Err(UsageError::FileAndCommand);
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Args, UsageError> {
        Args::parse(words.iter().map(OsString::from)).map_err(|e| e.error)
    }

    /// A fault still says whether `--json` was asked, before it or after it, so that the
    /// error is a JSON document too; a command's own `--json` word is not a flag.
    #[test]
    fn a_fault_knows_whether_json_was_asked() {
        let json = |words: &[&str]| {
            Args::parse(words.iter().map(OsString::from))
                .unwrap_err()
                .json
        };
        assert!(json(&["--json", "--bogus"]));
        assert!(json(&["--bogus", "--json"]));
        assert!(json(&["--json", "--home"]));
        assert!(json(&["--json", "--max-concurrency", "0"]));
        assert!(!json(&["--bogus"]));
        assert!(json(&["--home", "/h", "--json", "--bogus"]));
        assert!(!json(&["--home", "--json", "--bogus"]));
        assert!(!json(&["--file", "s", "info", "--json"]));
    }

    #[test]
    fn max_concurrency_is_a_number() {
        assert_eq!(
            parse(&["--max-concurrency", "8", "status"])
                .unwrap()
                .max_concurrency,
            Some(8)
        );
        assert_eq!(
            parse(&["--max-concurrency=0"]),
            Err(UsageError::BadConcurrency("0".into()))
        );
        assert_eq!(
            parse(&["--max-concurrency", "many"]),
            Err(UsageError::BadConcurrency("many".into()))
        );
    }

    #[test]
    fn flags_then_command() {
        let args = parse(&["--json", "--home=/h", "info", "cluster", "--json"]).unwrap();
        assert!(args.json);
        assert_eq!(args.home, Some(PathBuf::from("/h")));
        assert_eq!(
            args.mode,
            Mode::OneShot(vec!["info".into(), "cluster".into(), "--json".into()])
        );
        assert_eq!(
            parse(&["--home"]),
            Err(UsageError::MissingValue("--home".into()))
        );
        for empty in [
            &["--home", ""][..],
            &["--file="],
            &["--redis-server", "", "status"],
        ] {
            assert!(
                matches!(parse(empty), Err(UsageError::MissingValue(_))),
                "{empty:?}"
            );
        }
        assert_eq!(
            parse(&["--nope"]),
            Err(UsageError::UnknownFlag("--nope".into()))
        );
        assert_eq!(
            parse(&["complete", "--", "node", ""]).unwrap().mode,
            Mode::Complete(vec!["node".into(), "".into()])
        );
        assert_eq!(parse(&[]).unwrap().mode, Mode::Session);
        assert_eq!(parse(&["--json", "--"]).unwrap().mode, Mode::Session);
        assert_eq!(
            parse(&["--", "--json"]).unwrap().mode,
            Mode::OneShot(vec!["--json".into()])
        );
    }

    #[test]
    fn every_flag_in_the_table_parses_in_each_spelling() {
        for flag in FLAGS {
            // A value the flag takes: a number for the one that counts.
            let v = if flag.value == Some("n") { "4" } else { "/v" };
            let spellings = flag.short.into_iter().chain([flag.long]);
            for spelling in spellings {
                let mut words = vec![spelling.to_string()];
                if flag.value.is_some() {
                    words.push(v.into());
                }
                let args = Args::parse(words.iter().map(OsString::from))
                    .unwrap_or_else(|e| panic!("{spelling}: {e}"));
                assert_ne!(args, Args::default(), "{spelling} changed nothing");
            }
            if flag.value.is_some() {
                let inline = format!("{}={v}", flag.long);
                assert_ne!(parse(&[&inline]).unwrap(), Args::default(), "{inline}");
                assert_eq!(
                    parse(&[flag.long]),
                    Err(UsageError::MissingValue(flag.long.into()))
                );
            }
        }
        assert_eq!(parse(&["-f", "s.txt"]).unwrap().file, Some("s.txt".into()));
    }

    #[test]
    fn completion_reads_the_table() {
        assert_eq!(flag_candidates("-f"), ["-f"]);
        assert_eq!(flag_candidates("--f"), ["--file"]);
        let all = flag_candidates("-");
        for flag in FLAGS {
            assert!(all.contains(&flag.long.to_string()), "{}", flag.long);
        }
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let skip = |w: &[&str]| {
            let s = skip_flags(&words(w));
            (s.words, s.home, s.value_of.map(|f| f.long))
        };
        assert_eq!(
            skip(&["--json", "--home", "/h", "-f", "x", "node", ""]),
            (5, Some("/h".into()), None)
        );
        assert_eq!(
            skip(&["--home=/h", "info", ""]),
            (1, Some("/h".into()), None)
        );
        assert_eq!(skip(&["--ho"]), (0, None, None));
        // The last word is a flag's value.
        assert_eq!(skip(&["--json", "-f", "s"]), (3, None, Some("--file")));
        assert_eq!(skip(&["--home", ""]), (2, None, Some("--home")));
    }

    #[test]
    fn usage_lists_every_flag() {
        insta::assert_snapshot!(usage());
    }
}
