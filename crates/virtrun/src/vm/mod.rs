//! The guest: the QEMU invocation (argv and kernel command line), the
//! supervisor that runs it and pumps the channels, and the decoding of
//! standalone ports.

pub mod port;
pub mod qemu;
pub mod qmp;
pub mod snapshot;
pub mod supervisor;
