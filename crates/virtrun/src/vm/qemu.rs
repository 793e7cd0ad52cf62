//! The QEMU invocation: per-architecture defaults, transport rules, the
//! kernel command line and the argv, built from plain values (no I/O).

use crate::config::{Config, Net, Transport};
use crate::inspect::elf::Arch;
use crate::inspect::gobuild::PortEncoding;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use virtrun_protocol::{
    HOST_SHARE_TAG, Layout, MODULES_DISK_SERIAL, RUN_DISK_SERIAL, Role, STANDALONE_CONSOLE_PORT,
    STANDALONE_PORTS,
};

/// What an architecture uses unless a flag says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchDefaults {
    /// QEMU system emulator.
    pub qemu_bin: &'static str,
    /// Machine type.
    pub machine: &'static str,
    /// CPU model.
    pub cpu: &'static str,
    /// Console transport.
    pub transport: Transport,
    /// Name of the built-in UART the kernel log uses.
    pub log_device: &'static str,
    /// Longest kernel command line, without its NUL (`COMMAND_LINE_SIZE` - 1).
    pub cmdline_max: usize,
}

/// The defaults of `arch`.
pub fn defaults(arch: Arch) -> ArchDefaults {
    match arch {
        Arch::Amd64 => ArchDefaults {
            qemu_bin: "qemu-system-x86_64",
            machine: "q35",
            cpu: "max",
            transport: Transport::Pci,
            log_device: "ttyS0",
            cmdline_max: 2047,
        },
        Arch::Arm64 => ArchDefaults {
            qemu_bin: "qemu-system-aarch64",
            machine: "virt",
            // Every feature of `max` but pointer authentication, whose
            // emulation makes a boot take ~1.7× as long.
            cpu: "max,pauth=off",
            transport: Transport::Mmio,
            log_device: "ttyAMA0",
            cmdline_max: 2047,
        },
        Arch::Riscv64 => ArchDefaults {
            qemu_bin: "qemu-system-riscv64",
            machine: "virt",
            // The RVA22-style base Debian builds for; `max` adds extensions
            // that are expensive to emulate (~1.6× the boot time).
            cpu: "rv64",
            transport: Transport::Mmio,
            log_device: "ttyS0",
            cmdline_max: 1023,
        },
    }
}

