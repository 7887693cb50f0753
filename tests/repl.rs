//! The REPL through a real pseudo-terminal: Tab completes, errors do not end the session,
//! and the history file (mode 0600) never holds a password.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::Lazarus;
use expectrl::{Expect, Session};

/// The shell on a pseudo-terminal of type `term`, on a home with cluster `t`.
fn shell_on(lz: &Lazarus, term: &str) -> expectrl::session::OsSession {
    lz.run("cluster create name t").ok();
    let mut command = Command::new(env!("CARGO_BIN_EXE_lazarus"));
    command
        .arg("--home")
        .arg(lz.home())
        .env("TERM", term)
        .env("NO_COLOR", "1");
    let mut shell = Session::spawn(command).expect("spawn the shell on a pty");
    shell.set_expect_timeout(Some(Duration::from_secs(20)));
    shell
}

#[test]
fn tab_completes_and_history_has_no_password() {
    let lz = Lazarus::new();
    let mut shell = shell_on(&lz, "xterm");
    shell.expect("Lazarus").unwrap();
    shell.expect("lazarus:t> ").unwrap();

    // A partial word and Tab: the shell completes it.
    shell.send("info clu").unwrap();
    shell.send("\t").unwrap();
    shell.expect("info cluster").unwrap();
    shell.send("\r").unwrap();
    shell.expect("CLUSTER:").unwrap();
    shell.expect("lazarus:t> ").unwrap();

    // Right arrow accepts the rest of a keyword, never a placeholder such as `<ip>`.
    shell.send("info node 1 \x15").unwrap();
    shell.send("info clu\x1b[C\r").unwrap();
    shell.expect("CLUSTER:").unwrap();
    shell.send("node add \x1b[C\r").unwrap();
    shell.expect("`node add` is incomplete: missing").unwrap();

    // Errors, and a line with a password: the session goes on.
    shell.send("infoo cluster\r").unwrap();
    shell.expect("did you mean `info`?").unwrap();
    shell
        .send("node 1 recovery_path set /x password hunter2\r")
        .unwrap();
    shell.expect("unexpected `password`").unwrap();
    shell.send("info node 1\r").unwrap();
    shell.expect("NODE:1").unwrap();
    shell.send("exit\r").unwrap();
    shell.expect(expectrl::Eof).unwrap();

    let history = lz.path("history");
    let text = std::fs::read_to_string(&history).unwrap();
    assert!(text.contains("info cluster"), "{text}");
    assert!(text.contains("password ***"), "{text}");
    assert!(
        !text.contains("hunter2"),
        "the password reached the history:\n{text}"
    );
    let mode = std::fs::metadata(&history).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Issue 9 items 9-11: pasted lines run one by one (typed ahead or bracketed paste); a
/// mistyped key does not leak its value into history or the error echo; `***` recalled
/// from history is never taken as a password.
#[test]
fn pasted_lines_each_run_and_a_typo_does_not_leak_a_password() {
    let lz = Lazarus::new();
    let mut shell = shell_on(&lz, "xterm");
    shell.expect("lazarus:t> ").unwrap();

    // Typed ahead in one write: both run, in order.
    shell.send("info cluster\rinfo node 1\r").unwrap();
    shell.expect("CLUSTER:").unwrap();
    shell.expect("NODE:1").unwrap();
    // A bracketed paste of two lines, then Enter.
    shell
        .send("\x1b[200~help status\nhelp info\n\x1b[201~\r")
        .unwrap();
    shell.expect("status [nodes").unwrap();
    shell.expect("info cluster").unwrap();

    shell.send("create db x passwrd hunter5\r").unwrap();
    shell.expect("create db x passwrd ***").unwrap();
    shell.send("create db y password ***\r").unwrap();
    shell
        .expect("the password was hidden in history: type it again")
        .unwrap();
    // The echo of a failed line masks with a fixed width, never the secret's length.
    shell
        .send("create db x password longsecret1 port abc\r")
        .unwrap();
    shell.expect("create db x password *** port abc").unwrap();
    shell.send("exit\r").unwrap();
    shell.expect(expectrl::Eof).unwrap();

    let text = std::fs::read_to_string(lz.path("history")).unwrap();
    assert!(!text.contains("hunter5"), "{text}");
    assert!(!text.contains("longsecret1"), "{text}");
    assert!(text.contains("\nhelp status\n"), "{text}");
    assert!(text.contains("\nhelp info\n"), "{text}");
    // Nothing was created with `***` as its password.
    assert!(lz.ccs()["databases"]
        .as_array()
        .is_none_or(|d| d.is_empty()));
}

#[test]
fn on_a_dumb_terminal_ctrl_c_abandons_the_line_and_the_shell_goes_on() {
    let lz = Lazarus::new();
    let mut shell = shell_on(&lz, "dumb");
    shell.expect("lazarus:t> ").unwrap();
    shell.send("info clusterXYZ").unwrap();
    shell.send("\x03").unwrap();
    shell.expect("lazarus:t> ").unwrap();
    shell.send("info cluster\r").unwrap();
    shell.expect("CLUSTER:").unwrap();
    shell.expect("lazarus:t> ").unwrap();
    // Again after a command has run (its own Ctrl-C watch must not take the line's over).
    shell.send("info nodeXYZ").unwrap();
    shell.send("\x03").unwrap();
    shell.expect("lazarus:t> ").unwrap();
    shell.send("info node 1\r").unwrap();
    shell.expect("NODE:1").unwrap();
    shell.send("exit\r").unwrap();
    shell.expect(expectrl::Eof).unwrap();
}

/// Under `--json` stdout holds only documents, one a command (README, JSON output): the
/// shell's banner and prompts go to the terminal, on a terminal with line editing and
/// without; `complete` answers with one document too.
#[test]
fn under_json_the_shell_prints_only_documents_on_stdout() {
    for term in ["xterm", "dumb"] {
        let lz = Lazarus::new();
        lz.run("cluster create name t").ok();
        let docs = lz.path("out.jsonl");
        // stdin and stderr the terminal, stdout a file.
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!(
                "exec '{}' --json --home '{}' > '{}'",
                env!("CARGO_BIN_EXE_lazarus"),
                lz.home().display(),
                docs.display()
            ))
            .env("TERM", term)
            .env("NO_COLOR", "1");
        let mut shell = Session::spawn(command).expect("spawn the shell on a pty");
        shell.set_expect_timeout(Some(Duration::from_secs(20)));
        shell.expect("Lazarus").unwrap();
        shell.expect("lazarus:t> ").unwrap();
        shell.send("info cluster\r").unwrap();
        shell.expect("lazarus:t> ").unwrap();
        shell.send("exit\r").unwrap();
        shell.expect(expectrl::Eof).unwrap();
        let text = std::fs::read_to_string(&docs).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{term}: {text}");
        for line in lines {
            let doc: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{term}: not a document ({e}): {line}"));
            assert_eq!(doc["ok"], true, "{term}: {line}");
        }
    }
    let lz = Lazarus::new();
    lz.run("cluster create name t").ok();
    let out = lz.cmd(["--json", "complete", "--", "info", ""]).run().ok();
    let docs = out.json();
    assert_eq!(docs.len(), 1, "{}", out.stdout);
    assert_eq!(docs[0]["command"], "complete -- info \"\"");
    let result = docs[0]["result"].as_array().unwrap();
    assert!(result.iter().any(|c| c == "cluster"), "{result:?}");
}
