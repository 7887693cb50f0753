//! Walks a [`Syntax`] over the tokens of a line: the one matcher behind parsing,
//! completion and hints.

use std::ops::Range;

use super::error::ParseError;
use super::lexer::Token;
use super::syntax::{placeholder, Element, Opt, Syntax};
use super::value::{DbRef, DbSet, HostPort, Value, ValueKind};
use crate::ccs::{PortRange, SlotRange};

/// What a syntax accepts at some position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Keyword(&'static str),
    Value(&'static str, ValueKind),
    /// A command's words (after `help`): candidates are the registry's leading keywords,
    /// given the words typed since token `from`.
    CommandWords {
        from: usize,
    },
}

impl Expect {
    pub(super) fn describe(&self) -> String {
        match self {
            Expect::Keyword(k) => format!("`{k}`"),
            Expect::Value(_, kind) => kind.describe(),
            Expect::CommandWords { .. } => "a command".into(),
        }
    }
}

/// One matched argument, flag or choice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The argument's placeholder, the option's key, or the choice's name.
    pub name: &'static str,
    /// `None` for a flag.
    pub value: Option<Value>,
    pub span: Range<usize>,
}

/// A line that fits a syntax: its values by name, for the family's builder.
#[derive(Clone, Debug)]
pub struct Match {
    pub items: Vec<Item>,
    /// Span of the whole line's words, for builder errors about the command as a whole.
    pub span: Range<usize>,
}

/// Converts a matched [`Value`] to the type a builder wants.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Option<Self>;
}

