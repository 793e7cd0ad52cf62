//! The steps every guest init takes before it talks to the host, in the order
//! that works on a stock kernel: essential filesystems, then optional ones,
//! then the modules (they may provide the very console drivers the host
//! channels need), then the network and the `/dev` links.

use crate::{Error, Result};
use crate::{fs, kmod, log, net, stdio};
use std::ffi::OsStr;
use std::path::PathBuf;
use virtrun_protocol::{GUEST_HOSTNAME, MODULES_DIR};

/// First step of every init: leads a session of its own (see
/// [`crate::process::lead_session`]), mounts the essential filesystems
/// ([`fs::ESSENTIAL`]) and fills closed standard fds with `/dev/null`.
/// A failure here leaves the init without `/dev`, so without any channel.
pub fn start() -> Result<()> {
    crate::process::lead_session();
    fs::mount_essential()?;
    stdio::fill_closed();
    Ok(())
}

/// The rest of the system setup, configurable; [`Setup::run`] performs it.
///
/// The defaults are what virtrun's own init does: all optional filesystems,
/// the modules from [`MODULES_DIR`] (where virtrun packs `-addModule` files
/// and the drivers the transport needs), `lo` up, the host name
/// [`GUEST_HOSTNAME`] and the `/dev` links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    optional_mounts: bool,
    modules_dir: Option<PathBuf>,
    interfaces: Vec<String>,
    hostname: Option<String>,
    dev_links: bool,
    verbose: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup::new()
    }
}

impl Setup {
    /// The defaults (see [`Setup`]).
    pub fn new() -> Self {
        Setup {
            optional_mounts: true,
            modules_dir: Some(PathBuf::from(MODULES_DIR)),
            interfaces: vec!["lo".to_string()],
            hostname: Some(GUEST_HOSTNAME.to_string()),
            dev_links: true,
            verbose: false,
        }
    }

    /// Whether to mount [`fs::OPTIONAL`] (failures are only logged).
    pub fn optional_mounts(mut self, on: bool) -> Self {
        self.optional_mounts = on;
        self
    }

    /// Loads the module files of `dir` in lexical order instead of those of
    /// [`MODULES_DIR`].
    pub fn modules_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.modules_dir = Some(dir.into());
        self
    }

    /// Loads no modules.
    pub fn no_modules(mut self) -> Self {
        self.modules_dir = None;
        self
    }

    /// Also brings interface `name` up (after `lo`, unless
    /// [`Setup::no_interfaces`] came first).
    pub fn interface(mut self, name: impl Into<String>) -> Self {
        self.interfaces.push(name.into());
        self
    }

    /// Brings no interface up, not even `lo`.
    pub fn no_interfaces(mut self) -> Self {
        self.interfaces.clear();
        self
    }

    /// Sets the host name to `name` instead of
    /// [`virtrun_protocol::GUEST_HOSTNAME`]; `None` leaves the kernel's
    /// (`(none)`).
    pub fn hostname(mut self, name: Option<String>) -> Self {
        self.hostname = name;
        self
    }

    /// Whether to create [`fs::DEV_LINKS`].
    pub fn dev_links(mut self, on: bool) -> Self {
        self.dev_links = on;
        self
    }

    /// Whether to narrate each step on the kernel log.
    pub fn verbose(mut self, on: bool) -> Self {
        self.verbose = on;
        self
    }

    /// Mounts the optional filesystems, loads the modules, brings the
    /// interfaces up and creates the `/dev` links. A failing optional mount
    /// is logged and skipped; any other failure stops here. Call
    /// [`start`] first.
    pub fn run(&self) -> Result<()> {
        let step = |what: &str| {
            if self.verbose {
                log::info(what);
            }
        };
        if self.optional_mounts {
            for failure in fs::mount_optional() {
                log::info(&failure.to_string());
            }
            step("optional filesystems mounted");
        }
        if let Some(dir) = &self.modules_dir {
            let n = kmod::load_dir(dir)?;
            step(&format!("loaded {n} modules"));
        }
        for name in &self.interfaces {
            net::set_up(name)?;
            step(&format!("{name} up"));
        }
        if let Some(name) = &self.hostname {
            net::set_hostname(name)?;
            step(&format!("host name {name}"));
        }
        if self.dev_links {
            fs::create_dev_links()?;
            step("/dev links made");
        }
        Ok(())
    }
}

/// Removes every environment variable of this process.
///
/// # Safety
///
/// As for [`std::env::remove_var`]: no other thread may exist.
pub unsafe fn clear_env() {
    for (key, _) in std::env::vars_os() {
        // SAFETY: the caller guarantees that this process is single-threaded.
        unsafe { std::env::remove_var(key) };
    }
}

/// Sets environment variables in the given order (children see them in
/// this order, which `Command::envs` would not keep).
///
/// # Safety
///
/// As for [`std::env::set_var`]: no other thread may exist.
pub unsafe fn set_envs<K, V>(vars: impl IntoIterator<Item = (K, V)>)
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    for (key, value) in vars {
        // SAFETY: the caller guarantees that this process is single-threaded.
        unsafe { std::env::set_var(key, value) };
    }
}

/// Whether this process has a single thread, from `/proc` (which must be
/// mounted); the environment may only be changed then.
pub fn single_threaded() -> Result<bool> {
    let tasks =
        std::fs::read_dir("/proc/self/task").map_err(|e| Error::new("list /proc/self/task", e))?;
    Ok(tasks.count() == 1)
}