/// Why the invocation cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QemuError {
    /// The machine cannot carry the transport.
    #[error("-transport {transport} does not work with -machine {machine}{hint}")]
    Transport {
        /// Requested transport.
        transport: &'static str,
        /// Requested machine.
        machine: String,
        /// What would work.
        hint: &'static str,
    },
    /// A standalone init's argument cannot travel on the kernel command line.
    #[error(
        "-standalone: cannot pass argument {arg:?} to the init on the kernel command line: {why}"
    )]
    StandaloneArg {
        /// The argument.
        arg: String,
        /// Why not.
        why: &'static str,
    },
    /// Too many arguments for a standalone init.
    #[error(
        "-standalone: {0} arguments, but the kernel passes at most {MAX_INIT_ARGS} to the init"
    )]
    TooManyArgs(usize),
    /// More output files than the transport has ports.
    #[error(
        "-standalone: go test asks for {files} output files, but -transport {transport} \
         carries at most {max}{hint}"
    )]
    TooManyFiles {
        /// Files asked for.
        files: usize,
        /// The transport.
        transport: &'static str,
        /// Its limit.
        max: usize,
        /// What would work.
        hint: &'static str,
    },
    /// The kernel command line would be too long.
    #[error(
        "-standalone: the arguments make the kernel command line {len} bytes long; \
         this kernel takes at most {max}"
    )]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Most arguments the kernel hands to init: `CONFIG_INIT_ENV_ARG_LIMIT` (32,
/// the default and Debian's) minus `argv[0]`; one more is a kernel panic.
pub const MAX_INIT_ARGS: usize = 31;

/// UARTs QEMU gives an ISA machine (`MAX_ISA_SERIAL_PORTS`).
const ISA_UARTS: usize = 4;

/// Ports a virtio serial device can have (`max_ports` at most 31).
const VIRTIO_MAX_PORTS: usize = 31;

/// Ports the virtio serial device gets unless more are needed.
const VIRTIO_PORTS: usize = 8;

/// Checks that `args` reach a standalone init unchanged after `--` on the
/// kernel command line, each in double quotes. The kernel strips the quotes
/// and has no escapes: an argument with a `"` cannot be written, and `--`
/// would end the init's arguments.
fn check_init_args(args: &[OsString]) -> Result<(), QemuError> {
    if args.len() > MAX_INIT_ARGS {
        return Err(QemuError::TooManyArgs(args.len()));
    }
    for arg in args {
        let why = if arg.as_bytes().contains(&b'"') {
            "it contains '\"', which the kernel cannot pass"
        } else if arg == "--" {
            "the kernel takes \"--\" as the end of the init's arguments"
        } else {
            continue;
        };
        return Err(QemuError::StandaloneArg {
            arg: arg.to_string_lossy().into_owned(),
            why,
        });
    }
    Ok(())
}

/// Checks that the transport has a port for each of a standalone init's
/// output files, after the console (port 0) and stdout (port 1).
fn check_file_ports(transport: Transport, files: usize) -> Result<(), QemuError> {
    let (ports, hint) = match transport {
        Transport::Isa => (ISA_UARTS, ": use -transport pci"),
        Transport::Pci | Transport::Mmio => (VIRTIO_MAX_PORTS, ""),
    };
    let max = ports - STANDALONE_PORTS;
    if files > max {
        return Err(QemuError::TooManyFiles {
            files,
            transport: transport.as_str(),
            max,
            hint,
        });
    }
    Ok(())
}

/// Checks the transport against the machine
/// (docs/reference.md#architectures-and-qemu).
pub fn check_transport(machine: &str, transport: Transport) -> Result<(), QemuError> {
    let hint = match (machine, transport) {
        ("virt", Transport::Isa) => ": use mmio or pci",
        ("q35" | "pc", Transport::Mmio) => ": use pci or isa",
        ("microvm", Transport::Pci) => ": use mmio or isa",
        _ => return Ok(()),
    };
    Err(QemuError::Transport {
        transport: transport.as_str(),
        machine: machine.to_string(),
        hint,
    })
}

/// Everything the QEMU command line is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The guest's architecture.
    pub arch: Arch,
    /// Emulator to run.
    pub qemu_bin: PathBuf,
    /// Machine type.
    pub machine: String,
    /// CPU model; empty omits `-cpu`.
    pub cpu: String,
    /// Whether to use KVM.
    pub kvm: bool,
    /// Console transport.
    pub transport: Transport,
    /// Built-in UART for the kernel log.
    pub log_device: &'static str,
    /// Guest memory in MiB.
    pub memory_mb: u32,
    /// Guest CPUs.
    pub smp: u32,
    /// Kernel image.
    pub kernel: PathBuf,
    /// Initramfs archive.
    pub initrd: PathBuf,
    /// Verbose kernel log.
    pub verbose: bool,
    /// The kernel at the addresses of its symbol file (`-gdb`).
    pub nokaslr: bool,
    /// The binary is the init and expects the original tool's port numbering.
    pub standalone: bool,
    /// Arguments of a standalone init, passed on the kernel command line.
    pub init_args: Vec<OsString>,
    /// Output files of a standalone init: ports 2, 3, … carry them.
    pub file_ports: usize,
    /// The host's root is exported to the guest (`-hostRoot`, `-share`).
    pub host_share: bool,
    /// The image of the kernel's module tree, the guest's read-only disk
    /// (modules on demand).
    pub modules_image: Option<PathBuf>,
    /// The file of the disk that carries a warm run's files.
    pub run_disk: Option<PathBuf>,
    /// How a standalone init writes to its ports 1, 2, ….
    pub port_encoding: PortEncoding,
    /// A NIC on QEMU's user-mode network (`-net user`).
    pub net: bool,
}