macro_rules! from_value {
    ($t:ty, $($pat:pat => $e:expr),+) => {
        impl FromValue for $t {
            fn from_value(value: &Value) -> Option<Self> {
                match value {
                    $($pat => Some($e),)+
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
        }
    };
}

from_value!(String, Value::Word(s) => s.clone(), Value::Choice(c) => c.to_string());
from_value!(crate::secret::Secret, Value::Secret(s) => s.clone());
from_value!(u64, Value::Integer(n) | Value::Size(n) | Value::Node(n) => *n);
from_value!(u16, Value::Port(p) => *p);
from_value!(PortRange, Value::PortRange(r) => *r);
from_value!(SlotRange, Value::SlotRange(r) => *r);
from_value!(std::net::IpAddr, Value::Ip(ip) => *ip);
from_value!(HostPort, Value::HostPort(hp) => hp.clone());
from_value!(crate::host::SshTarget, Value::SshTarget(t) => t.clone());
from_value!(std::path::PathBuf, Value::Path(p) => p.clone());
from_value!(DbRef, Value::Database(db) => db.clone());
from_value!(DbSet, Value::Databases(set) => set.clone());
from_value!(&'static str, Value::Choice(c) => *c);

impl Match {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.items
            .iter()
            .find(|i| i.name == name)
            .and_then(|i| i.value.as_ref())
    }

    /// Whether a flag (or any item) named `name` was given.
    pub fn has(&self, name: &str) -> bool {
        self.items.iter().any(|i| i.name == name)
    }

    pub fn opt<T: FromValue>(&self, name: &str) -> Option<T> {
        self.get(name).and_then(T::from_value)
    }

    /// A value the syntax guarantees; an error (not a panic) if a builder and its syntax
    /// disagree.
    pub fn req<T: FromValue>(&self, name: &str) -> Result<T, ParseError> {
        self.opt(name).ok_or_else(|| {
            ParseError::new(
                self.span.clone(),
                format!("internal: the syntax gave no `{name}`"),
            )
        })
    }

    /// Every value of a repeated option, in order.
    pub fn all<T: FromValue>(&self, name: &str) -> Vec<T> {
        self.items
            .iter()
            .filter(|i| i.name == name)
            .filter_map(|i| i.value.as_ref().and_then(T::from_value))
            .collect()
    }

    /// The span of the item named `name`, to point builder errors at it.
    pub fn span_of(&self, name: &str) -> Range<usize> {
        self.items
            .iter()
            .find(|i| i.name == name)
            .map_or(self.span.clone(), |i| i.span.clone())
    }
}

/// Where a walk ended.
#[derive(Debug)]
pub struct Walk {
    pub items: Vec<Item>,
    /// `Some` when a token did not fit.
    pub failure: Option<Failure>,
    /// What could come next after the last token.
    pub next: Vec<Expect>,
    /// Required pieces still missing, as usage text (`addr <ip>`); empty when complete.
    pub missing: Vec<String>,
    /// Whether optional pieces could still follow.
    pub more_optional: bool,
}

#[derive(Debug)]
pub struct Failure {
    /// Index of the token that did not fit.
    pub at: usize,
    pub expected: Vec<Expect>,
    /// Why a value did not parse.
    pub detail: Option<String>,
}

impl Walk {
    pub fn is_complete(&self) -> bool {
        self.failure.is_none() && self.missing.is_empty()
    }
}

/// Matches `tokens` against one syntax.
///
/// Long (~150 lines) on purpose: one loop over the tokens with one `match` over the
/// element kinds, sharing the state of an `Options` element (used keys, the option
/// awaiting its value, a repeating option) and the expectations carried over from skipped
/// optional pieces. Split apart, every arm would take and return all of that state; what
/// comes after the last token is `what_next`.
pub fn walk<T>(syntax: &Syntax<T>, tokens: &[Token]) -> Walk {
    let elements = syntax.elements;
    let mut items = Vec::new();
    let mut i = 0;
    // State inside an Options element.
    let mut used: Vec<&'static str> = Vec::new();
    let mut awaiting: Option<&Opt> = None;
    let mut repeating: Option<&Opt> = None;
    // Values an `Args` element has taken so far.
    let mut args_taken = 0usize;
    // What optional pieces just skipped would have accepted: part of a failure's
    // "expected" at the same token.
    let mut carry: Vec<Expect> = Vec::new();
    let fail = |items, at, mut expected: Vec<Expect>, detail, carry: &mut Vec<Expect>| Walk {
        items,
        failure: Some(Failure {
            at,
            expected: {
                carry.append(&mut expected);
                std::mem::take(carry)
            },
            detail,
        }),
        next: Vec::new(),
        missing: Vec::new(),
        more_optional: false,
    };

    let mut t = 0;
    while t < tokens.len() {
        let token = &tokens[t];
        if let Some(opt) = awaiting.take() {
            let (name, kind) = opt.value.expect("only valued options await a value");
            match kind.parse(&token.text) {
                Ok(value) => {
                    items.push(item(opt.key, Some(value), token));
                    if opt.repeated {
                        repeating = Some(opt);
                    }
                    t += 1;
                    continue;
                }
                Err(detail) => {
                    return fail(
                        items,
                        t,
                        vec![Expect::Value(name, kind)],
                        Some(detail),
                        &mut carry,
                    );
                }
            }
        }
        let Some(element) = elements.get(i) else {
            return fail(items, t, Vec::new(), None, &mut carry);
        };
        match *element {
            Element::Keyword(k) => {
                if !token.is_keyword(k) {
                    return fail(items, t, vec![Expect::Keyword(k)], None, &mut carry);
                }
                i += 1;
            }
            Element::Arg(name, kind) => match kind.parse(&token.text) {
                Ok(value) => {
                    items.push(item(name, Some(value), token));
                    i += 1;
                }
                Err(detail) => {
                    return fail(
                        items,
                        t,
                        vec![Expect::Value(name, kind)],
                        Some(detail),
                        &mut carry,
                    );
                }
            },
            Element::Args(name, kind) => match kind.parse(&token.text) {
                // Stays on the element: more values may follow.
                Ok(value) => {
                    items.push(item(name, Some(value), token));
                    args_taken += 1;
                }
                Err(_) if args_taken > 0 => {
                    carry.push(Expect::Value(name, kind));
                    args_taken = 0;
                    i += 1;
                    continue;
                }
                Err(detail) => {
                    return fail(
                        items,
                        t,
                        vec![Expect::Value(name, kind)],
                        Some(detail),
                        &mut carry,
                    );
                }
            },
            Element::Choice {
                name,
                words,
                optional,
            } => match words.iter().find(|w| token.is_keyword(w)) {
                Some(word) => {
                    items.push(item(name, Some(Value::Choice(word)), token));
                    i += 1;
                }
                None if optional => {
                    carry.extend(words.iter().map(|w| Expect::Keyword(w)));
                    i += 1;
                    continue;
                }
                None => {
                    let expected = words.iter().map(|w| Expect::Keyword(w)).collect();
                    return fail(items, t, expected, None, &mut carry);
                }
            },
            Element::Options(opts) => {
                let key = opts
                    .iter()
                    .find(|o| token.is_keyword(o.key) && (o.repeated || !used.contains(&o.key)));
                if let Some(opt) = key {
                    repeating = None;
                    used.push(opt.key);
                    if opt.value.is_some() {
                        awaiting = Some(opt);
                    } else {
                        items.push(item(opt.key, None, token));
                    }
                } else if let Some(opt) = repeating.filter(|o| {
                    o.value
                        .is_some_and(|(_, kind)| kind.parse(&token.text).is_ok())
                }) {
                    let (_, kind) = opt.value.expect("repeating options have values");
                    let value = kind.parse(&token.text).ok();
                    items.push(item(opt.key, value, token));
                } else if let Some(again) = opts.iter().find(|o| token.is_keyword(o.key)) {
                    let detail = format!("`{}` is given twice", again.key);
                    return fail(items, t, Vec::new(), Some(detail), &mut carry);
                } else if opts.iter().all(|o| !o.required || used.contains(&o.key)) {
                    carry.extend(unused(opts, &used).map(|o| Expect::Keyword(o.key)));
                    i += 1;
                    used.clear();
                    repeating = None;
                    continue;
                } else {
                    let expected = unused(opts, &used)
                        .map(|o| Expect::Keyword(o.key))
                        .collect();
                    return fail(items, t, expected, None, &mut carry);
                }
            }
            Element::Rest(name) => {
                items.push(item(name, Some(Value::Word(token.text.clone())), token));
            }
        }
        carry.clear();
        t += 1;
    }

    // All tokens fit: say what may or must come next.
    let state = Rest {
        from: i,
        awaiting,
        used: &used,
        repeating,
        args_taken,
    };
    let (next, missing, more_optional) = what_next(syntax, tokens, state);
    Walk {
        items,
        failure: None,
        next,
        missing,
        more_optional,
    }
}

/// Where a walk that took every token stopped: the next element, and the state inside an
/// `Options` element.
struct Rest<'a> {
    from: usize,
    awaiting: Option<&'a Opt>,
    used: &'a [&'static str],
    repeating: Option<&'a Opt>,
    /// Values taken by the `Args` element at `from`, if it is one.
    args_taken: usize,
}

