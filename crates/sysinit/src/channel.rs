//! The channels to the host, as `virtrun_protocol` assigns them.

use crate::sys::check;
use crate::{ErrorContext, Result};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use virtrun_protocol::{Event, Frame, Layout, Role};

/// Where sysfs lists the virtio serial ports and their names.
const VIRTIO_PORTS: &str = "/sys/class/virtio-ports";

/// How long an init waits for virtio ports to appear after their driver
/// loaded: the driver adds them asynchronously after its probe. Generous,
/// as a guest that shares few host CPUs with many others is slow; only a
/// broken setup waits it out.
pub const PORT_WAIT: Duration = Duration::from_secs(30);

/// Finds the device of `role` in `layout`; virtio ports may appear a moment
/// after their driver loaded, so they are waited for up to `wait`.
pub fn device(layout: Layout, role: Role, wait: Duration) -> Result<PathBuf> {
    match (layout, role.virtio_port_name()) {
        (Layout::Serial, _) | (Layout::Virtio, None) => {
            Ok(PathBuf::from(format!("/dev/ttyS{}", role.serial_index())))
        }
        (Layout::Virtio, Some(name)) => {
            if find_virtio_port(name).is_none() {
                check_transport()?;
            }
            let deadline = Instant::now() + wait;
            loop {
                if let Some(dev) = find_virtio_port(name) {
                    return Ok(dev);
                }
                if Instant::now() >= deadline {
                    return Err(crate::Error::new(
                        format!(
                            "find virtio port {name} in {} s (is virtio_console loaded?); \
                             ports seen: {}",
                            wait.as_secs(),
                            virtio_ports_seen()
                        ),
                        io::Error::from(io::ErrorKind::NotFound),
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Fails at once when the virtio console cannot work because a driver is
/// missing ([`crate::transport::missing_driver`]), instead of waiting for
/// ports that will never appear.
pub fn check_transport() -> Result<()> {
    match crate::transport::missing_driver() {
        None => Ok(()),
        Some(why) => Err(crate::Error::new(
            "no virtio console",
            io::Error::other(format!(
                "{why} (give virtrun the kernel's module tree with -modulesDir, or use -transport isa)"
            )),
        )),
    }
}

/// The virtio ports there are, with their names, for an error message:
/// `vport1p1=virtrun.control vport1p2=(no name)`.
fn virtio_ports_seen() -> String {
    let Ok(dir) = std::fs::read_dir(VIRTIO_PORTS) else {
        return format!("none ({VIRTIO_PORTS} is missing)");
    };
    let mut seen: Vec<String> = dir
        .flatten()
        .map(|e| {
            let name = std::fs::read_to_string(e.path().join("name"));
            format!(
                "{}={}",
                e.file_name().to_string_lossy(),
                name.as_deref().map_or("(no name)", str::trim_end)
            )
        })
        .collect();
    seen.sort();
    if seen.is_empty() {
        "none".into()
    } else {
        seen.join(" ")
    }
}

fn find_virtio_port(name: &str) -> Option<PathBuf> {
    std::fs::read_dir(VIRTIO_PORTS)
        .ok()?
        .flatten()
        .find_map(|e| {
            let found = std::fs::read_to_string(e.path().join("name")).ok()?;
            (found.trim_end() == name).then(|| PathBuf::from("/dev").join(e.file_name()))
        })
}

/// Opens a channel device for reading and writing; a tty is put in raw mode
/// so that every byte passes unchanged (no echo, no CR/LF rewriting).
pub fn open(path: &std::path::Path) -> Result<File> {
    let what = || format!("open {}", path.display());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .context(what)?;
    make_raw(&file).context(what)?;
    Ok(file)
}

use std::os::unix::fs::OpenOptionsExt;

fn make_raw(file: &File) -> io::Result<()> {
    // SAFETY: termios is plain old data; tcgetattr fills it.
    let mut tio: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and pointer to a termios.
    if unsafe { libc::tcgetattr(file.as_raw_fd(), &mut tio) } < 0 {
        let err = io::Error::last_os_error();
        // Virtio serial ports are not ttys and need no setup.
        return if err.raw_os_error() == Some(libc::ENOTTY) {
            Ok(())
        } else {
            Err(err)
        };
    }
    // SAFETY: `tio` is a valid termios.
    unsafe { libc::cfmakeraw(&mut tio) };
    tio.c_cflag |= libc::CLOCAL;
    tio.c_cflag &= !libc::HUPCL;
    // SAFETY: valid fd and termios.
    check(unsafe { libc::tcsetattr(file.as_raw_fd(), libc::TCSANOW, &tio) }).map(drop)
}

/// Waits until everything written to a tty left the guest; a no-op on
/// devices that are not ttys (a virtio port's write returns only once the
/// host took the data).
pub fn drain(file: &impl AsFd) {
    // SAFETY: a valid borrowed fd; tcdrain only waits.
    unsafe { libc::tcdrain(file.as_fd().as_raw_fd()) };
}

/// The init's channels to the host.
#[derive(Debug)]
pub struct Channels {
    /// Control: events out, frames in.
    pub control: File,
    /// The binary's stdout.
    pub stdout: File,
    /// The binary's stderr.
    pub stderr: File,
}

impl Channels {
    /// Finds and opens the control and stream channels of `layout`.
    pub fn open(layout: Layout, wait: Duration) -> Result<Channels> {
        let open_role = |role| open(&device(layout, role, wait)?);
        Ok(Channels {
            control: open_role(Role::Control)?,
            stdout: open_role(Role::Stdout)?,
            stderr: open_role(Role::Stderr)?,
        })
    }
}

/// Sends events to the host; cheap to clone and share between threads.
#[derive(Debug, Clone)]
pub struct EventSender(Arc<Mutex<File>>);

impl EventSender {
    /// Sends events over `control`.
    pub fn new(control: File) -> Self {
        EventSender(Arc::new(Mutex::new(control)))
    }

    /// Sends one event as a line, waiting until it left the guest.
    pub fn send(&self, event: &Event) -> io::Result<()> {
        let line = format!("{event}\n");
        let mut file = self.0.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(line.as_bytes())?;
        drain(&*file);
        Ok(())
    }
}

impl EventSender {
    /// Sends a file: an [`Event::File`] line, then its bytes, as one unit
    /// (no other event can come between them).
    pub fn send_file(&self, id: u32, name: &str, path: &std::path::Path) -> io::Result<()> {
        let mut src = File::open(path)?;
        let len = src.metadata()?.len();
        let header = Event::File {
            id,
            len,
            name: name.to_string(),
        };
        let mut file = self.0.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(format!("{header}\n").as_bytes())?;
        // Exactly `len` bytes, even if the file changed meanwhile: the host
        // counts on it. A plain loop: `io::copy` would try `sendfile`, which
        // some channel devices refuse.
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = match src.read(&mut buf[..want]) {
                Ok(0) => {
                    buf[..want].fill(0);
                    want
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            file.write_all(&buf[..n])?;
            left -= n as u64;
        }
        drain(&*file);
        Ok(())
    }
}

/// Reads frames from the host, one at a time.
#[derive(Debug)]
pub struct FrameReader {
    file: File,
    buf: Vec<u8>,
}

impl FrameReader {
    /// Reads frames from `control`.
    pub fn new(control: File) -> Self {
        FrameReader {
            file: control,
            buf: Vec::new(),
        }
    }

    /// The `len` raw bytes that follow a [`Frame::Payload`].
    pub fn payload(&mut self, len: u64) -> Payload<'_> {
        Payload { frames: self, len }
    }

    /// The next frame; `None` when the host closed the channel.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some((frame, used)) = Frame::decode(&self.buf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
            {
                self.buf.drain(..used);
                return Ok(Some(frame));
            }
            match self.file.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The raw bytes after a [`Frame::Payload`]: what the reader had buffered
/// first, then the channel, up to the announced length.
#[derive(Debug)]
pub struct Payload<'a> {
    frames: &'a mut FrameReader,
    len: u64,
}

impl Read for Payload<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = usize::try_from(self.len).map_or(buf.len(), |l| l.min(buf.len()));
        if want == 0 {
            return Ok(0);
        }
        let n = if self.frames.buf.is_empty() {
            self.frames.file.read(&mut buf[..want])?
        } else {
            let n = want.min(self.frames.buf.len());
            buf[..n].copy_from_slice(&self.frames.buf[..n]);
            self.frames.buf.drain(..n);
            n
        };
        self.len -= n as u64;
        Ok(n)
    }
}
