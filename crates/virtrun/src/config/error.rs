//! What can be wrong with a command line: one line each, naming the flag
//! and the path.

use std::path::PathBuf;

/// A command line error. Its `Display` is one line naming the flag and/or path.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag that does not exist.
    #[error("flag provided but not defined: -{0}")]
    UnknownFlag(String),
    /// A word like `---x` or `-=x`.
    #[error("bad flag syntax: {0}")]
    BadSyntax(String),
    /// A value flag at the end of the arguments.
    #[error("flag needs an argument: -{0}")]
    MissingArgument(&'static str),
    /// A boolean flag with a value that is not a Go boolean.
    #[error("invalid boolean value {value:?} for -{flag}: parse error")]
    InvalidBool {
        /// Flag name, without dash.
        flag: &'static str,
        /// The value given.
        value: String,
    },
    /// A value that does not parse.
    #[error("invalid value {value:?} for flag -{flag}: {reason}")]
    InvalidValue {
        /// Flag name, without dash.
        flag: &'static str,
        /// The value given.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A number outside the flag's range.
    #[error("-{flag} must be between {min} and {max}, got {got}")]
    OutOfRange {
        /// Flag name, without dash.
        flag: &'static str,
        /// Smallest allowed value.
        min: u32,
        /// Largest allowed value.
        max: u32,
        /// The value given.
        got: i64,
    },
    /// Nothing after the flags.
    #[error("no binary given")]
    NoBinary,
    /// A named file does not exist.
    #[error("{what}: {}: no such file", path.display())]
    Missing {
        /// `-flag` or `binary`.
        what: &'static str,
        /// The absolute path.
        path: PathBuf,
    },
    /// A named path exists but is not a regular file.
    #[error("{what}: {}: not a regular file", path.display())]
    NotRegular {
        /// `-flag` or `binary`.
        what: &'static str,
        /// The absolute path.
        path: PathBuf,
    },
    /// A named path cannot be examined.
    #[error("{what}: {}: {reason}", path.display())]
    Inaccessible {
        /// `-flag` or `binary`.
        what: &'static str,
        /// The absolute path.
        path: PathBuf,
        /// The operating system's error.
        reason: String,
    },
}

impl ConfigError {
    /// True for command line syntax errors, after which (as Go's `flag` does) the
    /// usage text follows the message.
    pub fn wants_usage(&self) -> bool {
        // -net is virtrun's own: its error is one line, the rest as Go's
        // flag package has it.
        !matches!(
            self,
            ConfigError::Missing { .. }
                | ConfigError::NotRegular { .. }
                | ConfigError::Inaccessible { .. }
                | ConfigError::InvalidValue { flag: "net", .. }
        )
    }
}
