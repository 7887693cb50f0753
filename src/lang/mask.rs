//! Hiding secrets in command text: the history, the echo of a line that failed to parse,
//! its JSON `command`, and the words a parse error quotes.
//!
//! Works on the lexer's tokens, so a quoted word stays one word (its quotes kept): a value
//! after a secret key (`password`, or any key whose kind is [`ValueKind::Secret`]) is
//! hidden whole, and inside a quoted word (`"create db x password hunter2"`) the word after
//! a secret key is hidden too. On a line that failed to parse, a mistyped key no longer
//! marks its value: there, the word after a near miss of a secret key ([`near_miss`]:
//! `passwrd`, `pass`, `pwd`, `passwords`) is hidden as well. Other words stay readable
//! (`passenger`, `passage`).

use std::ops::Range;

use super::lexer::{lex_lenient, Token};
use super::syntax::{Element, Syntax};
use super::value::ValueKind;

/// What hides a value: fixed width, so it never tells a secret's length.
pub const MASK: &str = "***";

/// The line with every secret value replaced by `***`, for the history file. Works on
/// lines that do not parse, too.
pub fn redact<T>(registry: &[&Syntax<T>], line: &str) -> String {
    hide(registry, line, None).text
}

/// A line as it may be shown or kept: secrets replaced by [`MASK`]; `span` is the fault's
/// span in `text`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hidden {
    pub text: String,
    pub span: Range<usize>,
}

/// The line with every secret hidden; with `fault` (the span where parsing failed) also
/// the word after a near miss of a secret key (`passwrd hunter5`), since a mistyped key
/// no longer marks its value as secret. The fault's span is moved to the hidden text, so
/// an error's caret still points at the right word.
pub fn hide<T>(registry: &[&Syntax<T>], line: &str, fault: Option<Range<usize>>) -> Hidden {
    let (tokens, open) = lex_lenient(line);
    let merged = secret_ranges(registry, line, &tokens, open, fault.is_some());
    // Where an offset of `line` lands in the hidden text: a position inside a hidden
    // range goes to its start (`at_end`: its end).
    let map = |pos: usize, at_end: bool| {
        let mut shift: isize = 0;
        for r in &merged {
            if pos >= r.end {
                shift += MASK.len() as isize - r.len() as isize;
            } else if pos > r.start {
                let new_start = (r.start as isize + shift) as usize;
                return if at_end {
                    new_start + MASK.len()
                } else {
                    new_start
                };
            } else {
                break;
            }
        }
        (pos as isize + shift) as usize
    };
    let text = masked(line, &merged, 0..line.len());
    let span = fault.map_or(0..0, |f| map(f.start, false)..map(f.end, true));
    Hidden { text, span }
}

