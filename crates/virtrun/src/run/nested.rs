//! virtrun inside a virtrun guest: a test that calls cargo (whose runner is
//! virtrun, under `-hostRoot` where the guest has the host's environment)
//! or `go test -exec virtrun` would otherwise boot a guest in the guest,
//! under emulation, with a kernel path the guest may not even see. The
//! binary runs directly instead, as without a runner, unless
//! [`NESTED_ENV`] asks for a real nested guest.

use crate::config::Direct;
use crate::trace::say;
use std::os::unix::process::CommandExt;
use virtrun_protocol::{GUEST_MARKER, NESTED_ENV};

/// Whether this is a virtrun guest (its init made [`GUEST_MARKER`]) in
/// which the binary is to run directly.
pub fn runs_directly() -> bool {
    std::path::Path::new(GUEST_MARKER).exists()
        && std::env::var_os(NESTED_ENV).is_none_or(|v| v.is_empty())
}

/// Replaces this process with the binary; returns only the error of a
/// binary that could not be run.
pub fn exec(direct: &Direct) -> std::io::Error {
    if direct.debug {
        say(&format!(
            "virtrun: inside a virtrun guest: running {} directly ({NESTED_ENV}=1 boots a nested guest)\n",
            direct.binary.display()
        ));
    }
    std::process::Command::new(&direct.binary)
        .args(&direct.args)
        .exec()
}
