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

/// Boxed, so that `Result<T, ParseError>` stays two words on the hot path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ParseError(Box<FaultAt>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FaultAt {
    pub kind: FaultKind,
    pub offset: u64,
    pub expected: String,
}

impl std::ops::Deref for ParseError {
    type Target = FaultAt;
    fn deref(&self) -> &FaultAt {
        &self.0
    }
}

impl ParseError {
    #[cold]
    fn new(kind: FaultKind, offset: u64, expected: String) -> Self {
        ParseError(Box::new(FaultAt {
            kind,
            offset,
            expected,
        }))
    }

    pub fn into_inner(self) -> FaultAt {
        *self.0
    }

    pub fn with_kind(mut self, kind: FaultKind) -> Self {
        self.0.kind = kind;
        self
    }

    pub fn corrupt(offset: u64, expected: impl Into<String>) -> Self {
        Self::new(FaultKind::Corrupt, offset, expected.into())
    }

    pub fn truncated(offset: u64, expected: impl Into<String>) -> Self {
        Self::new(FaultKind::Truncated, offset, expected.into())
    }

    pub fn unsupported(offset: u64, expected: impl Into<String>) -> Self {
        Self::new(FaultKind::Unsupported, offset, expected.into())
    }

    /// Adds where the fault sits (e.g. "in the value of the record at 1234").
    #[cold]
    pub fn within(mut self, context: impl fmt::Display) -> Self {
        self.0.expected = format!("{} ({context})", self.0.expected);
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
