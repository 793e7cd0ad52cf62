//! Which device carries what: the roles of the wrapped layouts, the standalone
//! ports and their numbering, the markers on the console.

use super::*;

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
pub(super) fn leading_int(s: &str) -> Option<i32> {
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