/// After the last token: what may come next, the required pieces still missing (as usage
/// text), and whether optional pieces could follow.
fn what_next<T>(
    syntax: &Syntax<T>,
    tokens: &[Token],
    rest: Rest<'_>,
) -> (Vec<Expect>, Vec<String>, bool) {
    let Rest {
        from: i,
        awaiting,
        used,
        repeating,
        args_taken,
    } = rest;
    let elements = syntax.elements;
    let mut next = Vec::new();
    let mut missing = Vec::new();
    let mut more_optional = false;
    if let Some(opt) = awaiting {
        let (name, kind) = opt.value.expect("only valued options await a value");
        next.push(Expect::Value(name, kind));
        missing.push(placeholder(name, kind));
    }
    let mut first = true;
    for element in elements.iter().skip(i) {
        let blocked = !missing.is_empty();
        match *element {
            Element::Keyword(k) => {
                if !blocked {
                    next.push(Expect::Keyword(k));
                }
                missing.push(k.to_string());
            }
            Element::Arg(name, kind) => {
                if !blocked {
                    next.push(Expect::Value(name, kind));
                }
                missing.push(placeholder(name, kind));
            }
            Element::Args(name, kind) => {
                if !blocked {
                    next.push(Expect::Value(name, kind));
                }
                if first && args_taken > 0 {
                    more_optional = true;
                } else {
                    missing.push(placeholder(name, kind));
                }
            }
            Element::Choice {
                words, optional, ..
            } => {
                if !blocked {
                    next.extend(words.iter().map(|w| Expect::Keyword(w)));
                }
                if optional {
                    more_optional = true;
                } else {
                    missing.push(words.join("|"));
                }
            }
            Element::Options(opts) => {
                let used_here: &[&str] = if first { used } else { &[] };
                if !blocked {
                    if let Some((name, kind)) = repeating.filter(|_| first).and_then(|o| o.value) {
                        next.push(Expect::Value(name, kind));
                    }
                    next.extend(
                        opts.iter()
                            .filter(|o| o.repeated || !used_here.contains(&o.key))
                            .map(|o| Expect::Keyword(o.key)),
                    );
                }
                for opt in unused(opts, used_here) {
                    if opt.required {
                        missing.push(opt.to_string());
                    } else {
                        more_optional = true;
                    }
                }
            }
            Element::Rest(_) => {
                if !blocked {
                    let from = first_rest_token(syntax, tokens);
                    next.push(Expect::CommandWords { from });
                }
                more_optional = true;
            }
        }
        first = false;
    }
    (next, missing, more_optional)
}

fn unused<'a>(opts: &'a [Opt], used: &'a [&'static str]) -> impl Iterator<Item = &'a Opt> {
    opts.iter().filter(move |o| !used.contains(&o.key))
}

fn item(name: &'static str, value: Option<Value>, token: &Token) -> Item {
    Item {
        name,
        value,
        span: token.span.clone(),
    }
}

/// Index of the first token a `Rest` element took: the number of elements before it
/// (they are all single-token keywords in practice: `help`).
fn first_rest_token<T>(syntax: &Syntax<T>, tokens: &[Token]) -> usize {
    let before = syntax
        .elements
        .iter()
        .take_while(|e| !matches!(e, Element::Rest(_)))
        .count();
    before.min(tokens.len())
}
