//! virtrun: run a binary in an isolated, throw-away QEMU guest.
//!
//! The flow runs one way, each stage a folder handing a plain value to the
//! next:
//!
//! ```text
//! argv + VIRTRUN_ARGS + .virtrun-args
//!   → config   (sources, flag parsing, raw values, validation)
//!   → inspect  (the binary: architecture, interpreter, libraries, Go build
//!               information; the kernel: image, release, config, module
//!               tree, drivers)
//!   → pack     (the plan: what goes where; the newc archive; go test's
//!               file flags; shares; the modules image and its indexes)
//!   → vm       (QEMU's arguments; the supervisor: spawn, pump streams,
//!               collect events, hand a saved guest its run)
//!   → outcome  (exit code and message)
//! ```
//!
//! [`run`] is one run, start to end: it calls the stages in this order
//! and boots the guest, cold or warm ([`run`]'s `boot`); it also holds the
//! KVM probe, the gdb server, what the init is told and the short cut of
//! virtrun inside a guest ([`run::nested`]). [`cache`] is the one cache
//! policy every cached file follows; [`scratch`] makes the files nobody
//! else can open; [`trace`] is `-debug`'s log.
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

pub mod cache;
pub mod config;
pub mod inspect;
pub mod outcome;
pub mod pack;
pub mod run;
pub mod scratch;
pub mod trace;
pub mod vm;
