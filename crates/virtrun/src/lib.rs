//! virtrun: run a binary in an isolated, throw-away QEMU guest.
//!
//! The flow runs one way, each stage a folder handing a plain value to the
//! next:
//!
//! ```text
//! argv + VIRTRUN_ARGS + .virtrun-args
//!   → config   (flag parsing, merging, validation)
//!   → inspect  (the binary: architecture, interpreter, libraries;
//!               the kernel: release, config, module tree)
//!   → pack     (the plan: what goes where; the newc archive; the modules
//!               image)
//!   → vm       (QEMU's argv; spawn, pump streams, collect events)
//!   → outcome  (exit code and message)
//! ```
//!
//! [`run`] is one run, start to end: it calls the stages in this order
//! and boots the guest, cold or warm. [`cache`] is the one cache policy
//! every cached file follows.
//!
//! Words used throughout, host and guest alike:
//! - *payload*: the user's binary and what it brings (its libraries, the
//!   `-addFile` files, its modules);
//! - *the run*: one execution of the payload in a guest; after the save
//!   point everything belongs to it;
//! - *output*: a file the binary writes in the guest that comes back to the
//!   host (go test's profiles, `LLVM_PROFILE_FILE`);
//! - *identity*: what a guest was booted from (kernel, QEMU, machine,
//!   memory, transport, init); a snapshot is keyed by it;
//! - *transport*: how host and guest talk (virtio serial or ISA UARTs).

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
