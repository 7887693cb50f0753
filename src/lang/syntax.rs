//! Command syntax as data: the one description of every command that the parser, `help`,
//! hints and completion all read.

use std::fmt;

use super::error::ParseError;
use super::matcher::Match;
use super::value::ValueKind;

/// One command form, such as `node <node> recovery_path set <path>`.
pub struct Syntax<T: 'static> {
    pub elements: &'static [Element],
    pub summary: &'static str,
    /// Valid lines; each one is parsed and round-tripped by the tests.
    pub examples: &'static [&'static str],
    /// Turns a successful match into the family's AST.
    pub build: fn(&Match) -> Result<T, ParseError>,
}

/// A piece of a command form, in order.
#[derive(Clone, Copy, Debug)]
pub enum Element {
    /// A fixed word, matched case-insensitively.
    Keyword(&'static str),
    /// A positional value: `<name>`.
    Arg(&'static str, ValueKind),
    /// One or more positional values of one kind: `<name>...` (`restart db a b`).
    Args(&'static str, ValueKind),
    /// One of fixed words (`[nodes|databases]` when optional). Found in the match under
    /// `name`, as `Value::Choice`.
    Choice {
        name: &'static str,
        words: &'static [&'static str],
        optional: bool,
    },
    /// `key value` pairs and flags, in any order, each at most once unless repeated.
    Options(&'static [Opt]),
    /// Every remaining word (for `help <command...>`).
    Rest(&'static str),
}

/// A `key value` pair or a flag inside [`Element::Options`].
#[derive(Clone, Copy, Debug)]
pub struct Opt {
    pub key: &'static str,
    /// `None`: a flag such as `purge`. `Some((placeholder, kind))` otherwise.
    pub value: Option<(&'static str, ValueKind)>,
    pub required: bool,
    /// `key v1 v2 ...`, and the key may also be given again.
    pub repeated: bool,
}

impl Opt {
    pub const fn required(key: &'static str, placeholder: &'static str, kind: ValueKind) -> Opt {
        Opt {
            key,
            value: Some((placeholder, kind)),
            required: true,
            repeated: false,
        }
    }

    pub const fn optional(key: &'static str, placeholder: &'static str, kind: ValueKind) -> Opt {
        Opt {
            key,
            value: Some((placeholder, kind)),
            required: false,
            repeated: false,
        }
    }

    pub const fn flag(key: &'static str) -> Opt {
        Opt {
            key,
            value: None,
            required: false,
            repeated: false,
        }
    }

    /// Marks a valued option as taking one or more values.
    pub const fn repeated(mut self) -> Opt {
        self.repeated = true;
        self
    }
}

impl<T> Syntax<T> {
    /// The fixed words the form starts with: `["node"]`, `["cluster", "create"]`.
    pub fn leading_keywords(&self) -> Vec<&'static str> {
        self.elements
            .iter()
            .map_while(|e| match e {
                Element::Keyword(k) => Some(*k),
                _ => None,
            })
            .collect()
    }

    /// The form as help shows it: `node add addr <ip> persistent_path <path> [rack_id <id>]`.
    pub fn usage(&self) -> String {
        let parts: Vec<String> = self.elements.iter().map(ToString::to_string).collect();
        parts.join(" ")
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Element::Keyword(k) => f.write_str(k),
            Element::Arg(name, kind) => f.write_str(&placeholder(name, *kind)),
            Element::Args(name, kind) => write!(f, "{}...", placeholder(name, *kind)),
            Element::Choice {
                words, optional, ..
            } => {
                let words = words.join("|");
                if *optional {
                    write!(f, "[{words}]")
                } else {
                    f.write_str(&words)
                }
            }
            Element::Options(opts) => {
                let parts: Vec<String> = opts.iter().map(ToString::to_string).collect();
                f.write_str(&parts.join(" "))
            }
            Element::Rest(name) => write!(f, "[{name}...]"),
        }
    }
}

impl fmt::Display for Opt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.key.to_string();
        if let Some((name, kind)) = self.value {
            text = format!("{text} {}", placeholder(name, kind));
            if self.repeated {
                text.push_str("...");
            }
        }
        if self.required {
            f.write_str(&text)
        } else {
            write!(f, "[{text}]")
        }
    }
}

/// `<name>`, or `a|b` for a choice.
pub fn placeholder(name: &str, kind: ValueKind) -> String {
    match kind {
        ValueKind::Choice(words) => words.join("|"),
        ValueKind::PortRange | ValueKind::SlotRange => "<lo>-<hi>".to_string(),
        _ => format!("<{name}>"),
    }
}
