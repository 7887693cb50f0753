//! The `lazarus` binary: thin; everything lives in the library.

use std::process::ExitCode;

use lazarus::error::DomainError;
use lazarus::shell::{self, Args, EXIT_FAILED};

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("lazarus: {e}");
            return ExitCode::from(e.kind().exit_code());
        }
    };
    match run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("lazarus: {e:#}");
            // A command's own error chooses its exit status (2: usage) wherever it rose.
            let code = e
                .downcast_ref::<lazarus::cmd::CommandError>()
                .map_or(EXIT_FAILED, |c| c.kind().exit_code());
            ExitCode::from(code)
        }
    }
}

fn run(args: Args) -> anyhow::Result<u8> {
    let res = shell::run(args);
    // For benchmarks: how many round trips to other hosts the command cost.
    if std::env::var_os("LAZARUS_SSH_SESSIONS").is_some() {
        eprintln!("lazarus: ssh sessions: {}", lazarus::host::ssh::sessions());
    }
    res
}
