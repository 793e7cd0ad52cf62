//! The standalone loader: `/init` in front of a user's init (`/main`) on a
//! kernel whose transport drivers are modules. Inits written for the
//! original tool load no modules; on a stock kernel they would find no
//! virtio console. The loader loads the transport's drivers, waits until
//! every console port the host gave exists, undoes what it mounted and
//! `exec`s the user's init as PID 1 with its argv, environment and fds 0–2.
//! When a driver is missing it says so and powers off at once.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use virtrun_protocol::{LOADER_CONFIG_PATH, LoaderConfig, MAIN_PATH, TRANSPORT_MODULES_DIR};
use virtrun_sysinit::{Error, Result, channel, fs, kmod, log, power};

/// Where the loader looks at sysfs, mounted only while it runs.
const SYS: fs::Mount = fs::Mount {
    fstype: "sysfs",
    target: "/sys",
};

/// Loads the transport's drivers and becomes the user's init; on failure
/// logs why and powers off. Never returns.
pub fn run() -> ! {
    let err = match prepare() {
        Ok(()) => exec_main(),
        Err(e) => e,
    };
    log::fatal(&err.to_string());
    power::shutdown()
}

fn prepare() -> Result<()> {
    let raw = std::fs::read(LOADER_CONFIG_PATH)
        .map_err(|e| Error::new(format!("read {LOADER_CONFIG_PATH}"), e))?;
    fs::remove_if_exists(Path::new(LOADER_CONFIG_PATH))?;
    let config = LoaderConfig::decode(&raw)
        .map_err(|e| Error::new("decode the loader config", std::io::Error::other(e)))?;
    SYS.mount()?;
    let ready = load_and_wait(&config);
    // The user's init finds the system as the kernel left it.
    let unmounted = fs::unmount(SYS.target);
    ready.and(unmounted)
}

fn load_and_wait(config: &LoaderConfig) -> Result<()> {
    let n = kmod::load_dir(Path::new(TRANSPORT_MODULES_DIR))?;
    // The files are in memory (the initramfs): free it.
    let _ = std::fs::remove_dir_all(TRANSPORT_MODULES_DIR);
    if config.verbose {
        log::info(&format!("loader: loaded {n} transport modules"));
    }
    channel::check_transport()?;
    wait_for_consoles(config.ports, channel::PORT_WAIT)
}

/// Waits until the virtio console ports `hvc0` … `hvc<ports-1>` exist: the
/// driver adds them one by one after its probe, and inits written for the
/// original look for them at once.
fn wait_for_consoles(ports: usize, wait: Duration) -> Result<()> {
    let deadline = Instant::now() + wait;
    let missing = || -> Vec<String> {
        (0..ports)
            .map(|n| format!("hvc{n}"))
            .filter(|name| !Path::new("/sys/class/tty").join(name).exists())
            .collect()
    };
    loop {
        let absent = missing();
        if absent.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::new(
                format!("wait for the virtio consoles {}", absent.join(", ")),
                std::io::Error::from(std::io::ErrorKind::TimedOut),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Replaces the loader with the user's init; returns only on failure.
fn exec_main() -> Error {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| OsString::from("/init"));
    let err = Command::new(MAIN_PATH).arg0(argv0).args(args).exec();
    Error::new(format!("exec {MAIN_PATH}"), err)
}
