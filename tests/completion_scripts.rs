//! The bash completion script, run by a real bash against the real binary, offers what
//! the shell's own completion offers (keywords, node ids from the CCS, `node:` forms).

mod common;

use std::process::Command;

use common::Lazarus;

/// COMPREPLY after completing `line` (cursor at its end) with completions/lazarus.bash.
fn bash_complete(lz: &Lazarus, line: &str) -> Vec<String> {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_lazarus"))
        .parent()
        .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/completions/lazarus.bash");
    let program = format!(
        "source '{script}'\nCOMP_LINE=\"$LINE\"; COMP_POINT=${{#LINE}}\n_lazarus\nprintf '%s\\n' \"${{COMPREPLY[@]}}\""
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(program)
        .env("LINE", line)
        .env("LAZARUS_HOME", lz.home())
        .env(
            "PATH",
            format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
        )
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn bash_completion_uses_the_binary() {
    let lz = Lazarus::new();
    lz.run("cluster create name b").ok();
    lz.run(&format!(
        "node add addr 127.0.0.1 persistent_path {}",
        lz.path("n2").display()
    ))
    .ok();
    assert_eq!(bash_complete(&lz, "lazarus in"), ["info"]);
    assert_eq!(bash_complete(&lz, "lazarus node "), ["add", "1", "2"]);
    assert_eq!(
        bash_complete(&lz, "lazarus node 2 "),
        ["port_range", "recovery_path", "redis_server", "remove"]
    );
    assert_eq!(bash_complete(&lz, "lazarus node 2 port_range "), ["set"]);
    assert_eq!(
        bash_complete(&lz, "lazarus node 2 recovery_path "),
        ["clear", "set"]
    );
    assert_eq!(bash_complete(&lz, "lazarus info node node:"), ["1", "2"]);
    assert_eq!(bash_complete(&lz, "lazarus --json info c"), ["cluster"]);
    assert_eq!(bash_complete(&lz, "lazarus --js"), ["--json"]);
    let dir = lz.path("n2");
    let partial = format!("lazarus node 2 recovery_path set {}/cc", dir.display());
    assert_eq!(
        bash_complete(&lz, &partial),
        [format!("{}/ccs/", dir.display())]
    );
}

/// PATH with the test's binary first, for the scripts' `command lazarus`.
fn path_with_binary() -> String {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_lazarus"))
        .parent()
        .unwrap();
    format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap())
}

/// What completions/_lazarus hands to `compadd` for `line` (zsh's words as `(z)` splits
/// them), each argument a line; `compadd` and `compdef` are stand-ins that record.
fn zsh_complete(lz: &Lazarus, line: &str) -> Vec<String> {
    let program = r#"compdef() { : }
compadd() { local a; for a in "$@"; do print -r -- "$a"; done }
source "$SCRIPT"
words=("${(@z)LINE}")
[[ "$LINE" == *" " ]] && words+=("")
CURRENT=${#words}
_lazarus || true"#;
    let out = Command::new("zsh")
        .args(["-f", "-c", program])
        .env(
            "SCRIPT",
            concat!(env!("CARGO_MANIFEST_DIR"), "/completions/_lazarus"),
        )
        .env("LINE", line)
        .env("LAZARUS_HOME", lz.home())
        .env("PATH", path_with_binary())
        .output()
        .expect("zsh runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .filter(|a| !["--", "-S", ""].contains(&a.as_str()))
        .collect()
}

/// What fish offers for `line` with completions/lazarus.fish (`complete -C`).
fn fish_complete(lz: &Lazarus, line: &str) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/completions/lazarus.fish");
    let out = Command::new("fish")
        .args(["--no-config", "-c", "source $SCRIPT; complete -C $LINE"])
        .env("SCRIPT", script)
        .env("LINE", line)
        .env("LAZARUS_HOME", lz.home())
        .env("PATH", path_with_binary())
        .output()
        .expect("fish runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').next().unwrap_or("").to_string())
        .collect()
}

/// Issue 9 item 17: a path with a space completes in bash, zsh and fish, escaped each
/// shell's own way (bash's `\ `, compadd and fish quoting plain candidates themselves),
/// and zsh and fish complete keywords and live values like bash.
#[test]
fn paths_with_spaces_complete_in_bash_zsh_and_fish() {
    let lz = Lazarus::new();
    lz.run("cluster create name b").ok();
    let dir = lz.path("old disk");
    std::fs::create_dir_all(dir.join("ccs")).unwrap();
    let shown = dir.display().to_string();
    let escaped = shown.replace(' ', "\\ ");
    let typed = format!("lazarus node 1 recovery_path set {escaped}/cc");
    let want = format!("{shown}/ccs/");
    assert_eq!(bash_complete(&lz, &typed), [want.replace(' ', "\\ ")]);
    assert_eq!(
        bash_complete(
            &lz,
            &format!("lazarus node 1 recovery_path set \"{shown}/cc")
        ),
        [want.replace(' ', "\\ ")]
    );
    assert_eq!(zsh_complete(&lz, &typed), vec![want.clone()]);
    assert_eq!(fish_complete(&lz, &typed), vec![want]);
    assert_eq!(zsh_complete(&lz, "lazarus node "), ["add", "1"]);
    assert_eq!(fish_complete(&lz, "lazarus node "), ["1", "add"]);
    assert_eq!(fish_complete(&lz, "lazarus info c"), ["cluster"]);
    // The binary's flags come from its one table: every spelling, `-f` included, in
    // every shell; a flag's value is skipped to reach the command.
    for shell in [bash_complete, zsh_complete, fish_complete] {
        let flags = shell(&lz, "lazarus -");
        for want in [
            "-f",
            "--file",
            "--json",
            "--home",
            "--max-concurrency",
            "-V",
        ] {
            assert!(flags.iter().any(|f| f == want), "{want} in {flags:?}");
        }
        assert_eq!(shell(&lz, "lazarus -f x.txt --js"), ["--json"]);
    }
}

/// A path-taking flag's value completes as a path (files and directories for `--file` and
/// `--redis-server`, directories for `--home`), not as the commands; after the value,
/// commands complete again. Through `lazarus complete --` and the bash script.
#[test]
fn a_flag_value_completes_as_a_path() {
    let lz = Lazarus::new();
    let dir = lz.path("x");
    std::fs::create_dir_all(dir.join("home dir")).unwrap();
    std::fs::create_dir_all(dir.join("hosts")).unwrap();
    std::fs::write(dir.join("script.txt"), "").unwrap();
    std::fs::write(dir.join("redis-server"), "").unwrap();
    let d = dir.display().to_string();
    let complete = |words: &[&str]| -> Vec<String> {
        let out = lz.cmd(["complete", "--"].iter().chain(words)).run().ok();
        out.stdout.lines().map(String::from).collect()
    };
    assert_eq!(
        complete(&["--file", &format!("{d}/s")]),
        [format!("{d}/script.txt")]
    );
    assert_eq!(
        complete(&["--json", "-f", &format!("{d}/")]),
        [
            format!("{d}/home dir/"),
            format!("{d}/hosts/"),
            format!("{d}/redis-server"),
            format!("{d}/script.txt"),
        ]
    );
    assert_eq!(
        complete(&["--home", &format!("{d}/h")]),
        [format!("{d}/home dir/"), format!("{d}/hosts/")]
    );
    assert_eq!(
        complete(&["--redis-server", &format!("{d}/redis-s")]),
        [format!("{d}/redis-server")]
    );
    assert_eq!(complete(&["--max-concurrency", ""]), Vec::<String>::new());
    // After the value, the command.
    assert_eq!(complete(&["--file", "s.txt", "in"]), ["info"]);
    assert_eq!(complete(&["--home", &d, "info", "c"]), ["cluster"]);
    assert_eq!(
        bash_complete(&lz, &format!("lazarus --home {d}/hos")),
        [format!("{d}/hosts/")]
    );

    // The `--flag=value` form completes the same values, each candidate the whole word
    // (bash, whose words break at `=`, is handed the part after it).
    assert_eq!(
        complete(&[&format!("--file={d}/s")]),
        [format!("--file={d}/script.txt")]
    );
    assert_eq!(
        complete(&["--json", &format!("--home={d}/h")]),
        [
            format!("--home={d}/home dir/"),
            format!("--home={d}/hosts/")
        ]
    );
    assert_eq!(complete(&["--max-concurrency="]), Vec::<String>::new());
    assert_eq!(complete(&["--json=x"]), Vec::<String>::new());
    assert_eq!(
        complete(&[&format!("--home={d}"), "info", "c"]),
        ["cluster"]
    );
    let typed = format!("lazarus --file={d}/scr");
    assert_eq!(bash_complete(&lz, &typed), [format!("{d}/script.txt")]);
    assert_eq!(
        zsh_complete(&lz, &typed),
        [format!("--file={d}/script.txt")]
    );
    assert_eq!(
        fish_complete(&lz, &typed),
        [format!("--file={d}/script.txt")]
    );
}
