//! Processes, from PID 1's point of view.

use std::io;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl Exit {
    /// The exit code a shell would report: the code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// Waits for `pid`, reaping every orphan that ends meanwhile (PID 1 inherits
/// them all).
pub fn reap(pid: u32) -> io::Result<Exit> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) writes only to `status`.
        let got = unsafe { libc::waitpid(-1, &mut status, 0) };
        if got < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        } else if got as u32 == pid {
            return Ok(if libc::WIFSIGNALED(status) {
                Exit::Signal(libc::WTERMSIG(status))
            } else {
                Exit::Code(libc::WEXITSTATUS(status))
            });
        }
    }
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) touches no memory of ours.
    crate::sys::check(unsafe { libc::kill(pid as libc::pid_t, sig) }).map(drop)
}

/// Kills every process but PID 1, so that nothing left behind keeps the
/// binary's pipes open while the guest ends.
pub fn kill_all() {
    // SAFETY: kill(2) on -1 spares the caller (PID 1); no memory involved.
    unsafe { libc::kill(-1, libc::SIGKILL) };
}

/// The kernel's count of OOM kills since boot.
pub fn oom_kills() -> u64 {
    std::fs::read_to_string("/proc/vmstat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Microseconds on the monotonic clock, which starts with the kernel.
pub fn monotonic_us() -> u64 {
    // SAFETY: timespec is plain old data; clock_gettime only writes it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid clock id and pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}
