//! `help`, `?`, `exit`, `quit`: the session's own commands. Help text comes from the
//! registry, so it lists exactly what the parser accepts.

use std::fmt;

use serde::Serialize;

use super::{
    registry, Command, CommandError, CommandSyntax, Context, Element, Render, Reply, Text,
};
use crate::lang::error::nearest;
use crate::lang::quote;

/// `help [command...]`: every command, or those starting with the given words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelpCommand {
    pub topic: Vec<String>,
}

pub static SYNTAX: &[CommandSyntax] = &[
    CommandSyntax {
        elements: &[Element::Keyword("help"), Element::Rest("command")],
        summary: "list the commands, or show those starting with the given words",
        examples: &["help", "help node", "help cluster create"],
        build: |m| {
            // The words are echoed (the canonical text, "no command starts with"): a
            // password among them is hidden, as on any line. No command's leading
            // keywords hold a secret, so the topic matches the same forms.
            let typed: Vec<String> = m
                .all::<String>("command")
                .iter()
                .map(|w| quote(w))
                .collect();
            let shown = crate::lang::hide(super::registry(), &typed.join(" "), Some(0..0));
            let words = crate::lang::lex(&shown.text).unwrap_or_default();
            Ok(Command::Help(HelpCommand {
                topic: words.iter().map(|w| w.text.to_ascii_lowercase()).collect(),
            }))
        },
    },
    CommandSyntax {
        elements: &[Element::Keyword("?")],
        summary: "same as `help`",
        examples: &["?"],
        build: |_| Ok(Command::Help(HelpCommand { topic: Vec::new() })),
    },
    CommandSyntax {
        elements: &[Element::Keyword("exit")],
        summary: "leave the shell",
        examples: &["exit"],
        build: |_| Ok(Command::Exit),
    },
    CommandSyntax {
        elements: &[Element::Keyword("quit")],
        summary: "leave the shell",
        examples: &["quit"],
        build: |_| Ok(Command::Exit),
    },
];

impl HelpCommand {
    pub async fn apply(self, _ctx: &Context) -> Result<Reply, CommandError> {
        Reply::of(&Help::new(self.topic)?)
    }
}

impl Help {
    /// The forms whose leading keywords start with `topic` (every form when it is empty).
    pub fn new(topic: Vec<String>) -> Result<Help, CommandError> {
        let matching: Vec<&CommandSyntax> = registry()
            .iter()
            .copied()
            .filter(|s| {
                let words = s.leading_keywords();
                topic.len() <= words.len() && topic.iter().zip(&words).all(|(t, w)| t == w)
            })
            .collect();
        if matching.is_empty() {
            let firsts = registry()
                .iter()
                .filter_map(|s| s.leading_keywords().first().copied());
            let mut message = format!("no command starts with `{}`", topic.join(" "));
            let near = nearest(topic.first().map_or("", String::as_str), firsts);
            if let Some(s) = &near {
                message.push_str(&format!(", did you mean `{s}`?"));
            }
            let error = CommandError::not_found(message);
            return Err(match near {
                Some(s) => error.hinted(format!("did you mean `{s}`?")),
                None => error,
            });
        }
        Ok(Help {
            forms: matching
                .iter()
                .map(|s| HelpForm {
                    usage: s.usage(),
                    summary: s.summary,
                    examples: s.examples,
                    group: s.leading_keywords().first().copied(),
                })
                .collect(),
            examples: !topic.is_empty(),
        })
    }
}

/// `help [command...]`: the forms asked for.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Help {
    pub forms: Vec<HelpForm>,
    /// Show the examples (`help <command>`) rather than the general tip.
    #[serde(skip)]
    pub examples: bool,
}

#[derive(Serialize)]
pub struct HelpForm {
    pub usage: String,
    pub summary: &'static str,
    pub examples: &'static [&'static str],
    /// The first keyword: forms are shown in groups by it.
    #[serde(skip)]
    pub group: Option<&'static str>,
}

impl Render for Help {
    fn render(&self, text: &mut Text) {
        // Usage on its own (wrapped) lines, the summary indented under it: long forms such
        // as `create db` stay readable in 80 columns.
        let mut group = None;
        for form in &self.forms {
            if group.is_some() && group != form.group {
                text.line("");
            }
            group = form.group;
            for line in wrap_usage(&form.usage, 88) {
                text.line(line);
            }
            text.line(format!("        {}", form.summary));
        }
        if self.examples {
            text.line("").line("Examples:");
            for e in self.forms.iter().flat_map(|f| f.examples.iter()) {
                text.line(format!("  {e}"));
            }
        } else {
            text.line("").line(
                "`help <command>` shows examples; Tab completes; [x] is optional, a|b one of, <v> a value.",
            );
        }
    }
}

impl fmt::Display for HelpCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("help")?;
        for word in &self.topic {
            write!(f, " {}", quote(word))?;
        }
        Ok(())
    }
}

/// Splits a usage line at spaces outside `[...]` and `<...>`, continuation lines indented.
fn wrap_usage(usage: &str, width: usize) -> Vec<String> {
    let mut pieces: Vec<String> = Vec::new();
    let mut depth = 0i32;
    let mut piece = String::new();
    for c in usage.chars() {
        match c {
            '[' | '<' => depth += 1,
            ']' | '>' => depth -= 1,
            ' ' if depth == 0 => {
                pieces.push(std::mem::take(&mut piece));
                continue;
            }
            _ => {}
        }
        piece.push(c);
    }
    pieces.push(piece);
    let mut lines = vec![String::new()];
    for piece in pieces {
        let line = lines.last_mut().expect("one line at least");
        if !line.trim().is_empty() && line.len() + 1 + piece.len() > width {
            lines.push(format!("    {piece}"));
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&piece);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::wrap_usage;

    #[test]
    fn wraps_outside_brackets() {
        assert_eq!(
            wrap_usage("create db <name> [shards <n>] [memory <size>]", 24),
            [
                "create db <name>",
                "    [shards <n>]",
                "    [memory <size>]"
            ]
        );
        assert_eq!(wrap_usage("info cluster", 80), ["info cluster"]);
    }
}
