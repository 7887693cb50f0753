//! Completion and hints: functions of (registry, cluster, line, cursor), shared by the
//! REPL and the shell completion scripts. All are pure except path
//! completion ([`ValueKind::Path`]), which lists the directory being typed on this
//! machine's disk.

use std::path::Path;

use super::lexer::{lex_lenient, quote, Token};
use super::matcher::{walk, Expect, Item};
use super::syntax::Syntax;
use super::value::{DbRef, Value, ValueKind};
use crate::ccs::Cluster;

/// Candidates for the word under the cursor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    /// Byte offset where the word being completed starts; candidates replace
    /// `line[start..cursor]`.
    pub start: usize,
    pub candidates: Vec<String>,
}

/// Completes the word before `cursor` from every syntax that fits the words before it.
pub fn complete<T>(
    registry: &[&Syntax<T>],
    cluster: Option<&Cluster>,
    line: &str,
    cursor: usize,
) -> Completion {
    let line = &line[..floor_char_boundary(line, cursor)];
    let (tokens, _) = lex_lenient(line);
    let (done, partial, start) = split_partial(line, &tokens);
    // Gather what fits first, so each value kind is listed once however many forms
    // accept it (10,000 node ids must not be produced twice).
    let mut words: Vec<String> = Vec::new();
    let mut kinds: Vec<ValueKind> = Vec::new();
    let mut runs_for = RunsFor::default();
    for syntax in registry {
        let walk = walk(syntax, done);
        if walk.failure.is_some() {
            continue;
        }
        for expect in walk.next {
            match expect {
                Expect::Keyword(k) => {
                    if starts_with_ignore_case(k, partial) && !words.iter().any(|w| w == k) {
                        words.push(k.to_string());
                    }
                }
                Expect::Value(_, kind) => {
                    if kind == ValueKind::Run {
                        runs_for = RunsFor::of(&walk.items);
                    }
                    if !kinds.contains(&kind) {
                        kinds.push(kind);
                    }
                }
                Expect::CommandWords { from } => {
                    for c in command_words(registry, &done[from.min(done.len())..], partial) {
                        if !words.contains(&c) {
                            words.push(c);
                        }
                    }
                }
            }
        }
    }
    words.sort_by_cached_key(|c| natural_key(c));
    // Values come in their own order (node ids ascending, paths sorted), after keywords.
    let mut candidates = words;
    for kind in kinds {
        let values = value_candidates(kind, cluster, partial, &runs_for);
        if kinds_may_overlap(kind) {
            for c in values {
                if !candidates.contains(&c) {
                    candidates.push(c);
                }
            }
        } else if candidates.is_empty() {
            candidates = values;
        } else {
            candidates.extend(values);
        }
    }
    Completion { start, candidates }
}

/// Grey text to show after the cursor: the rest of a unique keyword being typed, or what
/// the command still needs (`addr <ip> persistent_path <path> [...]`).
pub fn hint<T>(registry: &[&Syntax<T>], line: &str, cursor: usize) -> Option<String> {
    if cursor != line.len() || line.trim().is_empty() {
        return None;
    }
    let (tokens, open) = lex_lenient(line);
    let (done, partial, _) = split_partial(line, &tokens);
    if open.is_none() && !partial.is_empty() {
        let mut words: Vec<&str> = Vec::new();
        for syntax in registry {
            let walk = walk(syntax, done);
            if walk.failure.is_none() {
                for e in &walk.next {
                    if let Expect::Keyword(k) = e {
                        if starts_with_ignore_case(k, partial) && !words.contains(k) {
                            words.push(k);
                        }
                    }
                }
            }
        }
        if let [word] = words[..] {
            if word.len() > partial.len() {
                return Some(word[partial.len()..].to_string());
            }
        }
    }
    // What the line still needs, from the forms it fits whole.
    let mut needs: Vec<String> = Vec::new();
    for syntax in registry {
        let walk = walk(syntax, &tokens);
        if walk.failure.is_some() {
            continue;
        }
        let mut text = walk.missing.join(" ");
        if walk.more_optional {
            text = if text.is_empty() {
                "[...]".into()
            } else {
                format!("{text} [...]")
            };
        }
        if !needs.contains(&text) {
            needs.push(text);
        }
    }
    let text = match &needs[..] {
        [one] if !one.is_empty() => one.clone(),
        [] | [_] => return None,
        _ => {
            // Several forms fit: show the next word of each, and `[...]` when one of them
            // already runs as typed (`recover db orders` does: `from_files` is one choice,
            // not what the line still needs).
            let mut firsts: Vec<&str> = needs
                .iter()
                .filter_map(|n| n.split(' ').next())
                .filter(|w| !w.is_empty() && *w != "[...]")
                .collect();
            firsts.dedup();
            if firsts.is_empty() {
                return None;
            }
            if needs.iter().any(|n| n.is_empty() || n == "[...]") {
                firsts.push("[...]");
            }
            firsts.join(" | ")
        }
    };
    let sep = if line.ends_with(char::is_whitespace) {
        ""
    } else {
        " "
    };
    Some(format!("{sep}{text}"))
}

