//! The wire contract between the virtrun host and its guest init.
//!
//! This crate is the only place where the host and the guest agree on anything:
//! which device carries which stream, where the init finds its configuration, how
//! stdin and signals travel to the guest and how events (the exit code above all)
//! travel back. Both sides depend on it; neither copies its constants.
//!
//! # Channels
//!
//! The guest has few devices to talk through; they are assigned once, here:
//!
//! | role | serial layout (`isa`) | virtio layout (`pci`, `mmio`) |
//! |---|---|---|
//! | kernel log, panics, init's last words | UART 0 (`ttyS0`) | the built-in UART (`ttyS0`/`ttyAMA0`) |
//! | control (both ways) | UART 1 (`ttyS1`) | virtio serial port `virtrun.control` |
//! | the binary's stdout | UART 2 (`ttyS2`) | virtio serial port `virtrun.stdout` |
//! | the binary's stderr | UART 3 (`ttyS3`) | virtio serial port `virtrun.stderr` |
//!
//! The kernel log stays on a UART built into every stock kernel so that a panic
//! before any module is loaded is still seen. The control channel is never the
//! kernel console: what the binary or the kernel print cannot fake an event.
//!
//! Host → guest on the control channel is framed (see [`Frame`]) because a UART
//! cannot express end-of-file. Guest → host on the control channel is text, one
//! event per line (see [`Event`]), so it stays readable in a raw capture.
//!
//! # One save point
//!
//! The default init boots as every run of its guest does — the boot modules
//! from [`TRANSPORT_MODULES_DIR`], the module tree ([`BootConfig`]), the
//! channels — then says [`Event::Parked`] and waits. That is where a
//! snapshot is taken; a restored guest goes on from there. The host answers
//! with [`Frame::Resume`] (its entropy and clock, which the guest takes
//! before it says [`Event::Resumed`]) and [`Frame::Payload`]: the run's
//! files, as a cpio archive on the control channel or on the run's disk
//! ([`RUN_DISK_SERIAL`]), or none when a cold boot's initramfs held them.
//! Only then does the init read the run's [`GuestConfig`], mount shares and
//! start the binary. Until [`Event::Resumed`] nothing of the run has been
//! handed over, so a restore that fails can still give way to a cold boot.
//!
//! # Standalone mode
//!
//! In standalone mode the binary is the init, and inits written for the original
//! Go tool expect its numbering of host ports:
//!
//! | port | carries | guest device (`isa`) | guest device (`pci`, `mmio`) |
//! |---|---|---|---|
//! | 0 ([`STANDALONE_CONSOLE_PORT`]) | kernel console: kernel log, the init's stderr, the exit marker | `ttyS0` | the built-in UART (`ttyS0`/`ttyAMA0`) |
//! | 1 ([`STANDALONE_STDOUT_PORT`]) | the binary's stdout | `ttyS1` | virtio console port number 1 (`hvc1`) |
//! | 2, 3, … | output files (go test profiles) | `ttyS2`, … | virtio console port 2, … (`hvc2`, …) |
//!
//! Port 0 is always the kernel console (`/dev/console` in the guest), on a UART
//! built into every stock kernel, so that an init started before its virtio
//! driver is loaded still has it. With virtio the host also puts a console on
//! virtio port 0 (`hvc0`, read like port 0), because the kernel numbers `hvcN`
//! in port order and the original's inits expect port N on `hvcN`. The init links each further port to
//! [`standalone_port_path`] (`/dev/virtrun1`, …), the names go test's output
//! flags are rewritten to, in argument order from port 2 on. The host writes
//! what arrives on a file port to the host file the flag named. All ports are
//! ttys: an init that makes one raw (and keeps it open, as an `hvc` tty
//! forgets its settings on its last close) says so with
//! [`RAW_PORT_PREAMBLE`] and its bytes pass unchanged; a port left in the
//! tty's default mode, as the original's inits leave theirs, has the tty's
//! `\n` → `\r\n` undone by the host. The exit marker is [`EXIT_MARKER`] or,
//! as the original's newer Go `sysinit` prints it, [`SYSINIT_EXIT_MARKER`].
//! The binary's arguments reach a standalone init through the kernel command
//! line, after `--`, as its `argv`.

#![deny(missing_docs)]

use std::fmt;

/// Where the host puts the init's configuration inside the initramfs. The init
/// reads it and removes it before it starts the binary.
pub const CONFIG_PATH: &str = "/virtrun.config";

/// Path of the binary in the guest.
pub const MAIN_PATH: &str = "/main";
/// Path of the init in the guest.
pub const INIT_PATH: &str = "/init";
/// Directory of `-addFile` files in the guest; also the binary's `PATH`.
pub const DATA_DIR: &str = "/data";
/// Directory of shared libraries in the guest.
pub const LIB_DIR: &str = "/lib";
/// Directory of kernel modules in the guest, loaded in lexical order.
pub const MODULES_DIR: &str = "/lib/modules";

/// Where the host puts the [`BootConfig`] of the default init: what it needs
/// before the run arrives.
pub const BOOT_CONFIG_PATH: &str = "/virtrun.boot";

