//! The host's numbered ports in standalone mode, as `virtrun_protocol`
//! assigns them: port 0 is the kernel console (`/dev/console`) and carries the
//! exit marker, port 1 the binary's stdout, ports 2, 3, … output files.
//!
//! Further ports are virtio console ports (`hvcN`; a virtio serial port's
//! `/dev/vportDpN` if the host made it one) when a virtio console device
//! exists, serial ports (`ttySN`, `ttyAMAN`) otherwise. Discover them only after the modules are
//! loaded: with a stock kernel the virtio drivers are modules.

use crate::channel;
use crate::{ErrorContext, Result};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use virtrun_protocol::{
    Event, RAW_PORT_PREAMBLE, STANDALONE_CONSOLE_PORT, STANDALONE_STDOUT_PORT, standalone_port_path,
};

/// The kernel console, port 0.
const CONSOLE: &str = "/dev/console";
/// Where the virtio bus lists its devices.
const VIRTIO_DEVICES: &str = "/sys/bus/virtio/devices";
/// Device id of a virtio console (`device` attribute in sysfs).
const VIRTIO_ID_CONSOLE: &str = "0x0003";
/// Names of the active kernel consoles.
const ACTIVE_CONSOLES: &str = "/sys/class/tty/console/active";
/// Where serial drivers describe their ports.
const TTY_DRIVER_INFO: &str = "/proc/tty/driver";
/// How long the set of virtio ports must stay the same to count as complete:
/// the driver adds them one by one after its probe.
const SETTLE: Duration = Duration::from_millis(20);

/// One port of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Its number in the original tool's numbering.
    pub number: usize,
    /// The guest device that carries it.
    pub device: PathBuf,
}

/// Finds the ports the host provides, in port order, starting with port 0.
/// Virtio ports appear a moment after their driver loaded; they are waited
/// for up to `wait` when a virtio console device exists.
pub fn discover(wait: Duration) -> Vec<Port> {
    let mut ports = vec![Port {
        number: STANDALONE_CONSOLE_PORT,
        device: PathBuf::from(CONSOLE),
    }];
    let mut more = if virtio_console_present() {
        settled_virtio_ports(wait)
    } else {
        Vec::new()
    };
    if more.is_empty() {
        more = serial_ports();
    }
    ports.extend(more);
    ports
}

fn virtio_console_present() -> bool {
    std::fs::read_dir(VIRTIO_DEVICES)
        .into_iter()
        .flatten()
        .flatten()
        .any(|dev| {
            std::fs::read_to_string(dev.path().join("device"))
                .is_ok_and(|id| id.trim() == VIRTIO_ID_CONSOLE)
        })
}

/// The virtio ports once they stopped appearing (or `wait` ran out), each
/// on its final device.
fn settled_virtio_ports(wait: Duration) -> Vec<Port> {
    let deadline = Instant::now() + wait;
    let mut seen = virtio_numbers(dev_names());
    while seen.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        seen = virtio_numbers(dev_names());
    }
    while !seen.is_empty() && Instant::now() < deadline {
        std::thread::sleep(SETTLE);
        let now = virtio_numbers(dev_names());
        if now == seen {
            break;
        }
        seen = now;
    }
    let grace = (Instant::now() + CONSOLE_GRACE).min(deadline);
    seen.into_iter()
        .map(|(dev, number)| Port {
            number,
            device: virtio_device(dev, number, grace),
        })
        .collect()
}

