//! Building blocks for a PID 1 in a virtrun guest.
//!
//! The default init of virtrun is built from these pieces, and a user's own
//! standalone init can be too. Every step returns an [`Error`] value; nothing
//! here panics on a guest failure.
//!
//! The host/guest contract (which device carries what, the exit marker, the
//! framing of stdin) lives in `virtrun_protocol`; this crate only implements
//! the guest side of it.

#![deny(missing_docs)]

pub mod channel;
pub mod fs;
pub mod kmod;
pub mod log;
pub mod net;
pub mod power;
pub mod process;
mod sys;

use std::fmt;
use std::io;

/// A failed setup step: what was attempted and the OS error.
#[derive(Debug)]
pub struct Error {
    /// What was being done, e.g. `mount /proc`.
    pub context: String,
    /// Why it failed.
    pub source: io::Error,
}

impl Error {
    /// Wraps `source` with what was being done.
    pub fn new(context: impl Into<String>, source: io::Error) -> Self {
        Error {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Result of a setup step.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds context to an `io::Result`.
pub(crate) trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::new(what(), e))
    }
}

/// Whether this process is PID 1, the only place the rest of this crate makes sense.
pub fn is_pid1() -> bool {
    std::process::id() == 1
}