impl Invocation {
    /// Fills the invocation from the config and the architecture's defaults.
    /// A standalone init gets `init_args` (the binary's arguments, go test's
    /// file flags rewritten) and `file_ports` ports for output files.
    pub fn new(
        config: &Config,
        arch: Arch,
        kernel: &std::path::Path,
        kvm: bool,
        initrd: PathBuf,
        init_args: &[OsString],
        file_ports: usize,
    ) -> Result<Self, QemuError> {
        let d = defaults(arch);
        let machine = config
            .machine
            .clone()
            .unwrap_or_else(|| d.machine.to_string());
        let transport = config.transport.unwrap_or(d.transport);
        check_transport(&machine, transport)?;
        let (init_args, file_ports) = if config.standalone {
            check_init_args(init_args)?;
            check_file_ports(transport, file_ports)?;
            (init_args.to_vec(), file_ports)
        } else {
            (Vec::new(), 0)
        };
        let inv = Invocation {
            arch,
            qemu_bin: config.qemu_bin.clone().unwrap_or_else(|| d.qemu_bin.into()),
            machine,
            cpu: config.cpu.clone().unwrap_or_else(|| d.cpu.to_string()),
            kvm,
            transport,
            log_device: d.log_device,
            memory_mb: config.memory_mb,
            smp: config.smp,
            kernel: kernel.to_path_buf(),
            initrd,
            verbose: config.verbose,
            nokaslr: config.gdb.is_some(),
            standalone: config.standalone,
            init_args,
            file_ports,
            host_share: config.host_root || !config.shares.is_empty(),
            modules_image: None,
            run_disk: None,
            port_encoding: PortEncoding::Tty,
            net: config.net == Net::User,
        };
        let len = inv.kernel_cmdline().len();
        if len > d.cmdline_max {
            return Err(QemuError::CmdlineTooLong {
                len,
                max: d.cmdline_max,
            });
        }
        Ok(inv)
    }

    /// Which devices carry the channels beyond the log.
    pub fn layout(&self) -> Layout {
        match self.transport {
            Transport::Isa => Layout::Serial,
            Transport::Pci | Transport::Mmio => Layout::Virtio,
        }
    }

    /// The channels QEMU must provide, in the order [`Invocation::args`]
    /// expects their host ends.
    pub fn channels(&self) -> Vec<Channel> {
        if self.standalone {
            let mut channels: Vec<Channel> = (0..STANDALONE_PORTS + self.file_ports)
                .map(Channel::Port)
                .collect();
            // The kernel numbers hvc ports in the order QEMU adds them, which
            // is the order of the devices: port 0's console comes first.
            if self.layout() == Layout::Virtio {
                channels.insert(1, Channel::VirtioConsole0);
            }
            channels
        } else {
            Role::ALL.into_iter().map(Channel::Role).collect()
        }
    }

    /// Whether QEMU writes `channel` to a file rather than a socket: a virtio
    /// console drops what it cannot write at once, which a socket whose
    /// reader is slow would make it do; a file never refuses.
    pub fn file_backed(&self, channel: Channel) -> bool {
        self.layout() == Layout::Virtio
            && match channel {
                Channel::Port(n) => n != STANDALONE_CONSOLE_PORT,
                Channel::VirtioConsole0 => true,
                Channel::Role(_) => false,
            }
    }

    /// The kernel command line. The kernel log always goes to the built-in
    /// UART: with a stock kernel, the virtio console is a module that is not
    /// there before the init loads it. A standalone init's arguments follow
    /// `--`, each in double quotes (checked when the invocation is built).
    pub fn kernel_cmdline(&self) -> OsString {
        let mut parts = vec![
            format!("console={}", self.log_device),
            "panic=-1".into(),
            "mitigations=off".into(),
            "initcall_blacklist=ahci_pci_driver_init".into(),
            // The crypto self-tests cost 0.5-1 s of every boot under
            // emulation and test the kernel, not the binary.
            "cryptomgr.notests".into(),
        ];
        if self.arch == Arch::Amd64 {
            // An emulated TSC runs with the host's clock; its watchdog, on
            // jiffies that lag under load (and across a snapshot), would
            // find it unstable and leave the guest with a 4 ms clock.
            parts.push("tsc=reliable".into());
        }
        if self.smp == 1 {
            parts.push("acpi=off".into());
        }
        if self.nokaslr {
            parts.push("nokaslr".into());
        }
        parts.push(if self.verbose { "debug" } else { "quiet" }.into());
        let mut line = OsString::from(parts.join(" "));
        if !self.init_args.is_empty() {
            line.push(" --");
            for arg in &self.init_args {
                line.push(" \"");
                line.push(arg);
                line.push("\"");
            }
        }
        line
    }

