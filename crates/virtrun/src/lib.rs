//! virtrun: run a binary in an isolated, throw-away QEMU guest.
//!
//! The flow runs one way, each stage handing a plain value to the next:
//!
//! ```text
//! argv + VIRTRUN_ARGS + .virtrun-args
//!   → config      (flag parsing, merging, validation)
//!   → elf, libs   (architecture, interpreter, shared libraries)
//!   → initramfs   (the plan: what goes where; then the newc archive)
//!   → qemu        (argv and kernel command line)
//!   → supervisor  (spawn, pump streams, collect events)
//!   → outcome     (exit code and message)
//! ```

#![deny(missing_docs)]

pub mod config;
pub mod cpio;
pub mod elf;
pub mod gotest;
pub mod initramfs;
pub mod kernel;
pub mod libs;
pub mod outcome;
pub mod port;
pub mod qemu;
pub mod run;
pub mod scratch;
pub mod supervisor;
pub mod trace;
pub mod unpack;
pub mod vmlinux;
