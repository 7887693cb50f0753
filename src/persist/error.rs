//! The first fault found in a file: where, what was expected there, and what kind of
//! fault it is.

use std::fmt;

/// How a fault bears on the file's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultKind {
    /// The data stops before a record is complete.
    Truncated,
    /// The bytes present contradict the format.
    Corrupt,
    /// A format version (or type) newer than this reader knows.
    Unsupported,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub kind: FaultKind,
    pub offset: u64,
    pub expected: String,
}

impl ParseError {
    pub fn corrupt(offset: u64, expected: impl Into<String>) -> Self {
        ParseError {
            kind: FaultKind::Corrupt,
            offset,
            expected: expected.into(),
        }
    }

    pub fn truncated(offset: u64, expected: impl Into<String>) -> Self {
        ParseError {
            kind: FaultKind::Truncated,
            offset,
            expected: expected.into(),
        }
    }

    pub fn unsupported(offset: u64, expected: impl Into<String>) -> Self {
        ParseError {
            kind: FaultKind::Unsupported,
            offset,
            expected: expected.into(),
        }
    }

    /// Adds where the fault sits (e.g. "in the value of the record at 1234").
    pub fn within(mut self, context: impl fmt::Display) -> Self {
        self.expected = format!("{} ({context})", self.expected);
        self
    }
}

/// A fault inside an in-memory blob (listpack, ziplist, intset, zipmap): its offset is
/// relative to the blob's first byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobFault {
    pub at: usize,
    pub expected: String,
}

impl BlobFault {
    pub fn new(at: usize, expected: impl Into<String>) -> Self {
        BlobFault {
            at,
            expected: expected.into(),
        }
    }
}

pub(crate) type BlobResult<T> = Result<T, BlobFault>;
