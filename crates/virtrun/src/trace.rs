//! The host-side debug log of `-debug`: one line per step, with the time
//! since virtrun started.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

/// Writes timestamped debug lines to stderr when enabled; cheap to clone.
#[derive(Debug, Clone)]
pub struct Trace {
    start: Arc<Instant>,
    enabled: bool,
}

impl Trace {
    /// A trace that counts from `start`.
    pub fn new(start: Instant, enabled: bool) -> Self {
        Trace {
            start: Arc::new(start),
            enabled,
        }
    }

    /// Logs the message `msg` builds; builds nothing when disabled.
    pub fn log(&self, msg: impl FnOnce() -> String) {
        if self.enabled {
            let ms = self.start.elapsed().as_secs_f64() * 1000.0;
            let _ = writeln!(std::io::stderr().lock(), "virtrun: [{ms:9.3} ms] {}", msg());
        }
    }
}

/// Writes `text` to stderr as it is. A stderr that is gone (a terminal
/// that hung up, a closed pipe) loses the text; it never ends virtrun, as
/// `eprint!` would, with a panic.
pub fn say(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
