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

/// `password` with one or two edits (a letter left out, added, changed, two swapped), cut
/// to its first 4 letters or more, or with letters after it; in any case.
fn mistyped_password() -> impl Strategy<Value = String> {
    let edit = (0usize..4, 0usize..9, "[a-z0-9]");
    let edited = prop::collection::vec(edit, 1..=2).prop_map(|edits| {
        let mut w: Vec<char> = "password".chars().collect();
        for (op, at, c) in edits {
            let c = c.chars().next().unwrap();
            let at = at.min(w.len().saturating_sub(1));
            match op {
                0 if w.len() > 1 => {
                    w.remove(at);
                }
                1 => w.insert(at, c),
                2 => w[at] = c,
                _ if at + 1 < w.len() => w.swap(at, at + 1),
                _ => w.push(c),
            }
        }
        w.into_iter().collect::<String>()
    });
    let cut = (4usize..8).prop_map(|n| "password"[..n].to_string());
    let longer = "[a-z0-9]{1,4}".prop_map(|tail| format!("password{tail}"));
    (prop_oneof![edited, cut, longer], any::<bool>()).prop_map(|(w, upper)| {
        if upper {
            w.to_uppercase()
        } else {
            w
        }
    })
}

/// The rule of `lang::mask` written out again: two edits, a start of 4 letters or more,
/// the first and last letter kept in order (3 or more), or more after the key.
fn looks_like_password(word: &str) -> bool {
    let key = "password";
    let mut rest = key.chars();
    strsim::damerau_levenshtein(word, key) <= 2
        || (word.len() >= 4 && key.starts_with(word))
        || word.starts_with(key)
        || (word.len() >= 3
            && word.starts_with('p')
            && word.ends_with('d')
            && word.chars().all(|c| rest.any(|l| l == c)))
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

    /// A mistyped `password` (one or two edits, a shortening, more after it) on a line
    /// that fails to parse still hides the word after it.
    #[test]
    fn the_word_after_a_mistyped_secret_key_is_hidden(
        typo in mistyped_password(),
        secret in "[a-zA-Z0-9]{6,12}",
    ) {
        let line = format!("create db x {typo} {secret}");
        let fault = parse(&line).map(|_| 0..0).unwrap_or_else(|e| e.span);
        let hidden = hide(registry(), &line, Some(fault));
        prop_assert!(!hidden.text.contains(&secret), "{}", hidden.text);
    }

    /// A word that is none of those (`passenger`, `passage`) hides nothing: the word
    /// after it is shown as typed.
    #[test]
    fn the_word_after_a_word_that_only_looks_alike_stays(
        word in "pa[a-z]{2,9}",
        after in "[a-z]{4,8}",
    ) {
        prop_assume!(!looks_like_password(&word));
        let line = format!("create db x {word} {after}");
        let fault = parse(&line).map(|_| 0..0).unwrap_or_else(|e| e.span);
        let hidden = hide(registry(), &line, Some(fault));
        prop_assert_eq!(hidden.text, line);
    }

    #[test]
    fn quote_round_trips(text in "\\PC{0,16}") {
        let tokens = lex(&quote(&text)).unwrap();
        prop_assert_eq!(tokens.len(), 1);
        prop_assert_eq!(&tokens[0].text, &text);
    }
}
