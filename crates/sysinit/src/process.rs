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

/// Starts `path` as a session and process-group leader (as a login shell
/// or a service manager starts a program: `getsid` and `getpgrp` are its
/// own pid), with `argv` (`argv[0]` included), the environment `env`
/// (`KEY=VALUE` entries), and
/// `stdio` as its fds 0, 1 and 2; every other fd of ours is close-on-exec.
/// Signal handling starts from the defaults and an empty mask, whatever the
/// init changed. Returns the pid.
///
/// `posix_spawn` (which uses `vfork` semantics) rather than `fork`: under
/// emulation, forking the multi-threaded init costs ~20 ms per run.
pub fn spawn_session(
    path: &std::path::Path,
    argv: &[std::ffi::OsString],
    env: &[Vec<u8>],
    stdio: [&dyn std::os::fd::AsRawFd; 3],
) -> io::Result<u32> {
    spawn(path, argv, env, Stdio::Fds(stdio))
}

/// As [`spawn_session`], with the terminal `tty` (a path such as
/// `/dev/pts/0`, see [`crate::pty`]) as fds 0, 1 and 2 and as the
/// controlling terminal of the new session: the session leader opens it
/// (without `O_NOCTTY`), so its process group is the terminal's foreground
/// group, which Ctrl-C and a resize signal.
pub fn spawn_on_terminal(
    path: &std::path::Path,
    argv: &[std::ffi::OsString],
    env: &[Vec<u8>],
    tty: &std::path::Path,
) -> io::Result<u32> {
    use std::os::unix::ffi::OsStrExt;
    let tty = std::ffi::CString::new(tty.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the terminal's path"))?;
    spawn(path, argv, env, Stdio::Terminal(&tty))
}

/// What a spawned binary gets as fds 0, 1 and 2.
enum Stdio<'a> {
    Fds([&'a dyn std::os::fd::AsRawFd; 3]),
    Terminal(&'a std::ffi::CStr),
}

fn spawn(
    path: &std::path::Path,
    argv: &[std::ffi::OsString],
    env: &[Vec<u8>],
    stdio: Stdio<'_>,
) -> io::Result<u32> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let cstring = |b: &[u8]| {
        CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in argument"))
    };
    let path = cstring(path.as_os_str().as_bytes())?;
    let argv: Vec<CString> = argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let envp: Vec<CString> = env
        .iter()
        .map(|kv| cstring(kv))
        .collect::<io::Result<_>>()?;
    let ptrs = |v: &[CString]| -> Vec<*mut libc::c_char> {
        v.iter()
            .map(|s| s.as_ptr().cast_mut())
            .chain(std::iter::once(std::ptr::null_mut()))
            .collect()
    };
    let (argv_ptrs, envp_ptrs) = (ptrs(&argv), ptrs(&envp));
    let check = |ret: libc::c_int| {
        if ret == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(ret))
        }
    };
    // SAFETY: the attribute and file-action objects are initialised before
    // use and destroyed once; every pointer passed (path, argv, envp, the
    // signal sets) stays valid for the duration of the calls, and argv and
    // envp are NULL-terminated arrays of NUL-terminated strings.
    unsafe {
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        check(libc::posix_spawnattr_init(&mut attr))?;
        check(libc::posix_spawn_file_actions_init(&mut actions))?;
        let result = (|| {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::sigemptyset(&mut none);
            check(libc::posix_spawnattr_setsigdefault(&mut attr, &all))?;
            check(libc::posix_spawnattr_setsigmask(&mut attr, &none))?;
            check(libc::posix_spawnattr_setflags(
                &mut attr,
                libc::POSIX_SPAWN_SETSID
                    | (libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK) as libc::c_short,
            ))?;
            match &stdio {
                Stdio::Fds(fds) => {
                    for (target, fd) in fds.iter().enumerate() {
                        check(libc::posix_spawn_file_actions_adddup2(
                            &mut actions,
                            fd.as_raw_fd(),
                            target as libc::c_int,
                        ))?;
                    }
                }
                // The file actions run after setsid: the session leader's
                // first terminal without O_NOCTTY becomes its controlling
                // one.
                Stdio::Terminal(tty) => {
                    check(libc::posix_spawn_file_actions_addclose(&mut actions, 0))?;
                    check(libc::posix_spawn_file_actions_addopen(
                        &mut actions,
                        0,
                        tty.as_ptr(),
                        libc::O_RDWR,
                        0,
                    ))?;
                    for target in [1, 2] {
                        check(libc::posix_spawn_file_actions_adddup2(
                            &mut actions,
                            0,
                            target,
                        ))?;
                    }
                }
            }
            let mut pid: libc::pid_t = 0;
            check(libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                &actions,
                &attr,
                argv_ptrs.as_ptr(),
                envp_ptrs.as_ptr(),
            ))?;
            Ok(pid as u32)
        })();
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        result
    }
}