/// The names in `/dev`.
fn dev_names() -> Vec<String> {
    std::fs::read_dir("/dev")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// How long a virtio port may take to turn out a console port: the driver
/// adds a port first and makes it a console (`hvcN`) on a later message.
const CONSOLE_GRACE: Duration = Duration::from_millis(500);

/// `(device, port)` of each `vportDpN` name with N ≥ 1, for the lowest D,
/// sorted by port.
fn virtio_numbers<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Vec<(usize, usize)> {
    let mut found: Vec<(usize, usize)> = names
        .into_iter()
        .filter_map(|name| {
            let (dev, port) = name.as_ref().strip_prefix("vport")?.split_once('p')?;
            Some((dev.parse().ok()?, port.parse().ok()?))
        })
        .filter(|&(_, port)| port > STANDALONE_CONSOLE_PORT)
        .collect();
    found.sort_unstable();
    if let Some(&(first, _)) = found.first() {
        found.retain(|&(dev, _)| dev == first);
    }
    found
}

/// The device of virtio port `number`. virtio's console ports, which
/// virtrun's standalone mode and the original tool use for every port, are
/// `hvcN`, numbered in port order (virtrun's host puts a console on port 0
/// too, so `hvcN` is port N); the kernel opens them only as such. A port that
/// is not a console by `grace` is a serial port: its `vport` node.
fn virtio_device(dev: usize, number: usize, grace: Instant) -> PathBuf {
    let hvc = PathBuf::from(format!("/dev/hvc{number}"));
    loop {
        let opened = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(&hvc);
        if opened.is_ok() {
            return hvc;
        }
        if Instant::now() >= grace {
            return PathBuf::from(format!("/dev/vport{dev}p{number}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Ports 1, 2, … on the UARTs of the kernel console's driver that the host
/// connected.
fn serial_ports() -> Vec<Port> {
    let active = std::fs::read_to_string(ACTIVE_CONSOLES).unwrap_or_default();
    let (prefix, driver) = if active.split_whitespace().any(|c| c.starts_with("ttyAMA")) {
        ("ttyAMA", "ttyAMA")
    } else {
        ("ttyS", "serial")
    };
    let info = std::fs::read_to_string(Path::new(TTY_DRIVER_INFO).join(driver)).unwrap_or_default();
    connected_uarts(&info)
        .into_iter()
        .filter(|&n| n > STANDALONE_CONSOLE_PORT)
        .map(|number| Port {
            number,
            device: PathBuf::from(format!("/dev/{prefix}{number}")),
        })
        .collect()
}

/// The line numbers of UARTs that exist, from a serial driver's info file:
/// `1: uart:16550A port:000002F8 irq:3 …` exists, `2: uart:unknown …` does not.
fn connected_uarts(info: &str) -> Vec<usize> {
    info.lines()
        .filter_map(|line| {
            let (number, rest) = line.split_once(':')?;
            let uart = rest
                .split_whitespace()
                .find_map(|f| f.strip_prefix("uart:"))?;
            (uart != "unknown").then(|| number.trim().parse().ok())?
        })
        .collect()
}

/// Connects this process to the ports: stderr to port 0, stdout to port 1
/// (to port 0 when there is none), stdin to `/dev/null`; links every port
/// from 1 on to its [`standalone_port_path`]. Ports are made raw, so that
/// what is written to them passes unchanged, and say so to the host with
/// [`RAW_PORT_PREAMBLE`].
pub fn connect(ports: &[Port]) -> Result<()> {
    let console = channel::open(Path::new(CONSOLE))?;
    let mut stdout = None;
    let mut held = lock_held();
    for port in ports.iter().filter(|p| p.number > STANDALONE_CONSOLE_PORT) {
        // Opening makes a tty raw, which the host is told first thing. It
        // stays open until the power-off: some ttys (hvc) forget their
        // settings when the last opener closes, and the exit report waits
        // until each one sent its output.
        let mut file = channel::open(&port.device)?;
        file.write_all(RAW_PORT_PREAMBLE)
            .context(|| format!("write to {}", port.device.display()))?;
        if port.number == STANDALONE_STDOUT_PORT {
            stdout = Some(file.try_clone().context(|| "dup stdout port".into())?);
        }
        held.push(file);
        crate::fs::replace_symlink(&port.device, Path::new(&standalone_port_path(port.number)))?;
    }
    crate::stdio::redirect(2, &console)?;
    crate::stdio::redirect(1, stdout.as_ref().unwrap_or(&console))?;
    crate::stdio::null_stdin()
}

/// The ports [`connect`] opened, held open until the power-off.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

fn lock_held() -> std::sync::MutexGuard<'static, Vec<File>> {
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reports `code` to the host: flushes and drains stdout and stderr, then
/// writes the exit marker on a line of its own on port 0, and waits until it
/// left the guest.
pub fn report_exit_code(code: i32) -> io::Result<()> {
    let _ = io::stdout().flush();
    channel::drain(&io::stdout());
    channel::drain(&io::stderr());
    for port in lock_held().iter() {
        channel::drain(port);
    }
    let mut console = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(CONSOLE)?;
    // The newline first: the last output on the console may lack one.
    console.write_all(format!("\n{}\n", Event::ExitCode(code)).as_bytes())?;
    channel::drain(&console);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connected_uarts_skips_unknown_ones() {
        let info = "serinfo:1.0 driver revision:\n\
                    0: uart:16550A port:000003F8 irq:4 tx:126 rx:0 RTS|CTS|DTR|DSR|CD\n\
                    1: uart:16550A port:000002F8 irq:3 tx:0 rx:0\n\
                    2: uart:unknown port:000003E8 irq:4\n\
                    3: uart:unknown port:000002E8 irq:3\n";
        assert_eq!(connected_uarts(info), vec![0, 1]);
        assert_eq!(
            connected_uarts("serinfo:1.0\n0: uart:PL011 rev3 mmio:0x09000000 irq:13\n"),
            vec![0]
        );
        assert_eq!(connected_uarts(""), Vec::<usize>::new());
    }

    #[test]
    fn virtio_numbers_take_the_first_device_and_skip_port_0() {
        let names = [
            "vport1p1", "vport0p2", "null", "vport0p0", "vport0p1", "vportx", "hvc0",
        ];
        assert_eq!(virtio_numbers(names), vec![(0, 1), (0, 2)]);
        assert_eq!(virtio_numbers(["vport2p3"]), vec![(2, 3)]);
        assert!(virtio_numbers(["tty", "vport0p0"]).is_empty());
    }
}
