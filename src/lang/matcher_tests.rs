//! Table-driven tests of the matcher on a made-up registry that uses every element kind
//! the real commands need (choices, flags, repeated options, alternatives).

use super::complete::{complete, hint};
use super::mask::{hide, redact};
use super::matcher::Match;
use super::parse::parse;
use super::syntax::{Element, Opt, Syntax};
use super::value::{DbRef, ValueKind};
use crate::ccs::{default_local_cluster, SlotRange};

#[derive(Debug, PartialEq)]
enum Ast {
    Status(Option<&'static str>, bool, bool),
    Recover(Vec<std::path::PathBuf>, Option<u64>),
    RecoverDb(DbRef, bool),
    RecoverDbConfigOnly(String),
    Check(Option<SlotRange>),
    Create(Option<crate::secret::Secret>),
}

fn status(m: &Match) -> Result<Ast, super::ParseError> {
    Ok(Ast::Status(
        m.opt("what"),
        m.has("extra"),
        m.has("issues_only"),
    ))
}

static REGISTRY: &[Syntax<Ast>] = &[
    Syntax {
        elements: &[
            Element::Keyword("status"),
            Element::Choice {
                name: "what",
                words: &["nodes", "databases"],
                optional: true,
            },
            Element::Options(&[
                Opt::optional("extra", "all", ValueKind::Choice(&["all"])),
                Opt::flag("issues_only"),
            ]),
        ],
        summary: "",
        examples: &[],
        build: status,
    },
    Syntax {
        elements: &[
            Element::Keyword("cluster"),
            Element::Keyword("recover"),
            Element::Options(&[
                Opt::required("cluster_id", "id", ValueKind::Integer),
                Opt::required("recovery_path", "path", ValueKind::Path).repeated(),
                Opt::optional("alloc_id", "n", ValueKind::Integer),
            ]),
        ],
        summary: "",
        examples: &[],
        build: |m| Ok(Ast::Recover(m.all("recovery_path"), m.opt("alloc_id"))),
    },
    Syntax {
        elements: &[
            Element::Keyword("recover"),
            Element::Keyword("db"),
            Element::Keyword("only_configuration"),
            Element::Arg("name", ValueKind::Word),
        ],
        summary: "",
        examples: &[],
        build: |m| Ok(Ast::RecoverDbConfigOnly(m.req("name")?)),
    },
    Syntax {
        elements: &[
            Element::Keyword("recover"),
            Element::Keyword("db"),
            Element::Arg("db", ValueKind::Database),
            Element::Options(&[Opt::flag("only_configuration")]),
        ],
        summary: "",
        examples: &[],
        build: |m| Ok(Ast::RecoverDb(m.req("db")?, m.has("only_configuration"))),
    },
    Syntax {
        elements: &[
            Element::Keyword("check"),
            Element::Options(&[Opt::optional("slots", "lo-hi", ValueKind::SlotRange)]),
        ],
        summary: "",
        examples: &[],
        build: |m| Ok(Ast::Check(m.opt("slots"))),
    },
    Syntax {
        elements: &[
            Element::Keyword("create"),
            Element::Options(&[Opt::optional("password", "pw", ValueKind::Secret)]),
        ],
        summary: "",
        examples: &[],
        build: |m| Ok(Ast::Create(m.opt("password"))),
    },
];

fn registry() -> Vec<&'static Syntax<Ast>> {
    REGISTRY.iter().collect()
}

