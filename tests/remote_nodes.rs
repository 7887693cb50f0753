//! Nodes on other hosts, over SSH: each test host is its own `sshd` on a loopback address
//! of this machine (tests/common/sshd.rs), reached with the operator's OpenSSH client.

mod common;

use common::sshd::SshLab;

#[test]
fn the_test_hosts_answer_over_ssh_with_strict_host_keys() {
    let lab = SshLab::new();
    let mut known = lab.host();
    let out = lab.ssh(&known, "echo $((40 + 2))");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");

    let unknown = lab.host_unknown();
    assert_ne!(unknown.addr, known.addr);
    let out = lab.ssh(&unknown, "true");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Host key verification failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    known.stop();
    assert!(!lab.ssh(&known, "true").status.success());
}
