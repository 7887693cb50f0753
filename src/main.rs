//! The `lazarus` binary: thin; everything lives in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = lazarus::shell::main(std::env::args_os().skip(1).collect());
    // For benchmarks: how many round trips to other hosts the command cost.
    if std::env::var_os("LAZARUS_SSH_SESSIONS").is_some() {
        eprintln!("lazarus: ssh sessions: {}", lazarus::host::ssh::sessions());
    }
    ExitCode::from(code)
}