/// Splits the tokens into the finished ones and the word being typed (empty after a
/// space), with the byte offset where that word starts.
fn split_partial<'a>(line: &'a str, tokens: &'a [Token]) -> (&'a [Token], &'a str, usize) {
    match tokens.last() {
        Some(last) if last.span.end == line.len() && !line.ends_with(char::is_whitespace) => {
            let raw = &line[last.span.clone()];
            // Complete against the unquoted text of the word.
            let partial = if last.quoted { &raw[1..] } else { raw };
            (&tokens[..tokens.len() - 1], partial, last.span.start)
        }
        _ => (tokens, "", line.len()),
    }
}

/// Keyword-like values (choices) may repeat a keyword already offered; large value lists
/// (nodes, databases, paths) are checked for nothing, to stay fast.
fn kinds_may_overlap(kind: ValueKind) -> bool {
    matches!(kind, ValueKind::Choice(_))
}

/// The database a run is being named for, as the line says so far: `restore task create
/// ... db orders ... backup <TAB>` offers that database's runs, as the create accepts
/// them (another database's only after `from_other_db`, and then after its own).
#[derive(Default)]
struct RunsFor {
    db: Option<DbRef>,
    from_other_db: bool,
}

impl RunsFor {
    fn of(items: &[Item]) -> RunsFor {
        let db = items
            .iter()
            .find(|i| i.name == "db")
            .and_then(|i| match &i.value {
                Some(Value::Databases(set)) => set.single().cloned(),
                Some(Value::Database(r)) => Some(r.clone()),
                _ => None,
            });
        RunsFor {
            db,
            from_other_db: items.iter().any(|i| i.name == "from_other_db"),
        }
    }

    /// The database named, resolved in `cluster` (by name it may not exist yet: a run of
    /// that name recreates it); `None` when none is named or its id is unknown.
    fn target<'a>(&'a self, cluster: &'a Cluster) -> Option<(&'a str, Option<crate::ccs::Id>)> {
        match self.db.as_ref()? {
            DbRef::Id(id) => cluster
                .databases
                .get(id)
                .map(|d| (d.config.name.as_str(), Some(d.id))),
            DbRef::Name(name) => {
                Some((name.as_str(), cluster.database_by_name(name).map(|d| d.id)))
            }
        }
    }
}