    /// The full argv (without the program). `fds[i]` is the host end of
    /// `self.channels()[i]` as QEMU will see it.
    pub fn args(&self, fds: &[i32]) -> Vec<OsString> {
        let mut a = self.machine_args();
        a.extend(self.channel_args(fds));
        a.extend(self.disk_args());
        a.extend(self.net_args());
        a.extend(self.share_args());
        a
    }

    /// The machine, its CPUs and memory, the kernel, initramfs and command
    /// line; nothing of QEMU's defaults or the user's configuration.
    fn machine_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
        push(&[
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-nodefaults",
            "-no-user-config",
        ]);
        push(&["-machine", &self.machine]);
        if !self.cpu.is_empty() {
            push(&["-cpu", &self.cpu]);
        }
        push(&["-accel", if self.kvm { "kvm" } else { "tcg" }]);
        push(&[
            "-m",
            &self.memory_mb.to_string(),
            "-smp",
            &self.smp.to_string(),
        ]);
        a.push("-kernel".into());
        a.push(self.kernel.clone().into());
        a.push("-initrd".into());
        a.push(self.initrd.clone().into());
        a.push("-append".into());
        a.push(self.kernel_cmdline());
        a
    }

    /// The channels: each a chardev on its fd, on a UART or a port of the
    /// virtio serial device.
    fn channel_args(&self, fds: &[i32]) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
        let virtio = self.layout() == Layout::Virtio;
        if virtio {
            // MSI-X needs ACPI, which `acpi=off` (one CPU) leaves out: the
            // driver would trip a kernel warning before falling back to a
            // legacy interrupt, so it gets the legacy interrupt right away.
            let (dev, vectors) = match self.transport {
                Transport::Pci if self.smp == 1 => ("virtio-serial-pci", ",vectors=0"),
                Transport::Pci => ("virtio-serial-pci", ""),
                _ => ("virtio-serial-device", ""),
            };
            // Standalone port numbers run up to the last file's.
            let ports = VIRTIO_PORTS.max(STANDALONE_PORTS + self.file_ports);
            push(&[
                "-device",
                &format!("{dev},id=vs,max_ports={ports}{vectors}"),
            ]);
        }
        for (i, (channel, fd)) in self.channels().into_iter().zip(fds).enumerate() {
            let id = format!("vr{i}");
            let backend = if self.file_backed(channel) {
                format!("file,id={id},path=/dev/fd/{fd}")
            } else {
                format!("socket,id={id},fd={fd}")
            };
            push(&["-chardev", &backend]);
            let on_uart = !virtio
                || matches!(
                    channel,
                    Channel::Role(Role::Log) | Channel::Port(STANDALONE_CONSOLE_PORT)
                );
            if on_uart {
                push(&["-serial", &format!("chardev:{id}")]);
            } else {
                push(&[
                    "-device",
                    &format!("{},bus=vs.0,chardev={id}", port_device(channel)),
                ]);
            }
        }
        a
    }

    /// A virtio device of `kind` on the transport's bus. As for the serial
    /// device: without ACPI (one CPU) a PCI device gets the legacy
    /// interrupt right away, not a kernel warning first.
    fn virtio_device(&self, kind: &str) -> String {
        match self.transport {
            Transport::Mmio => format!("{kind}-device"),
            Transport::Pci | Transport::Isa if self.smp == 1 => format!("{kind}-pci,vectors=0"),
            Transport::Pci | Transport::Isa => format!("{kind}-pci"),
        }
    }

    /// The module tree's and the run's disks, read-only. They are told
    /// apart by their serial numbers: the kernel's names follow the probe
    /// order, which differs between transports.
    fn disk_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let disks = [
            (&self.modules_image, "vrmods", MODULES_DISK_SERIAL),
            (&self.run_disk, "vrrun", RUN_DISK_SERIAL),
        ];
        for (path, id, serial) in disks {
            let Some(path) = path else { continue };
            let mut file = OsString::from("file=");
            // QEMU's option syntax: a comma in a value is doubled.
            file.push(path.to_string_lossy().replace(',', ",,"));
            file.push(format!(",if=none,id={id},format=raw,readonly=on"));
            a.push("-drive".into());
            a.push(file);
            a.push("-device".into());
            let device = self.virtio_device("virtio-blk");
            a.push(format!("{device},drive={id},serial={serial}").into());
        }
        a
    }

    /// With `-net user`, QEMU's user network: the guest is 10.0.2.15, the
    /// host's loopback 10.0.2.2, QEMU's resolver 10.0.2.3 (the init sets
    /// them up). No port of the host is forwarded to the guest.
    fn net_args(&self) -> Vec<OsString> {
        if !self.net {
            return Vec::new();
        }
        let device = self.virtio_device("virtio-net");
        [
            "-netdev",
            "user,id=vrnet",
            "-device",
            &format!("{device},netdev=vrnet"),
        ]
        .map(OsString::from)
        .to_vec()
    }

    /// The host's root over virtio-9p, for `-hostRoot` and `-share`: one
    /// export of the whole root, whatever is shared, so that the guest's
    /// devices do not depend on the list. `multidevs=remap` keeps inode
    /// numbers unique across the host's file systems; with
    /// `security_model=none` files are read and written as the user running
    /// virtrun.
    fn share_args(&self) -> Vec<OsString> {
        if !self.host_share {
            return Vec::new();
        }
        let device = self.virtio_device("virtio-9p");
        [
            "-fsdev",
            "local,id=vrfs,path=/,security_model=none,multidevs=remap",
            "-device",
            &format!("{device},fsdev=vrfs,mount_tag={HOST_SHARE_TAG}"),
        ]
        .map(OsString::from)
        .to_vec()
    }
}

