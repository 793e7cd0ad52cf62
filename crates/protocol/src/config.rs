//! What the init is told: the boot's configuration (the guest's identity), the
//! run's, the standalone loader's, as NUL-separated key/value fields.

use super::*;
use std::fmt;

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
    pub(crate) fn encode(self) -> [u8; 4] {
        let [r0, r1] = self.rows.to_le_bytes();
        let [c0, c1] = self.cols.to_le_bytes();
        [r0, r1, c0, c1]
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        match *b {
            [r0, r1, c0, c1] => Some(WindowSize {
                rows: u16::from_le_bytes([r0, r1]),
                cols: u16::from_le_bytes([c0, c1]),
            }),
            _ => None,
        }
    }
}

/// A configuration that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad guest config: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// The NUL-terminated `key`, `value` fields of an encoded configuration,
/// in pairs.
pub(super) fn fields(data: &[u8]) -> Result<Vec<&[u8]>, DecodeError> {
    let body = data
        .strip_suffix(&[0])
        .ok_or_else(|| DecodeError("not NUL-terminated".into()))?;
    let fields: Vec<&[u8]> = body.split(|&b| b == 0).collect();
    if !fields.len().is_multiple_of(2) {
        return Err(DecodeError("odd number of fields".into()));
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
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
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
                    tty = Some(size.ok_or_else(|| DecodeError("bad terminal size".into()))?);
                }
                other => {
                    return Err(DecodeError(format!(
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
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
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
                _ => return Err(DecodeError("bad boot config".into())),
            }
        }
        Ok(BootConfig {
            layout: layout.ok_or_else(|| DecodeError("no layout".into()))?,
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
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let fields = fields(data)?;
        let mut ports = None;
        let mut verbose = false;
        for pair in fields.chunks(2) {
            match pair {
                [b"ports", n] => {
                    ports = std::str::from_utf8(n).ok().and_then(|n| n.parse().ok());
                }
                [b"verbose", v] => verbose = *v == b"1",
                _ => return Err(DecodeError("bad loader config".into())),
            }
        }
        Ok(LoaderConfig {
            ports: ports.ok_or_else(|| DecodeError("no port count".into()))?,
            verbose,
        })
    }
}
