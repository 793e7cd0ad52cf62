//! Building blocks for a PID 1 in a virtrun guest, and a complete init around
//! your own code: the counterpart of the original Go tool's `sysinit` package.
//!
//! With `virtrun -standalone`, your binary itself is the guest's `/init`. It
//! then has to do what an init does — mount `/proc` and friends, load the
//! kernel modules virtrun packed (among them the virtio console drivers of a
//! stock kernel), find the host's ports — and in the end tell the host its
//! exit code and power the guest off. [`Init`] does all of that around your
//! code:
//!
//! ```no_run
//! use std::io::Write;
//! use virtrun_sysinit::{BoxError, Context, Init};
//!
//! fn main() -> ! {
//!     Init::new()
//!         // Optional: more environment, setup steps of your own.
//!         .env("RUST_BACKTRACE", "1")
//!         .step(|ctx: &mut Context| {
//!             std::fs::write("/tmp/scratch", b"state")?;
//!             // Cleanups run after the main function, last one first.
//!             ctx.cleanup(|| Ok(std::fs::remove_file("/tmp/scratch")?));
//!             Ok(())
//!         })
//!         // Never returns: reports the exit code and powers the guest off.
//!         .run(|_ctx| -> Result<i32, BoxError> {
//!             // stdout reaches virtrun's stdout, stderr its console.
//!             println!("hello from PID {}", std::process::id());
//!             // Arguments come from virtrun's command line.
//!             let code = std::env::args().nth(1).unwrap_or_default().parse().unwrap_or(0);
//!             std::io::stdout().flush()?;
//!             // The exit code virtrun itself exits with.
//!             Ok(code)
//!         })
//! }
//! ```
//!
//! Run it with `virtrun -standalone -kernel vmlinuz target/…/my-init 3`:
//! virtrun prints `hello from PID 1` and exits with 3.
//!
//! In order, [`Init::run`]:
//! 1. refuses to do anything unless it is PID 1 (message on stderr, exit code
//!    [`INIT_FAILED`]) — so running the binary on the host is harmless;
//! 2. mounts the essential filesystems (`/dev`, `/proc`, `/sys`; fatal) and
//!    the optional ones (`devpts`, `cgroup2`, `bpf`, `debugfs`, …; failures
//!    are only logged) and fills closed standard fds with `/dev/null` — the
//!    kernel starts init without them when its console driver is a module;
//! 3. loads the modules in `/lib/modules` in order, brings `lo` up and creates
//!    the `/dev` links (`/dev/fd`, `/dev/stdin`, …) — see [`Setup`];
//! 4. sets the environment you asked for;
//! 5. finds the host's ports ([`console`]): stderr goes to port 0 (the kernel
//!    console, where the host also reads the exit marker), stdout to port 1,
//!    stdin reads `/dev/null`; ports 1, 2, … are made raw (bytes pass
//!    unchanged) and linked as `/dev/virtrun1`, …;
//! 6. runs your steps and main function; an `Err` becomes exit code
//!    [`FAILED`] and a panic [`PANICKED`], both with their message on the
//!    kernel log, which the host shows;
//! 7. runs the cleanups, last registered first;
//! 8. prints the exit marker on port 0 and powers off.
//!
//! A panic is caught when panics unwind; with `panic = "abort"` the panic hook
//! reports the failure and powers off itself (without running the cleanups).
//! Either way the guest ends with a reported failure, never hangs. Do not call
//! [`std::process::exit`] in an init: PID 1 exiting is a kernel panic, which
//! virtrun reports as such.
//!
//! Every step returns an [`Error`] value; nothing here panics on a guest
//! failure. The modules ([`fs`], [`kmod`], [`net`], [`setup`], …) are usable
//! on their own, as virtrun's default init does.
//!
//! The host/guest contract (which device carries what, the exit marker, the
//! framing of stdin) lives in `virtrun_protocol`; this crate only implements
//! the guest side of it.

//!
//! # Parts
//!
//! [`setup`] (the system: mounts, modules, interfaces, links) with [`fs`],
//! [`kmod`], [`net`] and [`stdio`]; [`channel`], [`console`] and
//! [`transport`] (the host's devices); [`process`] (spawning the binary as
//! a job, reaping, signals); [`pty`]; [`cpio`] and [`disk`] (a warm run's
//! files); [`resume`] (entropy and the clock for the run); [`power`];
//! [`log`].
//!
//! Words used throughout, host and guest alike:
//! - *payload*: the user's binary and what it brings (its libraries, the
//!   `-addFile` files, its modules);
//! - *the run*: one execution of the payload in a guest; everything after
//!   the *save point* (where the guest *parks*, and where a snapshot is
//!   taken) belongs to it;
//! - *identity*: what a guest was booted from (kernel, QEMU, machine,
//!   memory, transport, NIC, init); a snapshot is keyed by it;
//! - *transport*: how host and guest talk: a *layout* of *channels* (the
//!   log, control, stdout, stderr) on ISA UARTs or virtio serial ports; a
//!   standalone init's numbered devices are *ports*;
//! - *frame*: what the host sends on the control channel; *event*: what
//!   the guest sends back, one line each;
//! - *output*: a file the binary writes in the guest that comes back to the
//!   host (go test's profiles, `LLVM_PROFILE_FILE`'s directory);
//! - *job*: the binary as a process: the leader of its own process group in
//!   PID 1's session.
#![deny(missing_docs)]

pub mod channel;
pub mod console;
pub mod cpio;
pub mod disk;
pub mod fs;
mod init;
pub mod kmod;
pub mod log;
pub mod net;
pub mod power;
pub mod process;
pub mod pty;
pub mod resume;
pub mod setup;
pub mod stdio;
mod sys;
pub mod transport;

pub use init::{BoxError, Context, FAILED, Init, IntoExitCode, PANICKED};
pub use setup::Setup;

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
pub(crate) trait ErrorContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> ErrorContext<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::new(what(), e))
    }
}

/// Exit code of an init that could not do its job: not PID 1, or the guest
/// setup failed.
pub const INIT_FAILED: i32 = 255;

/// Whether this process is PID 1, the only place the rest of this crate makes sense.
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// Exits with [`INIT_FAILED`] and says why on stderr, unless this process is
/// PID 1: an init run by mistake on a real system must not touch it.
pub fn exit_unless_pid1(program: &str) {
    if !is_pid1() {
        eprintln!("{program}: must run as PID 1");
        std::process::exit(INIT_FAILED);
    }
}
