//! The `lazarus` binary: thin; everything lives in the library.

use std::process::ExitCode;

use lazarus::shell::{self, Args, EXIT_FAILED, EXIT_USAGE};

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("lazarus: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("lazarus: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn run(args: Args) -> anyhow::Result<u8> {
    shell::run(args)
}
