//! Parse errors: a byte span, what was expected there, the nearest valid word, and a
//! rendering of the line with a caret under the fault.

use std::fmt;
use std::ops::Range;

/// An error in command text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Bytes of the line at fault; empty at the end of the line when something is missing.
    pub span: Range<usize>,
    pub message: String,
    /// The keyword the user most likely meant.
    pub suggestion: Option<String>,
}

impl ParseError {
    pub fn new(span: Range<usize>, message: String) -> ParseError {
        ParseError {
            span,
            message,
            suggestion: None,
        }
    }

    pub fn with_suggestion(mut self, suggestion: Option<String>) -> ParseError {
        self.suggestion = suggestion;
        self
    }

    /// The message, then the line with `^^^` under the span:
    ///
    /// ```text
    /// unknown command `clustr`, did you mean `cluster`?
    ///   clustr create name x
    ///   ^^^^^^
    /// ```
    pub fn render(&self, line: &str) -> String {
        let start = self.span.start.min(line.len());
        let end = self.span.end.clamp(start, line.len());
        let pad = line[..start].chars().count();
        let width = line[start..end].chars().count().max(1);
        format!(
            "{self}\n  {line}\n  {}{}",
            " ".repeat(pad),
            "^".repeat(width)
        )
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(s) = &self.suggestion {
            write!(f, ", did you mean `{s}`?")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

/// Command text that does not parse is always a usage error; the nearest keyword is its
/// hint.
impl crate::error::DomainError for ParseError {
    fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::Usage
    }

    fn hints(&self) -> Vec<String> {
        self.suggestion
            .iter()
            .map(|s| format!("did you mean `{s}`?"))
            .collect()
    }
}

/// The candidate closest to `word`, if any is close enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    // An empty word (`""`) is no typo of anything, not even of a one-letter keyword.
    if word.trim().is_empty() {
        return None;
    }
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&word, c), c))
        .filter(|(score, c)| {
            *score >= 0.8 || strsim::damerau_levenshtein(&word, c) <= (c.len() / 3).max(1)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret_under_span() {
        let err =
            ParseError::new(8..11, "unexpected `lst`".into()).with_suggestion(Some("list".into()));
        assert_eq!(
            err.render("recover lst"),
            "unexpected `lst`, did you mean `list`?\n  recover lst\n          ^^^"
        );
        let end = ParseError::new(4..4, "missing".into());
        assert_eq!(end.render("node"), "missing\n  node\n      ^");
    }

    #[test]
    fn nearest_keyword() {
        assert_eq!(nearest("lst", ["list", "all", "db"]), Some("list".into()));
        assert_eq!(
            nearest("CLUSTR", ["cluster", "node"]),
            Some("cluster".into())
        );
        assert_eq!(nearest("zzzz", ["cluster", "node"]), None);
        assert_eq!(nearest("", ["?", "node"]), None);
    }
}
