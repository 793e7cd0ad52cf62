//! The guest's virtio disks, found by the serial number the host gave them
//! (`-device virtio-blk-…,serial=…`): the kernel names disks in probe order,
//! which differs between transports (virtio-mmio slots are probed last to
//! first), so a name such as `/dev/vda` says nothing.

use crate::{ErrorContext, Result};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a disk may take to appear after its driver loaded.
pub const DISK_WAIT: Duration = Duration::from_secs(5);

/// The device node of the disk with `serial`, waited for up to `wait`.
pub fn find(serial: &str, wait: Duration) -> Result<PathBuf> {
    let deadline = Instant::now() + wait;
    loop {
        let found = std::fs::read_dir("/sys/block").ok().and_then(|dir| {
            dir.flatten().find_map(|e| {
                let got = std::fs::read_to_string(e.path().join("serial")).ok()?;
                (got.trim_end() == serial).then(|| PathBuf::from("/dev").join(e.file_name()))
            })
        });
        match found {
            Some(dev) if dev.exists() => return Ok(dev),
            _ if Instant::now() >= deadline => {
                return Err(crate::Error::new(
                    format!("find the disk {serial:?} in {} s", wait.as_secs()),
                    io::Error::from(io::ErrorKind::NotFound),
                ));
            }
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Size of one read: large, as each read is one request to the host.
const CHUNK: usize = 1 << 20;
/// Alignment `O_DIRECT` wants of buffers (and offsets and sizes).
const ALIGN: usize = 4096;

/// The first bytes of a disk, read past the page cache (`O_DIRECT`): under a
/// restored guest the disk's contents changed since the kernel cached any
/// of it.
pub struct DirectReader {
    file: File,
    buf: Vec<u8>,
    start: usize,
    pos: usize,
    filled: usize,
    left: u64,
}

/// Opens the disk at `path` for a [`DirectReader`].
pub fn open_direct(path: &std::path::Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .context(|| format!("open {}", path.display()))
}

impl DirectReader {
    /// Reads the first `len` bytes of `file` (from [`open_direct`]), from
    /// its start.
    pub fn new(file: File, len: u64) -> DirectReader {
        let buf = vec![0u8; CHUNK + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN);
        DirectReader {
            file,
            buf,
            start,
            pos: 0,
            filled: 0,
            left: len,
        }
    }
}

impl Read for DirectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || out.is_empty() {
            return Ok(0);
        }
        if self.pos == self.filled {
            let chunk = &mut self.buf[self.start..self.start + CHUNK];
            let n = self.file.read(chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the disk ended {} bytes early", self.left),
                ));
            }
            self.pos = 0;
            self.filled = n;
        }
        let n = out
            .len()
            .min(self.filled - self.pos)
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let from = self.start + self.pos;
        out[..n].copy_from_slice(&self.buf[from..from + n]);
        self.pos += n;
        self.left -= n as u64;
        Ok(n)
    }
}