/// Where the host puts the [`LoaderConfig`] of a standalone guest whose
/// transport needs drivers: `/init` is then virtrun's loader, which loads
/// them, removes this file and [`TRANSPORT_MODULES_DIR`], and `exec`s
/// [`MAIN_PATH`], the user's init, as PID 1.
pub const LOADER_CONFIG_PATH: &str = "/virtrun.loader";

/// Directory of the transport's driver modules in a standalone guest, loaded
/// in lexical order by the loader. The `-addModule` files stay in
/// [`MODULES_DIR`], for the user's init to load, as with the original.
pub const TRANSPORT_MODULES_DIR: &str = "/virtrun-modules";

/// The guest's host name (also in its `/etc/hostname` and `/etc/hosts`).
pub const GUEST_HOSTNAME: &str = "virtrun";

/// The exact environment of the binary, in this order.
pub const GUEST_ENV: [(&str, &str); 3] = [("HOME", "/"), ("TERM", "linux"), ("PATH", DATA_DIR)];

/// Prefix of the exit marker line, as the original tool prints it.
pub const EXIT_MARKER: &str = "VIRTRUN_EXIT_CODE: ";

/// The exit marker of inits built with the original's newer Go `sysinit`
/// (its `ExitCodeID`), which they print on the console. A standalone init's
/// console is read for it as well as for [`EXIT_MARKER`]; see
/// [`standalone_exit_code`].
pub const SYSINIT_EXIT_MARKER: &str = "SYSINIT_EXIT_CODE: ";

/// The exit code in a line of a standalone init's console (port 0): either
/// marker, anywhere in the line, as [`Event::parse`] finds [`EXIT_MARKER`].
pub fn standalone_exit_code(line: &[u8]) -> Option<i32> {
    if let Some(Event::ExitCode(code)) = Event::parse(line) {
        return Some(code);
    }
    let line = String::from_utf8_lossy(line);
    let pos = line.find(SYSINIT_EXIT_MARKER)?;
    leading_int(&line[pos + SYSINIT_EXIT_MARKER.len()..])
}

/// The integer (optionally negative) at the start of `s`.
fn leading_int(s: &str) -> Option<i32> {
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map_or(s.len(), |(i, _)| i);
    s[..end].parse().ok()
}

/// Prefix the init puts in front of the lines it writes to the kernel log, so
/// the host can tell them from kernel noise.
pub const INIT_LOG_PREFIX: &str = "virtrun-init: ";

/// Prefix of the init's last words on the kernel log when it cannot go on
/// (no channel to the host, a transport without its driver): the host does
/// not show the line as it comes but ends the run with it as its one error.
pub const INIT_FATAL_PREFIX: &str = "virtrun-init: fatal: ";

/// Longest event line the host accepts on the control channel, newline
/// included. Events are short; a longer line is a guest that broke the
/// protocol, and the host ends the run instead of buffering it.
pub const MAX_EVENT_LINE: usize = 64 * 1024;

/// The role of a channel between host and guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Kernel console: kernel log, panics, the init's messages before the
    /// control channel exists.
    Log,
    /// Events guest → host, stdin and signals host → guest.
    Control,
    /// The binary's standard output.
    Stdout,
    /// The binary's standard error.
    Stderr,
}

impl Role {
    /// All roles, in port order of the serial layout.
    pub const ALL: [Role; 4] = [Role::Log, Role::Control, Role::Stdout, Role::Stderr];

    /// Index of the UART that carries this role in the serial layout.
    pub fn serial_index(self) -> usize {
        match self {
            Role::Log => 0,
            Role::Control => 1,
            Role::Stdout => 2,
            Role::Stderr => 3,
        }
    }

    /// Name of the virtio serial port that carries this role in the virtio
    /// layout; `None` for the log, which stays on a built-in UART.
    pub fn virtio_port_name(self) -> Option<&'static str> {
        match self {
            Role::Log => None,
            Role::Control => Some("virtrun.control"),
            Role::Stdout => Some("virtrun.stdout"),
            Role::Stderr => Some("virtrun.stderr"),
        }
    }
}

/// How the channels other than the log reach the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Every role on its own UART (`ttyS0..3`).
    Serial,
    /// Control and streams on named virtio serial ports.
    Virtio,
}

impl Layout {
    /// Name used in the guest configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Serial => "serial",
            Layout::Virtio => "virtio",
        }
    }

    /// Inverse of [`Layout::as_str`].
    pub fn parse(s: &[u8]) -> Option<Self> {
        match s {
            b"serial" => Some(Layout::Serial),
            b"virtio" => Some(Layout::Virtio),
            _ => None,
        }
    }
}

/// Number of ports a standalone guest always has: port 0 carries the console
/// and the exit marker, port 1 the binary's stdout.
pub const STANDALONE_PORTS: usize = 2;

/// The standalone port that is the kernel console and carries the exit marker.
pub const STANDALONE_CONSOLE_PORT: usize = 0;

/// The standalone port that carries the binary's stdout.
pub const STANDALONE_STDOUT_PORT: usize = 1;

