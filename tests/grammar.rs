//! The written grammar and the parser cannot drift: every line of grammar/examples.txt
//! parses (or fails with the exact span and message) as written, every registry example
//! parses and round-trips, and grammar/lazarus.ebnf shows every command form's usage.

use lazarus::cmd::{parse, registry, Command};

fn round_trip(line: &str) -> Command {
    let command = parse(line)
        .unwrap_or_else(|e| panic!("`{line}` should parse:\n{}", e.render(line)))
        .unwrap_or_else(|| panic!("`{line}` is blank"));
    let canonical = command.to_string();
    // A password prints as `***`, which is refused as a value (it was hidden in history):
    // parse it back with a stand-in.
    let again = parse(&canonical.replace("***", "stand-in"))
        .unwrap_or_else(|e| {
            panic!(
                "canonical `{canonical}` of `{line}` should parse:\n{}",
                e.render(&canonical)
            )
        })
        .expect("canonical text is not blank");
    // A password prints as `***` (and `Debug`s so): the rest must mean the same.
    assert_eq!(
        format!("{again:?}"),
        format!("{command:?}"),
        "`{line}` → `{canonical}` changed meaning"
    );
    assert_eq!(
        again.to_string(),
        canonical,
        "canonical text of `{line}` is not stable"
    );
    command
}

#[test]
fn examples_file_parses_as_written() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/grammar/examples.txt"))
            .unwrap();
    let mut lines = text.lines().enumerate().peekable();
    let (mut valid, mut invalid) = (0, 0);
    while let Some((n, line)) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(bad) = line.strip_prefix("! ") {
            let (_, marker) = lines
                .next()
                .unwrap_or_else(|| panic!("line {}: no `~` line", n + 1));
            let marker = marker
                .strip_prefix("~ ")
                .unwrap_or_else(|| panic!("line {}: expected a `~ ` line after it", n + 2));
            let start = marker.find('^').expect("a `^` marks the span");
            let end = start
                + marker[start..]
                    .find(|c| c != '^')
                    .unwrap_or(marker.len() - start);
            let message = marker[end..].trim();
            let span = if start == bad.len() {
                start..start
            } else {
                start..end
            };
            let err = parse(bad).expect_err(&format!("line {}: `{bad}` should fail", n + 1));
            assert_eq!(
                (err.span.clone(), err.to_string().as_str()),
                (span, message),
                "line {}: `{bad}`:\n{}",
                n + 1,
                err.render(bad)
            );
            invalid += 1;
        } else {
            round_trip(line);
            valid += 1;
        }
    }
    assert!(
        valid > 10 && invalid > 10,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn registry_examples_parse_and_round_trip() {
    for syntax in registry() {
        assert!(
            !syntax.examples.is_empty(),
            "`{}` has no example",
            syntax.usage()
        );
        for example in syntax.examples {
            round_trip(example);
        }
    }
}

#[test]
fn ebnf_shows_every_command_form() {
    let ebnf =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/grammar/lazarus.ebnf"))
            .unwrap();
    for syntax in registry() {
        let line = format!("(* usage: {} *)", syntax.usage());
        assert!(
            ebnf.contains(&line),
            "grammar/lazarus.ebnf lacks the line\n{line}"
        );
    }
}
