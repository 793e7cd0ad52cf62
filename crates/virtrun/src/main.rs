//! The virtrun command: parses the flags, runs, and maps every ending to one
//! exit code and at most one line on stderr.

use std::process::ExitCode;
use std::time::Instant;
use virtrun::config::{self, Parsed, Sources};
use virtrun::outcome::FAILURE;
use virtrun::trace::Trace;

fn main() -> ExitCode {
    let start = Instant::now();
    let sources = match Sources::from_process() {
        Ok(s) => s,
        Err(e) => return fail(&format!("reading arguments: {e}")),
    };
    let config = match config::parse(&sources) {
        Ok(Parsed::Run(config)) => config,
        Ok(Parsed::Help) => {
            eprint!("{}", config::usage());
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("Version: {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("virtrun: error: {e}");
            if e.wants_usage() {
                eprint!("{}", config::usage());
            }
            return ExitCode::from(FAILURE);
        }
    };
    let trace = Trace::new(start, config.debug);
    trace.log(|| "flags parsed".into());
    match virtrun::run::run(&config, &trace) {
        Ok(outcome) => {
            if let Some(msg) = &outcome.message {
                eprintln!("virtrun: {msg}");
            }
            ExitCode::from(outcome.code)
        }
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("virtrun: error: {msg}");
    ExitCode::from(FAILURE)
}
