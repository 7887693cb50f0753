//! Error kinds: what class of failure an error is, shared by every layer's error type so
//! that the exit status and the JSON `kind` are decided once, from the error itself.

use std::fmt;

use serde::Serialize;

/// The class of a failure. Each layer's error type says its kind ([`DomainError::kind`]);
/// the shell turns it into the exit status ([`ErrorKind::exit_code`]) and the `kind` of
/// the `--json` document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The command line or a flag is wrong, or a file the operator gives as input holds
    /// the wrong thing (TLS material that does not fit together, an age recipients or
    /// identity file that holds no key): nothing ran. A file that is missing is
    /// [`ErrorKind::NotFound`], one the system refuses to read [`ErrorKind::Io`]; data
    /// Lazarus reads as it is (persistence files, a CCS, a backup run) is
    /// [`ErrorKind::Damaged`].
    Usage,
    /// What the command names does not exist: a node, a database, a file, a cluster.
    NotFound,
    /// The command contradicts what is there: a name or port in use, a node holding
    /// shards, a database pending recovery.
    Conflict,
    /// Something the command needs does not answer or cannot run: `redis-server`
    /// missing, a shard that does not start, the configuration locked by another shell.
    Unavailable,
    /// Data that should be readable is not: a corrupt CCS, damaged persistence files.
    Damaged,
    /// The operating system refused a file operation.
    Io,
    /// The operator stopped the command (Ctrl-C).
    Interrupted,
    /// A bug in Lazarus.
    Internal,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Usage,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Unavailable,
        ErrorKind::Damaged,
        ErrorKind::Io,
        ErrorKind::Interrupted,
        ErrorKind::Internal,
    ];

    /// The process exit status for a failure of this kind: 2 for usage, 1 for the rest.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Usage => 2,
            _ => 1,
        }
    }

    /// The name in JSON (`not_found`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Usage => "usage",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Damaged => "damaged",
            ErrorKind::Io => "io",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error of one layer (store, server, databases, recovery, the language) that knows
/// its kind and, where its message suggests a next step, that step as a hint.
pub trait DomainError: std::error::Error {
    fn kind(&self) -> ErrorKind;

    /// Next steps the message suggests (`run \`recover db x\` first`), each a sentence
    /// fragment a script can show on its own; empty when there is none.
    fn hints(&self) -> Vec<String> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_name_themselves_and_choose_the_exit_status() {
        for kind in ErrorKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str());
            let expected = if kind == ErrorKind::Usage { 2 } else { 1 };
            assert_eq!(kind.exit_code(), expected, "{kind}");
        }
    }
}