/// The virtio serial device of a channel that is not on a UART.
fn port_device(channel: Channel) -> String {
    match channel {
        // Numbered like the original's ports, and consoles as there: port N
        // is /dev/hvcN, which the kernel numbers in port order, hence the
        // console on port 0 too. (Serial ports would be 8 times faster, but
        // inits written for the original look for hvcN.)
        Channel::Port(n) => format!("virtconsole,nr={n}"),
        Channel::VirtioConsole0 => "virtconsole,nr=0".to_string(),
        Channel::Role(role) => format!(
            "virtserialport,name={}",
            role.virtio_port_name().unwrap_or_default()
        ),
    }
}

/// One channel between host and guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A role of our own init's layout.
    Role(Role),
    /// A numbered port of the original tool's layout (standalone mode):
    /// 0 is the console with the exit marker, 1 the binary's stdout.
    Port(usize),
    /// Virtio console port 0 in standalone mode (`hvc0`), so that the
    /// kernel's `hvcN` is port N; port 0 itself stays on the UART. What an
    /// init writes there is read like port 0.
    VirtioConsole0,
}

/// QMP on the socket QEMU has as `fd`.
pub fn qmp_args(fd: i32) -> Vec<OsString> {
    [
        "-chardev".to_string(),
        format!("socket,id=vrqmp,fd={fd}"),
        "-mon".into(),
        "chardev=vrqmp,mode=control".into(),
    ]
    .map(OsString::from)
    .to_vec()
}

