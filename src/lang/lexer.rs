//! Splits a command line into words: bare words and quoted strings, each with its byte span.

use std::ops::Range;

use nom::branch::alt;
use nom::bytes::complete::{escaped_transform, is_not, take_while, take_while1};
use nom::character::complete::{anychar, char};
use nom::combinator::{map, opt, value};
use nom::sequence::{delimited, preceded};
use nom::IResult;

use super::error::ParseError;

/// One word of a command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The word with quotes removed and escapes resolved.
    pub text: String,
    /// Byte span in the line, quotes included.
    pub span: Range<usize>,
    pub quoted: bool,
}

impl Token {
    /// Case-insensitive keyword comparison; a quoted word is never a keyword.
    pub fn is_keyword(&self, keyword: &str) -> bool {
        !self.quoted && self.text.eq_ignore_ascii_case(keyword)
    }
}

/// Lexes a whole line; an unterminated quote is an error pointing at it.
pub fn lex(line: &str) -> Result<Vec<Token>, ParseError> {
    let (tokens, open) = lex_lenient(line);
    match open {
        Some(start) => Err(ParseError::new(
            start..line.len(),
            "unterminated quoted string".to_string(),
        )),
        None => Ok(tokens),
    }
}

/// Lexes as much as possible: an unterminated quote runs to the end of the line and its
/// start is returned, so completion can work inside a quote the user is still typing.
pub fn lex_lenient(line: &str) -> (Vec<Token>, Option<usize>) {
    let mut tokens = Vec::new();
    let mut rest = line;
    loop {
        // Any Unicode space separates words, as it ends a bare word (`word` below).
        let (after_space, _) =
            take_while::<_, _, ()>(char::is_whitespace)(rest).expect("take_while never fails");
        rest = after_space;
        if rest.is_empty() {
            return (tokens, None);
        }
        let start = line.len() - rest.len();
        match token(rest) {
            Ok((after, (text, quoted))) => {
                let end = line.len() - after.len();
                tokens.push(Token {
                    text,
                    span: start..end,
                    quoted,
                });
                rest = after;
            }
            Err(_) => {
                // Only an unterminated quote fails: take the rest of the line as its text.
                let quote = rest.chars().next().unwrap_or('"');
                let text = rest[quote.len_utf8()..].replace("\\\"", "\"");
                tokens.push(Token {
                    text,
                    span: start..line.len(),
                    quoted: true,
                });
                return (tokens, Some(start));
            }
        }
    }
}

fn token(input: &str) -> IResult<&str, (String, bool)> {
    alt((
        map(double_quoted, |s| (s, true)),
        map(single_quoted, |s| (s, true)),
        map(bare, |s: &str| (s.to_string(), false)),
    ))(input)
}

fn bare(input: &str) -> IResult<&str, &str> {
    take_while1(|c: char| !c.is_whitespace() && c != '"' && c != '\'')(input)
}

/// `"..."` with `\"` and `\\` escapes.
fn double_quoted(input: &str) -> IResult<&str, String> {
    delimited(
        char('"'),
        map(
            opt(escaped_transform(
                is_not("\\\""),
                '\\',
                alt((
                    value("\\", char('\\')),
                    value("\"", char('"')),
                    preceded(
                        nom::combinator::peek(anychar),
                        value("\\", nom::combinator::success(())),
                    ),
                )),
            )),
            Option::unwrap_or_default,
        ),
        char('"'),
    )(input)
}

/// `'...'`: no escapes at all, as in a POSIX shell.
fn single_quoted(input: &str) -> IResult<&str, String> {
    map(
        delimited(char('\''), opt(is_not("'")), char('\'')),
        |s: Option<&str>| s.unwrap_or_default().to_string(),
    )(input)
}

/// Quotes `text` when it would not lex back as one bare word.
pub fn quote(text: &str) -> String {
    let bare_ok = !text.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\');
    if bare_ok {
        text.to_string()
    } else {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> Vec<(String, Range<usize>)> {
        lex(line)
            .unwrap()
            .into_iter()
            .map(|t| (t.text, t.span))
            .collect()
    }

    #[test]
    fn words_and_quotes_with_spans() {
        assert_eq!(
            texts("  node  add \"a b\" 'c d'"),
            vec![
                ("node".to_string(), 2..6),
                ("add".to_string(), 8..11),
                ("a b".to_string(), 12..17),
                ("c d".to_string(), 18..23),
            ]
        );
        assert_eq!(texts(r#""x\"y\\z""#), vec![(r#"x"y\z"#.to_string(), 0..9)]);
        assert_eq!(texts(r#""""#), vec![(String::new(), 0..2)]);
        // Other backslashes are kept as typed (Windows-ish paths, regex-like names).
        assert_eq!(texts(r#""C:\x\n""#)[0].0, r#"C:\x\n"#);
        assert_eq!(texts(""), vec![]);
    }

    #[test]
    fn unterminated_quote_points_at_it() {
        let err = lex("info \"abc").unwrap_err();
        assert_eq!(err.span, 5..9);
        let (tokens, open) = lex_lenient("info \"ab c");
        assert_eq!(open, Some(5));
        assert_eq!(tokens[1].text, "ab c");
    }

    #[test]
    fn quote_round_trips() {
        for text in ["plain", "with space", "q\"uote", "back\\slash", "", "it's"] {
            let tokens = lex(&quote(text)).unwrap();
            assert_eq!(tokens.len(), 1, "{text}");
            assert_eq!(tokens[0].text, text);
        }
    }
}
