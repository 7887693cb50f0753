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
        ["recovery_path", "redis_server", "remove"]
    );
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
