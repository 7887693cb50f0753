//! `help`, `?`, `exit`, `quit`: the session's own commands. Help text comes from the
//! registry, so it lists exactly what the parser accepts.

use std::fmt;

use serde_json::json;

use super::{registry, Command, CommandError, CommandSyntax, Context, Element, Reply, Table};
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
            return Err(CommandError::Refused(message));
        }
        let mut table = Table::new(["command", "summary"]);
        for s in &matching {
            table.row([s.usage(), s.summary.to_string()]);
        }
        let mut reply = Reply::new().table(table);
        if !self.topic.is_empty() {
            let examples: Vec<&str> = matching
                .iter()
                .flat_map(|s| s.examples.iter().copied())
                .collect();
            reply = reply.line("Examples:");
            for e in &examples {
                reply = reply.line(format!("  {e}"));
            }
        } else {
            reply = reply.line(
                "`help <command>` shows examples; Tab completes; values in <> are yours to fill.",
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