#[test]
fn valid_lines() {
    let p = |s: &str| parse(&registry(), s).unwrap().unwrap();
    let cases: Vec<(&str, Ast)> = vec![
        ("status", Ast::Status(None, false, false)),
        (
            "status databases",
            Ast::Status(Some("databases"), false, false),
        ),
        (
            "status issues_only extra all",
            Ast::Status(None, true, true),
        ),
        (
            "STATUS nodes extra ALL",
            Ast::Status(Some("nodes"), true, false),
        ),
        (
            "cluster recover cluster_id 7 recovery_path /a /b recovery_path /c alloc_id 9",
            Ast::Recover(vec!["/a".into(), "/b".into(), "/c".into()], Some(9)),
        ),
        (
            "cluster recover recovery_path /a cluster_id 7",
            Ast::Recover(vec!["/a".into()], None),
        ),
        (
            "recover db only_configuration orders",
            Ast::RecoverDbConfigOnly("orders".into()),
        ),
        (
            "recover db db:3 only_configuration",
            Ast::RecoverDb(DbRef::Id(3), true),
        ),
        (
            "recover db orders",
            Ast::RecoverDb(DbRef::Name("orders".into()), false),
        ),
        (
            "check slots 0-100",
            Ast::Check(Some(SlotRange { start: 0, end: 100 })),
        ),
        (
            "create password \"p w\"",
            Ast::Create(Some(crate::secret::Secret::new("p w"))),
        ),
    ];
    for (line, ast) in cases {
        assert_eq!(p(line), ast, "{line}");
    }
}

#[test]
fn invalid_lines_point_at_the_fault() {
    let cases: &[(&str, std::ops::Range<usize>, &str)] = &[
        ("status nodez", 7..12, "unexpected `nodez`, expected `nodes`, `databases`, `extra` or `issues_only`, did you mean `nodes`?"),
        ("status extra some", 13..17, "`some` is not `all`"),
        ("status nodes nodes", 13..18, "unexpected `nodes`, expected `extra` or `issues_only`"),
        ("cluster recover cluster_id 7", 28..28, "`cluster recover cluster_id 7` is incomplete: missing `recovery_path <path>...`"),
        ("check slots 5-1", 12..15, "slot range `5-1` ends before it starts"),
        ("recover db", 10..10, "`recover db` is incomplete: expected `only_configuration` or a database (`db:3`, `3` or its name)"),
        ("create password", 15..15, "`create password` is incomplete: missing `<pw>`"),
    ];
    for (line, span, message) in cases {
        let err = parse(&registry(), line).unwrap_err();
        assert_eq!(
            (err.span.clone(), err.to_string()),
            (span.clone(), message.to_string()),
            "{line}"
        );
    }
}

#[test]
fn completion_and_hints() {
    let cluster = default_local_cluster(std::path::Path::new("/h"));
    let c = |line: &str| complete(&registry(), Some(&cluster), line, line.len()).candidates;
    assert_eq!(c("status "), ["databases", "extra", "issues_only", "nodes"]);
    assert_eq!(c("status nodes extra "), ["all"]);
    assert_eq!(c("st"), ["status"]);
    assert_eq!(c("STAT"), ["status"]);
    // After a repeated option's value: another value (a path here) or the next key.
    let after = c("cluster recover cluster_id 1 recovery_path /a ");
    assert!(after.contains(&"alloc_id".to_string()) && after.contains(&"src/".to_string()));
    assert!(!after.contains(&"cluster_id".to_string()), "{after:?}");
    assert_eq!(c("recover db "), ["only_configuration"]);
    assert_eq!(complete(&registry(), None, "status ex", 9).start, 7);
    let h = |line: &str| hint(&registry(), line, line.len());
    assert_eq!(h("stat").as_deref(), Some("us"));
    assert_eq!(
        h("cluster recover ").as_deref(),
        Some("cluster_id <id> recovery_path <path>... [...]")
    );
    assert_eq!(
        h("cluster recover").as_deref(),
        Some(" cluster_id <id> recovery_path <path>... [...]")
    );
    assert_eq!(h("status").as_deref(), Some(" [...]"));
}

#[test]
fn secrets_are_redacted() {
    let r = |line: &str| redact(&registry(), line);
    assert_eq!(r("create password hunter2"), "create password ***");
    assert_eq!(r("create PASSWORD \"a b\" x"), "create PASSWORD *** x");
    assert_eq!(r("creat password hunter2"), "creat password ***");
    assert_eq!(r("create password \"unterminated"), "create password ***");
    assert_eq!(r("status"), "status");
}