/// Prefix of [`standalone_port_path`].
pub const STANDALONE_PORT_PREFIX: &str = "/dev/virtrun";

/// Guest path of standalone port `n` (`/dev/virtrun2` for port 2), as the
/// original's inits name them; a standalone init links it to the port's
/// device. go test's output file flags are rewritten to these paths.
pub fn standalone_port_path(n: usize) -> String {
    format!("{STANDALONE_PORT_PREFIX}{n}")
}

/// What an init that made a standalone port raw writes on it before anything
/// else: the host drops it and passes the rest on unchanged.
///
/// A port that does not start with it is a tty in its default mode, as inits
/// built with the original's Go `sysinit` leave them: the tty turned each
/// `\n` written into `\r\n` (`ONLCR`) and the host turns every `\r\n` back
/// into `\n`, which restores the bytes written exactly (a `\r` the init wrote
/// before a `\n` arrives as `\r\r\n`; the original's host dropped every `\r`,
/// which damaged binary files such as CPU profiles). Without the
/// announcement the host could not tell raw bytes `\r\n` from a tty's. It
/// starts with a NUL byte, which no text does.
pub const RAW_PORT_PREAMBLE: &[u8] = b"\0virtrun raw port\0";

/// What the host tells the init, written to [`CONFIG_PATH`].
///
/// Encoded as NUL-terminated `key`, `value` pairs so that arguments travel
/// byte-exact, whatever they contain but NUL (which a C string cannot hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestConfig {
    /// The binary's argv\[0\]: its file name on the host, so that programs
    /// that look at their name (busybox, usage messages) behave as there.
    pub argv0: Vec<u8>,
    /// Arguments for the binary (not including argv\[0\]).
    pub args: Vec<Vec<u8>>,
    /// `KEY=VALUE` entries added to the binary's environment after
    /// [`GUEST_ENV`].
    pub env: Vec<Vec<u8>>,
    /// Files (or directories, whose files count) the init sends back after
    /// the binary ended, with [`Event::File`]; the index is the id.
    pub outputs: Vec<Vec<u8>>,
    /// Whether the init should narrate what it does on the log.
    pub verbose: bool,
    /// The guest's root is the host's ([`HOST_SHARE_TAG`]), read-only under
    /// a tmpfs overlay, with the guest's own [`GUEST_OWN_DIRS`]; the
    /// environment is [`GuestConfig::env`] alone.
    pub host_root: bool,
    /// Host directories (absolute) at the same path in the guest, writable
    /// through to the host, from [`HOST_SHARE_TAG`].
    pub shares: Vec<Vec<u8>>,
    /// The binary's working directory; empty for `/`.
    pub cwd: Vec<u8>,
    /// Where the binary is run from; empty for [`MAIN_PATH`]. With
    /// [`GuestConfig::bind_main`], [`MAIN_PATH`] is bound there first (a
    /// binary at a host path the guest does not see).
    pub exec: Vec<u8>,
    /// See [`GuestConfig::exec`].
    pub bind_main: bool,
    /// The binary runs on a terminal of this size (`-tty`): a
    /// pseudo-terminal whose controlling process it is, its stdin, stdout
    /// and stderr; what it writes arrives on the stdout channel. The host
    /// sends [`Frame::Resize`] when its terminal's size changes.
    pub tty: Option<WindowSize>,
}

/// A terminal's size in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowSize {
    /// Lines.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

impl WindowSize {
    fn encode(self) -> [u8; 4] {
        let [r0, r1] = self.rows.to_le_bytes();
        let [c0, c1] = self.cols.to_le_bytes();
        [r0, r1, c0, c1]
    }

    fn decode(b: &[u8]) -> Option<Self> {
        match *b {
            [r0, r1, c0, c1] => Some(WindowSize {
                rows: u16::from_le_bytes([r0, r1]),
                cols: u16::from_le_bytes([c0, c1]),
            }),
            _ => None,
        }
    }
}

/// The serial number of the disk with the kernel's module tree (an ext4
/// image, read-only).
pub const MODULES_DISK_SERIAL: &str = "virtrun-modules";

/// The serial number of the disk that carries the run of a guest that was
/// booted for a snapshot: the [`Frame::Payload`]'s bytes are its first
/// bytes, not on the control channel.
pub const RUN_DISK_SERIAL: &str = "virtrun-run";

/// The 9p mount tag of the host's root, exported whole (one device, however
/// many directories are shared), for `-hostRoot` and `-share`.
pub const HOST_SHARE_TAG: &str = "virtrun";

/// Directories a `-hostRoot` guest has of its own, not the host's.
pub const GUEST_OWN_DIRS: [&str; 5] = ["/proc", "/sys", "/dev", "/tmp", "/run"];

/// A file the default init makes in every guest (in its own `/run`, in
/// both modes): virtrun run inside a guest finds it and runs the binary
/// directly instead of booting a guest in the guest.
pub const GUEST_MARKER: &str = "/run/virtrun-guest";

/// The variable that makes virtrun inside a guest boot a nested guest
/// after all (any non-empty value).
pub const NESTED_ENV: &str = "VIRTRUN_NESTED";