/// Byte ranges of `line` that hold secrets, sorted and merged. `open`: where an
/// unterminated quote starts (it runs to the end of the line). `typos`: also the word
/// after a near miss of a secret key (for a line that failed to parse).
pub(super) fn secret_ranges<T>(
    registry: &[&Syntax<T>],
    line: &str,
    tokens: &[Token],
    open: Option<usize>,
    typos: bool,
) -> Vec<Range<usize>> {
    let keys = secret_keys(registry);
    let words = if typos {
        keywords(registry)
    } else {
        Vec::new()
    };
    // A word holding `=` is a key with its value (`inline` below), not a key alone.
    let is_key = |word: &str| {
        let exact = keys.iter().any(|k| word.eq_ignore_ascii_case(k));
        let mistyped = || {
            !words.iter().any(|w| word.eq_ignore_ascii_case(w))
                && keys.iter().any(|k| near_miss(word, k))
        };
        !word.contains('=') && (exact || typos && mistyped())
    };
    let mut ranges = Vec::new();
    // `key=value` in one word: the value is hidden.
    let inline = |word: Range<usize>, ranges: &mut Vec<Range<usize>>| {
        if let Some(eq) = line[word.clone()].find('=') {
            if is_key(&line[word.start..word.start + eq]) {
                ranges.push(word.start + eq + 1..word.end);
            }
        }
    };
    let mut after_key = false;
    for token in tokens {
        if after_key {
            // Quotes and all: the value is one word.
            ranges.push(token.span.clone());
        }
        if token.quoted {
            // The words inside a quoted word: a key there hides the word after it (in the
            // quote or, when last, the next token).
            after_key = false;
            for word in whitespace_words(line, interior(line, token, open)) {
                if after_key {
                    ranges.push(word.clone());
                }
                after_key = is_key(&line[word.clone()]);
                inline(word, &mut ranges);
            }
        } else {
            after_key = is_key(&token.text);
            inline(token.span.clone(), &mut ranges);
        }
    }
    ranges.retain(|r| !r.is_empty());
    ranges.sort_by_key(|r| (r.start, r.end));
    let mut merged: Vec<Range<usize>> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

/// Whether `word` is likely `key` mistyped or shortened, so that the word after it may be
/// a secret. Exact, case-insensitive, and no wider than it must be (the suggestions of a
/// parse error are fuzzier, and would hide the word after `passenger`):
/// - a typo: at most two edits (a letter left out, added, changed, or two swapped) from
///   the key (one for a key under 8 letters): `passwrd`, `pasword`, `passowrd`, `passwort`;
/// - a shortening: 4 letters or more that start the key (`pass`, `passw`), or 3 or more
///   that keep its first and last letter in order (`pwd`, `pswd`, `passwd`);
/// - the key with more after it: `passwords`, `password1`.
fn near_miss(word: &str, key: &str) -> bool {
    let word = word.to_ascii_lowercase();
    let n = word.chars().count();
    let typo = strsim::damerau_levenshtein(&word, key) <= if key.len() >= 8 { 2 } else { 1 };
    let start = n >= 4 && key.starts_with(&word);
    let longer = word.starts_with(key);
    let abbreviation = n >= 3
        && word.chars().next() == key.chars().next()
        && word.chars().last() == key.chars().last()
        && is_subsequence(&word, key);
    typo || start || longer || abbreviation
}

/// Whether the letters of `short` appear in `long` in order.
fn is_subsequence(short: &str, long: &str) -> bool {
    let mut rest = long.chars();
    short.chars().all(|c| rest.any(|l| l == c))
}

/// `line[part]` with the parts of `ranges` (sorted, merged) inside it replaced by [`MASK`].
pub(super) fn masked(line: &str, ranges: &[Range<usize>], part: Range<usize>) -> String {
    let mut text = String::new();
    let mut last = part.start;
    for r in ranges {
        let (start, end) = (r.start.max(part.start), r.end.min(part.end));
        if start >= end {
            continue;
        }
        text.push_str(&line[last..start]);
        text.push_str(MASK);
        last = end;
    }
    text.push_str(&line[last..part.end]);
    text
}

/// A token as an error message may quote it: its text, or when it holds a secret its
/// typed text with the secret hidden (`create db x password ***` for the quoted word
/// `"create db x password hunter2"`; `***` for a password itself).
pub(super) fn shown(line: &str, ranges: &[Range<usize>], token: &Token) -> String {
    let touched = ranges
        .iter()
        .any(|r| r.start < token.span.end && r.end > token.span.start);
    if !touched {
        return token.text.clone();
    }
    let part = if token.quoted {
        interior(line, token, None)
    } else {
        token.span.clone()
    };
    masked(line, ranges, part)
}

/// The bytes of a token inside its quotes (an unterminated quote has no closing one).
fn interior(line: &str, token: &Token, open: Option<usize>) -> Range<usize> {
    let raw = &line[token.span.clone()];
    let quote = raw.chars().next().map_or(0, char::len_utf8);
    let closed =
        open != Some(token.span.start) && raw.len() >= 2 * quote && raw.ends_with(&raw[..quote]);
    let end = if closed {
        token.span.end - quote
    } else {
        token.span.end
    };
    (token.span.start + quote).min(end)..end
}

/// The keys whose values are secret: `password` always, even before a command declares it,
/// and every option the registry gives [`ValueKind::Secret`].
fn secret_keys<T>(registry: &[&Syntax<T>]) -> Vec<&'static str> {
    let mut keys = vec!["password"];
    for e in registry.iter().flat_map(|s| s.elements.iter()) {
        if let Element::Options(opts) = e {
            for o in opts.iter() {
                if matches!(o.value, Some((_, ValueKind::Secret))) && !keys.contains(&o.key) {
                    keys.push(o.key);
                }
            }
        }
    }
    keys
}

/// Every fixed word of the language: keywords, choices and option keys (none of them is a
/// mistyped secret key).
fn keywords<T>(registry: &[&Syntax<T>]) -> Vec<&'static str> {
    let mut words = Vec::new();
    for e in registry.iter().flat_map(|s| s.elements.iter()) {
        match e {
            Element::Keyword(k) => words.push(*k),
            Element::Choice { words: w, .. } => words.extend_from_slice(w),
            Element::Options(opts) => {
                for o in opts.iter() {
                    words.push(o.key);
                    if let Some((_, ValueKind::Choice(w))) = o.value {
                        words.extend_from_slice(w);
                    }
                }
            }
            Element::Arg(_, ValueKind::Choice(w)) | Element::Args(_, ValueKind::Choice(w)) => {
                words.extend_from_slice(w)
            }
            Element::Arg(..) | Element::Args(..) | Element::Rest(_) => {}
        }
    }
    words.sort_unstable();
    words.dedup();
    words
}

/// Whitespace-separated words of `line[part]`, as byte ranges of `line`.
fn whitespace_words(line: &str, part: Range<usize>) -> Vec<Range<usize>> {
    let text = &line[part.clone()];
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                words.push(part.start + s..part.start + i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    words
}
