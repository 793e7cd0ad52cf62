//! The virtrun command: parses the flags, runs, and maps every ending to one
//! exit code and at most one line on stderr.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;
use virtrun::config::{self, Parsed, Sources};
use virtrun::outcome::FAILURE;
use virtrun::trace::{Trace, say};

fn main() -> ExitCode {
    let start = Instant::now();
    let sources = match Sources::from_process() {
        Ok(s) => s,
        Err(e) => return fail(&format!("reading arguments: {e}")),
    };
    if virtrun::run::nested::runs_directly() {
        match config::parse_direct(&sources) {
            Ok(Some(direct)) => {
                let e = virtrun::run::nested::exec(&direct);
                return fail(&format!("{}: {e}", direct.binary.display()));
            }
            // -h, -version: answered as ever.
            Ok(None) => {}
            Err(e) => {
                say(&format!("virtrun: error: {e}\n"));
                return ExitCode::from(FAILURE);
            }
        }
    }
    let config = match config::parse(&sources) {
        Ok(Parsed::Run(config)) => config,
        Ok(Parsed::Help) => {
            say(&config::usage());
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            let version = format!("Version: {}\n", env!("CARGO_PKG_VERSION"));
            let _ = std::io::stdout().lock().write_all(version.as_bytes());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            say(&format!("virtrun: error: {e}\n"));
            if e.wants_usage() {
                say(&config::usage());
            }
            return ExitCode::from(FAILURE);
        }
    };
    let trace = Trace::new(start, config.debug);
    trace.log(|| "flags parsed".into());
    let mut config = config;
    // A run of a kernel matrix is told its kernel.
    if let Some(kernel) = virtrun::run::matrix::member_kernel() {
        config.kernel = Some(kernel);
        config.kernels.clear();
    }
    let ran = if config.kernels.is_empty() {
        virtrun::run::run(&config, &trace)
    } else {
        virtrun::run::matrix::run(&config, &trace)
    };
    match ran {
        Ok(outcome) => {
            if let Some(msg) = &outcome.message {
                say(&format!("virtrun: {msg}\n"));
            }
            ExitCode::from(outcome.code)
        }
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn fail(msg: &str) -> ExitCode {
    say(&format!("virtrun: error: {msg}\n"));
    ExitCode::from(FAILURE)
}
