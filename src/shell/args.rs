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

pub const USAGE: &str = "\
lazarus: an rladmin-style admin and recovery shell for Redis OSS / Valkey clusters

usage:
  lazarus [flags]                  the shell (a script when stdin is not a terminal)
  lazarus [flags] <command...>     run one command, such as `lazarus info cluster`
  lazarus [flags] --file <script>  run a script: one command a line, `#` comments

flags:
  --json                 print each command's result as one JSON document
  --home <dir>           where the cluster configuration lives (env LAZARUS_HOME;
                         default: the user's data directory)
  --continue-on-error    in a script, run the remaining lines after a failure
  --redis-server <path>  the redis-server binary to run shards with
  -h, --help             this text; `lazarus help` lists the commands
  -V, --version          the version

exit status: 0 all commands succeeded, 1 a command failed, 2 usage or parse error";

impl Args {
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Args, UsageError> {
        let mut words = Vec::new();
        for arg in args {
            words.push(
                arg.into_string()
                    .map_err(|a| UsageError::NotUtf8(a.to_string_lossy().into_owned()))?,
            );
        }
        let mut parsed = Args::default();
        let mut rest = words.into_iter();
        while let Some(word) = rest.next() {
            let (flag, inline) = match word.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (word.clone(), None),
            };
            let mut value = |name: &str| match inline.clone() {
                Some(v) => Ok(v),
                None => rest
                    .next()
                    .ok_or_else(|| UsageError::MissingValue(name.to_string())),
            };
            match flag.as_str() {
                "--json" => parsed.json = true,
                "--continue-on-error" => parsed.continue_on_error = true,
                "--home" => parsed.home = Some(value("--home")?.into()),
                "--redis-server" => parsed.redis_server = Some(value("--redis-server")?.into()),
                "--file" | "-f" => parsed.file = Some(value("--file")?.into()),
                "-h" | "--help" => parsed.mode = Mode::Usage,
                "-V" | "--version" => parsed.mode = Mode::Version,
                "--" => {
                    parsed.mode = Mode::OneShot(rest.collect());
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
                    return Err(UsageError::UnknownFlag(f.to_string()))
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
        Args::parse(words.iter().map(OsString::from))
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
        assert_eq!(
            parse(&["--nope"]),
            Err(UsageError::UnknownFlag("--nope".into()))
        );
        assert_eq!(
            parse(&["complete", "--", "node", ""]).unwrap().mode,
            Mode::Complete(vec!["node".into(), "".into()])
        );
        assert_eq!(parse(&[]).unwrap().mode, Mode::Session);
    }
}