/// A configuration that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad guest config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The NUL-terminated `key`, `value` fields of an encoded configuration,
/// in pairs.
fn fields(data: &[u8]) -> Result<Vec<&[u8]>, ConfigError> {
    let body = data
        .strip_suffix(&[0])
        .ok_or_else(|| ConfigError("not NUL-terminated".into()))?;
    let fields: Vec<&[u8]> = body.split(|&b| b == 0).collect();
    if !fields.len().is_multiple_of(2) {
        return Err(ConfigError("odd number of fields".into()));
    }
    Ok(fields)
}

impl GuestConfig {
    /// Serialises the configuration.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |k: &[u8], v: &[u8]| {
            out.extend_from_slice(k);
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        };
        put(b"verbose", if self.verbose { b"1" } else { b"0" });
        put(b"argv0", &self.argv0);
        put(b"host_root", if self.host_root { b"1" } else { b"0" });
        put(b"bind_main", if self.bind_main { b"1" } else { b"0" });
        put(b"cwd", &self.cwd);
        put(b"exec", &self.exec);
        for share in &self.shares {
            put(b"share", share);
        }
        for arg in &self.args {
            put(b"arg", arg);
        }
        for var in &self.env {
            put(b"env", var);
        }
        for output in &self.outputs {
            put(b"output", output);
        }
        if let Some(size) = self.tty {
            put(b"tty", format!("{}x{}", size.rows, size.cols).as_bytes());
        }
        out
    }

    /// Parses what [`GuestConfig::encode`] wrote.
    pub fn decode(data: &[u8]) -> Result<Self, ConfigError> {
        let fields = fields(data)?;
        let mut verbose = false;
        let mut argv0 = Vec::new();
        let mut args = Vec::new();
        let mut env = Vec::new();
        let mut outputs = Vec::new();
        let mut host_root = false;
        let mut bind_main = false;
        let mut shares = Vec::new();
        let mut cwd = Vec::new();
        let mut exec = Vec::new();
        let mut tty = None;
        for pair in fields.chunks(2) {
            let (k, v) = (pair[0], pair[1]);
            match k {
                b"verbose" => verbose = v == b"1",
                b"arg" => args.push(v.to_vec()),
                b"env" => env.push(v.to_vec()),
                b"output" => outputs.push(v.to_vec()),
                b"argv0" => argv0 = v.to_vec(),
                b"host_root" => host_root = v == b"1",
                b"bind_main" => bind_main = v == b"1",
                b"share" => shares.push(v.to_vec()),
                b"cwd" => cwd = v.to_vec(),
                b"exec" => exec = v.to_vec(),
                b"tty" => {
                    let size = std::str::from_utf8(v).ok().and_then(|s| {
                        let (rows, cols) = s.split_once('x')?;
                        Some(WindowSize {
                            rows: rows.parse().ok()?,
                            cols: cols.parse().ok()?,
                        })
                    });
                    tty = Some(size.ok_or_else(|| ConfigError("bad terminal size".into()))?);
                }
                other => {
                    return Err(ConfigError(format!(
                        "unknown key {:?}",
                        String::from_utf8_lossy(other)
                    )));
                }
            }
        }
        Ok(GuestConfig {
            argv0,
            args,
            env,
            outputs,
            verbose,
            host_root,
            shares,
            cwd,
            exec,
            bind_main,
            tty,
        })
    }
}

/// What the default init needs from boot to [`Event::Parked`], written to
/// [`BOOT_CONFIG_PATH`]; the same for every run of one guest identity (a
/// restored guest was booted with it). Everything else is in the run's
/// [`GuestConfig`], which may arrive only after the guest parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootConfig {
    /// Which devices carry control and streams.
    pub layout: Layout,
    /// Whether the init should narrate its boot on the log.
    pub verbose: bool,
    /// The kernel's module tree is the guest's disk
    /// [`MODULES_DISK_SERIAL`]: the init mounts it at
    /// `/lib/modules/<release>` and makes itself the kernel's module helper
    /// (modules on demand).
    pub modules_on_demand: bool,
    /// The run comes on the disk [`RUN_DISK_SERIAL`].
    pub run_disk: bool,
    /// The guest has a NIC on QEMU's user network (`-net user`): the init
    /// gives it [`USER_NET`]'s address, default route and resolver.
    pub user_net: bool,
}

/// QEMU's user network as the init configures it: the guest's address and
/// prefix length, the gateway (the host's loopback), the resolver.
pub struct UserNet {
    /// The guest's address.
    pub address: [u8; 4],
    /// Its prefix length.
    pub prefix: u8,
    /// The gateway: the host.
    pub gateway: [u8; 4],
    /// QEMU's DNS resolver.
    pub resolver: [u8; 4],
}

/// QEMU's defaults for `-netdev user`.
pub const USER_NET: UserNet = UserNet {
    address: [10, 0, 2, 15],
    prefix: 24,
    gateway: [10, 0, 2, 2],
    resolver: [10, 0, 2, 3],
};

