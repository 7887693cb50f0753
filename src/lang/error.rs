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
    ///
    /// A line longer than [`ECHO_MAX`] characters is shown around the fault only, each
    /// cut marked `…`, the caret at most that wide: a runaway line of a runbook (a value
    /// pasted a thousand times, spaces to the margin) does not fill the terminal.
    pub fn render(&self, line: &str) -> String {
        let start = self.span.start.min(line.len());
        let end = self.span.end.clamp(start, line.len());
        let chars = |s: &str| s.chars().count();
        if chars(line) <= ECHO_MAX {
            let pad = chars(&line[..start]);
            let width = chars(&line[start..end]).max(1);
            return format!(
                "{self}\n  {line}\n  {}{}",
                " ".repeat(pad),
                "^".repeat(width)
            );
        }
        // The window: some context before the fault, the fault (cut), a little after.
        let before: Vec<char> = line[..start].chars().collect();
        let fault: Vec<char> = line[start..end].chars().collect();
        let after: Vec<char> = line[end..].chars().collect();
        let lead = before.len().min(ECHO_MAX / 3);
        let shown_fault = fault.len().min(ECHO_MAX / 2);
        let trail = after.len().min(ECHO_MAX - lead - shown_fault);
        let mut echo = String::new();
        if lead < before.len() {
            echo.push('…');
        }
        echo.extend(&before[before.len() - lead..]);
        let pad = chars(&echo);
        echo.extend(&fault[..shown_fault]);
        if shown_fault < fault.len() {
            echo.push('…');
        } else {
            echo.extend(&after[..trail]);
        }
        if (shown_fault < fault.len() || trail < after.len()) && !echo.ends_with('…') {
            echo.push('…');
        }
        format!(
            "{self}\n  {echo}\n  {}{}",
            " ".repeat(pad),
            "^".repeat(shown_fault.max(1))
        )
    }
}

/// The longest line an error echoes whole, in characters.
pub const ECHO_MAX: usize = 120;

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
    fn a_long_line_is_echoed_around_its_fault() {
        // A runaway value: the fault is cut, the caret as wide as what is shown.
        let line = format!("info node {}", "1".repeat(100_000));
        let err = ParseError::new(10..line.len(), "bad".into());
        let text = err.render(&line);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], format!("  info node {}…", "1".repeat(60)));
        assert_eq!(lines[2], format!("  {}{}", " ".repeat(10), "^".repeat(60)));
        // Spaces to the margin before the fault: the line starts cut.
        let line = format!("info node 1{}# trailing", " ".repeat(100_000));
        let at = line.find('#').unwrap();
        let err = ParseError::new(at..at + 1, "unexpected `#`".into());
        let text = err.render(&line);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], format!("  …{}# trailing", " ".repeat(40)));
        assert_eq!(lines[2], format!("  {}^", " ".repeat(41)));
        assert!(text.len() < 300, "{}", text.len());
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
