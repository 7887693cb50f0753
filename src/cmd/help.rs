//! `help`, `?`, `exit`, `quit`: the session's own commands. Help text comes from the
//! registry, so it lists exactly what the parser accepts.

use std::fmt;

use serde_json::json;

use super::{registry, Command, CommandError, CommandSyntax, Context, Element, Reply};
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
            Ok(Command::Help(HelpCommand {
                topic: m
                    .all::<String>("command")
                    .iter()
                    .map(|w| w.to_ascii_lowercase())
                    .collect(),
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
        let matching: Vec<&CommandSyntax> = registry()
            .iter()
            .copied()
            .filter(|s| {
                let words = s.leading_keywords();
                self.topic.len() <= words.len()
                    && self.topic.iter().zip(&words).all(|(t, w)| t == w)
            })
            .collect();
        if matching.is_empty() {
            let firsts = registry()
                .iter()
                .filter_map(|s| s.leading_keywords().first().copied());
            let mut message = format!("no command starts with `{}`", self.topic.join(" "));
            if let Some(s) = nearest(self.topic.first().map_or("", String::as_str), firsts) {
                message.push_str(&format!(", did you mean `{s}`?"));
            }
            return Err(CommandError::not_found(message));
        }
        // Usage on its own (wrapped) lines, the summary indented under it: long forms such
        // as `create db` stay readable in 80 columns.
        let mut reply = Reply::new();
        let mut group = None;
        for s in &matching {
            let first = s.leading_keywords().first().copied();
            if group.is_some() && group != first {
                reply = reply.line("");
            }
            group = first;
            for line in wrap_usage(&s.usage(), 88) {
                reply = reply.line(line);
            }
            reply = reply.line(format!("        {}", s.summary));
        }
        if !self.topic.is_empty() {
            reply = reply.line("").line("Examples:");
            for e in matching.iter().flat_map(|s| s.examples.iter()) {
                reply = reply.line(format!("  {e}"));
            }
        } else {
            reply = reply.line("").line(
                "`help <command>` shows examples; Tab completes; [x] is optional, a|b one of, <v> a value.",
            );
        }
        let data: Vec<_> = matching
            .iter()
            .map(|s| json!({ "usage": s.usage(), "summary": s.summary, "examples": s.examples }))
            .collect();
        Ok(reply.data(data))
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
