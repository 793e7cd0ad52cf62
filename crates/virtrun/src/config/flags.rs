//! The flags: their spelling, value placeholder and help, and the usage text
//! in the style of Go's `flag` package.

/// The flags, one per variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flag {
    AddFile,
    AddModule,
    Cpu,
    Debug,
    Env,
    Gdb,
    HostRoot,
    KeepInitramfs,
    Kernel,
    Kernels,
    Machine,
    Memory,
    ModulesDir,
    Net,
    NoGoTestFlagRewrite,
    NoKvm,
    NoSnapshot,
    QemuBin,
    Share,
    Smp,
    Standalone,
    Sysroot,
    Timeout,
    Transport,
    Tty,
    Verbose,
    Version,
}

/// One flag's spelling and help.
pub(super) struct FlagSpec {
    pub(super) flag: Flag,
    pub(super) name: &'static str,
    /// Placeholder for the value in the usage text; `None` for booleans.
    pub(super) value: Option<&'static str>,
    pub(super) help: &'static str,
}

/// All flags, sorted by name as Go's usage lists them.
pub(super) const FLAGS: &[FlagSpec] = &[
    FlagSpec {
        flag: Flag::AddFile,
        name: "addFile",
        value: Some("path"),
        help: "file to add to guest's /data dir. Flag may be used more than once, takes \
               comma-separated lists; an empty value clears the list.",
    },
    FlagSpec {
        flag: Flag::AddModule,
        name: "addModule",
        value: Some("path|name"),
        help: "kernel module to add to guest, loaded in the given order; a name (no path, \
               no .ko) is found with its dependencies in the kernel's module tree. Flag may \
               be used more than once, takes comma-separated lists; an empty value clears \
               the list.",
    },
    FlagSpec {
        flag: Flag::Cpu,
        name: "cpu",
        value: Some("name"),
        help: "QEMU CPU type to use, empty omits -cpu (default depends on binary arch)",
    },
    FlagSpec {
        flag: Flag::Debug,
        name: "debug",
        value: None,
        help: "enable debug output",
    },
    FlagSpec {
        flag: Flag::Env,
        name: "env",
        value: Some("KEY=VALUE"),
        help: "environment variable for the binary; KEY alone passes the host's value. \
               Repeatable; an empty value clears the list. RUST_BACKTRACE, RUST_LIB_BACKTRACE, \
               RUST_LOG, RUST_TEST_THREADS, LLVM_PROFILE_FILE, GOTRACEBACK and GODEBUG are passed \
               when set on the host. Not for a -standalone init, which sets its own",
    },
    FlagSpec {
        flag: Flag::Gdb,
        name: "gdb",
        value: Some("port"),
        help: "hold the guest kernel for gdb on 127.0.0.1:port (QEMU's gdb server), with \
               nokaslr; prints the command that attaches. Always boots cold; -timeout \
               starts when gdb lets the guest run",
    },
    FlagSpec {
        flag: Flag::HostRoot,
        name: "hostRoot",
        value: None,
        help: "the guest's root is the host's, read-only under a throw-away overlay; the \
               binary runs at its host path with the host's environment and working \
               directory, whose repository root is writable through to the host. Needs a \
               kernel with 9p (Debian's generic kernels, not the cloud ones).",
    },
    FlagSpec {
        flag: Flag::KeepInitramfs,
        name: "keepInitramfs",
        value: None,
        help: "do not delete initramfs once qemu is done. Intended for debugging. \
               The path to the file is printed on stderr",
    },
    FlagSpec {
        flag: Flag::Kernel,
        name: "kernel",
        value: Some("path"),
        help: "kernel to use: an image file, a directory with boot/vmlinuz and \
               lib/modules/<release>, or an OCI image reference with a registry host \
               (host[:port]/repository[:tag|@digest]) when no such file exists (default: kernels/<arch>/vmlinuz in the cache, \
               $VIRTRUN_CACHE or ~/.cache/virtrun, for the binary's architecture: amd64, \
               arm64 or riscv64, as scripts/setup makes it; \
               else, for the host's architecture, /boot/vmlinuz-$(uname -r) with \
               /lib/modules/$(uname -r))",
    },
    FlagSpec {
        flag: Flag::Kernels,
        name: "kernels",
        value: Some("list"),
        help: "kernels to run the binary under, each as -kernel takes one, in parallel; \
               the first one's streams live, the others' after it, then a table. Flag may \
               be used more than once, takes comma-separated lists; an empty value clears \
               the list. Replaces -kernel",
    },
    FlagSpec {
        flag: Flag::Machine,
        name: "machine",
        value: Some("name"),
        help: "QEMU machine type to use (default depends on binary arch)",
    },
    FlagSpec {
        flag: Flag::Memory,
        name: "memory",
        value: Some("MB"),
        help: "memory (in MB) for the QEMU VM, 128 to 16384 (default 256)",
    },
    FlagSpec {
        flag: Flag::ModulesDir,
        name: "modulesDir",
        value: Some("dir"),
        help: "the kernel's module tree (lib/modules/<release>), for virtio drivers and \
               -addModule names (default: found next to the kernel or in /lib/modules)",
    },
    FlagSpec {
        flag: Flag::Net,
        name: "net",
        value: Some("none|user"),
        help: "the guest's network: none (loopback only) or user (a NIC on QEMU's user \
               network: the host's services through the gateway 10.0.2.2, names through \
               QEMU's resolver) (default none)",
    },
    FlagSpec {
        flag: Flag::NoGoTestFlagRewrite,
        name: "noGoTestFlagRewrite",
        value: None,
        help: "disable automatic go test flag rewrite for file based output.",
    },
    FlagSpec {
        flag: Flag::NoSnapshot,
        name: "noSnapshot",
        value: None,
        help: "boot the guest cold: neither restore a snapshot from the cache nor make one",
    },
    FlagSpec {
        flag: Flag::NoKvm,
        name: "nokvm",
        value: None,
        help: "disable hardware support",
    },
    FlagSpec {
        flag: Flag::QemuBin,
        name: "qemuBin",
        value: Some("path"),
        help: "QEMU binary to use (default depends on binary arch)",
    },
    FlagSpec {
        flag: Flag::Share,
        name: "share",
        value: Some("dir"),
        help: "host directory at the same path in the guest, writable through. Flag may be \
               used more than once, takes comma-separated lists; an empty value clears the \
               list. Needs a kernel with 9p.",
    },
    FlagSpec {
        flag: Flag::Smp,
        name: "smp",
        value: Some("N"),
        help: "number of CPUs for the QEMU VM, 1 to 16 (default 1)",
    },
    FlagSpec {
        flag: Flag::Standalone,
        name: "standalone",
        value: None,
        help: "run first given file as init itself. Use this if it has virtrun support built in.",
    },
    FlagSpec {
        flag: Flag::Sysroot,
        name: "sysroot",
        value: Some("dir"),
        help: "root of the target system whose shared libraries a foreign binary uses \
               (default: /usr/<triple> when installed, e.g. /usr/aarch64-linux-gnu)",
    },
    FlagSpec {
        flag: Flag::Timeout,
        name: "timeout",
        value: Some("duration"),
        help: "stop the guest after this long (Go duration: 90s, 5m, 1h30m); exit 124 (default none)",
    },
    FlagSpec {
        flag: Flag::Transport,
        name: "transport",
        value: Some("type"),
        help: "io transport type: isa, pci, mmio (default depends on binary arch)",
    },
    FlagSpec {
        flag: Flag::Tty,
        name: "tty",
        value: None,
        help: "run the binary on a terminal in the guest, virtrun's own terminal (stdin \
               must be one): raw mode, the window size and its changes, Ctrl-C and Ctrl-Z \
               reach the guest; stdout and stderr both arrive on the terminal",
    },
    FlagSpec {
        flag: Flag::Verbose,
        name: "verbose",
        value: None,
        help: "enable verbose guest system output",
    },
    FlagSpec {
        flag: Flag::Version,
        name: "version",
        value: None,
        help: "show version and exit",
    },
];

/// Usage text in the style of Go's `flag` package, for stderr.
pub fn usage() -> String {
    let mut out = String::from("Usage: virtrun [flags...] binary [args...]\n");
    for spec in FLAGS {
        let mut line = format!("  -{}", spec.name);
        if let Some(value) = spec.value {
            line.push(' ');
            line.push_str(value);
        }
        // Go keeps one-letter flags on the same line as their help.
        if line.len() <= 4 {
            line.push('\t');
        } else {
            line.push_str("\n    \t");
        }
        out.push_str(&line);
        out.push_str(spec.help);
        out.push('\n');
    }
    out
}