impl BootConfig {
    /// Serialises the configuration.
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "layout\0{}\0verbose\0{}\0modules_on_demand\0{}\0run_disk\0{}\0user_net\0{}\0",
            self.layout.as_str(),
            u8::from(self.verbose),
            u8::from(self.modules_on_demand),
            u8::from(self.run_disk),
            u8::from(self.user_net)
        )
        .into_bytes()
    }

    /// Parses what [`BootConfig::encode`] wrote.
    pub fn decode(data: &[u8]) -> Result<Self, ConfigError> {
        let fields = fields(data)?;
        let mut layout = None;
        let mut verbose = false;
        let mut modules_on_demand = false;
        let mut run_disk = false;
        let mut user_net = false;
        for pair in fields.chunks(2) {
            match pair {
                [b"layout", l] => layout = Layout::parse(l),
                [b"verbose", v] => verbose = *v == b"1",
                [b"modules_on_demand", v] => modules_on_demand = *v == b"1",
                [b"run_disk", v] => run_disk = *v == b"1",
                [b"user_net", v] => user_net = *v == b"1",
                _ => return Err(ConfigError("bad boot config".into())),
            }
        }
        Ok(BootConfig {
            layout: layout.ok_or_else(|| ConfigError("no layout".into()))?,
            verbose,
            modules_on_demand,
            run_disk,
            user_net,
        })
    }
}

/// What the standalone loader is told, written to [`LOADER_CONFIG_PATH`]: how
/// many virtio console ports (`hvc0`, `hvc1`, …) the user's init expects, so
/// that it starts only once they all exist. Encoded like [`GuestConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Number of virtio console ports, port 0 included.
    pub ports: usize,
    /// Whether the loader should narrate what it does on the log.
    pub verbose: bool,
}

impl LoaderConfig {
    /// Serialises the configuration.
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "ports\0{}\0verbose\0{}\0",
            self.ports,
            if self.verbose { 1 } else { 0 }
        )
        .into_bytes()
    }

    /// Parses what [`LoaderConfig::encode`] wrote.
    pub fn decode(data: &[u8]) -> Result<Self, ConfigError> {
        let fields = fields(data)?;
        let mut ports = None;
        let mut verbose = false;
        for pair in fields.chunks(2) {
            match pair {
                [b"ports", n] => {
                    ports = std::str::from_utf8(n).ok().and_then(|n| n.parse().ok());
                }
                [b"verbose", v] => verbose = *v == b"1",
                _ => return Err(ConfigError("bad loader config".into())),
            }
        }
        Ok(LoaderConfig {
            ports: ports.ok_or_else(|| ConfigError("no port count".into()))?,
            verbose,
        })
    }
}

/// A message host → guest on the control channel.
///
/// Wire format: one byte kind, a little-endian `u32` payload length, the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bytes for the binary's stdin.
    Stdin(Vec<u8>),
    /// End of the binary's stdin.
    StdinEof,
    /// Deliver this signal number to the binary.
    Signal(u8),
    /// The host has every byte the guest reported with [`Event::Streams`]:
    /// the guest may end. (A virtio port's write returns once the data is
    /// queued, not once the host has it.)
    Done,
    /// The answer to [`Event::Parked`]: go on, as a guest of this moment.
    /// The guest answers with [`Event::Resumed`].
    Resume(Resume),
    /// The run: a `newc` cpio archive of this many bytes, which the init
    /// unpacks into its root (none when the run was in the initramfs
    /// already). The bytes follow the frame, or with
    /// [`BootConfig::run_disk`] are the start of that disk.
    Payload(u64),
    /// The host's terminal has a new size: the binary's terminal takes it
    /// (and its foreground process group gets `SIGWINCH`). Only with
    /// [`GuestConfig::tty`].
    Resize(WindowSize),
}

/// What makes a guest fresh, whether it booted or was restored from a
/// snapshot taken when it parked: the host's entropy and clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// Bytes from the host's random source, added to the guest's pool, which
    /// is then reseeded.
    pub seed: [u8; 32],
    /// The host's wall clock: seconds since the epoch.
    pub secs: i64,
    /// The host's wall clock: nanoseconds within the second.
    pub nanos: u32,
}

impl Resume {
    const LEN: usize = 32 + 8 + 4;

    fn encode(&self) -> Vec<u8> {
        let mut out = self.seed.to_vec();
        out.extend_from_slice(&self.secs.to_le_bytes());
        out.extend_from_slice(&self.nanos.to_le_bytes());
        out
    }

    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != Self::LEN {
            return None;
        }
        Some(Resume {
            seed: b[..32].try_into().ok()?,
            secs: i64::from_le_bytes(b[32..40].try_into().ok()?),
            nanos: u32::from_le_bytes(b[40..44].try_into().ok()?),
        })
    }
}

/// Most bytes of stdin the host sends in one frame.
pub const MAX_STDIN_FRAME: usize = 4096;

/// Most bytes of stdin the host has in flight before the guest acknowledges
/// them with [`Event::StdinAck`]. A UART has no flow control the guest can
/// exert, so the host must never send more than the guest is ready to buffer.
pub const STDIN_WINDOW: usize = 16 * 1024;

