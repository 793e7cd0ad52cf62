//! The init's own messages, on the kernel log.
//!
//! They go through `/dev/kmsg` at error level, so they reach the kernel
//! console (which the host watches) even under `quiet` and before any other
//! channel exists. They carry [`virtrun_protocol::INIT_LOG_PREFIX`] so the
//! host can show them while hiding kernel noise.

use std::fs::OpenOptions;
use std::io::Write;

/// Kernel log levels used by the init.
#[derive(Debug, Clone, Copy)]
pub enum Level {
    /// Shown by the host always.
    Error = 3,
    /// Shown on the console only with a verbose kernel log level.
    Info = 6,
}

/// Writes one message to the kernel log; falls back to stderr when
/// `/dev/kmsg` is not there (e.g. before `/dev` is mounted).
pub fn write(level: Level, msg: &str) {
    write_with(level, virtrun_protocol::INIT_LOG_PREFIX, msg);
}

fn write_with(level: Level, prefix: &str, msg: &str) {
    let line = format!("<{}>{prefix}{}\n", level as u8, msg.replace('\n', " "));
    let sent = OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if sent.is_err() {
        // Skip the "<N>" level prefix on a plain stream.
        let _ = std::io::stderr().write_all(&line.as_bytes()[3..]);
    }
}

/// Logs an error.
pub fn error(msg: &str) {
    write(Level::Error, msg);
}

/// Logs progress.
pub fn info(msg: &str) {
    write(Level::Info, msg);
}

/// Logs why the init cannot go on, just before it powers off: the host
/// ends the run with this message
/// ([`virtrun_protocol::INIT_FATAL_PREFIX`]).
pub fn fatal(msg: &str) {
    write_with(Level::Error, virtrun_protocol::INIT_FATAL_PREFIX, msg);
}
