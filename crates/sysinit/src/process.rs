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

/// Sends `sig` to the process group `pgid`: a job and what it spawned, as
/// a terminal's Ctrl-C reaches them.
pub fn signal_group(pgid: u32, sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) touches no memory of ours.
    crate::sys::check(unsafe { libc::kill(-(pgid as libc::pid_t), sig) }).map(drop)
}

/// Makes the caller (PID 1) the leader of a session of its own: the kernel
/// starts init in session 0, and a binary spawned by [`spawn_job`] is to
/// be in a session led by someone else, as under a shell or a test
/// harness on a host. Already a session leader (an init exec'd by the
/// loader, which did this) is fine.
pub fn lead_session() {
    // SAFETY: setsid(2) touches no memory of ours.
    unsafe { libc::setsid() };
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

/// Starts `path` as a job: in a process group of its own within the
/// caller's session, without a controlling terminal (as a shell starts a
/// job, or `cargo test` and `go test` a test binary: `getpgrp` is its own
/// pid, `getsid` the caller's), with `argv` (`argv[0]` included), the
/// environment `env` (`KEY=VALUE` entries), and `stdio` as its fds 0, 1
/// and 2; every other fd of ours is close-on-exec. Not a session leader:
/// one that opens a pseudo-terminal's slave would get it as its
/// controlling terminal, and die of SIGHUP when the master closes.
/// Signal handling starts from the defaults and an empty mask, whatever the
/// init changed. Returns the pid.
///
/// `vfork` semantics (as `posix_spawn` has) rather than `fork`: under
/// emulation, forking the multi-threaded init costs ~20 ms per run.
pub fn spawn_job(
    path: &std::path::Path,
    argv: &[std::ffi::OsString],
    env: &[Vec<u8>],
    stdio: [&dyn std::os::fd::AsRawFd; 3],
) -> io::Result<u32> {
    spawn(path, argv, env, Stdio::Fds(stdio.map(|fd| fd.as_raw_fd())))
}

/// As [`spawn_job`], but as a session leader (as a login shell), with the
/// terminal `tty` (a path such as
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
    // `tty` outlives the spawn, which the pointer is used for.
    spawn(path, argv, env, Stdio::Terminal(tty.as_ptr()))
}

fn spawn(
    path: &std::path::Path,
    argv: &[std::ffi::OsString],
    env: &[Vec<u8>],
    stdio: Stdio,
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
    let mut child = Child {
        path: path.as_ptr(),
        argv: argv_ptrs.as_ptr(),
        envp: envp_ptrs.as_ptr(),
        stdio,
        error: 0,
    };
    let _lock = SPAWN_STACK.lock.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: the stack is ours alone while the lock is held, and the
    // child runs on it only until it execs or exits: CLONE_VFORK suspends
    // us until then. All signals are blocked meanwhile, so no handler of
    // ours runs on the child's side before it reset them; the mask is
    // restored after. `child` outlives the call and is written by the
    // child only (CLONE_VM), read by us once it is done.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let stack = SPAWN_STACK.bytes.get().cast::<u8>();
        let top = stack.add(SPAWN_STACK_SIZE).cast::<libc::c_void>();
        let pid = libc::clone(
            run_child,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&raw mut child).cast::<libc::c_void>(),
        );
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_error);
        }
        let error = std::ptr::read_volatile(&raw const child.error);
        if error != 0 {
            // It exited without running the binary: reaped here, as a
            // failed posix_spawn does.
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            return Err(io::Error::from_raw_os_error(error));
        }
        Ok(pid as u32)
    }
}

/// The stack the child of [`spawn`] runs on until it execs: made once and
/// kept, where `posix_spawn` maps and unmaps one per call, paths that a
/// restored guest's kernel would translate anew in every run.
struct SpawnStack {
    lock: std::sync::Mutex<()>,
    bytes: std::cell::UnsafeCell<[u128; SPAWN_STACK_SIZE / 16]>,
}

// SAFETY: `bytes` is only used with `lock` held.
unsafe impl Sync for SpawnStack {}

const SPAWN_STACK_SIZE: usize = 64 * 1024;

static SPAWN_STACK: SpawnStack = SpawnStack {
    lock: std::sync::Mutex::new(()),
    bytes: std::cell::UnsafeCell::new([0; SPAWN_STACK_SIZE / 16]),
};

/// What the child of [`spawn`] needs, all of it made before the clone: the
/// child may not allocate (it shares our memory and allocator state).
struct Child {
    path: *const libc::c_char,
    argv: *const *mut libc::c_char,
    envp: *const *mut libc::c_char,
    stdio: Stdio,
    /// Set by the child to errno when it could not exec.
    error: libc::c_int,
}

/// What a spawned binary gets as fds 0, 1 and 2: these fds, or the
/// terminal at this path (NUL-terminated), opened by the child.
enum Stdio {
    Fds([libc::c_int; 3]),
    Terminal(*const libc::c_char),
}

/// The child's side of [`spawn`]: async-signal-safe calls only, as after
/// `vfork`. Every signal to its default and an empty mask, a process group
/// (or with a terminal a session) of its own, fds 0-2, then exec.
extern "C" fn run_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `Child`, alive while the parent is
    // suspended (CLONE_VFORK); the calls are plain syscalls on valid
    // pointers from it.
    unsafe {
        let child = &mut *arg.cast::<Child>();
        let fail = |child: &mut Child| -> ! {
            std::ptr::write_volatile(&raw mut child.error, *libc::__errno_location());
            libc::_exit(127)
        };
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..libc::SIGRTMAX() + 1 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        // A job in a group of its own, or on a terminal the leader of a
        // session of its own.
        let detached = match child.stdio {
            Stdio::Fds(_) => libc::setpgid(0, 0),
            Stdio::Terminal(_) => libc::setsid(),
        };
        if detached < 0 {
            fail(child);
        }
        match child.stdio {
            Stdio::Fds(fds) => {
                for (target, fd) in fds.into_iter().enumerate() {
                    let target = target as libc::c_int;
                    // dup2 onto itself would keep close-on-exec.
                    let ok = if fd == target {
                        libc::fcntl(fd, libc::F_SETFD, 0) >= 0
                    } else {
                        libc::dup2(fd, target) >= 0
                    };
                    if !ok {
                        fail(child);
                    }
                }
            }
            // Opened after setsid and without O_NOCTTY: the session's
            // controlling terminal.
            Stdio::Terminal(tty) => {
                libc::close(0);
                if libc::open(tty, libc::O_RDWR) != 0
                    || libc::dup2(0, 1) < 0
                    || libc::dup2(0, 2) < 0
                {
                    fail(child);
                }
            }
        }
        libc::execve(child.path, child.argv.cast(), child.envp.cast());
        fail(child)
    }
}