const FRAME_STDIN: u8 = 1;
const FRAME_STDIN_EOF: u8 = 2;
const FRAME_SIGNAL: u8 = 3;
const FRAME_DONE: u8 = 4;
const FRAME_RESUME: u8 = 5;
const FRAME_PAYLOAD: u8 = 6;
const FRAME_RESIZE: u8 = 7;

/// Length of a frame header on the wire.
pub const FRAME_HEADER_LEN: usize = 5;

impl Frame {
    /// Serialises the frame.
    pub fn encode(&self) -> Vec<u8> {
        let owned;
        let (kind, payload): (u8, &[u8]) = match self {
            Frame::Stdin(data) => (FRAME_STDIN, data),
            Frame::StdinEof => (FRAME_STDIN_EOF, &[]),
            Frame::Signal(sig) => (FRAME_SIGNAL, std::slice::from_ref(sig)),
            Frame::Done => (FRAME_DONE, &[]),
            Frame::Resume(r) => {
                owned = r.encode();
                (FRAME_RESUME, &owned)
            }
            Frame::Payload(len) => {
                owned = len.to_le_bytes().to_vec();
                (FRAME_PAYLOAD, &owned)
            }
            Frame::Resize(size) => {
                owned = size.encode().to_vec();
                (FRAME_RESIZE, &owned)
            }
        };
        let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Decodes one frame from the front of `buf`: `Ok(Some((frame, used)))`
    /// when complete, `Ok(None)` when more bytes are needed.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, ConfigError> {
        let Some(header) = buf.get(..FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > MAX_STDIN_FRAME {
            return Err(ConfigError(format!("frame of {len} bytes")));
        }
        let Some(payload) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
            return Ok(None);
        };
        let frame = match (header[0], payload) {
            (FRAME_STDIN, data) => Frame::Stdin(data.to_vec()),
            (FRAME_STDIN_EOF, []) => Frame::StdinEof,
            (FRAME_SIGNAL, [sig]) => Frame::Signal(*sig),
            (FRAME_DONE, []) => Frame::Done,
            (FRAME_RESUME, b) if Resume::decode(b).is_some() => {
                Frame::Resume(Resume::decode(b).unwrap_or_else(|| unreachable!()))
            }
            (FRAME_PAYLOAD, b) if b.len() == 8 => {
                Frame::Payload(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            }
            (FRAME_RESIZE, b) if WindowSize::decode(b).is_some() => {
                Frame::Resize(WindowSize::decode(b).unwrap_or_default())
            }
            (kind, _) => return Err(ConfigError(format!("bad frame kind {kind}"))),
        };
        Ok(Some((frame, FRAME_HEADER_LEN + len)))
    }
}

/// A message guest → host on the control channel, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The init has booted as far as every run of its guest identity does
    /// (modules of the transport loaded, channels open) and waits for
    /// [`Frame::Resume`]: the moment a snapshot is taken.
    Parked,
    /// The init took [`Frame::Resume`] (a restored guest is alive) and waits
    /// for [`Frame::Payload`].
    Resumed,
    /// The init has its channels open and accepts stdin frames.
    Ready,
    /// The binary started (its first instruction is near).
    Started,
    /// The guest consumed this many stdin bytes; the host may send more.
    StdinAck(usize),
    /// The binary was killed by this signal.
    Signaled(i32),
    /// The guest's OOM killer struck during the run.
    OutOfMemory,
    /// The init failed; the message says why.
    Error(String),
    /// Where the guest's time went, sent just before the exit code.
    Times(GuestTimes),
    /// How many bytes the guest wrote to the stdout and stderr channels;
    /// after the exit code, the guest waits for [`Frame::Done`].
    Streams {
        /// Bytes on the stdout channel.
        stdout: u64,
        /// Bytes on the stderr channel.
        stderr: u64,
    },
    /// An output file follows: exactly `len` raw bytes after this line.
    /// `name` is empty for a file output, the file's name for one in a
    /// directory output.
    File {
        /// Index into [`GuestConfig::outputs`].
        id: u32,
        /// Bytes that follow.
        len: u64,
        /// Name within a directory output.
        name: String,
    },
    /// The binary's exit code; the last event of a run.
    ExitCode(i32),
}

const EV_PARKED: &str = "VIRTRUN_PARKED";
const EV_RESUMED: &str = "VIRTRUN_RESUMED";
const EV_READY: &str = "VIRTRUN_READY";
const EV_STARTED: &str = "VIRTRUN_STARTED";
const EV_ACK: &str = "VIRTRUN_STDIN_ACK: ";
const EV_SIGNALED: &str = "VIRTRUN_SIGNALED: ";
const EV_OOM: &str = "VIRTRUN_OOM";
const EV_ERROR: &str = "VIRTRUN_ERROR: ";
const EV_TIMES: &str = "VIRTRUN_TIMES: ";
const EV_FILE: &str = "VIRTRUN_FILE: ";
const EV_STREAMS: &str = "VIRTRUN_STREAMS: ";

