//! virtrun: run a binary in an isolated, throw-away QEMU guest.
//!
//! The flow runs one way, each stage handing a plain value to the next:
//!
//! ```text
//! argv + VIRTRUN_ARGS + .virtrun-args
//!   → config   (flag parsing, merging, validation)
//!   → target   (the binary: architecture, interpreter, libraries;
//!               the kernel: release, config, module tree)
//!   → pack     (the plan: what goes where; then the newc archive)
//!   → vm       (QEMU's argv; spawn, pump streams, collect events)
//!   → outcome  (exit code and message)
//! ```
//!
//! [`run`] is one run, start to end: it calls the stages in this order.

#![deny(missing_docs)]

pub mod cache;
pub mod config;
pub mod outcome;
pub mod pack;
pub mod run;
pub mod scratch;
pub mod target;
pub mod trace;
pub mod vm;
