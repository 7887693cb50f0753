//! Parsing a whole line against the registry: the first form that takes it wins; when
//! none does, the error comes from the forms that got furthest.

use super::error::{nearest, ParseError};
use super::lexer::{lex, Token};
use super::mask::{masked, secret_ranges, shown};
use super::matcher::{walk, Expect, Match, Walk};
use super::syntax::Syntax;

/// Parses a line with the first syntax that takes it whole. `Ok(None)` for a blank line.
/// When none fits, the error comes from the syntaxes that got furthest.
pub fn parse<T>(registry: &[&Syntax<T>], line: &str) -> Result<Option<T>, ParseError> {
    if is_comment(line) {
        return Ok(None);
    }
    let tokens = lex(line)?;
    if tokens.is_empty() {
        return Ok(None);
    }
    let mut best: Vec<(usize, Walk)> = Vec::new();
    let mut best_at = 0;
    for syntax in registry {
        let walk = walk(syntax, &tokens);
        if walk.is_complete() {
            let span = tokens[0].span.start..tokens[tokens.len() - 1].span.end;
            let found = Match {
                items: walk.items,
                span,
            };
            return (syntax.build)(&found).map(Some);
        }
        let at = walk.failure.as_ref().map_or(tokens.len(), |f| f.at);
        if at > best_at {
            best.clear();
            best_at = at;
        }
        if at == best_at {
            best.push((at, walk));
        }
    }
    Err(explain(registry, line, &tokens, best_at, &best))
}

/// A comment line: its first word starts with `#` (no command does). Comments are whole
/// lines only: after a command, a word starting with `#` is a value (a password or a path
/// may be `#...`) or an error, never a comment, so nothing typed is dropped unseen.
pub fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

fn explain<T>(
    registry: &[&Syntax<T>],
    line: &str,
    tokens: &[Token],
    at: usize,
    walks: &[(usize, Walk)],
) -> ParseError {
    // The operator's words are quoted with their secrets hidden, as the echoed line is.
    let secrets = secret_ranges(registry, line, tokens, None, true);
    let show = |token: &Token| elided(&shown(line, &secrets, token));
    if at == 0 {
        let token = &tokens[0];
        let words = registry
            .iter()
            .filter_map(|s| s.leading_keywords().first().copied());
        return ParseError::new(
            token.span.clone(),
            format!("unknown command `{}`", show(token)),
        )
        .with_suggestion(nearest(&token.text, words));
    }
    let mut expected: Vec<Expect> = Vec::new();
    for (_, walk) in walks {
        let more = match &walk.failure {
            Some(f) => &f.expected,
            None => &walk.next,
        };
        for e in more {
            if !expected.contains(e) {
                expected.push(*e);
            }
        }
    }
    let keywords = expected.iter().filter_map(|e| match e {
        Expect::Keyword(k) => Some(*k),
        _ => None,
    });
    let described: Vec<String> = expected.iter().map(Expect::describe).collect();
    let described: Vec<&str> = described.iter().map(String::as_str).collect();

    if at == tokens.len() {
        let typed = masked(
            line,
            &secrets,
            tokens[0].span.start..tokens[at - 1].span.end,
        );
        let end = line.trim_end().len();
        let needs = match walks {
            [(_, walk)] if walk.failure.is_none() => walk.missing.join(" "),
            _ => String::new(),
        };
        let message = if needs.is_empty() {
            format!("`{typed}` is incomplete: expected {}", join_or(&described))
        } else {
            format!("`{typed}` is incomplete: missing `{needs}`")
        };
        return ParseError::new(end..end, message);
    }
    let token = &tokens[at];
    let text = show(token);
    let detail = match walks {
        [(_, walk)] => walk.failure.as_ref().and_then(|f| f.detail.clone()),
        _ => None,
    }
    // A value's complaint may quote the word: not a secret in it.
    .map(|detail| {
        if text == token.text || token.text.is_empty() {
            detail
        } else {
            detail.replace(&token.text, &text)
        }
    });
    let label = label_taken_as_value(tokens, at, walks);
    let suggestion = if let Some(label) = label {
        // The line without the label: what the operator meant.
        let end = line.trim_end().len();
        let before = masked(line, &secrets, tokens[0].span.start..label.span.start);
        let after = masked(line, &secrets, token.span.start..end);
        Some(format!("{before}{after}"))
    } else if token.quoted || token.text.starts_with('#') {
        None
    } else {
        nearest(&token.text, keywords)
    };
    let message = match detail {
        Some(detail) => detail,
        None if label.is_some() => format!(
            "unexpected `{text}`: `{}` is not a keyword here, it was read as the `<{}>`",
            show(&tokens[at - 1]),
            tokens[at - 1].text.to_ascii_lowercase(),
        ),
        None if !token.quoted && token.text.starts_with('#') => format!(
            "unexpected `{text}`: a comment takes a whole line (a line starting with `#`), never the rest of a command's: put it on a line of its own"
        ),
        None if expected.is_empty() => {
            format!("unexpected `{text}`: the command ends before it")
        }
        // "expected `set`, did you mean `set`?" says it twice.
        None if suggestion.is_some() && expected.len() == 1 => {
            format!("unexpected `{text}`")
        }
        None => format!("unexpected `{text}`, expected {}", join_or(&described)),
    };
    ParseError::new(token.span.clone(), message).with_suggestion(suggestion)
}

/// A word as an error quotes it: one of more than [`QUOTED_MAX`] characters (a runbook's
/// runaway line) is cut in the middle, so the message stays a line long.
fn elided(word: &str) -> String {
    let n = word.chars().count();
    if n <= QUOTED_MAX {
        return word.to_string();
    }
    let head: String = word.chars().take(QUOTED_MAX - 12).collect();
    let tail: String = word.chars().skip(n - 8).collect();
    format!("{head}…{tail} ({n} characters)")
}

const QUOTED_MAX: usize = 60;

/// The word before the fault when it filled a value whose placeholder it spells, and the
/// fault is the value meant (`create db name orders`, as `cluster create name <name>` is
/// written): the operator wrote the placeholder as a keyword.
fn label_taken_as_value<'t>(
    tokens: &'t [Token],
    at: usize,
    walks: &[(usize, Walk)],
) -> Option<&'t Token> {
    let label = tokens.get(at.checked_sub(1)?)?;
    let filled = |w: &Walk| {
        w.items.iter().any(|i| {
            i.value.is_some() && i.span == label.span && i.name.eq_ignore_ascii_case(&label.text)
        })
    };
    (!label.quoted && walks.iter().any(|(_, w)| filled(w))).then_some(label)
}

/// Descriptions joined as "a, b or c" (already quoted as needed).
fn join_or(parts: &[&str]) -> String {
    match parts.split_last() {
        None => "nothing".into(),
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}
