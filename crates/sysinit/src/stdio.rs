//! The init's own standard file descriptors.
//!
//! The kernel starts init with fds 0–2 open on `/dev/console`, unless it has
//! no console yet (`console=hvc0` with `virtio_console` still a module): then
//! they are closed, and the first files the init opens would land on them.

use crate::sys::check;
use crate::{ErrorContext, Result};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, RawFd};

/// Where closed standard fds are pointed.
const NULL: &str = "/dev/null";

/// Opens `/dev/null` on every one of fds 0–2 that is closed, so that no file
/// opened later becomes stdin, stdout or stderr by accident. Needs `/dev`.
pub fn fill_closed() {
    while let Ok(null) = File::open(NULL) {
        if null.as_raw_fd() > 2 {
            break;
        }
        // It landed on a closed standard fd: that is where it must stay.
        std::mem::forget(null);
    }
}

/// Makes `fd` (0, 1 or 2) refer to `to` as well, replacing what it was.
pub fn redirect(fd: RawFd, to: &impl AsFd) -> Result<()> {
    // SAFETY: dup2(2) on an fd we borrow and a standard fd number; it only
    // replaces what that number refers to, which nothing in this process owns
    // as a Rust object (std's stdio handles use the number, not an owner).
    check(unsafe { libc::dup2(to.as_fd().as_raw_fd(), fd) })
        .map(drop)
        .context(|| format!("redirect fd {fd}"))
}

/// Points stdin at `/dev/null`: nothing on the host feeds a standalone guest.
pub fn null_stdin() -> Result<()> {
    let null = File::open(NULL).context(|| format!("open {NULL}"))?;
    redirect(0, &null)
}