/// QEMU's gdb server on the listening socket QEMU has as `fd`, the guest
/// held (`-S`) until gdb lets it run.
pub fn gdb_args(fd: i32) -> Vec<OsString> {
    [
        "-chardev".to_string(),
        format!("socket,id=vrgdb,fd={fd},server=on,wait=off"),
        "-gdb".into(),
        "chardev:vrgdb".into(),
        "-S".into(),
    ]
    .map(OsString::from)
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn inv(transport: Transport) -> Invocation {
        Invocation {
            arch: Arch::Amd64,
            qemu_bin: "qemu-system-x86_64".into(),
            machine: "q35".into(),
            cpu: "max".into(),
            kvm: false,
            transport,
            log_device: "ttyS0",
            memory_mb: 256,
            smp: 1,
            kernel: "/k".into(),
            initrd: "/tmp/i".into(),
            verbose: false,
            nokaslr: false,
            standalone: false,
            init_args: Vec::new(),
            file_ports: 0,
            host_share: false,
            modules_image: None,
            run_disk: None,
            port_encoding: PortEncoding::Tty,
            net: false,
        }
    }

    #[test]
    fn the_host_root_is_one_9p_device_on_the_transports_bus() {
        for (transport, device) in [
            (
                Transport::Pci,
                "-device virtio-9p-pci,vectors=0,fsdev=vrfs,mount_tag=virtrun",
            ),
            (
                Transport::Isa,
                "-device virtio-9p-pci,vectors=0,fsdev=vrfs,mount_tag=virtrun",
            ),
            (
                Transport::Mmio,
                "-device virtio-9p-device,fsdev=vrfs,mount_tag=virtrun",
            ),
        ] {
            let mut i = inv(transport);
            assert!(!joined(&i).contains("-fsdev"));
            i.host_share = true;
            let line = joined(&i);
            assert!(
                line.contains("-fsdev local,id=vrfs,path=/,security_model=none,multidevs=remap"),
                "{line}"
            );
            assert!(line.contains(device), "{line}");
        }
    }

    fn joined(inv: &Invocation) -> String {
        inv.args(&[3, 4, 5, 6])
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn isa_puts_every_channel_on_a_uart() {
        let args = joined(&inv(Transport::Isa));
        assert_eq!(
            args,
            "-display none -monitor none -no-reboot -nodefaults -no-user-config \
             -machine q35 -cpu max -accel tcg -m 256 -smp 1 -kernel /k -initrd /tmp/i \
             -append console=ttyS0 panic=-1 mitigations=off initcall_blacklist=ahci_pci_driver_init cryptomgr.notests tsc=reliable acpi=off quiet \
             -chardev socket,id=vr0,fd=3 -serial chardev:vr0 \
             -chardev socket,id=vr1,fd=4 -serial chardev:vr1 \
             -chardev socket,id=vr2,fd=5 -serial chardev:vr2 \
             -chardev socket,id=vr3,fd=6 -serial chardev:vr3"
        );
    }

    #[test]
    fn pci_keeps_the_log_on_a_uart_and_streams_on_virtio_ports() {
        let args = joined(&inv(Transport::Pci));
        assert!(args.contains("-device virtio-serial-pci,id=vs,max_ports=8,vectors=0"));
        assert!(args.contains("-chardev socket,id=vr0,fd=3 -serial chardev:vr0"));
        assert!(args.contains(
            "-chardev socket,id=vr2,fd=5 -device virtserialport,name=virtrun.stdout,bus=vs.0,chardev=vr2"
        ));
        assert!(!args.contains("chardev:vr1"));
    }

    #[test]
    fn mmio_uses_the_virtio_mmio_serial_device() {
        let mut i = inv(Transport::Mmio);
        i.machine = "microvm".into();
        assert!(joined(&i).contains("-device virtio-serial-device,id=vs,max_ports=8"));
    }

    #[test]
    fn cmdline_follows_flags() {
        let mut i = inv(Transport::Isa);
        i.smp = 2;
        i.verbose = true;
        assert_eq!(
            i.kernel_cmdline(),
            "console=ttyS0 panic=-1 mitigations=off initcall_blacklist=ahci_pci_driver_init cryptomgr.notests tsc=reliable debug"
        );
        i.cpu = String::new();
        i.kvm = true;
        let args = joined(&i);
        assert!(!args.contains("-cpu"));
        assert!(args.contains("-accel kvm"));
    }

    #[test]
    fn transport_rules() {
        assert!(check_transport("virt", Transport::Isa).is_err());
        assert!(check_transport("virt", Transport::Mmio).is_ok());
        assert!(check_transport("virt", Transport::Pci).is_ok());
        assert!(check_transport("q35", Transport::Mmio).is_err());
        assert!(check_transport("pc", Transport::Mmio).is_err());
        assert!(check_transport("pc", Transport::Isa).is_ok());
        assert!(check_transport("microvm", Transport::Pci).is_err());
        assert_eq!(
            check_transport("q35", Transport::Mmio)
                .unwrap_err()
                .to_string(),
            "-transport mmio does not work with -machine q35: use pci or isa"
        );
    }

    #[test]
    fn standalone_uses_the_original_port_numbering() {
        let mut i = inv(Transport::Pci);
        i.standalone = true;
        assert_eq!(
            i.channels(),
            vec![Channel::Port(0), Channel::VirtioConsole0, Channel::Port(1)]
        );
        // Port 0 is the kernel console on the built-in UART, which works
        // before any module is loaded.
        assert!(i.kernel_cmdline().as_bytes().starts_with(b"console=ttyS0 "));
        let args = joined(&i);
        assert!(args.contains("-chardev socket,id=vr0,fd=3 -serial chardev:vr0"));
        assert!(args.contains(
            "-chardev file,id=vr1,path=/dev/fd/4 -device virtconsole,nr=0,bus=vs.0,chardev=vr1 \
             -chardev file,id=vr2,path=/dev/fd/5 -device virtconsole,nr=1,bus=vs.0,chardev=vr2"
        ));

        i.transport = Transport::Isa;
        assert_eq!(i.channels(), vec![Channel::Port(0), Channel::Port(1)]);
        let args = joined(&i);
        // UARTs wait for a slow reader: sockets.
        assert!(args.contains("-chardev socket,id=vr1,fd=4 -serial chardev:vr1"));
        assert!(!args.contains("virtio-serial"));
    }

    #[test]
    fn standalone_output_files_get_ports_from_2_on() {
        let mut i = inv(Transport::Pci);
        i.standalone = true;
        i.file_ports = 7;
        assert_eq!(i.channels().len(), 10);
        assert_eq!(i.channels()[9], Channel::Port(8));
        let fds: Vec<i32> = (3..13).collect();
        let args: Vec<String> = i
            .args(&fds)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let args = args.join(" ");
        assert!(args.contains("max_ports=9"), "{args}");
        assert!(args.contains("-device virtconsole,nr=8,bus=vs.0,chardev=vr9"));

        assert!(check_file_ports(Transport::Isa, 2).is_ok());
        assert_eq!(
            check_file_ports(Transport::Isa, 3).unwrap_err().to_string(),
            "-standalone: go test asks for 3 output files, but -transport isa carries at most 2: \
             use -transport pci"
        );
        assert!(check_file_ports(Transport::Mmio, 29).is_ok());
        assert!(check_file_ports(Transport::Pci, 30).is_err());
    }

    #[test]
    fn standalone_args_follow_double_dash_in_quotes() {
        let mut i = inv(Transport::Isa);
        i.standalone = true;
        i.init_args = ["-test.v", "a b", "", "ü=1"].map(OsString::from).to_vec();
        assert_eq!(
            i.kernel_cmdline(),
            "console=ttyS0 panic=-1 mitigations=off initcall_blacklist=ahci_pci_driver_init \
             cryptomgr.notests tsc=reliable acpi=off quiet -- \"-test.v\" \"a b\" \"\" \"ü=1\""
        );
        let bytes = OsString::from(OsStr::from_bytes(b"\xff\n"));
        i.init_args = vec![bytes];
        assert!(i.kernel_cmdline().as_bytes().ends_with(b" -- \"\xff\n\""));
    }

    #[test]
    fn standalone_args_the_kernel_cannot_pass_are_refused() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(check_init_args(&args(&["a b", "-x=1", "", "\\'"])).is_ok());
        let err = check_init_args(&args(&["ok", "say \"hi\""])).unwrap_err();
        assert!(err.to_string().contains(r#""say \"hi\"""#), "{err}");
        assert!(check_init_args(&args(&["--"])).is_err());
        assert!(check_init_args(&vec![OsString::from("x"); MAX_INIT_ARGS]).is_ok());
        assert_eq!(
            check_init_args(&vec![OsString::from("x"); MAX_INIT_ARGS + 1]),
            Err(QemuError::TooManyArgs(MAX_INIT_ARGS + 1))
        );
    }
}
