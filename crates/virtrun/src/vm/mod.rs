//! The guest: the QEMU invocation (argv and kernel command line), the
//! supervisor that runs it and pumps the channels, the decoding of
//! standalone ports, and warm start: snapshots of parked guests (their
//! identity and files) and the QMP client that saves them.

pub mod port;
pub mod qemu;
pub mod qmp;
pub mod snapshot;
pub mod supervisor;
pub mod terminal;