#[test]
fn a_failed_line_hides_the_word_after_a_mistyped_key_with_fixed_width_masks() {
    let reg = registry();
    // `passwrd` is a typo: its value is no longer marked secret, but it is hidden.
    let line = "create passwrd hunter5 more";
    let h = hide(&reg, line, Some(7..14));
    assert_eq!(h.text, "create passwrd *** more");
    assert_eq!(&h.text[h.span.clone()], "passwrd");
    // A fault after a secret: the caret moves with the shorter mask.
    let line = "create password longsecret12 bogus x";
    let h = hide(&reg, line, Some(29..34));
    assert_eq!(h.text, "create password *** bogus x");
    assert_eq!(&h.text[h.span.clone()], "bogus");
    // The fault is the secret itself: the caret is under the mask.
    let h = hide(&reg, "create password abcdefgh", Some(16..24));
    assert_eq!(&h.text[h.span.clone()], "***");
    // At the end of the line.
    let line = "create password abcdefgh";
    let h = hide(&reg, line, Some(line.len()..line.len()));
    assert_eq!(h.span, h.text.len()..h.text.len());
    // Other near misses of `password`, and a key with its value in one word.
    for (line, want) in [
        ("creat PASWORD hunter5", "creat PASWORD ***"),
        ("create pass hunter5", "create pass ***"),
        ("create passwd=hunter5 x", "create passwd=*** x"),
        ("create password=hunter5", "create password=***"),
        ("create passowrd hunter5", "create passowrd ***"),
        ("create paswrod hunter5", "create paswrod ***"),
        ("create pwd hunter5", "create pwd ***"),
        ("create pswd hunter5", "create pswd ***"),
        ("create passwords hunter5", "create passwords ***"),
        ("create Password1 hunter5", "create Password1 ***"),
    ] {
        assert_eq!(hide(&reg, line, Some(0..1)).text, want);
    }
    // Words that only look alike: the word after them is no secret, and stays.
    for line in [
        "create db x passenger manifest",
        "create db x passage north",
        "create db x passive mode",
        "create db x sword fish",
        "create db x pw short",
        "create db x word play",
    ] {
        assert_eq!(hide(&reg, line, Some(12..13)).text, line);
    }
}

#[test]
fn words_after_a_fault_stay_readable_unless_they_follow_a_secret_key() {
    let reg = registry();
    for line in [
        "stat nodes extra",
        "status nodez 2 3",
        "recover db x bogus now",
    ] {
        let fault = parse(&reg, line).unwrap_err().span;
        assert_eq!(hide(&reg, line, Some(fault)).text, line);
    }
}

#[test]
fn a_secret_inside_a_quoted_word_is_hidden_and_the_quotes_kept() {
    let reg = registry();
    let h = |line: &str| hide(&reg, line, Some(0..line.len().min(1)));
    assert_eq!(
        h(r#""create password hunter2""#).text,
        r#""create password ***""#
    );
    assert_eq!(
        h(r#"create 'password hunter2' x"#).text,
        r#"create 'password ***' x"#
    );
    assert_eq!(
        h(r#"create "x password" hunter2 y"#).text,
        r#"create "x password" *** y"#
    );
    assert_eq!(
        h(r#"create "password hun\"ter 2" y"#).text,
        r#"create "password *** 2" y"#
    );
    // Unterminated: the quote runs to the end of the line.
    assert_eq!(
        h(r#"create "a password hunter2 b"#).text,
        r#"create "a password *** b"#
    );
    assert_eq!(
        redact(&reg, r#"create "password hunter2""#),
        r#"create "password ***""#
    );
    // The caret under a quoted word covers it, mask and quotes included.
    let line = r#"create x "password hunter2""#;
    let h = hide(&reg, line, Some(9..line.len()));
    assert_eq!(&h.text[h.span.clone()], r#""password ***""#);
}

#[test]
fn a_parse_error_quotes_words_with_their_secrets_hidden() {
    let reg = registry();
    let message = |line: &str| parse(&reg, line).unwrap_err().to_string();
    assert_eq!(
        message(r#""create password hunter2""#),
        "unknown command `create password ***`, did you mean `create`?"
    );
    let m = message(r#"create "password hunter2""#);
    assert!(m.starts_with("unexpected `password ***`"), "{m}");
    let m = message("status password hunter2");
    assert!(!m.contains("hunter2"), "{m}");
    let m = message(r#"status "x password hunter2""#);
    assert!(m.starts_with("unexpected `x password ***`"), "{m}");
}