/// Moments of a run on the guest's monotonic clock (microseconds since the
/// kernel started).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuestTimes {
    /// The init's first instruction.
    pub init: u64,
    /// The binary was started.
    pub started: u64,
    /// The binary ended.
    pub exited: u64,
    /// The init was about to report the exit code.
    pub reported: u64,
}

impl fmt::Display for Event {
    /// The line for this event, without its newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Parked => f.write_str(EV_PARKED),
            Event::Resumed => f.write_str(EV_RESUMED),
            Event::Ready => f.write_str(EV_READY),
            Event::Started => f.write_str(EV_STARTED),
            Event::StdinAck(n) => write!(f, "{EV_ACK}{n}"),
            Event::Signaled(s) => write!(f, "{EV_SIGNALED}{s}"),
            Event::OutOfMemory => f.write_str(EV_OOM),
            // A newline would split the event; the message is for humans.
            Event::Error(msg) => write!(f, "{EV_ERROR}{}", msg.replace('\n', " ")),
            Event::ExitCode(code) => write!(f, "{EXIT_MARKER}{code}"),
            Event::File { id, len, name } => write!(f, "{EV_FILE}{id} {len} {name}"),
            Event::Streams { stdout, stderr } => {
                write!(f, "{EV_STREAMS}stdout={stdout} stderr={stderr}")
            }
            Event::Times(t) => write!(
                f,
                "{EV_TIMES}init={} started={} exited={} reported={}",
                t.init, t.started, t.exited, t.reported
            ),
        }
    }
}