fn value_candidates(
    kind: ValueKind,
    cluster: Option<&Cluster>,
    partial: &str,
    runs_for: &RunsFor,
) -> Vec<String> {
    match kind {
        ValueKind::Choice(words) => words
            .iter()
            .filter(|w| starts_with_ignore_case(w, partial))
            .map(|w| w.to_string())
            .collect(),
        ValueKind::Node => {
            let Some(cluster) = cluster else {
                return Vec::new();
            };
            let prefixed = starts_with_ignore_case(partial, "n") || partial.contains(':');
            let mut out = Vec::with_capacity(if partial.is_empty() {
                cluster.nodes.len()
            } else {
                16
            });
            let mut text = String::new();
            // One buffer for all ids: only the matches are allocated.
            for id in cluster.nodes.keys() {
                use std::fmt::Write as _;
                text.clear();
                let _ = if prefixed {
                    write!(text, "node:{id}")
                } else {
                    write!(text, "{id}")
                };
                if starts_with_ignore_case(&text, partial) {
                    out.push(text.clone());
                }
            }
            out
        }
        ValueKind::Database => {
            let Some(cluster) = cluster else {
                return Vec::new();
            };
            let by_id = starts_with_ignore_case(partial, "db:")
                || starts_with_ignore_case("db:", partial) && !partial.is_empty();
            let mut out = Vec::new();
            for db in cluster.databases.values() {
                let name = quote(&db.config.name);
                if starts_with_ignore_case(&name, partial) {
                    out.push(name);
                }
                if by_id {
                    let c = format!("db:{}", db.id);
                    if starts_with_ignore_case(&c, partial) {
                        out.push(c);
                    }
                }
            }
            out
        }
        ValueKind::Databases => {
            // The names typed so far stay; the one after the last comma completes.
            let (done, last) = match partial.rfind(',') {
                Some(i) => partial.split_at(i + 1),
                None => ("", partial),
            };
            // A database already named is not offered again (the parser refuses it twice).
            let named: Vec<&str> = done.split(',').filter(|n| !n.is_empty()).collect();
            let mut out: Vec<String> =
                value_candidates(ValueKind::Database, cluster, last, runs_for)
                    .into_iter()
                    .filter(|c| !named.iter().any(|n| n.eq_ignore_ascii_case(c)))
                    .map(|c| format!("{done}{c}"))
                    .collect();
            if done.is_empty() && starts_with_ignore_case("all", partial) {
                out.push("all".into());
            }
            out
        }
        ValueKind::Path => path_candidates(partial, false),
        ValueKind::BackupTask => cluster.map_or_else(Vec::new, |c| {
            c.backups
                .tasks
                .keys()
                .filter(|t| t.starts_with(partial))
                .cloned()
                .collect()
        }),
        ValueKind::RestoreTask => cluster.map_or_else(Vec::new, |c| {
            // The tasks, and the groups a `restore task create ... db a,b` made.
            let mut out: Vec<String> = c
                .backups
                .restores
                .values()
                .flat_map(|t| std::iter::once(t.name.clone()).chain(t.group.clone()))
                .filter(|t| t.starts_with(partial))
                .collect();
            out.sort();
            out.dedup();
            out
        }),
        ValueKind::Run if partial.contains('/') => path_candidates(partial, false),
        ValueKind::Run => {
            let mut out: Vec<String> = Vec::new();
            if starts_with_ignore_case("latest", partial) {
                out.push("latest".into());
            }
            if let Some(c) = cluster {
                let mut runs: Vec<&crate::ccs::BackupRun> = c
                    .backups
                    .runs
                    .iter()
                    .filter(|r| r.status == crate::ccs::RunStatus::Succeeded)
                    .filter(|r| r.id.starts_with(partial))
                    .collect();
                runs.sort_by(|a, b| b.started.cmp(&a.started).then(b.id.cmp(&a.id)));
                if let Some((name, existing)) = runs_for.target(c) {
                    if runs_for.from_other_db {
                        // Stable: its own runs first, each part newest first.
                        runs.sort_by_key(|r| !r.is_of(name, existing));
                    } else {
                        runs.retain(|r| r.is_of(name, existing));
                    }
                }
                out.extend(runs.into_iter().map(|r| r.id.clone()));
            }
            out
        }
        _ => Vec::new(),
    }
}

/// Entries of the directory named by `partial` up to its last `/`, directories with a
/// trailing `/` (only directories with `dirs_only`); hidden ones only when asked for with
/// a leading dot. Also what completes the binary's path-taking flags (`--file`, `--home`).
pub fn path_candidates(partial: &str, dirs_only: bool) -> Vec<String> {
    let (dir, prefix) = match partial.rfind('/') {
        Some(i) => (&partial[..=i], &partial[i + 1..]),
        None => ("", partial),
    };
    let read_from = if dir.is_empty() {
        Path::new(".")
    } else {
        Path::new(dir)
    };
    let Ok(entries) = std::fs::read_dir(read_from) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(prefix) || (name.starts_with('.') && !prefix.starts_with('.')) {
            continue;
        }
        let is_dir = entry.path().is_dir();
        if dirs_only && !is_dir {
            continue;
        }
        let full = format!("{dir}{name}{}", if is_dir { "/" } else { "" });
        let quoted = quote(&full);
        // An open quote on a directory lets the user keep typing inside it.
        if is_dir && quoted.ends_with('"') && quoted != full {
            out.push(quoted[..quoted.len() - 1].to_string());
        } else {
            out.push(quoted);
        }
    }
    out.sort();
    out
}

/// Next words of the commands that start with `typed` (for `help <command...>`).
fn command_words<T>(registry: &[&Syntax<T>], typed: &[Token], partial: &str) -> Vec<String> {
    let mut out = Vec::new();
    for syntax in registry {
        let words = syntax.leading_keywords();
        let fits =
            words.len() > typed.len() && typed.iter().zip(&words).all(|(t, w)| t.is_keyword(w));
        if fits && starts_with_ignore_case(words[typed.len()], partial) {
            out.push(words[typed.len()].to_string());
        }
    }
    out
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.is_char_boundary(prefix.len())
        && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Sorts `node:2` before `node:10`.
fn natural_key(text: &str) -> (String, u64) {
    let digits = text.len() - text.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (head, tail) = text.split_at(text.len() - digits);
    (head.to_string(), tail.parse().unwrap_or(0))
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}
