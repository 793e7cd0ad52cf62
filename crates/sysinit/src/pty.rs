//! Pseudo-terminals, for a binary that runs on a terminal (`virtrun -tty`):
//! the init keeps the master and pumps it to and from the host; the binary
//! gets the terminal as its controlling one ([`crate::process::spawn_on_terminal`]).

use crate::{ErrorContext, Result};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use virtrun_protocol::WindowSize;

/// A new pseudo-terminal of `size`: its master, and the path of its
/// terminal (`/dev/pts/N`) for the binary to open.
pub fn open(size: WindowSize) -> Result<(File, PathBuf)> {
    // SAFETY: posix_openpt takes flags only; a returned fd is ours alone.
    let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context(|| "open /dev/ptmx".to_string());
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    let master = unsafe { File::from_raw_fd(fd) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: grantpt and unlockpt act on our open master; ptsname_r writes
    // at most name.len() bytes, NUL included, into name.
    let failed = unsafe {
        libc::grantpt(fd) != 0
            || libc::unlockpt(fd) != 0
            || libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) != 0
    };
    if failed {
        return Err(io::Error::last_os_error()).context(|| "set up the terminal".to_string());
    }
    // SAFETY: ptsname_r succeeded, so name holds a NUL-terminated string.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(path.to_bytes()));
    resize(&master, size)?;
    Ok((master, path))
}

/// Sets the terminal's size; its foreground process group gets `SIGWINCH`.
pub fn resize(master: &File, size: WindowSize) -> Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, valid here.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(io::Error::last_os_error()).context(|| "set the terminal's size".to_string());
    }
    Ok(())
}

/// Hangs up the terminal at `path` (`TIOCVHANGUP`, as when a modem line
/// drops): its session leader and foreground group get `SIGHUP`, its reads
/// end and its writes fail. For when the terminal on the other side, the
/// host's, went away.
pub fn hang_up(path: &std::path::Path) -> Result<()> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .context(|| format!("open {}", path.display()))?;
    // SAFETY: TIOCVHANGUP takes no argument.
    if unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCVHANGUP) } != 0 {
        return Err(io::Error::last_os_error()).context(|| format!("hang up {}", path.display()));
    }
    Ok(())
}
