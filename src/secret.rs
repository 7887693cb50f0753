//! [`Secret`]: a password as one type from the parser to the CCS, so that no `Display`,
//! `Debug` or JSON of a command, reply or error can show it.

use std::fmt;

use serde::{Serialize, Serializer};

/// How a secret reads anywhere it is shown.
pub const HIDDEN: &str = "***";

/// A password. `Display`, `Debug` and `Serialize` all give `***`; the value itself only
/// through [`Secret::expose`], where it is handed to what needs it (the CCS, which keeps
/// it in a file only its owner reads, and `redis.conf`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HIDDEN)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HIDDEN)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(HIDDEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shown() {
        let s = Secret::new("hunter2");
        assert_eq!(s.to_string(), "***");
        assert_eq!(format!("{s:?} {s:#?}"), "*** ***");
        assert_eq!(serde_json::to_string(&Some(&s)).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2");
    }
}
