//! The command language: lexer, typed values, syntax specs, the matcher that walks a spec
//! over a line, parse errors, and completion/hints from the same specs.

pub mod complete;
pub mod error;
pub mod lexer;
pub mod mask;
pub mod matcher;
#[cfg(test)]
mod matcher_tests;
pub mod parse;
pub mod syntax;
pub mod value;

pub use complete::{complete, hint, path_candidates, Completion};
pub use error::ParseError;
pub use lexer::{lex, quote, Token};
pub use mask::{hide, redact, Hidden, MASK};
pub use matcher::Match;
pub use parse::{is_comment, parse};
pub use syntax::{Element, Opt, Syntax};
pub use value::{DbRef, DbSet, HostPort, NoSuchDatabase, Value, ValueKind};
