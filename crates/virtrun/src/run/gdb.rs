//! `-gdb`: QEMU's gdb server for the guest kernel, on a socket of ours.

use crate::inspect::elf::Arch;
use crate::inspect::kernel::Kernel;
use anyhow::{Context, Result};
use std::path::Path;

/// QEMU's gdb server for the guest kernel: the socket, bound to the
/// loopback here, and the lines that say how to attach.
pub(super) struct GdbServer {
    pub(super) listener: std::net::TcpListener,
    pub(super) attach: String,
}

/// Binds `127.0.0.1:port` (a port in use is an error before anything
/// boots) and words how to attach: with the kernel's symbol file, which
/// Debian ships in `linux-image-<release>-dbg`, and `gdb-multiarch` for a
/// guest of another architecture.
pub(super) fn gdb_server(port: u16, arch: Arch, kernel: &Kernel) -> Result<GdbServer> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("-gdb: cannot listen on 127.0.0.1:{port}"))?;
    let gdb = if Arch::host() == Some(arch) {
        "gdb"
    } else {
        "gdb-multiarch"
    };
    let attach = match &kernel.release {
        Some(release) => {
            let symbols = format!("/usr/lib/debug/boot/vmlinux-{release}");
            let note = if Path::new(&symbols).is_file() {
                String::new()
            } else {
                format!(
                    "\nvirtrun: {symbols} is the kernel's symbol file, from Debian's \
                     linux-image-{release}-dbg (or the vmlinux of your kernel build)"
                )
            };
            format!("{gdb} -ex 'target remote 127.0.0.1:{port}' {symbols}{note}")
        }
        None => format!(
            "{gdb} -ex 'target remote 127.0.0.1:{port}' path/to/vmlinux (the kernel's \
             symbol file, from your kernel build)"
        ),
    };
    Ok(GdbServer {
        listener,
        attach: format!(
            "virtrun: the guest kernel waits for gdb on 127.0.0.1:{port} (nokaslr); \
             attach with:\n  {attach}"
        ),
    })
}