impl Event {
    /// Parses one line (without its line ending). The exit marker is found
    /// anywhere in the line, as the original tool does, so that it is seen even
    /// after output without a trailing newline on a shared console.
    pub fn parse(line: &[u8]) -> Option<Event> {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        // An error message is the init's text about anything: it must not be
        // read as an exit code, whatever it quotes.
        if let Some(msg) = line.strip_prefix(EV_ERROR) {
            return Some(Event::Error(msg.to_string()));
        }
        if let Some(pos) = line.find(EXIT_MARKER) {
            return leading_int(&line[pos + EXIT_MARKER.len()..]).map(Event::ExitCode);
        }
        if let Some(n) = line.strip_prefix(EV_ACK) {
            return n.parse().ok().map(Event::StdinAck);
        }
        if let Some(s) = line.strip_prefix(EV_SIGNALED) {
            return s.parse().ok().map(Event::Signaled);
        }
        if let Some(fields) = line.strip_prefix(EV_STREAMS) {
            let (out, err) = fields.split_once(' ')?;
            return Some(Event::Streams {
                stdout: out.strip_prefix("stdout=")?.parse().ok()?,
                stderr: err.strip_prefix("stderr=")?.parse().ok()?,
            });
        }
        if let Some(fields) = line.strip_prefix(EV_FILE) {
            let mut parts = fields.splitn(3, ' ');
            let id = parts.next()?.parse().ok()?;
            let len = parts.next()?.parse().ok()?;
            let name = parts.next()?.to_string();
            return Some(Event::File { id, len, name });
        }
        if let Some(fields) = line.strip_prefix(EV_TIMES) {
            let mut t = GuestTimes::default();
            for field in fields.split(' ') {
                let (key, value) = field.split_once('=')?;
                let value = value.parse().ok()?;
                match key {
                    "init" => t.init = value,
                    "started" => t.started = value,
                    "exited" => t.exited = value,
                    "reported" => t.reported = value,
                    _ => return None,
                }
            }
            return Some(Event::Times(t));
        }
        match line {
            EV_PARKED => Some(Event::Parked),
            EV_RESUMED => Some(Event::Resumed),
            EV_READY => Some(Event::Ready),
            EV_STARTED => Some(Event::Started),
            EV_OOM => Some(Event::OutOfMemory),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trip_keeps_odd_bytes() {
        let cfg = GuestConfig {
            argv0: b"busybox".to_vec(),
            env: vec![b"RUST_LOG=debug".to_vec(), b"A=b c".to_vec()],
            outputs: vec![b"/tmp/virtrun-out/0".to_vec()],
            args: vec![
                b"a b".to_vec(),
                b"'\"\\".to_vec(),
                "ü€".as_bytes().to_vec(),
                b"".to_vec(),
                b"\n\xff".to_vec(),
            ],
            verbose: true,
            host_root: true,
            shares: vec![b"/home/u/src".to_vec(), b"/srv/a b".to_vec()],
            cwd: b"/home/u/src/pkg".to_vec(),
            exec: b"/tmp/go-build1/b001/pkg.test".to_vec(),
            bind_main: true,
            tty: Some(WindowSize {
                rows: 0x0a00,
                cols: 65535,
            }),
        };
        assert_eq!(GuestConfig::decode(&cfg.encode()).unwrap(), cfg);
    }

    #[test]
    fn boot_config_round_trip() {
        for layout in [Layout::Serial, Layout::Virtio] {
            for verbose in [false, true] {
                let cfg = BootConfig {
                    layout,
                    verbose,
                    modules_on_demand: !verbose,
                    run_disk: verbose,
                    user_net: !verbose,
                };
                assert_eq!(BootConfig::decode(&cfg.encode()).unwrap(), cfg);
            }
        }
        assert!(BootConfig::decode(b"verbose\x001\0").is_err());
        assert!(BootConfig::decode(b"layout\0tape\0").is_err());
    }

    #[test]
    fn loader_config_round_trip() {
        for cfg in [
            LoaderConfig {
                ports: 2,
                verbose: false,
            },
            LoaderConfig {
                ports: 31,
                verbose: true,
            },
        ] {
            assert_eq!(LoaderConfig::decode(&cfg.encode()).unwrap(), cfg);
        }
        assert!(LoaderConfig::decode(b"ports\0x\0").is_err());
        assert!(LoaderConfig::decode(b"verbose\x001\0").is_err());
        assert!(LoaderConfig::decode(b"ports\x003").is_err());
        assert!(LoaderConfig::decode(b"ports\x003\0odd\0").is_err());
    }

    #[test]
    fn config_rejects_garbage() {
        assert!(GuestConfig::decode(b"").is_err());
        assert!(GuestConfig::decode(b"verbose\0").is_err());
        assert!(GuestConfig::decode(b"verbose\x001").is_err());
        assert!(GuestConfig::decode(b"verbose\x001\0color\0red\0").is_err());
    }

    #[test]
    fn frames_round_trip_in_pieces() {
        let frames = vec![
            Frame::Stdin(b"a\nb".to_vec()),
            Frame::Stdin(vec![0xff; MAX_STDIN_FRAME]),
            Frame::Signal(2),
            Frame::StdinEof,
            Frame::Done,
            Frame::Resume(Resume {
                seed: [7; 32],
                secs: -3,
                nanos: 999_999_999,
            }),
            Frame::Payload(u64::MAX),
            Frame::Resize(WindowSize { rows: 24, cols: 80 }),
        ];
        let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(3) {
            buf.extend_from_slice(chunk);
            while let Some((frame, used)) = Frame::decode(&buf).unwrap() {
                got.push(frame);
                buf.drain(..used);
            }
        }
        assert_eq!(got, frames);
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_or_unknown_frames_are_errors() {
        assert!(Frame::decode(&[1, 0xff, 0xff, 0, 0]).is_err());
        assert!(Frame::decode(&[9, 0, 0, 0, 0]).is_err());
        assert!(Frame::decode(&[3, 0, 0, 0, 0]).is_err());
        assert!(Frame::decode(&[5, 1, 0, 0, 0, 0]).is_err());
        assert!(Frame::decode(&[6, 4, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn events_round_trip() {
        for ev in [
            Event::Parked,
            Event::Resumed,
            Event::Ready,
            Event::Started,
            Event::StdinAck(4096),
            Event::Signaled(9),
            Event::OutOfMemory,
            Event::Error("exec /main: ENOENT".into()),
            Event::ExitCode(0),
            Event::ExitCode(255),
            Event::ExitCode(-1),
            Event::File {
                id: 3,
                len: 1 << 33,
                name: "covcounters.a b".into(),
            },
            Event::File {
                id: 0,
                len: 0,
                name: String::new(),
            },
            Event::Streams {
                stdout: 100_000_000,
                stderr: 0,
            },
            Event::Times(GuestTimes {
                init: 1_900_000,
                started: 2_000_000,
                exited: 2_100_000,
                reported: 2_100_500,
            }),
        ] {
            assert_eq!(Event::parse(ev.to_string().as_bytes()), Some(ev));
        }
    }

    #[test]
    fn standalone_console_takes_either_marker() {
        assert_eq!(standalone_exit_code(b"VIRTRUN_EXIT_CODE: 3"), Some(3));
        assert_eq!(standalone_exit_code(b"PASSSYSINIT_EXIT_CODE: 0\r"), Some(0));
        assert_eq!(standalone_exit_code(b"SYSINIT_EXIT_CODE: -1"), Some(-1));
        assert_eq!(standalone_exit_code(b"SYSINIT_EXIT_CODE: x"), None);
        assert_eq!(standalone_exit_code(b"SYSINIT_EXIT_CODE 4"), None);
        assert_eq!(standalone_exit_code(b"hello"), None);
    }

    #[test]
    fn standalone_ports_are_named_like_the_original() {
        assert_eq!(
            standalone_port_path(STANDALONE_STDOUT_PORT),
            "/dev/virtrun1"
        );
        assert_eq!(standalone_port_path(2), "/dev/virtrun2");
    }

    #[test]
    fn an_error_message_cannot_fake_an_exit_code() {
        assert_eq!(
            Event::parse(b"VIRTRUN_ERROR: exec /tmp/VIRTRUN_EXIT_CODE: 7"),
            Some(Event::Error("exec /tmp/VIRTRUN_EXIT_CODE: 7".into()))
        );
    }

    #[test]
    fn exit_marker_found_after_unterminated_output() {
        assert_eq!(
            Event::parse(b"no newline hereVIRTRUN_EXIT_CODE: 42\r"),
            Some(Event::ExitCode(42))
        );
        assert_eq!(Event::parse(b"VIRTRUN_EXIT_CODE: x"), None);
        assert_eq!(Event::parse(b"hello"), None);
    }
}
