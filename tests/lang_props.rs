//! Properties of the command language on arbitrary input: parsing, completion, hints and
//! redaction never panic; quoting round-trips; a parse error's span lies within the line.

use lazarus::cmd::{parse, registry};
use lazarus::lang::{complete, hide, hint, lex, quote, redact};
use proptest::prelude::*;

fn line() -> impl Strategy<Value = String> {
    // Mostly command-like words, with quotes, colons and odd characters mixed in.
    let word = prop_oneof![
        Just("node".to_string()),
        Just("add".to_string()),
        Just("info".to_string()),
        Just("cluster".to_string()),
        Just("create".to_string()),
        Just("recover".to_string()),
        Just("db".to_string()),
        Just("password".to_string()),
        "[a-z_:0-9./-]{0,12}",
        "\"[^\"]{0,6}\"?",
        "'[a-z ]{0,4}'?",
        "\\PC{0,4}",
    ];
    prop::collection::vec(word, 0..8).prop_map(|w| w.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn parsing_never_panics_and_spans_fit(line in line()) {
        if let Err(e) = parse(&line) {
            prop_assert!(e.span.start <= e.span.end && e.span.end <= line.len(), "{e:?}");
            let _ = e.render(&line);
        }
    }

    #[test]
    fn completion_and_hints_never_panic(line in line(), cut in 0usize..64) {
        let cursor = cut.min(line.len());
        let found = complete(registry(), None, &line, cursor);
        prop_assert!(found.start <= line.len());
        let _ = hint(registry(), &line, line.len());
    }

    #[test]
    fn secrets_are_always_hidden(secret in "[a-zA-Z0-9]{6,12}", before in line()) {
        let line = format!("{before} password {secret}");
        prop_assert!(!redact(registry(), &line).ends_with(&secret));
        // Masks have a fixed width: a secret's length is not told either.
        let fault = line.len().saturating_sub(secret.len() + 1)..line.len();
        let hidden = hide(registry(), &line, Some(fault));
        // (A quote just before it may hide it with the rest of an unclosed quoted word.)
        prop_assert!(
            hidden.text.ends_with("***") && !hidden.text.contains(&secret),
            "{}",
            hidden.text
        );
        prop_assert!(hidden.span.end <= hidden.text.len());
    }

    #[test]
    fn quote_round_trips(text in "\\PC{0,16}") {
        let tokens = lex(&quote(&text)).unwrap();
        prop_assert_eq!(tokens.len(), 1);
        prop_assert_eq!(&tokens[0].text, &text);
    }
}
