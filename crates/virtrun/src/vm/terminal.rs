//! virtrun's own terminal under `-tty`: its size, and raw mode for as long
//! as the guest has the keyboard (every key reaches the guest's terminal,
//! whose line discipline echoes, edits lines and turns Ctrl-C and Ctrl-Z
//! into signals for the binary).
//!
//! A few `termios` calls through `libc`, which virtrun links already.

use std::io;
use std::os::fd::RawFd;
use virtrun_protocol::WindowSize;

/// virtrun's stdin, which is its terminal under -tty.
pub const STDIN: RawFd = 0;

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: RawFd) -> bool {
    // SAFETY: isatty only looks at the fd.
    unsafe { libc::isatty(fd) == 1 }
}

/// The size of the terminal at `fd`.
pub fn size(fd: RawFd) -> io::Result<WindowSize> {
    // SAFETY: winsize is plain old data; TIOCGWINSZ writes one.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a winsize for the ioctl to fill.
    if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(WindowSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// The terminal at `fd` in raw mode until dropped, which restores the mode
/// it had: on every way out of a run, errors and signals included (a
/// signal ends virtrun by returning, never at once; only SIGKILL escapes).
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    /// Puts the terminal at `fd` in raw mode.
    pub fn enter(fd: RawFd) -> io::Result<RawMode> {
        // SAFETY: termios is plain old data; tcgetattr fills it.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to a termios.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the termios it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: a valid termios for a terminal fd.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Output already written goes out in the guest's mode first.
        // SAFETY: the termios read when entering, for the same fd.
        unsafe { libc::tcsetattr(self.fd, libc::TCSADRAIN, &self.saved) };
    }
}
